"""Small console commands."""
from __future__ import annotations

import argparse

from nnunet_scribble._startup import EXT_TRAINER_DIR


def ext_path_main(argv: list[str] | None = None) -> int:
    """``nnunet_scribble_ext_path``: print the folder to put into ``nnUNet_extTrainer``."""
    parser = argparse.ArgumentParser(
        prog="nnunet_scribble_ext_path",
        description="Print the folder that holds nnunet_scribble's trainers for nnU-Net's external-trainer lookup. "
                    "The installed package already appends it to nnUNet_extTrainer at interpreter start-up; to set "
                    "it yourself: export nnUNet_extTrainer=$(nnunet_scribble_ext_path) (separate several folders "
                    "with ':'), and set NNUNET_SCRIBBLE_NO_STARTUP=1 to switch the automatic hook off.")
    parser.parse_args(argv)
    print(EXT_TRAINER_DIR)
    return 0
