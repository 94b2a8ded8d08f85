"""Uncertainty-guided pixel contrast: hand-worked InfoNCE, anchor counts, hard/easy split, pseudo labels, ramps."""
from __future__ import annotations

import math

import pytest
import torch

from nnunet_scribble.losses.contrastive import (class_mean_embeddings, confirmed_pseudo_labels, entropy_threshold,
                                                queue_contrastive_loss, sample_anchors)
from nnunet_scribble.losses.schedules import sigmoid_rampup


def test_infonce_against_the_queue_by_hand():
    bank = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    bank_labels = torch.tensor([0, 1, 0])
    # anchor [1, 0], class 0, tau 0.5: similarities 1 (pos), 0 (neg), 0.6 (pos)
    # l = -1/2 [log(e^2 / (e^2 + e^0)) + log(e^1.2 / (e^1.2 + e^0))] = 1/2 [log(1 + e^-2) + log(1 + e^-1.2)]
    #   = 1/2 (0.126928 + 0.263282) = 0.195105
    a = torch.tensor([[1.0, 0.0]])
    assert queue_contrastive_loss(a, torch.tensor([0]), bank, bank_labels, 0.5).item() == pytest.approx(0.195105,
                                                                                                        abs=1e-5)
    # anchor [0, 1], class 1: pos 1, negs 0 and 0.8: l = log(1 + e^-2 + e^-0.4) = log(1.805655) = 0.590923
    b = torch.tensor([[0.0, 1.0]])
    assert queue_contrastive_loss(b, torch.tensor([1]), bank, bank_labels, 0.5).item() == pytest.approx(0.590923,
                                                                                                        abs=1e-5)
    both = queue_contrastive_loss(torch.cat([a, b]), torch.tensor([0, 1]), bank, bank_labels, 0.5)
    assert both.item() == pytest.approx((0.195105 + 0.590923) / 2, abs=1e-5)
    # tau 0.07, one positive at similarity 1 and one negative at 0: log(1 + e^(-1/0.07))
    one = queue_contrastive_loss(a, torch.tensor([0]), bank[:2], bank_labels[:2], 0.07)
    assert one.item() == pytest.approx(math.log1p(math.exp(-1 / 0.07)), abs=1e-7)  # ~6e-7, float32
    # inputs are normalised: scaling the anchor changes nothing
    assert queue_contrastive_loss(3 * a, torch.tensor([0]), bank, bank_labels, 0.5).item() == pytest.approx(0.195105,
                                                                                                            abs=1e-5)


def test_anchor_without_positive_or_empty_bank_gives_zero_connected_to_the_graph():
    a = torch.randn(3, 4, requires_grad=True)
    loss = queue_contrastive_loss(a, torch.tensor([2, 2, 2]), torch.randn(5, 4), torch.zeros(5, dtype=torch.long))
    assert loss.item() == 0 and loss.requires_grad
    assert queue_contrastive_loss(a, torch.tensor([0, 0, 0]), torch.zeros(0, 4), torch.zeros(0)).item() == 0


