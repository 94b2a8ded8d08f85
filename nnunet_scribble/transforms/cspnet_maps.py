"""Distance maps of CSPNet's distance perception module: ``d_s`` (eq. 17) and ``d_c`` (eq. 15), per sample.

:class:`CSPNetMapsTransform` runs in the data-augmentation workers after the spatial augmentation, on a
segmentation whose two channels are the scribbles and the pseudo labels, so both maps belong to the augmented patch
(methods.md: "both maps and the pseudo labels go through the same spatial augmentation as the scribbles").

Units: distances are Euclidean, in voxels of the finest axis of the training grid
(:func:`nnunet_scribble.transforms.distance_maps.relative_spacing`), so the paper's 2D coefficients apply to an
anisotropic 3D configuration too. Eq. 15 and 17 write ``floor(sqrt(e^lambda * d^2))`` truncated at 255, which is
``floor(min(255, e^(lambda / 2) * d))``.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from batchgeneratorsv2.transforms.base.basic_transform import SegOnlyTransform
from scipy.ndimage import distance_transform_edt

from nnunet_scribble.transforms.distance_maps import relative_spacing

#: Truncation of the scaled distance (eq. 15 and 17: "truncated to 255 for normalization").
_TRUNCATION = 255.0


def _as_numpy(seg: np.ndarray | torch.Tensor) -> np.ndarray:
    return seg.numpy() if isinstance(seg, torch.Tensor) else np.asarray(seg)


def _scaled_distance(target: np.ndarray, lam: float, spacing: Sequence[float] | None) -> np.ndarray:
    """``floor(min(255, e^(lam / 2) * dist)) / 255`` with ``dist`` the distance to the nearest ``True`` voxel."""
    dist = distance_transform_edt(~target, sampling=relative_spacing(spacing, target.ndim))
    return np.floor(np.minimum(_TRUNCATION, np.exp(lam / 2) * dist)) / _TRUNCATION


def scribble_distance_map(seg: np.ndarray | torch.Tensor, ignore_label: int, lambda_s: float = 1.0,
                          spacing: Sequence[float] | None = None) -> np.ndarray:
    """Scribble distance map ``d_s`` (eq. 17): 1 on foreground scribbles, falling to 0 at ``255 / e^(lambda_s/2)``.

    ``d_s = 1 - floor(min(255, e^(lambda_s / 2) * dist)) / 255`` with ``dist`` the distance to the nearest
    *foreground* scribble voxel (labels ``1..ignore_label-1``; background scribbles, unannotated voxels and
    negative values are not scribbles), as in the paper and the released code.

    Args:
        seg: ``(*spatial)`` scribble label map (0 background, ``ignore_label`` unannotated).
        ignore_label: the dataset's ignore label (the highest label).
        lambda_s: the paper's ``lambda_s`` (ACDC: 1, Table A5).
        spacing: voxel spacing per spatial axis; distances in units of its smallest entry. ``None``: voxels.

    Returns:
        ``(*spatial)`` float32 map in ``[0, 1]``; all zeros if the patch has no foreground scribble voxel.
    """
    seg = _as_numpy(seg)
    scribble = (seg > 0) & (seg < ignore_label)
    if not scribble.any():
        return np.zeros(seg.shape, dtype=np.float32)
    return (1.0 - _scaled_distance(scribble, lambda_s, spacing)).astype(np.float32)


def pseudo_label_boundary(pseudo: np.ndarray | torch.Tensor, ignore_label: int) -> np.ndarray:
    """Foreground voxels of the pseudo label with a face neighbour of another class (the ``(m', n')`` of eq. 15).

    Only labels in ``[0, ignore_label)`` count: a voxel is on the boundary if its label is foreground (``> 0``) and
    at least one of its ``2 * ndim`` face neighbours (no wrap-around; the image border is not a boundary) holds a
    different label in ``[0, ignore_label)``. Ignore and negative neighbours (outside the image, unlabelled) do not
    create a boundary.

    Decision: this marks class boundaries, foreground-background and foreground-foreground (e.g. RV | myocardium),
    where the paper's pseudo labels are least reliable ("objects in close proximity"); the released code takes the
    1-px contour of the binary foreground instead (reference-implementations.md §4.3).

    Args:
        pseudo: ``(*spatial)`` pseudo label map.
        ignore_label: the dataset's ignore label.

    Returns:
        ``(*spatial)`` bool array.
    """
    pseudo = _as_numpy(pseudo)
    valid = (pseudo >= 0) & (pseudo < ignore_label)
    boundary = np.zeros(pseudo.shape, dtype=bool)
    for axis in range(pseudo.ndim):
        lo = tuple(slice(None, -1) if a == axis else slice(None) for a in range(pseudo.ndim))
        hi = tuple(slice(1, None) if a == axis else slice(None) for a in range(pseudo.ndim))
        differs = valid[lo] & valid[hi] & (pseudo[lo] != pseudo[hi])
        boundary[lo] |= differs
        boundary[hi] |= differs
    return boundary & valid & (pseudo > 0)


def boundary_distance_map(pseudo: np.ndarray | torch.Tensor, ignore_label: int, lambda_c: float = 6.0,
                          spacing: Sequence[float] | None = None) -> np.ndarray:
    """Pseudo-label distance map ``d_c`` (eq. 15): 0 on the pseudo-label boundary, 1 from ``255 / e^(lambda_c/2)``.

    ``d_c = floor(min(255, e^(lambda_c / 2) * dist)) / 255`` with ``dist`` the distance to the nearest voxel of
    :func:`pseudo_label_boundary`. With ``lambda_c = 6`` (ACDC, Table A5): 20/255 one voxel away, 1 from 13 voxels.

    Deviation: ``d_c = 0`` where the pseudo label is ignore or negative (outside the image after the spatial
    augmentation, or unlabelled), so these voxels get no entropy weight; the reference pads its stored maps with
    255, giving padding full weight (reference-implementations.md §4.3).

    Args:
        pseudo: ``(*spatial)`` pseudo label map (0 background, ``ignore_label`` / negative: no label).
        ignore_label: the dataset's ignore label.
        lambda_c: the paper's ``lambda_c`` (ACDC: 6, Table A5).
        spacing: voxel spacing per spatial axis; distances in units of its smallest entry. ``None``: voxels.

    Returns:
        ``(*spatial)`` float32 map in ``[0, 1]``; ones (zeros outside the labelled region) without any boundary.
    """
    pseudo = _as_numpy(pseudo)
    boundary = pseudo_label_boundary(pseudo, ignore_label)
    d_c = _scaled_distance(boundary, lambda_c, spacing) if boundary.any() else np.ones(pseudo.shape)
    d_c[(pseudo < 0) | (pseudo >= ignore_label)] = 0.0
    return d_c.astype(np.float32)


class CSPNetMapsTransform(SegOnlyTransform):
    """Append ``d_s`` and ``d_c`` to a ``[scribble, pseudo label]`` segmentation (no randomness).

    Input ``segmentation``: ``(2, *spatial)`` integer tensor, channel 0 the scribbles, channel 1 the pseudo labels
    (both with the ignore label, e.g. outside the image after the spatial augmentation). Output: ``(4, *spatial)``
    float32 tensor ``[scribble, pseudo, d_s, d_c]``. As :class:`ScribbleDistanceTransform`, the segmentation becomes
    float32: the labels stay exact (small integers) and nnU-Net's ``DownsampleSegForDSTransform``, which runs
    afterwards on all channels, keeps the dtype. ``d_s`` is also set to 0 where the pseudo label is ignore or
    negative (outside the image), like ``d_c``.

    Args:
        ignore_label: the dataset's ignore label.
        lambda_s: coefficient of ``d_s`` (eq. 17).
        lambda_c: coefficient of ``d_c`` (eq. 15).
        spacing: the configuration's voxel spacing, ``None`` for voxels.
    """

    def __init__(self, ignore_label: int, lambda_s: float, lambda_c: float, spacing: Sequence[float] | None = None):
        super().__init__()
        self.ignore_label = ignore_label
        self.lambda_s = lambda_s
        self.lambda_c = lambda_c
        self.spacing = None if spacing is None else tuple(float(s) for s in spacing)

    def _apply_to_segmentation(self, segmentation: torch.Tensor, **params) -> torch.Tensor:
        if segmentation.shape[0] != 2:
            raise ValueError(f"CSPNetMapsTransform expects a two-channel segmentation (2, *spatial) = [scribble, "
                             f"pseudo label], got shape {tuple(segmentation.shape)}")
        scribble, pseudo = _as_numpy(segmentation[0]), _as_numpy(segmentation[1])
        d_s = scribble_distance_map(scribble, self.ignore_label, self.lambda_s, self.spacing)
        d_s[(pseudo < 0) | (pseudo >= self.ignore_label)] = 0.0
        d_c = boundary_distance_map(pseudo, self.ignore_label, self.lambda_c, self.spacing)
        return torch.cat([segmentation.float(), torch.from_numpy(np.stack([d_s, d_c]))])


def outside_to_background(segmentation: torch.Tensor, outside: int = -1) -> torch.Tensor:
    """Set the pseudo label (channel 1) to background where the scribble channel (0) is ``outside``.

    CSPNet with ``outside_image_background`` (:class:`~nnunet_scribble.trainers.nnUNetTrainerCSPNet`): nnU-Net marks
    the region outside its non-zero crop, and padding beyond the image, with -1 in the scribble channel; that region
    becomes background for the dense pseudo-label term (``L_segc``) and the distance maps computed from it, while the
    scribble term keeps ignoring it. Not in the paper, whose crops hold little of that region.

    Args:
        segmentation: ``(2, *spatial)`` integer tensor ``[scribble, pseudo label]``, before nnU-Net's -1 is
            replaced.
        outside: the value nnU-Net writes outside the image (-1).

    Returns:
        A new tensor of the same shape and dtype; channel 0 unchanged.
    """
    if segmentation.shape[0] != 2:
        raise ValueError(f"outside_to_background expects a two-channel segmentation (2, *spatial) = [scribble, "
                         f"pseudo label], got shape {tuple(segmentation.shape)}")
    out = segmentation.clone()
    out[1][segmentation[0] == outside] = 0
    return out


class PseudoLabelOutsideToBackgroundTransform(SegOnlyTransform):
    """:func:`outside_to_background` as a batchgeneratorsv2 transform (no randomness).

    Runs before nnU-Net's ``RemoveLabelTransform(-1, ...)``, which then only changes the scribble channel.

    Args:
        outside: the value nnU-Net writes outside the image (-1).
    """

    def __init__(self, outside: int = -1):
        super().__init__()
        self.outside = outside

    def _apply_to_segmentation(self, segmentation: torch.Tensor, **params) -> torch.Tensor:
        return outside_to_background(segmentation, self.outside)
