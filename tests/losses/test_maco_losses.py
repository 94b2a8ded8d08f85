"""MaCo loss terms (enhanced prediction, L_mcm, L_ep, L_con) on tiny tensors with values worked out by hand."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from nnunet_scribble.losses.maco import con_loss, cosine_loss, enhanced_prediction, ep_loss, mcm_loss


def test_cosine_loss_identical_orthogonal_and_batch_mean():
    a = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])  # (1, 2 classes, 2 voxels), flattened (1, 0, 0, 1)
    b = torch.tensor([[[0.0, 1.0], [1.0, 0.0]]])  # flattened (0, 1, 1, 0): orthogonal to a
    assert cosine_loss(a, a).item() == pytest.approx(0.0, abs=1e-7)
    assert cosine_loss(a, b).item() == pytest.approx(1.0)
    # (1, 0, 0, 0) is at 45 degrees to a: cos = 1/sqrt(2); batch (identical, orthogonal, 45 deg)
    c = torch.tensor([[[1.0, 0.0], [0.0, 0.0]]])
    loss = cosine_loss(torch.cat([a, a, a]), torch.cat([a, b, c]))
    assert loss.item() == pytest.approx((0 + 1 + 1 - 1 / math.sqrt(2)) / 3)
    assert mcm_loss(a, b).item() == ep_loss(a, b).item() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="equal shapes"):
        cosine_loss(a, a[..., :1])


def test_enhanced_prediction_one_hot_background_near_background_scribbles():
    probs = torch.tensor([[0.3, 0.6], [0.7, 0.4]])[None].requires_grad_()  # (1, 2 classes, 2 voxels)
    cpl_bg = torch.tensor([[0.5, 0.49]])  # voxel 0 at the threshold (>=), voxel 1 below
    e = enhanced_prediction(probs, cpl_bg)
    assert torch.allclose(e, torch.tensor([[[1.0, 0.6], [0.0, 0.4]]]))
    assert not e.requires_grad
    with pytest.raises(ValueError, match="cpl_background"):
        enhanced_prediction(probs, torch.zeros(1, 3))


def test_con_loss_soft_ce_by_hand():
    # two classes, two voxels; uniform prediction (log y = log 1/2 everywhere)
    logits = torch.zeros(1, 2, 2)
    cpl = torch.tensor([[[1.0, 0.5], [0.0, 0.25]]])
    # class 0: (1 + 0.5) * log 2 / N_0 = 2 -> 0.75 log 2; class 1: 0.25 log 2 / 1; sum / |C| = 2
    expected = (0.75 + 0.25) * math.log(2) / 2
    assert con_loss(logits, cpl, normalisation="class").item() == pytest.approx(expected)
    # printed reading multiplies by y = 1/2
    assert con_loss(logits, cpl, "printed", "class").item() == pytest.approx(expected / 2)
    # confident correct prediction -> ~0; all-zero pseudo labels -> exactly 0
    sure = torch.tensor([[[20.0, 20.0], [-20.0, -20.0]]])
    assert con_loss(sure, torch.tensor([[[1.0, 1.0], [0.0, 0.0]]])).item() == pytest.approx(0.0, abs=1e-6)
    assert con_loss(logits, torch.zeros_like(cpl)).item() == 0.0
    with pytest.raises(ValueError, match="variant"):
        con_loss(logits, cpl, "other")


def test_con_loss_voxel_normalisation_by_hand_and_as_soft_target_cross_entropy():
    logits = torch.zeros(1, 2, 2)
    cpl = torch.tensor([[[1.0, 0.5], [0.0, 0.25]]])
    # one N = 2 voxels with a non-zero pseudo label: (1.5 + 0.25) * log 2 / 2, divided by |C| = 2
    assert con_loss(logits, cpl, normalisation="voxel").item() == pytest.approx(1.75 * math.log(2) / 4)
    # identity: every voxel labelled -> PyTorch's cross-entropy with probability targets, divided by |C| (3D)
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 3, 4, 5)
    cpl = torch.rand(2, 3, 3, 4, 5) + 0.05
    expected = F.cross_entropy(logits, cpl) / 3
    assert con_loss(logits, cpl, normalisation="voxel").item() == pytest.approx(expected.item(), rel=1e-5)
    with pytest.raises(ValueError, match="normalisation"):
        con_loss(logits, cpl, normalisation="pixel")


def test_con_loss_class_normalisation_favours_the_small_foreground_halo():
    # background floor tau = 0.05 on 100 voxels, 0.5 on voxel 0; foreground 0.1 on voxels 0 and 1 (its halo).
    cpl = torch.zeros(1, 2, 100)
    cpl[0, 0] = 0.05
    cpl[0, 0, 0] = 0.5
    cpl[0, 1, :2] = 0.1
    grads = {}
    for norm in ("class", "voxel"):
        logits = torch.zeros(1, 2, 100, requires_grad=True)
        con_loss(logits, cpl, normalisation=norm).backward()
        grads[norm] = logits.grad[0, :, 0]
    # per-class N: background weight 0.5 / 100 < foreground 0.1 / 2 -> descent raises the foreground logit at voxel 0
    assert grads["class"][1] < 0 < grads["class"][0]
    # one N: the larger pseudo label (background 0.5 > 0.1) wins
    assert grads["voxel"][0] < 0 < grads["voxel"][1]


def test_con_loss_gradient_points_to_the_pseudo_label_3d():
    logits = torch.zeros(2, 3, 2, 2, 2, requires_grad=True)
    cpl = torch.zeros(2, 3, 2, 2, 2)
    cpl[:, 1] = 0.8
    con_loss(logits, cpl).backward()
    assert (logits.grad[:, 1] < 0).all() and (logits.grad[:, [0, 2]] > 0).all()