def test_anchor_counts_and_hard_easy_split():
    b, h, w = 2, 40, 40
    labels = torch.full((b, h, w), -1)
    labels[:, :20] = 0  # 800 voxels of class 0 per image
    labels[0, 20:30] = 1  # 400 voxels of class 1 in image 0
    labels[1, 20:21, :6] = 2  # 6 voxels of class 2 in image 1
    predictions = labels.clone().clamp_min(0)
    predictions[:, :5] = 3  # 200 hard voxels of class 0 per image
    predictions[0, 20:21, :3] = 0  # 3 hard voxels of class 1
    emb = torch.arange(b * h * w, dtype=torch.float).reshape(b, 1, h, w).expand(b, 2, h, w)
    anchors, cls, hard = sample_anchors(emb, labels, predictions, max_anchors=1024, max_per_class=100,
                                        generator=torch.Generator().manual_seed(0))
    # 4 (image, class) pairs: n = min(1024 // 4, 100) = 100 per pair; class 2 has only 6 voxels
    counts = {(i, c): 0 for i in range(b) for c in range(3)}
    flat_lab = labels.reshape(b, -1)
    for row, c, is_hard in zip(anchors, cls, hard):
        index = int(row[0])
        i, j = divmod(index, h * w)
        assert flat_lab[i, j] == c  # the anchor's label is its voxel's label
        assert is_hard == (predictions.reshape(b, -1)[i, j] != c)  # hard = wrong prediction
        counts[(i, int(c))] += 1
    assert counts == {(0, 0): 100, (0, 1): 100, (0, 2): 0, (1, 0): 100, (1, 1): 0, (1, 2): 6}
    assert int(hard[cls == 0].sum()) == 100  # 50 hard of class 0 per image: half the anchors
    assert int(hard[cls == 1].sum()) == 3  # only 3 hard voxels: the easy ones fill up to 100
    assert len(anchors) <= 1024


def test_anchor_budget_shrinks_with_many_pairs():
    labels = torch.arange(4).repeat_interleave(16).reshape(1, 8, 8).repeat(12, 1, 1)  # 12 images x 4 classes
    emb = torch.randn(12, 3, 8, 8)
    anchors, cls, hard = sample_anchors(emb, labels, labels, max_anchors=96, max_per_class=100)
    assert anchors.shape == (96, 3)  # 48 pairs, 96 // 48 = 2 each
    assert not hard.any()


def test_confirmed_pseudo_labels_follow_eq7():
    q = torch.tensor([[0.98, 0.02], [0.5, 0.5], [0.3, 0.7], [0.9, 0.1]]).T.reshape(1, 2, 4)
    scribble = torch.tensor([[9, 9, 9, 1]])  # 9 = ignore; last voxel annotated with class 1
    labels = confirmed_pseudo_labels(q, scribble, ignore_label=9, threshold=0.62)
    # entropies: 0.098, 0.693, 0.611, (annotated) -> argmax 0, uncertain, argmax 1, scribble 1
    assert labels.tolist() == [[0, -1, 1, 1]]


def test_threshold_ramp_and_class_means():
    assert entropy_threshold(0, 100) == pytest.approx((0.75 + 0.25 * math.exp(-5)) * math.log(2))
    assert entropy_threshold(100, 100) == pytest.approx(math.log(2))
    assert sigmoid_rampup(50, 100) == pytest.approx(math.exp(-1.25))
    assert sigmoid_rampup(-3, 100) == pytest.approx(math.exp(-5)) and sigmoid_rampup(150, 100) == 1.0
    assert sigmoid_rampup(0, 0) == 1.0  # no ramp
    emb = torch.tensor([[[3.0, 1.0, 0.0], [0.0, 1.0, 2.0]]])  # (1, D=2, 3 voxels)
    means, classes = class_mean_embeddings(emb, torch.tensor([[0, 0, 1]]))
    assert classes.tolist() == [0, 1]  # background is kept
    # class 0: mean of (3, 0) and (1, 1) = (2, 0.5), normalised by sqrt(4.25)
    assert torch.allclose(means, torch.tensor([[0.9701425, 0.2425356], [0.0, 1.0]]))


