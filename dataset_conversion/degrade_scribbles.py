"""Runnable script for nnunet_scribble.dataset_conversion.degrade_dataset: shrunk or dropped scribbles (console script nnunet_scribble_degrade)."""
from nnunet_scribble.dataset_conversion.degrade_dataset import main

if __name__ == "__main__":
    raise SystemExit(main())
