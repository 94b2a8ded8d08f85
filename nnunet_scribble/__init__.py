"""nnunet_scribble: scribble-supervised segmentation methods as nnU-Net v2 trainers.

Importing this package is cheap on purpose (no torch, no nnU-Net): it is imported at interpreter start-up by the
``nnunet_scribble.pth`` hook that makes the trainers discoverable (see :mod:`nnunet_scribble._startup`).
"""
from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
