"""nnU-Net trainers of this package. Every public trainer class is re-exported here (and, through
:mod:`nnunet_scribble.nnunet_ext.nnunet_scribble_trainers`, found by ``nnUNetv2_train -tr <name>``)."""
from nnunet_scribble.trainers.nnUNetTrainerFullySupervised import nnUNetTrainerFullySupervised
from nnunet_scribble.trainers.nnUNetTrainerScribble import nnUNetTrainerScribble

__all__ = ["nnUNetTrainerFullySupervised", "nnUNetTrainerScribble"]
