"""Runnable script: scribble version of any dense nnU-Net dataset.

Logic in nnunet_scribble.dataset_conversion.simulate_dataset; also installed as the console script
nnunet_scribble_simulate.
"""
from nnunet_scribble.dataset_conversion.simulate_dataset import main

if __name__ == "__main__":
    raise SystemExit(main())
