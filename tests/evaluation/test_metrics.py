"""Hand-computed checks of Dice and HD95 (medpy definition) on tiny arrays."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

from nnunet_scribble.evaluation.metrics import _hd95_uncropped, compute_case_metrics, dice, hd95


def _square(shape, rows, cols):
    mask = np.zeros(shape, dtype=bool)
    mask[rows, cols] = True
    return mask


def test_dice_two_squares_shifted_by_one_pixel():
    # A: rows 2-5, cols 2-5 (16 px); B: rows 2-5, cols 3-6 (16 px); overlap rows 2-5, cols 3-5 = 4 * 3 = 12 px.
    # Dice = 2 * 12 / (16 + 16) = 0.75
    a = _square((8, 8), slice(2, 6), slice(2, 6))
    b = _square((8, 8), slice(2, 6), slice(3, 7))
    assert dice(a, b) == pytest.approx(0.75)
    assert dice(a, a) == 1.0


@pytest.mark.parametrize("axis, expected", [(0, 2.0), (1, 1.0)])
def test_hd95_single_voxel_shift_equals_spacing_of_that_axis(axis, expected):
    # single voxels: the surface is the voxel itself, so both directed distances are one step along `axis`
    a = np.zeros((5, 5), dtype=bool)
    a[2, 2] = True
    b = np.roll(a, 1, axis=axis)
    assert hd95(a, b, spacing=(2.0, 1.0)) == pytest.approx(expected)


def test_hd95_square_shifted_along_anisotropic_axis():
    # 3x3 squares, B = A shifted by one row, spacing (2.0, 1.0). Surface = 8 border pixels (centre eroded).
    # A -> B: A's top row (3 px) is 2.0 from B's top row; A's centre column of the bottom row lies on B's centre
    # (interior) -> 1.0 to B's left/right border; the other 4 px lie on B's surface -> 0. Symmetric for B -> A.
    # Pooled (16 values): 8 x 0.0, 2 x 1.0, 6 x 2.0 -> 95th percentile (index 14.25 of 0..15) = 2.0
    a = _square((7, 7), slice(2, 5), slice(2, 5))
    b = _square((7, 7), slice(3, 6), slice(2, 5))
    assert hd95(a, b, spacing=(2.0, 1.0)) == pytest.approx(2.0)
    assert hd95(a.T, b.T, spacing=(1.0, 2.0)) == pytest.approx(2.0)
    assert hd95(a, b, spacing=(1.0, 1.0)) == pytest.approx(1.0)


def test_3d_cubes_shifted_along_z_respect_anisotropic_spacing():
    # 3x3x3 cubes, B = A shifted by one slice. Per cube 26 surface voxels; A's bottom face (9 voxels) is one slice
    # (3.0 mm) from B's nearest surface, 16 voxels lie on B's surface, A's top-face centre is inside B -> 1.0 mm.
    # Pooled: 18 x 3.0 are the 18 largest of 52 values -> 95th percentile = 3.0 = spacing along z.
    # Dice = 2 * 18 / (27 + 27) = 2/3 (two 3x3 slices overlap).
    a = np.zeros((6, 5, 5), dtype=bool)
    a[1:4, 1:4, 1:4] = True
    b = np.roll(a, 1, axis=0)
    assert dice(a, b) == pytest.approx(2 / 3)
    assert hd95(a, b, spacing=(3.0, 1.0, 1.0)) == pytest.approx(3.0)
    # the same shift along an in-plane axis is measured with that axis' spacing
    assert hd95(a, np.roll(a, 1, axis=1), spacing=(3.0, 1.0, 1.0)) == pytest.approx(1.0)


def test_empty_mask_conventions():
    empty = np.zeros((5, 9), dtype=bool)
    full = _square((5, 9), slice(1, 3), slice(1, 3))
    assert dice(empty, empty) == 1.0
    assert hd95(empty, empty, (2.0, 0.5)) == 0.0
    assert dice(full, empty) == 0.0 and dice(empty, full) == 0.0
    # diagonal between corner voxel centres: norm((5 - 1) * 2.0, (9 - 1) * 0.5) = sqrt(64 + 16)
    assert hd95(full, empty, (2.0, 0.5)) == pytest.approx(math.sqrt(80))
    assert hd95(empty, full, (2.0, 0.5)) == pytest.approx(math.sqrt(80))


def test_singleton_axis_is_ignored():
    a = _square((10, 12), slice(2, 6), slice(2, 9))
    b = _square((10, 12), slice(3, 8), slice(1, 7))
    expected = hd95(a, b, (1.0, 1.0))
    assert hd95(a[None], b[None], (999.0, 1.0, 1.0)) == pytest.approx(expected)
    assert hd95(a[None], np.zeros_like(a[None]), (999.0, 1.0, 1.0)) == pytest.approx(math.hypot(9, 11))


def _blob(rng, shape, box, sigma=2.0):
    noise = np.zeros(shape)
    noise[box] = rng.random(tuple(s.stop - s.start for s in box))
    smooth = ndimage.gaussian_filter(noise, sigma)
    return smooth > np.percentile(smooth[box], 60)


@pytest.mark.parametrize("seed", range(4))
def test_cropping_does_not_change_hd95(seed):
    rng = np.random.default_rng(seed)
    shape = (30, 40, 36)
    spacing = (2.5, 0.7, 0.9)
    # blobs far from the border (cropping removes a lot) and blobs touching the border (crop clipped to the array)
    inner = (slice(5, 20), slice(8, 30), slice(4, 25))
    edge = (slice(0, 12), slice(20, 40), slice(0, 36))
    for box_a, box_b in ((inner, inner), (inner, edge)):
        a, b = _blob(rng, shape, box_a), _blob(rng, shape, box_b)
        assert a.any() and b.any()
        assert hd95(a, b, spacing) == pytest.approx(_hd95_uncropped(a, b, np.array(spacing)), rel=1e-12)


def test_shape_and_spacing_errors():
    a, b = np.zeros((4, 4), bool), np.zeros((4, 5), bool)
    with pytest.raises(ValueError, match=r"\(4, 4\).*\(4, 5\)"):
        dice(a, b)
    with pytest.raises(ValueError, match=r"\(4, 4\).*\(4, 5\)"):
        hd95(a, b, (1.0, 1.0))
    with pytest.raises(ValueError, match=r"\(4, 4\).*\(4, 5\)"):
        compute_case_metrics(a.astype(int), b.astype(int), {"x": 1}, (1.0, 1.0))
    with pytest.raises(ValueError, match="spacing"):
        compute_case_metrics(a.astype(int), a.astype(int), {"x": 1}, (1.0, 1.0, 1.0))


def test_compute_case_metrics_skips_background_and_ignore():
    ref = np.zeros((8, 8), dtype=np.uint8)
    ref[2:6, 2:6] = 1
    ref[0, 0] = 2
    pred = np.zeros_like(ref)
    pred[2:6, 3:7] = 1
    pred[7, 7] = 3  # 'ignore' value in the prediction is not scored
    labels = {"background": 0, "a": 1, "b": 2, "ab": [1, 2], "ignore": 3}
    result = compute_case_metrics(pred, ref, labels, (1.0, 1.0))
    assert list(result) == ["a", "b", "ab"]
    assert result["a"] == {"Dice": pytest.approx(0.75), "HD95": pytest.approx(1.0), "n_ref": 16, "n_pred": 16}
    assert result["b"]["Dice"] == 0.0 and result["b"]["n_pred"] == 0 and result["b"]["n_ref"] == 1
    assert result["b"]["HD95"] == pytest.approx(math.hypot(7, 7))
    assert result["ab"]["n_ref"] == 17


def test_far_foreground_fraction_by_hand():
    from nnunet_scribble.evaluation.metrics import far_foreground_fraction

    ref = np.zeros((1, 40), np.uint8)
    ref[0, 0:2] = 1  # reference foreground at x = 0, 1
    pred = np.zeros_like(ref)
    pred[0, [1, 5, 8, 20]] = (2, 1, 1, 3)  # distances 0, 4, 7, 19 voxels
    # spacing 2 mm: 0, 8, 14, 38 mm -> only x = 20 is farther than 15 mm
    assert far_foreground_fraction(pred, ref, (1.0, 2.0)) == 0.25
    assert far_foreground_fraction(pred, ref, (1.0, 2.0), max_distance_mm=7.0) == 0.75  # 8, 14, 38 mm
    assert far_foreground_fraction(np.zeros_like(ref), ref, (1.0, 2.0)) == 0.0  # nothing predicted
    assert far_foreground_fraction(pred, np.zeros_like(ref), (1.0, 2.0)) == 1.0  # nothing to be near
    # 3D: a voxel one slice (10 mm) above the structure is near, two slices (20 mm) above is far
    ref3, pred3 = np.zeros((3, 4, 4), np.uint8), np.zeros((3, 4, 4), np.uint8)
    ref3[0, 1, 1] = 1
    pred3[1, 1, 1] = pred3[2, 1, 1] = 1
    assert far_foreground_fraction(pred3, ref3, (10.0, 1.0, 1.0)) == 0.5


def test_keep_largest_foreground_component_treats_all_labels_as_one_region():
    from nnunet_scribble.evaluation.metrics import keep_largest_foreground_component

    pred = np.zeros((1, 12), np.uint8)
    pred[0, 0:3] = (1, 2, 3)  # one 3-voxel region made of three labels
    pred[0, 6:8] = 1  # a 2-voxel region
    pred[0, 10] = 2  # a 1-voxel region
    post = keep_largest_foreground_component(pred, {"background": 0, "a": 1, "b": 2, "c": 3, "ignore": 4})
    assert post[0].tolist() == [1, 2, 3] + [0] * 9 and pred[0, 6] == 1  # input untouched
    assert keep_largest_foreground_component(np.zeros((2, 2), np.uint8), {"a": 1}).sum() == 0
