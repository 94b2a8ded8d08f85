"""Interpreter start-up hook, imported by ``nnunet_scribble.pth`` in site-packages.

It does two cheap things (no torch, no nnU-Net import) so that nnU-Net's own commands work with our trainers right
after ``pip install``:

1. **Trainer discovery.** nnunetv2 2.8 searches the folders listed in the environment variable ``nnUNet_extTrainer``
   (``os.pathsep``-separated) after its built-in trainers. We append this package's re-export folder
   (:data:`EXT_TRAINER_DIR`) to that variable, after any folders the user already listed, unless it is there
   already. Users who prefer to set it themselves: ``export nnUNet_extTrainer=$(nnunet_scribble_ext_path)``.
2. **CUDA-built torchvision next to a CPU torch.** PyPI's Linux torchvision wheels are CUDA builds whose ``_C.so``
   cannot load against a ``+cpu`` torch; ``import torchvision`` then dies in ``_meta_registrations.py`` with
   ``RuntimeError: operator torchvision::nms does not exist``. nnU-Net's trainer lookup imports its Primus trainers
   (timm -> torchvision) before it reaches external trainers, so every ``-tr`` other than the default crashes.
   A one-shot import hook runs right before torchvision is first imported: it loads torchvision's ``_C`` library
   and, only if that fails, declares the two operator schemas torchvision registers unconditionally
   (``torchvision::nms`` and ``torchvision::qnms``, no kernels: nnU-Net never calls them). Where torchvision works,
   the library loads and nothing else changes.

Set ``NNUNET_SCRIBBLE_NO_STARTUP=1`` to switch both off.
"""
from __future__ import annotations

import importlib.abc
import os
import sys

EXT_TRAINER_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "nnunet_ext")
_NMS_SCHEMA = "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor"


def register_ext_trainer_dir(environ: dict | None = None) -> str:
    """Append :data:`EXT_TRAINER_DIR` to ``nnUNet_extTrainer`` in ``environ`` (default ``os.environ``).

    Folders already listed are kept, in order; ours is not added twice. Returns the new value.
    """
    environ = os.environ if environ is None else environ
    folders = [f for f in environ.get("nnUNet_extTrainer", "").split(os.pathsep) if f]
    if not any(os.path.normpath(f) == os.path.normpath(EXT_TRAINER_DIR) for f in folders):
        folders.append(EXT_TRAINER_DIR)
    environ["nnUNet_extTrainer"] = os.pathsep.join(folders)
    return environ["nnUNet_extTrainer"]


def ensure_torchvision_ops() -> str:
    """Make ``import torchvision`` survive a torchvision ``_C`` library that cannot load.

    Returns:
        ``"loaded"`` if the library loaded (torchvision works as shipped), ``"declared"`` if the operator schemas had
        to be declared, ``"absent"`` if torchvision is not installed.
    """
    import glob
    import importlib.util

    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return "absent"
    import torch

    for lib in sorted(glob.glob(os.path.join(list(spec.submodule_search_locations)[0], "_C*"))):
        try:
            torch.ops.load_library(lib)
            return "loaded"
        except (OSError, RuntimeError):
            pass
    for name in ("nms", "qnms"):
        try:
            getattr(torch.ops.torchvision, name)
        except (AttributeError, RuntimeError):
            torch.library.define(f"torchvision::{name}", _NMS_SCHEMA)
    return "declared"


class _TorchvisionGuard(importlib.abc.MetaPathFinder):
    """One-shot finder: runs :func:`ensure_torchvision_ops` before torchvision's first import, then steps aside."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname == "torchvision":
            if self in sys.meta_path:
                sys.meta_path.remove(self)
            try:
                ensure_torchvision_ops()
            except Exception as e:  # never make an import fail that would have worked without us
                print(f"nnunet_scribble: torchvision guard skipped ({e!r})", file=sys.stderr)
        return None


def install() -> None:
    """Apply both start-up measures (idempotent)."""
    if os.environ.get("NNUNET_SCRIBBLE_NO_STARTUP", "0") not in ("", "0"):
        return
    register_ext_trainer_dir()
    if "torchvision" not in sys.modules and not any(isinstance(f, _TorchvisionGuard) for f in sys.meta_path):
        sys.meta_path.insert(0, _TorchvisionGuard())


install()
