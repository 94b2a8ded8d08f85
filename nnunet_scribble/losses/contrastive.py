"""Uncertainty-guided pixel-level contrast against a class memory queue (PCLMix §3.3, eq. 5-8).

Pure tensor functions for any number of spatial dimensions.

References:
    Lei et al., "PCLMix", ICIC 2024 (arXiv 2405.06288), eq. 5-8. Reference code Torpedo2648/PCLMix
    (``util/pixel_contra_loss.py``, derived from UGPCL / ContrastiveSeg), not copied. Wang et al., "Exploring
    Cross-Image Pixel Contrast for Semantic Segmentation", ICCV 2021 (hard/easy anchor sampling).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from nnunet_scribble.losses.schedules import sigmoid_rampup


def entropy_threshold(iteration: int, max_iterations: int) -> float:
    """``H = (0.75 + 0.25 * sigmoid_rampup(iter, max_iter)) * ln 2`` (reference code; the paper gives no value).

    ``ln 2`` whatever the number of classes, as in the reference: about 0.52 nats at the start, 0.69 at the end.
    """
    return (0.75 + 0.25 * sigmoid_rampup(iteration, max_iterations)) * math.log(2.0)


def confirmed_pseudo_labels(q: torch.Tensor, scribble: torch.Tensor, ignore_label: int, threshold: float,
                            eps: float = 1e-8) -> torch.Tensor:
    """Confirmed pseudo labels (eq. 5-7): scribble class on scribbles, ``argmax q`` where the entropy of ``q`` is
    below ``threshold``, ``-1`` (not used) elsewhere.

    Args:
        q: ``(B, C, *spatial)`` averaged probabilities ``(1 - λ_t) p_c + λ_t p_t`` (eq. 6); used without gradient.
        scribble: ``(B, *spatial)`` labels with ``ignore_label`` where unannotated.
        ignore_label: value of unannotated voxels.
        threshold: entropy threshold ``H`` in nats.

    Returns:
        ``(B, *spatial)`` int64 labels in ``{-1, 0, ..., C - 1}``.
    """
    q = q.detach().float()
    u = -(q * torch.log(q + eps)).sum(1)
    labels = torch.where(u < threshold, q.argmax(1), torch.full_like(u, -1, dtype=torch.long))
    scribble = scribble.long()
    return torch.where(scribble != ignore_label, scribble, labels)


def downsample_labels(labels: torch.Tensor, spatial_shape: tuple[int, ...] | torch.Size) -> torch.Tensor:
    """Nearest-neighbour resampling of ``(B, *spatial)`` integer labels to ``spatial_shape`` (the embedding grid)."""
    if tuple(labels.shape[1:]) == tuple(spatial_shape):
        return labels
    return F.interpolate(labels[:, None].float(), size=tuple(spatial_shape), mode="nearest-exact")[:, 0].long()


def sample_anchors(embeddings: torch.Tensor, labels: torch.Tensor, predictions: torch.Tensor,
                   max_anchors: int = 1024, max_per_class: int = 100, generator: torch.Generator | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Hard/easy anchor sampling of ContrastiveSeg/UGPCL, as the PCLMix reference uses it.

    Every (image, class) pair with at least one labelled voxel gets ``n = min(max_anchors // pairs, max_per_class)``
    anchors, so a batch has at most ``max_anchors`` anchors and a class of an image at most ``max_per_class``. Half
    are hard (label ``c``, prediction not ``c``), half easy (label and prediction ``c``); when one kind runs short the
    other fills in, and a pair with fewer than ``n`` voxels contributes all of them. Deviation from the reference:
    it uses only pairs with more than ``max_per_class`` voxels (so it never runs short); here small structures and
    small patches keep their anchors.

    Batched: one sort of the batch's labelled voxels by (image, class, hard/easy, random key) replaces the loop over
    pairs, which on a GPU cost two host synchronisations and about 15 kernel launches per pair (ACDC 2d, batch 56:
    ~220 pairs; 2352 synchronising calls per step with the class means, 17 now). Output order as before: image by
    image, class by class, hard anchors first, random order within.

    Args:
        embeddings: ``(B, D, *spatial)`` embeddings.
        labels: ``(B, *spatial)`` confirmed labels, ``-1`` for unused voxels (:func:`confirmed_pseudo_labels`).
        predictions: ``(B, *spatial)`` predicted classes (PCLMix: the CNN decoder's).
        max_anchors: anchors per batch (1024).
        max_per_class: anchors per image and class (100).
        generator: random generator (CPU) for reproducible draws.

    Returns:
        ``(N, D)`` anchor embeddings, ``(N,)`` their labels, ``(N,)`` bool, true for hard anchors.
    """
    b, d = embeddings.shape[:2]
    flat_emb = embeddings.flatten(2)
    flat_lab, flat_pred = labels.reshape(b, -1).long(), predictions.reshape(b, -1)
    n_vox, device = flat_lab.shape[1], flat_lab.device
    valid = flat_lab >= 0
    num_classes = int(flat_lab.max()) + 1 if flat_lab.numel() else 0  # one synchronisation
    if num_classes <= 0:
        empty = embeddings.new_zeros((0, d))
        return empty, labels.new_zeros(0), torch.zeros(0, dtype=torch.bool, device=device)
    # group of every labelled voxel: (image, class, kind), kind 0 = hard, 1 = easy; in that order in the output
    kind = (flat_pred == flat_lab).long()
    image = torch.arange(b, device=device)[:, None]
    group = ((image * num_classes + flat_lab.clamp_min(0)) * 2 + kind).reshape(-1)
    valid = valid.reshape(-1)
    counts = torch.bincount(group[valid], minlength=b * num_classes * 2).reshape(b, num_classes, 2)
    n_hard_avail, n_easy_avail = counts[..., 0], counts[..., 1]
    n_pairs = int((counts.sum(-1) > 0).sum())  # (image, class) pairs with a labelled voxel
    n_view = min(max_anchors // n_pairs, max_per_class)
    n_hard = torch.minimum(n_hard_avail, torch.clamp(n_view - n_easy_avail, min=n_view // 2))
    n_easy = torch.minimum(n_easy_avail, n_view - n_hard)
    quota = torch.stack([n_hard, n_easy], -1).reshape(-1)
    # a random order within each group: sort by group, then by a uniform key; keep the first `quota` of each group
    noise = torch.rand(b * n_vox, generator=generator, dtype=torch.float64).to(device) if generator is not None \
        else torch.rand(b * n_vox, device=device, dtype=torch.float64)
    key = torch.where(valid, group.double() + 0.5 * noise, torch.full_like(noise, math.inf))  # never reaches g + 1
    order = torch.argsort(key)[: int(counts.sum())]
    sorted_group = group[order]
    starts = torch.cumsum(counts.reshape(-1), 0) - counts.reshape(-1)
    rank = torch.arange(order.numel(), device=device) - starts[sorted_group]
    keep = rank < quota[sorted_group]
    chosen, chosen_group = order[keep], sorted_group[keep]
    rows = flat_emb[chosen // n_vox, :, chosen % n_vox]  # (N, D)
    return rows, (chosen_group // 2) % num_classes, chosen_group % 2 == 0


def queue_contrastive_loss(anchors: torch.Tensor, anchor_labels: torch.Tensor, bank: torch.Tensor,
                           bank_labels: torch.Tensor, temperature: float = 0.07) -> torch.Tensor:
    """InfoNCE of anchors against a memory bank (eq. 8).

    For anchor ``i`` with positives ``P`` (bank entries of its class) and negatives ``N`` (all other entries),
    ``l_i = -1/|P| sum_{j in P} log(e^{s_ij/τ} / (e^{s_ij/τ} + sum_{k in N} e^{s_ik/τ}))`` with ``s`` the cosine
    similarity (inputs are L2-normalised here); the loss is the mean over anchors that have positives. The contrast
    set is the queue only, as in the reference. Returns ``0 * anchors.sum()`` (still connected to the graph, as DDP
    needs) when no anchor has a positive.

    Shape:
        anchors ``(N, D)``, anchor_labels ``(N,)``, bank ``(M, D)``, bank_labels ``(M,)``; returns a scalar.
    """
    if anchors.shape[0] == 0 or bank.shape[0] == 0:
        return anchors.sum() * 0.0
    a = F.normalize(anchors.float(), dim=1)
    k = F.normalize(bank.float(), dim=1).to(a.device)
    logits = a @ k.T / temperature
    logits = logits - logits.max(1, keepdim=True).values.detach()  # cancels in the ratio; avoids overflow
    positive = anchor_labels[:, None] == bank_labels.to(a.device)[None]
    negatives = (logits.exp() * ~positive).sum(1, keepdim=True)
    log_prob = logits - torch.log(logits.exp() + negatives)
    n_pos = positive.sum(1)
    valid = n_pos > 0
    if not valid.any():
        return anchors.sum() * 0.0
    per_anchor = -(log_prob * positive).sum(1)[valid] / n_pos[valid]
    return per_anchor.mean()


def class_mean_embeddings(embeddings: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """L2-normalised mean embedding of every class present in each image (the queue's entries), detached.

    Args:
        embeddings: ``(B, D, *spatial)``.
        labels: ``(B, *spatial)``, ``-1`` for voxels to leave out. Background (0) counts like any class.

    Returns:
        ``(M, D)`` means and ``(M,)`` classes, image by image, classes in increasing order.
    """
    b, d = embeddings.shape[:2]
    flat_emb, flat_lab = embeddings.detach().flatten(2).float(), labels.reshape(b, -1).long()
    num_classes = int(flat_lab.max()) + 1 if flat_lab.numel() else 0  # one synchronisation
    if num_classes <= 0:
        return embeddings.new_zeros((0, d)), labels.new_zeros(0, dtype=torch.long)
    # per-class sums as one batched product with the one-hot labels (no loop over images and classes)
    with torch.autocast(device_type=flat_emb.device.type, enabled=False):
        onehot = F.one_hot(flat_lab.clamp_min(0), num_classes).float() * (flat_lab >= 0)[..., None].float()
        sums = torch.bmm(flat_emb, onehot)  # (B, D, K)
        counts = onehot.sum(1)  # (B, K)
    present = counts > 0
    means = (sums / counts.clamp_min(1)[:, None]).transpose(1, 2)[present]  # image by image, classes increasing
    classes = torch.arange(num_classes, device=flat_lab.device).expand(b, num_classes)[present]
    return F.normalize(means, dim=1), classes
