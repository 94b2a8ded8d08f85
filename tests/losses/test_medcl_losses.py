"""MedCL loss terms: category loss, mix consistency, prototype mapping, cluster loss (eq. 4), anatomy consistency."""
from __future__ import annotations

import pytest
import torch

from nnunet_scribble.losses.medcl import (anatomy_consistency_loss, category_loss, cluster_loss,
                                          mix_consistency_loss, prototype_loss)


@pytest.mark.parametrize("spatial", [(6, 5), (3, 4, 5)])
def test_category_loss_zero_for_every_class_and_growing_with_absent_probability(spatial):
    logits = torch.randn(2, 4, *spatial, requires_grad=True)
    probs = torch.softmax(logits, 1)
    assert category_loss(probs, torch.ones(2, 4, dtype=torch.bool)).abs() < 1e-6
    present = torch.tensor([[True, True, False, False]] * 2)
    values = []
    for absent_mass in (0.0, 0.3, 0.6, 0.9):  # probability on the absent classes 2 and 3, same at every voxel
        p = torch.tensor([(1 - absent_mass) / 2, (1 - absent_mass) / 2, absent_mass / 2, absent_mass / 2])
        values.append(float(category_loss(p.view(1, 4, *([1] * len(spatial))).expand(2, 4, *spatial), present)))
    assert values[0] == pytest.approx(0.0, abs=1e-6)
    assert values[1] == pytest.approx(-torch.log(torch.tensor(0.7)).item(), rel=1e-5)  # -log(sum over Ψ)
    assert all(a < b for a, b in zip(values, values[1:]))
    category_loss(probs, present).backward()
    assert logits.grad.abs().sum() > 0


def test_category_loss_skips_images_without_annotation():
    probs = torch.softmax(torch.randn(2, 3, 4, 4, requires_grad=True), 1)
    none = torch.zeros(2, 3, dtype=torch.bool)
    loss = category_loss(probs, none)
    assert loss == 0 and loss.requires_grad
    one = torch.tensor([[True, False, False], [False, False, False]])
    assert torch.allclose(category_loss(probs, one), -torch.log(probs[0, 0]).mean())
    with pytest.raises(ValueError, match="present"):
        category_loss(probs, torch.ones(2, 4, dtype=torch.bool))


def test_mix_consistency_is_one_minus_cosine_with_detached_target():
    pred = torch.rand(2, 3, 4, 4, requires_grad=True)
    target = torch.rand(2, 3, 4, 4, requires_grad=True)
    assert mix_consistency_loss(pred, pred.detach().clone()).abs() < 1e-6
    assert mix_consistency_loss(pred, 2 * pred.detach()).abs() < 1e-6  # scale-invariant
    mix_consistency_loss(pred, target).backward()
    assert pred.grad.abs().sum() > 0 and target.grad is None


def test_prototype_loss_codes_and_gradient():
    scores = torch.nn.functional.normalize(torch.randn(12, 8), dim=1).requires_grad_(True)
    loss, codes = prototype_loss(scores, 0.05, 0.05, 3, group=False)
    assert torch.allclose(codes.sum(1), torch.ones(12), atol=1e-5) and loss > 0
    loss.backward()
    assert scores.grad.abs().sum() > 0


def test_cluster_loss_prefers_compact_separated_clusters():
    k = 6
    separated = torch.eye(k)[:3].expand(4, 3, k) * 0.9 + 0.1 / k  # class i concentrated on prototype i
    collapsed = torch.full((4, 3, k), 1 / k) + 0.01 * torch.randn(4, 3, k).abs()
    assert cluster_loss(separated, 0.1, group=False) < cluster_loss(collapsed, 0.1, group=False)
    # exact value for identical codes per class and orthogonal centres: -log(N m e^{10} / (N m e^{10} + m(m-1)e^0))
    onehot = torch.eye(k)[:3].expand(4, 3, k)
    expected = -torch.log(torch.tensor(12 * torch.e ** 10 / (12 * torch.e ** 10 + 6)))
    assert torch.allclose(cluster_loss(onehot, 0.1, group=False), expected, atol=1e-6)


def test_anatomy_consistency_zero_when_unions_equal_sums_and_positive_otherwise():
    probs = torch.softmax(torch.randn(2, 4, 5, 5), 1)
    classes = probs[:, 1:]
    unions = torch.stack([classes[:, :2].sum(1), classes.sum(1)], 1)
    codes = torch.softmax(torch.randn(2, 3, 7), -1)
    union_codes = torch.stack([codes[:, :2].sum(1), codes.sum(1)], 1) / 2  # cosine ignores the scale
    assert anatomy_consistency_loss(classes, unions, codes, union_codes, group=False).abs() < 1e-5
    wrong = anatomy_consistency_loss(classes, unions.flip(2), codes, union_codes.flip(-1), group=False)
    assert wrong > 0.01
    with pytest.raises(ValueError, match="union"):
        anatomy_consistency_loss(classes, unions[:, :1], codes, union_codes, group=False)
