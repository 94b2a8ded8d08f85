"""Dice and HD95 between binary masks, for 2D and 3D arrays (pure numpy/scipy).

HD95 follows the definition of medpy's ``metric.binary.hd95`` used by the scribble-supervision papers (WSL4MIS,
DMPLS, ...): the surface of a mask is ``mask XOR binary_erosion(mask, connectivity-1 cross)``; every surface voxel of
one mask gets the Euclidean distance (in mm, using the voxel spacing) to the nearest surface voxel of the other
mask, both directions are pooled and the 95th percentile of the pooled distances is reported.

Axes of length 1 are dropped before computing HD95, so a 2D image stored as ``(1, H, W)`` (how nnU-Net reads 2D
images) gives the same value as the ``(H, W)`` array, whatever the spacing of the singleton axis (nnU-Net uses 999).

Empty-mask conventions (see :data:`METRIC_CONVENTIONS`):

- Dice: both masks empty -> 1.0; exactly one empty -> 0.0.
- HD95: both masks empty -> 0.0; exactly one empty -> the largest possible distance in the array, i.e. the length
  of its diagonal between the centres of opposite corner voxels, ``norm((shape - 1) * spacing)`` in mm. Means stay
  finite and a missed (or hallucinated) structure is penalised maximally.
"""
from __future__ import annotations

from typing import Mapping, Sequence, Union

import numpy as np
from scipy import ndimage

#: Human-readable statement of the empty-mask conventions, stored in every evaluation summary.
METRIC_CONVENTIONS = (
    "Dice: both masks empty -> 1.0, exactly one empty -> 0.0. "
    "HD95 (mm, medpy definition: 95th percentile of the pooled surface distances of both directions): "
    "both empty -> 0.0, exactly one empty -> the array diagonal norm((shape - 1) * spacing) in mm "
    "(largest possible distance). Axes of length 1 are ignored. "
    "Label values 0 (background) and the label named 'ignore' are not evaluated. "
    "std is the population standard deviation (ddof=0)."
)

LabelValue = Union[int, Sequence[int]]


def dice(pred_mask: np.ndarray, ref_mask: np.ndarray) -> float:
    """Dice coefficient ``2 |P & R| / (|P| + |R|)`` of two boolean masks.

    Args:
        pred_mask: predicted mask (any dimensionality, cast to bool).
        ref_mask: reference mask of the same shape.

    Returns:
        The Dice coefficient; 1.0 if both masks are empty, 0.0 if exactly one is empty.

    Raises:
        ValueError: if the shapes differ.
    """
    pred, ref = _as_bool_pair(pred_mask, ref_mask)
    total = int(pred.sum()) + int(ref.sum())
    if total == 0:
        return 1.0
    return 2.0 * int(np.logical_and(pred, ref).sum()) / total


def hd95(pred_mask: np.ndarray, ref_mask: np.ndarray, spacing: Sequence[float]) -> float:
    """95th-percentile symmetric Hausdorff distance in mm (medpy ``hd95`` definition).

    Both masks are cropped to their joint bounding box plus a 1-voxel margin before the distance transforms;
    this does not change the result.

    Args:
        pred_mask: predicted mask (2D or 3D, cast to bool).
        ref_mask: reference mask of the same shape.
        spacing: voxel size in mm, one value per array axis.

    Returns:
        HD95 in mm; 0.0 if both masks are empty; the array diagonal ``norm((shape - 1) * spacing)`` if exactly
        one mask is empty.

    Raises:
        ValueError: if the shapes differ or ``len(spacing)`` is not the number of array axes.
    """
    pred, ref = _as_bool_pair(pred_mask, ref_mask)
    spacing_arr = _check_spacing(spacing, pred.ndim)
    keep = [i for i, s in enumerate(pred.shape) if s > 1] or list(range(pred.ndim))
    pred = pred.reshape([pred.shape[i] for i in keep])
    ref = ref.reshape(pred.shape)
    spacing_arr = spacing_arr[keep]
    has_pred, has_ref = bool(pred.any()), bool(ref.any())
    if not has_pred and not has_ref:
        return 0.0
    if not has_pred or not has_ref:
        return float(np.linalg.norm((np.array(pred.shape) - 1) * spacing_arr))
    box = _joint_bbox(pred, ref, margin=1)
    return _hd95_uncropped(pred[box], ref[box], spacing_arr)


