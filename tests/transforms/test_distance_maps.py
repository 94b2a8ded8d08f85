"""Distance maps to the scribbles and continuous / hard pseudo labels, against values worked out by hand."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from nnunet_scribble.transforms.distance_maps import (NO_SCRIBBLE, ScribbleDistanceTransform,
                                                      continuous_pseudo_labels, hard_pseudo_labels,
                                                      scribble_distance_maps)

IGNORE = 4


def test_2d_distances_by_hand():
    seg = np.full((5, 5), IGNORE)
    seg[0, 0] = 1
    seg[2, 2] = 0
    d = scribble_distance_maps(seg, 4, IGNORE)
    assert d.shape == (4, 5, 5) and d.dtype == np.float32
    assert d[1, 0, 0] == 0 and d[1, 1, 1] == pytest.approx(math.sqrt(2)) and d[1, 2, 1] == pytest.approx(math.sqrt(5))
    assert d[1, 4, 4] == pytest.approx(math.sqrt(32))
    assert d[0, 0, 0] == pytest.approx(math.sqrt(8)) and d[0, 2, 4] == pytest.approx(2)
    # classes 2 and 3 have no scribble voxel in the patch
    assert np.isinf(d[2]).all() and np.isinf(d[3]).all() and NO_SCRIBBLE == math.inf


def test_3d_spacing_is_relative_to_the_finest_axis():
    seg = np.full((3, 4, 4), IGNORE)
    seg[0, 0, 0] = 2
    d = scribble_distance_maps(seg[None], 3, IGNORE, spacing=(5.0, 2.5, 2.5))  # (1, *spatial) accepted
    # one slice step = 5 / 2.5 = 2 in-plane voxels
    assert d[2, 1, 0, 0] == pytest.approx(2) and d[2, 2, 0, 0] == pytest.approx(4)
    assert d[2, 1, 1, 1] == pytest.approx(math.sqrt(4 + 1 + 1)) and d[2, 0, 3, 0] == pytest.approx(3)
    assert np.array_equal(scribble_distance_maps(seg, 3, IGNORE, (1, 1, 1)), scribble_distance_maps(seg, 3, IGNORE))


def test_max_distance_truncates_but_is_exact_below():
    rng = np.random.default_rng(0)
    seg = np.full((40, 50), IGNORE)
    seg[rng.integers(0, 40, 12), rng.integers(0, 50, 12)] = rng.integers(0, 3, 12)
    exact = scribble_distance_maps(seg, 3, IGNORE)
    trunc = scribble_distance_maps(seg, 3, IGNORE, max_distance=7.5)
    near = exact <= 7.5
    assert np.array_equal(trunc[near], exact[near]) and np.isinf(trunc[~near]).all()


def test_invalid_arguments():
    with pytest.raises(ValueError, match="ignore_label"):
        scribble_distance_maps(np.zeros((3, 3)), 4, 2)
    with pytest.raises(ValueError, match="spacing"):
        scribble_distance_maps(np.zeros((3, 3)), 2, 4, spacing=(1, 0))
    with pytest.raises(ValueError, match="alpha"):
        continuous_pseudo_labels(torch.zeros(1, 2, 3), alpha=0)


def test_continuous_pseudo_labels_by_hand():
    # distances: 0 -> 1; 10 -> e^-1 = 0.368; 40 -> e^-4 = 0.018 < tau = 0.05
    d = torch.tensor([0.0, 10.0, 40.0])
    dist = torch.stack([d, d, torch.full_like(d, math.inf)])[None]  # classes: background, fg, fg without scribble
    cpl = continuous_pseudo_labels(dist, alpha=0.1, tau=0.05)
    assert torch.allclose(cpl[0, 0], torch.tensor([1.0, math.exp(-1), 0.05]))  # background: floor tau
    assert torch.allclose(cpl[0, 1], torch.tensor([1.0, math.exp(-1), 0.0]))  # foreground: cut below tau
    assert (cpl[0, 2] == 0).all()
    no_background = continuous_pseudo_labels(dist[:, [2, 1]], background_class=0)
    assert (no_background[0, 0] == 0).all()  # no background scribble: no floor either


def test_hard_pseudo_labels_nearest_class():
    dist = torch.tensor([[[3.0, 1.0, math.inf]], [[1.0, 2.0, math.inf]]]).permute(1, 0, 2)  # (1, 2, 3)
    hpl = hard_pseudo_labels(dist)
    assert hpl.tolist() == [[[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]]


@pytest.mark.parametrize("shape, spacing", [((6, 7), None), ((3, 6, 7), (4.0, 1.0, 1.0))])
def test_transform_appends_float_channels(shape, spacing):
    seg = torch.full((1, *shape), IGNORE, dtype=torch.int16)
    seg[(0,) + (1,) * len(shape)] = 3
    out = ScribbleDistanceTransform(4, IGNORE, spacing)(segmentation=seg.clone(), image=torch.zeros(1, *shape))
    s = out["segmentation"]
    assert s.dtype == torch.float32 and s.shape == (5, *shape)
    assert torch.equal(s[0], seg[0].float())
    assert torch.equal(s[1:], torch.from_numpy(scribble_distance_maps(seg, 4, IGNORE, spacing)))
