"""Batch CutMix: box area and shape, one box per sample, mixing of images, scribbles (ignore kept), predictions."""
from __future__ import annotations

import pytest
import torch

from nnunet_scribble.transforms.mixing import cutmix, draw_box_masks, draw_permutations, mix_batches, resize_mask


def _bounding_box(mask: torch.Tensor) -> tuple[slice, ...]:
    idx = torch.nonzero(mask)
    return tuple(slice(int(lo), int(hi) + 1) for lo, hi in zip(idx.min(0).values, idx.max(0).values))


@pytest.mark.parametrize("shape", [(256, 224), (40, 56), (32, 64, 64), (8, 32, 32)])
def test_one_box_of_twenty_percent_with_random_aspect(shape):
    g = torch.Generator().manual_seed(0)
    masks = draw_box_masks(16, shape, 0.2, generator=g)
    assert masks.shape == (16, 1, *shape) and masks.dtype == torch.bool
    n = torch.tensor(shape).prod().item()
    sides = set()
    for m in masks[:, 0]:
        box = _bounding_box(m)
        assert m[box].all() and m.sum() == m[box].numel()  # a single solid box
        # area 20 % up to rounding each side to whole voxels (at most half a voxel per side)
        extents = [s.stop - s.start for s in box]
        slack = sum(0.5 / e for e in extents) * 1.1
        assert abs(m.sum().item() / n - 0.2) <= 0.2 * slack + 1e-9
        sides.add(tuple(extents))
    assert len(sides) > 1  # random aspect ratio


def test_box_area_validation():
    with pytest.raises(ValueError, match="area"):
        draw_box_masks(2, (8, 8), 0.0)


def test_mix_batches_two_permutations_images_labels_and_predictions():
    g = torch.Generator().manual_seed(1)
    b, shape = 4, (16, 12)
    x = torch.arange(b, dtype=torch.float)[:, None, None, None].expand(b, 1, *shape).clone()
    labels = torch.randint(0, 4, (b, 1, *shape), generator=g)
    labels[:, :, ::2] = 4  # ignore label on every other row
    probs = torch.softmax(torch.randn(b, 4, *shape, generator=g), 1)
    perm_1, perm_2 = draw_permutations(b, generator=g)
    box = draw_box_masks(b, shape, 0.2, generator=g)
    x12, x21 = mix_batches(x, perm_1, perm_2, box)
    for i in range(b):
        inside = box[i, 0]
        assert (x12[i, 0][inside] == perm_1[i]).all() and (x12[i, 0][~inside] == perm_2[i]).all()
        assert (x21[i, 0][inside] == perm_2[i]).all() and (x21[i, 0][~inside] == perm_1[i]).all()
    l12, _ = mix_batches(labels, perm_1, perm_2, box)
    p12, _ = mix_batches(probs, perm_1, perm_2, box)
    expected = torch.where(box, labels[perm_1], labels[perm_2])
    assert torch.equal(l12, expected) and l12.dtype == labels.dtype
    assert ((l12 == 4) == torch.where(box, labels[perm_1] == 4, labels[perm_2] == 4)).all()  # ignore preserved
    assert torch.equal(p12, torch.where(box, probs[perm_1], probs[perm_2]))
    assert torch.allclose(p12.sum(1), torch.ones(b, *shape))  # still distributions
    # pseudo labels of the mixed image = argmax of the mixed predictions = mix of the argmaxes
    assert torch.equal(p12.argmax(1, keepdim=True), cutmix(probs[perm_1].argmax(1, keepdim=True),
                                                           probs[perm_2].argmax(1, keepdim=True), box))


def test_deep_supervision_targets_mix_with_the_downsampled_box():
    box = torch.zeros(1, 1, 8, 8, dtype=torch.bool)
    box[..., 2:6, 4:8] = True
    small = resize_mask(box, (4, 4))
    assert torch.equal(small[0, 0].nonzero().min(0).values, torch.tensor([1, 2]))
    assert small.sum() == 4
    a, b = torch.ones(1, 1, 4, 4, dtype=torch.long), torch.full((1, 1, 4, 4), 4)
    mixed = mix_batches([torch.ones(1, 1, 8, 8, dtype=torch.long), a], torch.tensor([0]), torch.tensor([0]), box)[0]
    assert torch.equal(mixed[1], a)  # same sample on both sides: unchanged at every scale
    assert torch.equal(cutmix(a, b, box), torch.where(small, a, b))


def test_cutmix_rejects_different_shapes():
    with pytest.raises(ValueError, match="equal shapes"):
        cutmix(torch.zeros(1, 1, 4, 4), torch.zeros(1, 2, 4, 4), torch.ones(1, 1, 4, 4, dtype=torch.bool))