def compute_case_metrics(pred: np.ndarray, ref: np.ndarray, labels: Mapping[str, LabelValue],
                         spacing: Sequence[float]) -> dict[str, dict[str, float]]:
    """Dice, HD95 and voxel counts of every foreground label of one case.

    Args:
        pred: predicted label map (2D or 3D integer array).
        ref: dense reference label map of the same shape.
        labels: ``{name: value}``; a value may also be a list of values (an nnU-Net region, evaluated as their
            union). The label with value 0 (background) and the label named ``"ignore"`` are skipped.
        spacing: voxel size in mm, one value per array axis.

    Returns:
        ``{name: {"Dice": float, "HD95": float, "n_ref": int, "n_pred": int}}``.

    Raises:
        ValueError: if the shapes differ or the spacing length does not match the number of axes.
    """
    if pred.shape != ref.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from reference shape {ref.shape}")
    _check_spacing(spacing, pred.ndim)
    result: dict[str, dict[str, float]] = {}
    for name, value in foreground_labels(labels).items():
        values = np.atleast_1d(np.asarray(value))
        p, r = np.isin(pred, values), np.isin(ref, values)
        result[name] = {"Dice": dice(p, r), "HD95": hd95(p, r, spacing),
                        "n_ref": int(r.sum()), "n_pred": int(p.sum())}
    return result


def far_mask(ref: np.ndarray, spacing: Sequence[float], max_distance_mm: float = 15.0) -> np.ndarray:
    """Voxels farther than ``max_distance_mm`` (Euclidean, in mm, across slices too) from all reference foreground.

    Args:
        ref: dense reference label map; foreground = every label > 0 together.
        spacing: voxel size in mm, one value per array axis.
        max_distance_mm: the near/far border.

    Returns:
        Boolean array of ``ref``'s shape; all True when ``ref`` has no foreground.

    Raises:
        ValueError: if the spacing length does not match the number of axes.
    """
    spacing_arr = _check_spacing(spacing, ref.ndim)
    ref_fg = ref > 0
    if not ref_fg.any():
        return np.ones(ref.shape, bool)
    return ndimage.distance_transform_edt(~ref_fg, sampling=spacing_arr) > max_distance_mm


def far_foreground_fraction(pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float],
                            max_distance_mm: float = 15.0) -> float:
    """Share of the predicted foreground that lies farther than ``max_distance_mm`` from all reference foreground.

    Measures the false positives far from the structure (scribble-trained models paint look-alike regions in
    distant anatomy), which Dice mixes with boundary errors. Distances are Euclidean in mm (``spacing``), in 3D
    across slices too; foreground = every label > 0 together.

    Args:
        pred: predicted label map.
        ref: dense reference label map of the same shape.
        spacing: voxel size in mm, one value per array axis.
        max_distance_mm: distance beyond which a predicted voxel counts as far.

    Returns:
        A fraction in [0, 1]: 0.0 without predicted foreground, 1.0 when the reference has no foreground but the
        prediction has.

    Raises:
        ValueError: if the shapes differ or the spacing length does not match the number of axes.
    """
    if pred.shape != ref.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from reference shape {ref.shape}")
    _check_spacing(spacing, pred.ndim)
    pred_fg = pred > 0
    if not pred_fg.any():
        return 0.0
    return float(far_mask(ref, spacing, max_distance_mm)[pred_fg].mean())


def error_breakdown(pred: np.ndarray, ref: np.ndarray, labels: Mapping[str, LabelValue], spacing: Sequence[float],
                    max_distance_mm: float = 15.0, far: np.ndarray | None = None) -> dict[str, dict[str, int]]:
    """Per class, where the errors lie: near the reference foreground or far from it.

    Splits each class's predicted voxels into true positives, false positives within ``max_distance_mm`` of the
    reference foreground (all foreground labels together: boundary and class-confusion errors) and false positives
    beyond it (look-alike anatomy far from the structure, the same split as :func:`far_foreground_fraction`), plus
    the missed voxels. Dice mixes these; a method that under-segments near the structure and one that paints
    distant regions can score the same Dice.

    Args:
        pred: predicted label map.
        ref: dense reference label map of the same shape.
        labels: ``{name: value}``; background and ``"ignore"`` are skipped.
        spacing: voxel size in mm, one value per array axis.
        max_distance_mm: distance from the reference foreground beyond which a false positive counts as far.
        far: ``far_mask(ref, spacing, max_distance_mm)`` when the caller has it already (it is the costly part);
            computed here when None.

    Returns:
        ``{class: {"ref": n, "tp": n, "fp_near": n, "fp_far": n, "fn": n}}`` in voxels. Without reference
        foreground every false positive is far.

    Raises:
        ValueError: if the shapes differ or the spacing length does not match the number of axes.
    """
    if pred.shape != ref.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from reference shape {ref.shape}")
    if far is None:
        far = far_mask(ref, spacing, max_distance_mm)
    elif far.shape != ref.shape:
        raise ValueError(f"far mask shape {far.shape} differs from reference shape {ref.shape}")
    result = {}
    for name, value in foreground_labels(labels).items():
        p, r = np.isin(pred, np.atleast_1d(value)), np.isin(ref, np.atleast_1d(value))
        fp = p & ~r
        result[name] = {"ref": int(r.sum()), "tp": int((p & r).sum()), "fp_near": int((fp & ~far).sum()),
                        "fp_far": int((fp & far).sum()), "fn": int((r & ~p).sum())}
    return result


