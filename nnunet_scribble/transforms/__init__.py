"""Per-sample data-augmentation transforms (batchgeneratorsv2 template) and batch-level tensor transforms."""
