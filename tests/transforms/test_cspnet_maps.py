"""CSPNet distance maps d_s (eq. 17) and d_c (eq. 15), the pseudo-label boundary and the augmentation transform."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from batchgeneratorsv2.transforms.utils.deep_supervision_downsampling import DownsampleSegForDSTransform

from nnunet_scribble.transforms.cspnet_maps import (CSPNetMapsTransform, PseudoLabelOutsideToBackgroundTransform,
                                                    boundary_distance_map, outside_to_background,
                                                    pseudo_label_boundary, scribble_distance_map)

IGNORE = 4


def test_scribble_map_by_hand_1d_row():
    seg = np.full((1, 7), IGNORE)
    seg[0, 3] = 1
    seg[0, 0] = 0  # a background scribble is not a scribble of eq. 17
    d = scribble_distance_map(seg, IGNORE)
    assert d.shape == (1, 7) and d.dtype == np.float32
    # e^(1/2) = 1.6487: distance 1 -> floor 1, 2 -> floor 3.30 = 3, 3 -> floor 4.95 = 4
    expected = 1 - np.array([4, 3, 1, 0, 1, 3, 4]) / 255
    np.testing.assert_allclose(d[0], expected, rtol=0, atol=1e-7)
    assert d[0, 3] == 1.0


def test_scribble_map_2d_diagonal_and_clipping():
    seg = np.full((5, 5), IGNORE)
    seg[2, 2] = 2
    seg[0, 4] = -1  # negative values are not scribbles
    d = scribble_distance_map(seg, IGNORE)
    assert d[1, 1] == pytest.approx(1 - 2 / 255)  # sqrt(2) * e^0.5 = 2.33
    assert d[0, 0] == pytest.approx(1 - math.floor(math.sqrt(8) * math.exp(0.5)) / 255)  # floor 4.66 = 4
    # lambda_s = 12: e^6 * 1 = 403 -> clipped at 255 -> 0 one voxel away
    d12 = scribble_distance_map(seg, IGNORE, lambda_s=12.0)
    assert d12[2, 2] == 1.0 and d12[2, 3] == 0.0 and (np.delete(d12.ravel(), 12) == 0).all()
    # lambda_s = 1 saturates at 255 / 1.6487 = 154.7 voxels
    row = np.full((1, 200), IGNORE)
    row[0, 0] = 1
    far = scribble_distance_map(row, IGNORE)
    assert far[0, 154] > 0 and (far[0, 155:] == 0).all()


def test_scribble_map_without_foreground_scribble_is_zero():
    seg = np.full((4, 4), IGNORE)
    seg[0] = 0  # background scribbles only
    assert not scribble_distance_map(seg, IGNORE).any()
    assert not scribble_distance_map(torch.full((3, 3, 3), IGNORE), IGNORE).any()  # torch input accepted


def test_scribble_map_3d_spacing():
    seg = np.full((3, 3, 3), IGNORE)
    seg[0, 1, 1] = 1
    d = scribble_distance_map(seg, IGNORE, spacing=(5.0, 1.0, 1.0))
    assert d[0, 1, 2] == pytest.approx(1 - 1 / 255)  # in-plane neighbour: distance 1
    assert d[1, 1, 1] == pytest.approx(1 - 8 / 255)  # one slice away: distance 5, floor(8.24)
    assert d[2, 1, 1] == pytest.approx(1 - 16 / 255)  # distance 10, floor(16.49)
    # spacing is relative to the finest axis
    np.testing.assert_array_equal(d, scribble_distance_map(seg, IGNORE, spacing=(10.0, 2.0, 2.0)))


def test_boundary_between_classes():
    assert pseudo_label_boundary(np.array([0, 0, 1, 1]), IGNORE).tolist() == [False, False, True, False]
    # foreground-foreground boundary: both sides
    assert pseudo_label_boundary(np.array([1, 1, 2, 2]), IGNORE).tolist() == [False, True, True, False]
    # ignore / negative neighbours and the image border do not create a boundary
    assert not pseudo_label_boundary(np.array([1, 1, IGNORE, 2, -1, 3]), IGNORE).any()
    assert not pseudo_label_boundary(np.ones((3, 3), dtype=int), IGNORE).any()
    # face neighbours only: diagonal contact is no boundary
    p = np.full((3, 3), IGNORE)
    p[0, 0], p[1, 1] = 1, 2
    assert not pseudo_label_boundary(p, IGNORE).any()
    p[0, 1] = 0
    assert pseudo_label_boundary(p, IGNORE).tolist() == [[True, False, False], [False, True, False],
                                                         [False, False, False]]


def test_boundary_map_by_hand_lambda_6():
    pseudo = np.zeros((1, 40), dtype=np.int16)
    pseudo[0, 10:] = 1  # boundary: voxel 10 (foreground side)
    d = boundary_distance_map(pseudo, IGNORE)
    assert d.dtype == np.float32 and d.shape == (1, 40)
    # e^3 = 20.09: distance 1 -> 20, 10 -> 200, 12 -> 241, 13 -> 261 -> clipped at 255
    assert d[0, 10] == 0.0
    assert d[0, 9] == pytest.approx(20 / 255) and d[0, 11] == pytest.approx(20 / 255)
    assert d[0, 0] == pytest.approx(200 / 255)
    assert d[0, 22] == pytest.approx(241 / 255)
    assert (d[0, 23:] == 1.0).all()


def test_boundary_map_ignore_region_and_no_boundary():
    pseudo = np.array([[0, 0, 1, 1, IGNORE, IGNORE, -1]])
    d = boundary_distance_map(pseudo, IGNORE)
    assert d[0, 2] == 0 and d[0, 3] == pytest.approx(20 / 255)
    assert (d[0, 4:] == 0).all()  # outside the labelled region: no weight
    # no boundary (one class and ignore): ones inside, zeros outside
    d = boundary_distance_map(np.array([[1, 1, 1, IGNORE]]), IGNORE)
    assert d.tolist() == [[1.0, 1.0, 1.0, 0.0]]


def test_boundary_map_3d_spacing_and_fg_fg_boundary():
    pseudo = np.zeros((4, 2, 2), dtype=np.int16)
    pseudo[0] = 2
    d = boundary_distance_map(pseudo, IGNORE, spacing=(5.0, 1.0, 1.0))
    assert (d[0] == 0).all()  # slice 0 is the boundary (in-plane: one class, no boundary)
    assert d[1, 0, 0] == pytest.approx(100 / 255)  # 5 * 20.09 = 100.4
    assert d[2, 0, 0] == pytest.approx(200 / 255)  # 10 * 20.09
    assert (d[3] == 1).all()  # 15 * 20.09 > 255
    pseudo[1:] = 1  # foreground-foreground: both slices 0 and 1 are boundary
    d = boundary_distance_map(pseudo, IGNORE, spacing=(5.0, 1.0, 1.0))
    assert (d[:2] == 0).all() and d[2, 1, 1] == pytest.approx(100 / 255)


def _example(shape: tuple[int, ...]) -> torch.Tensor:
    scribble = torch.full(shape, IGNORE, dtype=torch.int16)
    pseudo = torch.zeros(shape, dtype=torch.int16)
    scribble[..., 1, 1:4] = 1
    scribble[..., 4, :] = 0
    pseudo[..., 1:3, 1:4] = 1
    pseudo[..., 2:4, 2:4] = 3
    pseudo[..., -1] = IGNORE  # outside the image after the spatial augmentation
    return torch.stack([scribble, pseudo])


@pytest.mark.parametrize("shape, spacing", [((5, 6), None), ((3, 5, 6), (4.0, 1.0, 1.0))])
def test_transform_appends_the_two_maps(shape, spacing):
    seg = _example(shape)
    out = CSPNetMapsTransform(IGNORE, 1.0, 6.0, spacing)(segmentation=seg.clone(), image=torch.zeros(1, *shape))
    s = out["segmentation"]
    assert s.dtype == torch.float32 and s.shape == (4, *shape)
    assert torch.equal(s[0], seg[0].float()) and torch.equal(s[1], seg[1].float())
    d_s = scribble_distance_map(seg[0], IGNORE, 1.0, spacing)
    d_s[..., -1] = 0  # d_s is also zeroed where the pseudo label is ignore
    assert torch.equal(s[2], torch.from_numpy(d_s))
    assert torch.equal(s[3], torch.from_numpy(boundary_distance_map(seg[1], IGNORE, 6.0, spacing)))
    assert (s[2][..., 1, 1:4] == 1).all() and not s[2:][..., -1].any()
    # nnU-Net's deep-supervision downsampling runs afterwards on all channels and keeps float32
    ds = DownsampleSegForDSTransform([[1] * len(shape), [0.5] * len(shape)])(segmentation=s)["segmentation"]
    assert ds[0] is s and ds[1].dtype == torch.float32 and ds[1].shape[0] == 4


def test_transform_rejects_wrong_channel_count():
    t = CSPNetMapsTransform(IGNORE, 1.0, 6.0)
    for channels in (1, 3):
        with pytest.raises(ValueError, match="two-channel"):
            t(segmentation=torch.zeros(channels, 4, 4, dtype=torch.int16))


@pytest.mark.parametrize("dim", [2, 3])
def test_outside_to_background_by_hand(dim):
    scribble = torch.tensor([[-1, 0, 4], [1, -1, -1]])
    pseudo = torch.tensor([[4, 2, 4], [1, 3, -1]])
    seg = torch.stack([scribble, pseudo]).short()
    if dim == 3:
        seg = torch.stack([seg, seg.flip(-1)], dim=1)   # (2, 2, 2, 3)
    out = PseudoLabelOutsideToBackgroundTransform()(segmentation=seg.clone())["segmentation"]
    assert out.dtype == seg.dtype and torch.equal(out[0], seg[0])   # scribbles untouched
    expected = torch.where(seg[0] == -1, torch.zeros_like(seg[1]), seg[1])
    assert torch.equal(out[1], expected)
    if dim == 2:
        assert out[1].tolist() == [[0, 2, 4], [1, 0, 0]]
    with pytest.raises(ValueError, match=r"two-channel segmentation .* got shape \(1, 2, "):
        outside_to_background(seg[:1])
