"""Fully supervised nnU-Net with this package's shared machinery: the upper bound of the benchmarks."""
from __future__ import annotations

from nnunet_scribble.trainers.common import TrainerCommon


class nnUNetTrainerFullySupervised(TrainerCommon):
    """nnU-Net's trainer, unchanged in what it learns, on a dataset with dense labels.

    It is the upper bound of our benchmarks: identical to ``nnUNetTrainer`` except that its schedule can be shortened
    with ``nnUNet_scribble_hparams`` (like every trainer of this package, so all run under one benchmark preset) and
    that its loss is logged per term. Unlike the scribble trainers it accepts datasets without an ignore label.
    """
