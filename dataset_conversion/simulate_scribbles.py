"""Runnable script for nnunet_scribble.dataset_conversion.simulate_dataset: scribble version of any dense dataset (console script nnunet_scribble_simulate)."""
from nnunet_scribble.dataset_conversion.simulate_dataset import main

if __name__ == "__main__":
    raise SystemExit(main())
