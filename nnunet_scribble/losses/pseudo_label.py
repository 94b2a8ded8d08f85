"""Pseudo-label losses of DMPLS (Luo et al., MICCAI 2022): dynamically mixed hard pseudo labels and their Dice.

Pure tensor functions, for any number of spatial dimensions.

References:
    X. Luo, M. Hu, W. Liao, S. Zhai, T. Song, G. Wang, S. Zhang. "Scribble-Supervised Medical Image Segmentation
    via Dual-Branch Network and Dynamically Mixed Pseudo Labels Supervision", MICCAI 2022, eq. 2-4.
    Reference code: HiLab-git/WSL4MIS (``train_weakly_supervised_segmentation_pCE_ours_proposed.py``, ``pDLoss``).
"""
from __future__ import annotations

import torch


def mixed_pseudo_label(logits_a: torch.Tensor, logits_b: torch.Tensor, beta: float) -> torch.Tensor:
    """Hard pseudo label from two predictions mixed with weight ``beta`` (eq. 2).

    ``PL = argmax_c [beta * softmax(logits_a) + (1 - beta) * softmax(logits_b)]``, computed without gradient (both
    inputs are detached, as in the paper: the pseudo label must not couple the two decoders). The caller draws
    ``beta ~ U(0, 1)`` once per iteration.

    Args:
        logits_a: ``(B, C, *spatial)`` logits of the first decoder (DMPLS: main).
        logits_b: ``(B, C, *spatial)`` logits of the second decoder (DMPLS: auxiliary).
        beta: mixing weight in ``[0, 1]``; 1 gives ``argmax(logits_a)``, 0 gives ``argmax(logits_b)``.

    Returns:
        ``(B, *spatial)`` int64 class indices.

    Raises:
        ValueError: if ``beta`` is outside ``[0, 1]`` or the shapes differ.
    """
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"beta must be in [0, 1], got {beta}")
    if logits_a.shape != logits_b.shape:
        raise ValueError(f"both predictions must have the same shape, got {tuple(logits_a.shape)} and "
                         f"{tuple(logits_b.shape)}")
    with torch.no_grad():
        mixed = beta * torch.softmax(logits_a.detach().float(), 1) + (1.0 - beta) * torch.softmax(
            logits_b.detach().float(), 1)
        return mixed.argmax(1)


def pseudo_label_dice_loss(probs: torch.Tensor, pseudo_label: torch.Tensor, smooth: float = 1e-5) -> torch.Tensor:
    """Batch-global soft Dice loss against a hard pseudo label, over all classes including background (eq. 3).

    For every class ``c``, with sums over the whole batch and every voxel (one Dice per class, not per sample):
    ``D_c = (2 * sum(p_c * y_c) + smooth) / (sum(p_c ** 2) + sum(y_c ** 2) + smooth)``; the loss is
    ``mean_c (1 - D_c)``. This is the Dice of the reference code (squared denominator, smoothing 1e-5, background
    included); the paper only says "the widely-used dice loss". The reference's ignore mask on label 4 is left out:
    a pseudo label never carries the ignore label. A class absent from both prediction and pseudo label scores 0.

    Args:
        probs: ``(B, C, *spatial)`` class probabilities (softmax output).
        pseudo_label: ``(B, *spatial)`` or ``(B, 1, *spatial)`` integer class indices in ``[0, C)``.
        smooth: smoothing added to numerator and denominator.

    Returns:
        Scalar loss in ``[0, 1]``.

    Raises:
        ValueError: if the spatial shapes or batch sizes of ``probs`` and ``pseudo_label`` differ.
    """
    if pseudo_label.ndim == probs.ndim:
        pseudo_label = pseudo_label[:, 0]
    if pseudo_label.shape != probs.shape[:1] + probs.shape[2:]:
        raise ValueError(f"pseudo_label of shape {tuple(pseudo_label.shape)} does not match probs of shape "
                         f"{tuple(probs.shape)}; expected (B, *spatial) = {tuple(probs.shape[:1] + probs.shape[2:])}")
    probs = probs.float()
    one_hot = torch.zeros_like(probs).scatter_(1, pseudo_label.long().unsqueeze(1), 1.0)
    axes = [0, *range(2, probs.ndim)]
    intersect = (probs * one_hot).sum(axes)
    denominator = (probs * probs).sum(axes) + one_hot.sum(axes)  # one_hot ** 2 == one_hot
    dice = (2.0 * intersect + smooth) / (denominator + smooth)
    return (1.0 - dice).mean()


def pseudo_label_supervision(logits_a: torch.Tensor, logits_b: torch.Tensor, pseudo_label: torch.Tensor
                             ) -> torch.Tensor:
    """``L_PLS = 0.5 * (Dice(softmax(logits_a), PL) + Dice(softmax(logits_b), PL))`` (eq. 3).

    Shape:
        logits_a, logits_b: ``(B, C, *spatial)``; pseudo_label: ``(B, *spatial)``. Returns a scalar.
    """
    return 0.5 * (pseudo_label_dice_loss(torch.softmax(logits_a.float(), 1), pseudo_label)
                  + pseudo_label_dice_loss(torch.softmax(logits_b.float(), 1), pseudo_label))