def keep_largest_foreground_component(pred: np.ndarray, labels: Mapping[str, LabelValue]) -> np.ndarray:
    """nnU-Net's "remove all but the largest foreground region" post-processing of a label map.

    All foreground labels form one mask; voxels outside its largest connected component become background
    (nnU-Net's own ``remove_all_but_largest_component_from_segmentation``, the candidate that
    ``nnUNetv2_find_best_configuration`` tries first).

    Args:
        pred: predicted label map.
        labels: ``{name: value}``; background and ``"ignore"`` are skipped.

    Returns:
        The post-processed copy of ``pred``.
    """
    from nnunetv2.postprocessing.remove_connected_components import \
        remove_all_but_largest_component_from_segmentation

    values = sorted({int(v) for value in foreground_labels(labels).values() for v in np.atleast_1d(value)})
    if not values or not np.isin(pred, values).any():
        return pred.copy()
    return remove_all_but_largest_component_from_segmentation(pred, values)


def foreground_labels(labels: Mapping[str, LabelValue]) -> dict[str, LabelValue]:
    """Return ``labels`` without background (value 0) and without the label named ``"ignore"``.

    Args:
        labels: ``{name: value}`` as in nnU-Net's ``dataset.json``.

    Returns:
        The evaluated labels, in the given order.
    """
    return {str(k): v for k, v in labels.items() if k != "ignore" and not _is_background(v)}


def _is_background(value: LabelValue) -> bool:
    values = np.atleast_1d(np.asarray(value))
    return values.size == 1 and int(values[0]) == 0


def _hd95_uncropped(pred: np.ndarray, ref: np.ndarray, spacing: np.ndarray) -> float:
    """HD95 of two non-empty boolean masks without cropping (the reference computation)."""
    pred_surface, ref_surface = _surface(pred), _surface(ref)
    d_pred_to_ref = ndimage.distance_transform_edt(~ref_surface, sampling=spacing)[pred_surface]
    d_ref_to_pred = ndimage.distance_transform_edt(~pred_surface, sampling=spacing)[ref_surface]
    return float(np.percentile(np.hstack((d_pred_to_ref, d_ref_to_pred)), 95))


def _surface(mask: np.ndarray) -> np.ndarray:
    """Voxels of ``mask`` removed by one erosion with the connectivity-1 cross (voxels outside count as 0)."""
    structure = ndimage.generate_binary_structure(mask.ndim, 1)
    return mask ^ ndimage.binary_erosion(mask, structure=structure, iterations=1)


def _joint_bbox(a: np.ndarray, b: np.ndarray, margin: int) -> tuple[slice, ...]:
    """Slices of the bounding box of ``a | b`` grown by ``margin`` voxels and clipped to the array."""
    coords = np.argwhere(a | b)
    lo = np.maximum(coords.min(axis=0) - margin, 0)
    hi = np.minimum(coords.max(axis=0) + 1 + margin, a.shape)
    return tuple(slice(int(start), int(stop)) for start, stop in zip(lo, hi))


def _as_bool_pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"prediction mask shape {a.shape} differs from reference mask shape {b.shape}")
    return a, b


def _check_spacing(spacing: Sequence[float], ndim: int) -> np.ndarray:
    spacing_arr = np.asarray(spacing, dtype=float).ravel()
    if spacing_arr.size != ndim:
        raise ValueError(f"spacing {tuple(spacing)} has {spacing_arr.size} values, expected one per array axis "
                         f"({ndim})")
    return spacing_arr
