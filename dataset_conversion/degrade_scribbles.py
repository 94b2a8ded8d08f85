"""Runnable script: degraded (shrunk/dropped) copy of a scribble dataset.

Logic in nnunet_scribble.dataset_conversion.degrade_dataset; also installed as the console script
nnunet_scribble_degrade.
"""
from nnunet_scribble.dataset_conversion.degrade_dataset import main

if __name__ == "__main__":
    raise SystemExit(main())