def _expected_anchor_counts(labels, predictions, max_anchors, max_per_class):
    """The sampling rule written as the loop over (image, class) pairs it describes: {(i, c): (hard, easy)}."""
    b = labels.shape[0]
    lab, pred = labels.reshape(b, -1), predictions.reshape(b, -1)
    pairs = [(i, int(c)) for i in range(b) for c in torch.unique(lab[i]) if c >= 0]
    n_view = min(max_anchors // len(pairs), max_per_class)
    out = {}
    for i, c in pairs:
        hard = int(((lab[i] == c) & (pred[i] != c)).sum())
        easy = int(((lab[i] == c) & (pred[i] == c)).sum())
        n_hard = min(hard, max(n_view // 2, n_view - easy))
        out[(i, c)] = (n_hard, min(easy, n_view - n_hard))
    return out


@pytest.mark.parametrize("shape", [(6, 12, 10), (3, 4, 5, 6)])
def test_vectorised_anchor_sampling_follows_the_pair_rule(shape):
    """Random labels/predictions, 2D and 3D: per (image, class) the hard and easy counts are the rule's, every
    anchor is its own voxel's embedding, output ordered image by image, class by class, hard before easy."""
    g = torch.Generator().manual_seed(4)
    labels = torch.randint(-1, 4, shape, generator=g)
    labels[0] = -1  # an image without labelled voxels
    predictions = torch.randint(0, 4, shape, generator=g)
    b, n = shape[0], math.prod(shape[1:])
    emb = torch.stack([torch.arange(b * n, dtype=torch.float64).reshape(shape), torch.randn(shape)], 1)
    for max_anchors, max_per_class in ((1024, 100), (40, 100), (1024, 7), (10, 3)):
        anchors, cls, hard = sample_anchors(emb, labels, predictions, max_anchors, max_per_class, generator=g)
        expected = _expected_anchor_counts(labels, predictions, max_anchors, max_per_class)
        got = {}
        index = anchors[:, 0].long()
        image, voxel = index // n, index % n
        assert torch.equal(cls, labels.reshape(b, -1)[image, voxel])
        assert torch.equal(hard, predictions.reshape(b, -1)[image, voxel] != cls)
        assert torch.equal(anchors[:, 1], emb[:, 1].reshape(b, -1)[image, voxel])
        assert len(set(index.tolist())) == len(index)  # without replacement
        for i, c, h in zip(image.tolist(), cls.tolist(), hard.tolist()):
            counts = got.setdefault((i, c), [0, 0])
            counts[0 if h else 1] += 1
        assert {k: tuple(v) for k, v in got.items()} == {k: v for k, v in expected.items() if sum(v)}
        order = (image * 4 + cls) * 2 + (~hard).long()
        assert torch.equal(order, torch.sort(order).values)


def test_anchor_sampling_is_uniform_within_a_group():
    """Each of 10 candidate voxels is drawn about equally often when 4 of them are kept (2000 draws)."""
    labels = torch.full((1, 1, 20), -1)
    labels[0, 0, :10] = 1
    emb = torch.arange(20, dtype=torch.float).reshape(1, 1, 1, 20)
    g = torch.Generator().manual_seed(5)
    hits = torch.zeros(20)
    for _ in range(2000):
        anchors, _, _ = sample_anchors(emb, labels, labels, max_anchors=1024, max_per_class=4, generator=g)
        hits[anchors[:, 0].long()] += 1
    assert hits[10:].sum() == 0 and hits[:10].sum() == 8000
    assert (hits[:10] - 800).abs().max() < 100  # binomial sd sqrt(2000 * 0.4 * 0.6) = 22


def test_vectorised_class_means_equal_the_per_class_means():
    g = torch.Generator().manual_seed(6)
    emb = torch.randn(4, 5, 6, 7, generator=g)
    labels = torch.randint(-1, 5, (4, 6, 7), generator=g)
    labels[1] = -1
    labels[2][labels[2] == 3] = -1  # class 3 absent in image 2
    means, classes = class_mean_embeddings(emb, labels)
    expected_means, expected_classes = [], []
    for i in range(4):
        for c in range(5):
            sel = labels[i] == c
            if sel.any():
                expected_means.append(torch.nn.functional.normalize(emb[i][:, sel].mean(1), dim=0))
                expected_classes.append(c)
    assert classes.tolist() == expected_classes
    assert torch.allclose(means, torch.stack(expected_means), atol=1e-6)
    assert class_mean_embeddings(emb, torch.full((4, 6, 7), -1))[0].shape == (0, 5)
