"""Per-class distance maps to the scribbles, and continuous pseudo labels derived from them (MaCo eq. 3-5, Alg. 2).

The distance maps are computed per sample in the data-augmentation workers, on the augmented patch, by
:class:`ScribbleDistanceTransform`, which appends them as extra channels of ``segmentation`` (nnU-Net's data loader
drops any other key). The continuous pseudo labels are a cheap element-wise function of the distances and are
computed on the training device by :func:`continuous_pseudo_labels`, so the pipeline only ships distances.

Units: distances are Euclidean, in voxels of the training grid along its finest axis. For a 2D configuration (or
isotropic 3D) that is simply voxels; for an anisotropic 3D configuration (e.g. ACDC 3d_fullres, 10 mm slices and
1.56 mm in-plane) one unit is one in-plane voxel and one step along the slice axis counts 10 / 1.56 = 6.4 units, so
the same ``alpha`` as the paper's 2D setting applies. A class without any scribble voxel in the patch gets ``+inf``
everywhere (:data:`NO_SCRIBBLE`); :func:`continuous_pseudo_labels` maps it to a pseudo label of 0.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from batchgeneratorsv2.transforms.base.basic_transform import SegOnlyTransform
from scipy.ndimage import distance_transform_edt

#: Distance of every voxel to a class that has no scribble voxel in the patch.
NO_SCRIBBLE = float("inf")


def relative_spacing(spacing: Sequence[float] | None, ndim: int) -> tuple[float, ...]:
    """Spacing divided by its smallest entry (unit = one voxel along the finest axis); ``None`` -> all ones.

    Raises:
        ValueError: if ``spacing`` has not ``ndim`` entries or an entry is not positive.
    """
    if spacing is None:
        return (1.0,) * ndim
    spacing = tuple(float(s) for s in spacing)
    if len(spacing) != ndim or min(spacing) <= 0:
        raise ValueError(f"spacing must have {ndim} positive entries (one per spatial axis), got {spacing}")
    finest = min(spacing)
    return tuple(s / finest for s in spacing)


def scribble_distance_maps(seg: np.ndarray | torch.Tensor, num_classes: int, ignore_label: int,
                           spacing: Sequence[float] | None = None, max_distance: float | None = None) -> np.ndarray:
    """Euclidean distance of every voxel to the nearest scribble voxel of each class (MaCo eq. 3).

    Args:
        seg: ``(*spatial)`` or ``(1, *spatial)`` label map: classes ``0..num_classes-1``, ``ignore_label`` for
            unannotated voxels (any other value is treated as unannotated too).
        num_classes: number of classes including background (nnU-Net's segmentation heads).
        ignore_label: the dataset's ignore label.
        spacing: voxel spacing per spatial axis (any unit); distances are measured in units of its smallest entry.
            ``None``: isotropic, distances in voxels.
        max_distance: if given, distances above it are reported as ``+inf`` and each class's transform runs only
            on the bounding box of its scribble grown by ``max_distance`` (exact inside, beyond ``max_distance``
            outside), which is what makes it cheap for compact foreground scribbles. ``None``: exact everywhere.

    Returns:
        ``(num_classes, *spatial)`` float32 distances; 0 on the class's own scribble voxels; :data:`NO_SCRIBBLE`
        (``+inf``) everywhere for a class without scribble voxels (and beyond ``max_distance``).

    Raises:
        ValueError: for a multi-channel ``seg``, ``num_classes < 1`` or an ``ignore_label`` inside the class range.
    """
    seg = seg.numpy() if isinstance(seg, torch.Tensor) else np.asarray(seg)
    if seg.ndim >= 3 and seg.shape[0] == 1 and (spacing is None or len(spacing) == seg.ndim - 1):
        seg = seg[0]
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if 0 <= ignore_label < num_classes:
        raise ValueError(f"ignore_label must lie outside the classes 0..{num_classes - 1}, got {ignore_label}")
    if max_distance is not None and max_distance < 0:
        raise ValueError(f"max_distance must be >= 0 or None, got {max_distance}")
    sampling = relative_spacing(spacing, seg.ndim)
    out = np.full((num_classes, *seg.shape), NO_SCRIBBLE, dtype=np.float32)
    for c in range(num_classes):
        scribble = seg == c
        box = _scribble_box(scribble, sampling, max_distance)
        if box is None:
            continue
        # one exact EDT per class (scipy's feature transform, ~85% of the cost); restricted to the grown bounding
        # box, which is exact inside the box because the nearest scribble voxel of any voxel there lies inside it
        out[c][box] = distance_transform_edt(~scribble[box], sampling=sampling)
        if max_distance is not None:
            out[c][out[c] > max_distance] = NO_SCRIBBLE
    return out


def _scribble_box(scribble: np.ndarray, sampling: Sequence[float], margin: float | None) -> tuple[slice, ...] | None:
    """Bounding box of the ``True`` voxels grown by ``margin`` (in units of ``sampling``); ``None`` if empty."""
    if margin is None:
        return tuple(slice(None) for _ in range(scribble.ndim)) if scribble.any() else None
    box = []
    for axis in range(scribble.ndim):
        hits = np.flatnonzero(scribble.any(axis=tuple(a for a in range(scribble.ndim) if a != axis)))
        if hits.size == 0:
            return None
        grow = int(np.ceil(margin / sampling[axis]))
        box.append(slice(max(hits[0] - grow, 0), hits[-1] + grow + 1))
    return tuple(box)


def continuous_pseudo_labels(dist: torch.Tensor, alpha: float = 0.1, tau: float = 0.05,
                             background_class: int = 0) -> torch.Tensor:
    """Continuous pseudo labels from distance maps (MaCo eq. 4-5, Alg. 2).

    Foreground class c: ``cpl = exp(-alpha * D) * 1[exp(-alpha * D) > tau]``; the background ("global category",
    GC) class: ``cpl = max(exp(-alpha * D), tau)``. A class without any scribble in the sample (``D = inf``
    everywhere) gets ``cpl = 0``, background included (methods.md; the paper's floor ``tau`` for GC presumes a GC
    scribble in the image, and a floor without any background evidence would push the whole patch to background).

    Args:
        dist: ``(B, C, *spatial)`` distances from :func:`scribble_distance_maps`.
        alpha: decay factor (paper: 0.1 per pixel).
        tau: confidence threshold (paper: 0.05).
        background_class: index of the global category; ``None`` treats every class as foreground.

    Returns:
        ``(B, C, *spatial)`` pseudo labels in ``[0, 1]``, same dtype as ``dist``.

    Raises:
        ValueError: for ``alpha <= 0``, ``tau`` outside ``[0, 1)`` or a background class out of range.
    """
    if alpha <= 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")
    if not 0 <= tau < 1:
        raise ValueError(f"tau must lie in [0, 1), got {tau}")
    if background_class is not None and not 0 <= background_class < dist.shape[1]:
        raise ValueError(f"background_class must index one of the {dist.shape[1]} channels, got {background_class}")
    decay = torch.exp(-alpha * dist)
    cpl = torch.where(decay > tau, decay, torch.zeros_like(decay))
    if background_class is not None:
        cpl[:, background_class] = decay[:, background_class].clamp_min(tau)
    present = torch.isfinite(dist).flatten(2).any(-1)  # (B, C): class has a scribble in the sample
    return cpl * present.reshape(*present.shape, *([1] * (dist.ndim - 2))).to(cpl.dtype)


def hard_pseudo_labels(dist: torch.Tensor) -> torch.Tensor:
    """One-hot nearest-scribble labels (the paper's "HPL" of Table VIII, for the ablation).

    Every voxel gets the class of its nearest scribble voxel with full confidence; voxels of a sample without any
    scribble get all zeros.

    Args:
        dist: ``(B, C, *spatial)`` distances from :func:`scribble_distance_maps`.

    Returns:
        ``(B, C, *spatial)`` one-hot labels (zeros where no class has a scribble), same dtype as ``dist``.
    """
    nearest = dist.argmin(1, keepdim=True)
    any_scribble = torch.isfinite(dist).any(1, keepdim=True)
    onehot = torch.zeros_like(dist).scatter_(1, nearest, 1.0)
    return onehot * any_scribble.to(dist.dtype)


class ScribbleDistanceTransform(SegOnlyTransform):
    """Append the per-class scribble distance maps as channels ``1..C`` of ``segmentation`` (no randomness).

    Runs after spatial augmentation and after out-of-image voxels became the ignore label, so the distances belong
    to the augmented patch and padding never counts as a scribble. The segmentation (int16 from nnU-Net's loader)
    becomes float32: labels stay exact (small integers) and distances need the float range (``+inf`` included).

    Args:
        num_classes: number of classes including background.
        ignore_label: the dataset's ignore label.
        spacing: the configuration's voxel spacing (see :func:`scribble_distance_maps`), ``None`` for voxels.
        max_distance: distances above it become ``+inf`` (cheaper; see :func:`scribble_distance_maps`).
    """

    def __init__(self, num_classes: int, ignore_label: int, spacing: Sequence[float] | None = None,
                 max_distance: float | None = None):
        super().__init__()
        self.num_classes = num_classes
        self.ignore_label = ignore_label
        self.spacing = None if spacing is None else tuple(float(s) for s in spacing)
        self.max_distance = max_distance

    def _apply_to_segmentation(self, segmentation: torch.Tensor, **params) -> torch.Tensor:
        if segmentation.shape[0] != 1:
            raise ValueError(f"ScribbleDistanceTransform expects a single-channel segmentation (1, *spatial), got "
                             f"shape {tuple(segmentation.shape)}")
        dist = scribble_distance_maps(segmentation[0], self.num_classes, self.ignore_label, self.spacing,
                                      self.max_distance)
        return torch.cat([segmentation.float(), torch.from_numpy(dist)])
