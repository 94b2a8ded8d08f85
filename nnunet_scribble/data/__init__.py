"""Data generation: the embedded synthetic scribble dataset."""
