"""MedCL mixing: rotation, box, intra-mix of images and scribbles (ignore kept), inter-mix; 2D and 3D."""
from __future__ import annotations

import math

import pytest
import torch

from nnunet_scribble.transforms.anatomy_mixing import (intra_mix_images, intra_mix_labels, inter_mix, random_boxes,
                                                       rotate, rotate_labels, sample_intra_mix_parameters)

IGNORE = 4


def _shape(dim):
    return (2, 1, 8, 8) if dim == 2 else (2, 1, 3, 8, 8)


@pytest.mark.parametrize("dim", [2, 3])
def test_rotation_identity_and_quarter_turn(dim):
    x = torch.randn(_shape(dim))
    assert torch.allclose(rotate(x, torch.zeros(2)), x, atol=1e-5)
    turned = rotate(x, torch.full((2,), math.pi / 2))
    assert any(torch.allclose(turned, torch.rot90(x, k, dims=(-2, -1)), atol=1e-4) for k in (1, -1))
    labels = torch.randint(0, 5, _shape(dim))
    assert torch.equal(rotate_labels(labels, torch.zeros(2), IGNORE), labels)


def test_voxels_rotated_in_from_outside_are_ignore():
    labels = torch.zeros(1, 1, 9, 9, dtype=torch.long)
    rotated = rotate_labels(labels, torch.tensor([math.pi / 4]), IGNORE)
    assert rotated[0, 0, 0, 0] == IGNORE and rotated[0, 0, 4, 4] == 0


@pytest.mark.parametrize("dim", [2, 3])
def test_intra_mix_keeps_ignore_where_nothing_is_annotated(dim):
    g = torch.Generator().manual_seed(0)
    shape = _shape(dim)
    angles, betas, boxes = sample_intra_mix_parameters(2, shape[2:], 15.0, (0.5, 0.9), generator=g)
    unannotated = torch.full(shape, IGNORE)
    assert (intra_mix_labels(unannotated, angles, betas, boxes, 4, IGNORE) == IGNORE).all()
    labels = torch.randint(0, 4, shape, generator=g)
    labels[torch.rand(shape, generator=g) > 0.3] = IGNORE
    mixed = intra_mix_labels(labels, angles, betas, boxes, 4, IGNORE)
    rotated = rotate_labels(labels, angles, IGNORE)
    inside = boxes.bool()
    assert torch.equal(mixed[inside], labels[inside])  # the box keeps the scribbles unchanged
    both_unannotated = (labels == IGNORE) & (rotated == IGNORE)
    assert (mixed[both_unannotated] == IGNORE).all()
    # every annotated voxel of the result carries the scribble of one of its two sources
    annotated = mixed != IGNORE
    assert ((mixed == labels) | (mixed == rotated))[annotated].all()


def test_intra_mix_images_formula():
    x = torch.randn(2, 1, 8, 8)
    angles, betas = torch.tensor([0.2, -0.1]), torch.tensor([0.3, 0.8])
    boxes = random_boxes(2, (8, 8), (0.5, 0.5), generator=torch.Generator().manual_seed(1))
    mixed = intra_mix_images(x, angles, betas, boxes)
    b = betas.view(2, 1, 1, 1)
    expected = boxes * x + (1 - boxes) * (b * x + (1 - b) * rotate(x, angles))
    assert torch.allclose(mixed, expected)
    assert torch.allclose(intra_mix_images(x, angles, torch.ones(2), boxes), x)  # β' = 1: no mixing
    assert boxes.sum((1, 2, 3)).tolist() == [16.0, 16.0]  # half of each axis


def test_random_box_fraction_and_parameters():
    g = torch.Generator().manual_seed(2)
    angles, betas, boxes = sample_intra_mix_parameters(16, (20, 10), 15.0, (0.9, 1.0), generator=g)
    assert angles.abs().max() <= math.radians(15.0) and ((betas >= 0) & (betas <= 1)).all()
    sides = boxes[:, 0].amax(2).sum(1), boxes[:, 0].amax(1).sum(1)
    assert (sides[0] >= 18).all() and (sides[1] >= 9).all()
    with pytest.raises(ValueError, match="fraction"):
        random_boxes(1, (4, 4), (0.0, 1.0))


def test_inter_mix_partner_is_the_reversed_batch():
    x = torch.arange(3.0).view(3, 1, 1, 1).expand(3, 1, 2, 2)
    mixed = inter_mix(x, torch.tensor([1.0, 0.5, 0.0]))
    assert mixed[:, 0, 0, 0].tolist() == [0.0, 1.0, 0.0]
