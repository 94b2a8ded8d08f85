"""CSPNet loss terms (L_segc eq. 8, entropy / L_dp eq. 16-19, L_lorm eq. 11-14) on tiny tensors worked out by hand."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from nnunet_scribble.losses.cspnet import distance_perception_loss, entropy_map, label_smoothed_ce, lorm_loss

IGNORE = 4


# ---------------------------------------------------------------- L_segc (eq. 8)

@pytest.mark.parametrize("spatial", [(6, 5), (3, 4, 5)])
@pytest.mark.parametrize("eps", [0.0, 0.2, 1.0])
def test_label_smoothed_ce_equals_torch_cross_entropy(spatial, eps):
    torch.manual_seed(0)
    logits = torch.randn(2, 4, *spatial) * 3
    target = torch.randint(0, 5, (2, *spatial))  # 4 = ignore
    expected = F.cross_entropy(logits, target, label_smoothing=eps, ignore_index=IGNORE)
    assert label_smoothed_ce(logits, target, eps, IGNORE).item() == pytest.approx(expected.item(), rel=1e-5)
    # (B, 1, *spatial) targets are accepted; without ignore_index every voxel counts
    assert label_smoothed_ce(logits, target[:, None], eps, IGNORE).item() == pytest.approx(expected.item(), rel=1e-5)
    valid = target.clamp_max(3)
    assert label_smoothed_ce(logits, valid, eps).item() == pytest.approx(
        F.cross_entropy(logits, valid, label_smoothing=eps).item(), rel=1e-5)


def test_label_smoothed_ce_by_hand_and_epsilon_zero_is_plain_ce():
    # one voxel, K = 2, p = (1/4, 3/4), target 1: c(y, p) = -log 3/4, c(1/K, p) = -(log 1/4 + log 3/4) / 2
    logits = torch.tensor([0.0, math.log(3)]).view(1, 2, 1)
    target = torch.tensor([[1]])
    ce, uniform = -math.log(0.75), -(math.log(0.25) + math.log(0.75)) / 2
    assert label_smoothed_ce(logits, target).item() == pytest.approx(0.8 * ce + 0.2 * uniform)
    assert label_smoothed_ce(logits, target, 0.0).item() == pytest.approx(ce)
    assert label_smoothed_ce(logits, target, 1.0).item() == pytest.approx(uniform)
    with pytest.raises(ValueError, match="epsilon"):
        label_smoothed_ce(logits, target, 1.5)
    with pytest.raises(ValueError, match="target"):
        label_smoothed_ce(logits, torch.tensor([[1, 0]]))


def test_label_smoothed_ce_ignored_voxels_get_exactly_zero_gradient():
    torch.manual_seed(1)
    logits = torch.randn(2, 4, 5, 5, requires_grad=True)
    target = torch.randint(0, 4, (2, 5, 5))
    target[:, :2] = IGNORE
    label_smoothed_ce(logits, target, 0.2, IGNORE).backward()
    assert torch.equal(logits.grad[:, :, :2], torch.zeros_like(logits.grad[:, :, :2]))
    assert (logits.grad[:, :, 2:].abs().sum((0, 1)) > 0).all()


def test_label_smoothed_ce_all_ignored_is_a_finite_graph_connected_zero():
    logits = torch.randn(1, 3, 4, 4, requires_grad=True)
    loss = label_smoothed_ce(logits, torch.full((1, 4, 4), IGNORE), 0.2, IGNORE)
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert torch.equal(logits.grad, torch.zeros_like(logits))


# ---------------------------------------------------------------- entropy and L_dp (eq. 16, 18)

@pytest.mark.parametrize("spatial", [(3, 2), (2, 2, 2)])
def test_entropy_of_uniform_prediction_is_log_c(spatial):
    h = entropy_map(torch.zeros(2, 5, *spatial))
    assert h.shape == (2, *spatial)
    assert torch.allclose(h, torch.full_like(h, math.log(5)))
    # a saturated prediction has (numerically) zero entropy, not NaN
    sure = torch.tensor([100.0, -100.0, -100.0]).view(1, 3, 1, 1)
    assert entropy_map(sure).item() == pytest.approx(0.0, abs=1e-6)


def test_distance_perception_loss_by_hand():
    # (1, 2 classes, 1, 2 voxels): voxel 0 uniform, H = log 2; voxel 1 p = (1/4, 3/4)
    logits = torch.tensor([[0.0, 0.0], [0.0, math.log(3)]]).view(1, 2, 1, 2).requires_grad_()
    h1 = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
    assert entropy_map(logits)[0, 0].tolist() == pytest.approx([math.log(2), h1])
    # N = 1 non-zero weight: 0.5 * log 2 / 1
    assert distance_perception_loss(logits, torch.tensor([[[0.5, 0.0]]])).item() == pytest.approx(0.5 * math.log(2))
    # N = 2; (B, 1, *spatial) weights accepted
    w = torch.tensor([[[0.5, 1.0]]])
    assert distance_perception_loss(logits, w).item() == pytest.approx((0.5 * math.log(2) + h1) / 2)
    assert distance_perception_loss(logits, w[:, None]).item() == pytest.approx((0.5 * math.log(2) + h1) / 2)
    # minimising it reduces the entropy (the paper's printed sign would raise it)
    distance_perception_loss(logits, torch.tensor([[[0.0, 1.0]]])).backward()
    with torch.no_grad():
        stepped = logits - 0.1 * logits.grad
    assert entropy_map(stepped)[0, 0, 1] < h1
    assert torch.equal(logits.grad[..., 0], torch.zeros(1, 2, 1))
    with pytest.raises(ValueError, match="weight_map"):
        distance_perception_loss(logits, torch.ones(1, 1, 3))


def test_distance_perception_loss_zero_weights_is_a_finite_graph_connected_zero():
    logits = torch.randn(2, 3, 2, 3, 4, requires_grad=True)
    loss = distance_perception_loss(logits, torch.zeros(2, 2, 3, 4))
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert torch.isfinite(logits.grad).all() and not logits.grad.any()


# ---------------------------------------------------------------- L_lorm (eq. 11-14)

def _lorm_by_loops(features, query, key, fg, delta):
    """Eq. 11-14 written position by position (the spec, independent of the vectorised implementation)."""
    feats, q, k, m = features.flatten(2), query.flatten(2), key.flatten(2), fg.flatten(1)
    total, count = 0.0, 0
    for b in range(feats.shape[0]):
        for i in range(feats.shape[2]):
            if not m[b, i]:
                continue
            cos = torch.stack([F.cosine_similarity(q[b, :, i], k[b, :, j], dim=0) for j in range(feats.shape[2])])
            a = torch.softmax(cos, 0) * m[b].float()
            rectified = delta * (feats[b] * a[None]).sum(1)
            total = total + ((feats[b, :, i] - rectified) ** 2).sum()
            count += feats.shape[1]
    return total / count


def test_lorm_by_hand_three_tokens():
    # C = 2, N = 3 tokens; query = key = features: unit directions (1,0), (1,0), (0,1) -> cos [[1,1,0],[1,1,0],[0,0,1]]
    f = torch.tensor([[2.0, 1.0, 0.0], [0.0, 0.0, 3.0]]).view(1, 2, 1, 3)
    fg = torch.tensor([[[True, True, False]]])
    e = math.e
    # fg rows: A = (e, e, 1) / (2e + 1), background key masked: A' = (e, e, 0) / (2e + 1)
    # F^_0 = F^_1 = delta * e * (f_0 + f_1) / (2e + 1) = delta * (3e / (2e + 1), 0)
    for delta in (1.0, 0.5):
        s = delta * 3 * e / (2 * e + 1)
        expected = ((2 - s) ** 2 + (1 - s) ** 2) / (2 * 2)  # 2 fg positions x 2 channels; channel 1 error 0
        assert lorm_loss(f, f, f, fg, torch.tensor(delta)).item() == pytest.approx(expected, rel=1e-6)
    # only token 0 foreground: A' row 0 = (e, 0, 0) / (2e + 1)
    s = 2 * e / (2 * e + 1)
    single = lorm_loss(f, f, f, torch.tensor([[[True, False, False]]]), torch.tensor(1.0))
    assert single.item() == pytest.approx((2 - s) ** 2 / 2, rel=1e-6)


def test_lorm_background_positions_enter_only_through_the_softmax():
    torch.manual_seed(0)
    f, q, k = torch.randn(1, 3, 2, 3), torch.randn(1, 4, 2, 3), torch.randn(1, 4, 2, 3)
    fg = torch.tensor([[[True, False, True], [True, True, False]]])
    delta = torch.tensor(0.8)
    base = lorm_loss(f, q, k, fg, delta)
    # the feature at a background position (neither fg query nor fg key) does not matter ...
    f2 = f.clone()
    f2[0, :, 0, 1] = torch.tensor([10.0, -7.0, 3.0])
    assert lorm_loss(f2, q, k, fg, delta).item() == pytest.approx(base.item(), rel=1e-6)
    # ... but its key still takes softmax mass (eq. 12 masks without renormalising)
    k2 = k.clone()
    k2[0, :, 0, 1] = q[0, :, 0, 0]
    assert lorm_loss(f, q, k2, fg, delta).item() != pytest.approx(base.item(), rel=1e-6)
    # and the loss is the position-by-position formula
    assert base.item() == pytest.approx(_lorm_by_loops(f, q, k, fg, delta).item(), rel=1e-5)


def test_lorm_no_foreground_is_a_finite_graph_connected_zero():
    f, q, k = (torch.randn(2, 3, 2, 2, requires_grad=True) for _ in range(3))
    delta = torch.tensor(1.0, requires_grad=True)
    loss = lorm_loss(f, q, k, torch.zeros(2, 2, 2, dtype=torch.bool), delta)
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    for t in (f, q, k, delta):
        assert t.grad is not None and torch.isfinite(t.grad).all() and not t.grad.any()


def test_lorm_3d_matches_the_loops_and_gradient_reaches_everything():
    torch.manual_seed(2)
    f = torch.randn(2, 3, 2, 2, 3, requires_grad=True)
    q = torch.randn(2, 5, 2, 2, 3, requires_grad=True)
    k = torch.randn(2, 5, 2, 2, 3, requires_grad=True)
    fg = torch.rand(2, 2, 2, 3) > 0.4
    fg[1] = False  # one sample without foreground: counts for nothing
    delta = torch.tensor(1.0, requires_grad=True)
    loss = lorm_loss(f, q, k, fg[:, None], delta)  # (B, 1, *spatial) mask accepted
    assert loss.item() == pytest.approx(_lorm_by_loops(f, q, k, fg, delta).item(), rel=1e-5)
    loss.backward()
    for t in (f, q, k, delta):
        assert t.grad is not None and t.grad.abs().sum() > 0
    assert not f.grad[1].any() and not q.grad[1].any()
    with pytest.raises(ValueError, match="query and key"):
        lorm_loss(f, q, k[..., :2], fg, delta)
    with pytest.raises(ValueError, match="fg_mask"):
        lorm_loss(f, q, k, fg[..., :2], delta)


def test_lorm_chunked_batches_equal_one_product(monkeypatch):
    """The batched products are split into chunks to bound memory; the chunking never changes the loss."""
    import nnunet_scribble.losses.cspnet as cspnet

    torch.manual_seed(3)
    f, q, k = torch.randn(5, 3, 4, 4), torch.randn(5, 2, 4, 4), torch.randn(5, 2, 4, 4)
    fg, delta = torch.rand(5, 4, 4) > 0.5, torch.tensor(0.8)
    whole = lorm_loss(f, q, k, fg, delta)
    assert whole.item() == pytest.approx(_lorm_by_loops(f, q, k, fg, delta).item(), rel=1e-5)
    for per_chunk in (1, 2, 3):  # 16 tokens: 256 entries per sample
        monkeypatch.setattr(cspnet, "LORM_CHUNK_ELEMENTS", per_chunk * 256)
        assert lorm_loss(f, q, k, fg, delta).item() == pytest.approx(whole.item(), rel=1e-6)
