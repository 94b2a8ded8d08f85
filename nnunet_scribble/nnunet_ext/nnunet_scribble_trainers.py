"""Re-exports of every nnunet_scribble trainer for nnU-Net's external-trainer lookup. Keep this import-only."""
from nnunet_scribble.trainers import *  # noqa: F401,F403
from nnunet_scribble.trainers import __all__  # noqa: F401
