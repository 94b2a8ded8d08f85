"""Plain helpers of the converter tests (importable by name; pytest fixtures stay in conftest.py)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import SimpleITK as sitk

SPACING = (1.5, 1.25, 10.0)
DIRECTION = (1.0, 0.0, 0.0, 0.0, 0.0, -1.0, 0.0, 1.0, 0.0)
ORIGIN = (3.0, -2.0, 5.0)


def shared_data() -> Path:
    """The real data folder (``../shared/data`` next to the repo, or $NNUNET_SCRIBBLE_SHARED_DATA)."""
    env = os.environ.get("NNUNET_SCRIBBLE_SHARED_DATA")
    return Path(env) if env else (Path(__file__).resolve().parents[2] / "../shared/data").resolve()


def heart(shape: tuple[int, int, int] = (3, 24, 20), seed: int = 0) -> np.ndarray:
    """A dense ACDC-like label volume: LV disc (3), MYO ring (2), RV blob (1) on background."""
    z, y, x = np.mgrid[: shape[0], : shape[1], : shape[2]]
    r = np.hypot(y - shape[1] / 2, x - shape[2] / 2 - 2)
    dense = np.zeros(shape, np.uint8)
    dense[r < 6] = 2
    dense[r < 4] = 3
    dense[(np.hypot(y - shape[1] / 2, x - 3) < 3) & (dense == 0)] = 1
    return dense


def scribble_from(dense: np.ndarray, ignore: int = 4) -> np.ndarray:
    """Scribbles: a horizontal line through each class in every slice, ignore elsewhere."""
    scribble = np.full_like(dense, ignore)
    mid = dense.shape[1] // 2
    scribble[:, mid - 1: mid + 1] = dense[:, mid - 1: mid + 1]
    scribble[:, 1, 1:-1] = 0
    return scribble


def write_nifti(array: np.ndarray, path: Path, spacing=SPACING, origin=ORIGIN, direction=DIRECTION) -> None:
    """Write ``array`` (z, y, x) with the given geometry."""
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    image.SetDirection(direction)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path))


def image_like(dense: np.ndarray, seed: int) -> np.ndarray:
    """An int16 image with intensity depending on the label plus noise."""
    rng = np.random.default_rng(seed)
    return (dense * 100 + rng.integers(0, 50, dense.shape)).astype(np.int16)
