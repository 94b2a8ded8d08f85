"""DMPLS pseudo-label functions (eq. 2-3) against values worked out by hand."""
from __future__ import annotations

import math

import pytest
import torch

from nnunet_scribble.losses.pseudo_label import (mixed_pseudo_label, pseudo_label_dice_loss,
                                                 pseudo_label_supervision)


def test_dice_is_zero_when_probabilities_equal_the_one_hot_pseudo_label():
    pl = torch.tensor([[[0, 1, 2], [2, 1, 0]]])  # (B=1, 2, 3)
    probs = torch.nn.functional.one_hot(pl, 3).permute(0, 3, 1, 2).float()
    assert pseudo_label_dice_loss(probs, pl).item() == pytest.approx(0.0, abs=1e-7)
    assert pseudo_label_dice_loss(probs, pl[:, None]).item() == pytest.approx(0.0, abs=1e-7)  # (B, 1, ...) too


def test_dice_two_pixels_by_hand():
    # pixel 1: p = (0.8, 0.2), PL 0; pixel 2: p = (0.4, 0.6), PL 1
    # class 0: 2*0.8 / (0.8^2 + 0.4^2 + 1) = 1.6 / 1.8; class 1: 2*0.6 / (0.2^2 + 0.6^2 + 1) = 1.2 / 1.4
    probs = torch.tensor([[0.8, 0.4], [0.2, 0.6]])[None]  # (B=1, C=2, N=2)
    expected = 1 - (1.6 / 1.8 + 1.2 / 1.4) / 2  # = 0.126984...
    assert pseudo_label_dice_loss(probs, torch.tensor([[0, 1]])).item() == pytest.approx(expected, abs=1e-5)


def test_dice_is_batch_global_and_includes_background():
    # sample 1 all class 0, sample 2 all class 1, predictions perfect: one global Dice per class -> 0
    pl = torch.tensor([[0, 0], [1, 1]])
    probs = torch.nn.functional.one_hot(pl, 2).permute(0, 2, 1).float()
    assert pseudo_label_dice_loss(probs, pl).item() == pytest.approx(0.0, abs=1e-6)
    # uniform prediction over 2 classes, PL all background: class 0: 2*0.5*2/(0.25*2+2) = 0.8; class 1 absent in
    # PL but predicted: (0 + s)/(0.5 + s) ~ 0 -> loss = ((1 - 0.8) + 1) / 2 = 0.6
    probs = torch.full((1, 2, 2), 0.5)
    assert pseudo_label_dice_loss(probs, torch.zeros(1, 2, dtype=torch.long)).item() == pytest.approx(0.6, abs=1e-4)


def test_dice_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match=r"expected \(B, \*spatial\) = \(1, 4\)"):
        pseudo_label_dice_loss(torch.rand(1, 2, 4), torch.zeros(1, 3, dtype=torch.long))


@pytest.mark.parametrize("spatial", [(5,), (3, 4), (2, 3, 4)])
def test_mixed_pseudo_label_extremes_and_mixing(spatial):
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(2, 4, *spatial, generator=g), torch.randn(2, 4, *spatial, generator=g)
    assert torch.equal(mixed_pseudo_label(a, b, 1.0), a.argmax(1))
    assert torch.equal(mixed_pseudo_label(a, b, 0.0), b.argmax(1))
    mid = mixed_pseudo_label(a, b, 0.5)
    assert mid.shape == (2, *spatial) and mid.dtype == torch.int64
    assert torch.equal(mid, (a.softmax(1) + b.softmax(1)).argmax(1))


def test_mixed_pseudo_label_by_hand_and_detached():
    # one pixel, 2 classes: softmax(a) = (0.9, 0.1), softmax(b) = (0.3, 0.7)
    a = torch.tensor([[math.log(0.9), math.log(0.1)]], requires_grad=True)
    b = torch.tensor([[math.log(0.3), math.log(0.7)]], requires_grad=True)
    # class 0 wins iff 0.9*beta + 0.3*(1-beta) > 0.1*beta + 0.7*(1-beta)  <=>  beta > 1/3
    assert mixed_pseudo_label(a, b, 0.34).item() == 0 and mixed_pseudo_label(a, b, 0.32).item() == 1
    assert not mixed_pseudo_label(a, b, 0.5).requires_grad
    with pytest.raises(ValueError, match="beta must be in"):
        mixed_pseudo_label(a, b, 1.5)
    with pytest.raises(ValueError, match="same shape"):
        mixed_pseudo_label(a, b[:, :1], 0.5)


def test_pseudo_label_supervision_averages_both_branches_with_gradient():
    a = torch.tensor([[[2.0, -1.0]], [[0.0, 1.0]]]).permute(1, 0, 2).requires_grad_()  # (1, 2, 2)
    b = torch.zeros(1, 2, 2, requires_grad=True)
    pl = torch.tensor([[0, 1]])
    expected = 0.5 * (pseudo_label_dice_loss(a.softmax(1), pl) + pseudo_label_dice_loss(b.softmax(1), pl))
    loss = pseudo_label_supervision(a, b, pl)
    assert loss.item() == pytest.approx(expected.item())
    loss.backward()
    assert a.grad.abs().sum() > 0 and b.grad.abs().sum() > 0
