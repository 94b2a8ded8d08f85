"""Loss terms of MaCo (Su et al.): enhanced prediction, L_mcm (eq. 2), L_ep (eq. 8) and L_con (eq. 6).

Pure tensor functions, dimension-agnostic (``(B, C, *spatial)``). The supervised term L_ss (eq. 7) is nnU-Net's
partial Dice + CE of the base trainer, not the paper's pCE (methods.md, common rules).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

#: L_con readings: ``"soft_ce"`` (the intended soft-label cross-entropy) or ``"printed"`` (eq. 6 as printed).
CON_VARIANTS = ("soft_ce", "printed")
#: L_con normalisations: ``"class"`` (each class by its own ``N_c = ||cpl^c||_0``) or ``"voxel"`` (one ``N``).
CON_NORMALISATIONS = ("class", "voxel")


def enhanced_prediction(probs: torch.Tensor, cpl_background: torch.Tensor, threshold: float = 0.5,
                        background_class: int = 0) -> torch.Tensor:
    """Enhanced prediction ``y'_e`` (Sec. III-B): the prediction, one-hot background near background scribbles.

    ``B = 1[cpl^GC >= threshold]``; where ``B = 1`` the class distribution becomes one-hot background, elsewhere it
    is the prediction itself. Detached (a target, not a path for gradients).

    Args:
        probs: ``(B, C, *spatial)`` softmax probabilities ``y'``.
        cpl_background: ``(B, *spatial)`` or ``(B, 1, *spatial)`` continuous pseudo label of the background.
        threshold: paper: 0.5 (background scribbles within ``ln 2 / alpha`` = 6.9 voxels at alpha = 0.1).
        background_class: channel of the background (global category).

    Returns:
        ``(B, C, *spatial)`` detached tensor.
    """
    if cpl_background.ndim == probs.ndim - 1:
        cpl_background = cpl_background.unsqueeze(1)
    if cpl_background.shape[2:] != probs.shape[2:] or cpl_background.shape[:2] != (probs.shape[0], 1):
        raise ValueError(f"cpl_background must be (B, [1,] *spatial) matching probs {tuple(probs.shape)}, got "
                         f"{tuple(cpl_background.shape)}")
    onehot_bg = torch.zeros_like(probs)
    onehot_bg[:, background_class] = 1.0
    return torch.where(cpl_background >= threshold, onehot_bg, probs.detach()).detach()


def cosine_loss(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """``1 - cos(a, b)`` over all classes and voxels of each sample, averaged over the batch (eq. 2 and 8).

    Args:
        a, b: ``(B, C, *spatial)`` tensors (probabilities).
        eps: guards all-zero inputs (cosine 0, loss 1).

    Returns:
        Scalar in ``[0, 2]`` (``[0, 1]`` for non-negative inputs).
    """
    if a.shape != b.shape:
        raise ValueError(f"cosine_loss needs equal shapes, got {tuple(a.shape)} and {tuple(b.shape)}")
    return (1 - F.cosine_similarity(a.flatten(1), b.flatten(1), dim=1, eps=eps)).mean()


def mcm_loss(probs_masked: torch.Tensor, enhanced: torch.Tensor) -> torch.Tensor:
    """L_mcm = 1 - cos(y'_m, y'_e) (eq. 2): the masked image's prediction against the enhanced prediction."""
    return cosine_loss(probs_masked, enhanced)


def ep_loss(probs: torch.Tensor, enhanced: torch.Tensor) -> torch.Tensor:
    """L_ep = 1 - cos(y', y'_e) (eq. 8): the prediction against its own enhanced version."""
    return cosine_loss(probs, enhanced)


def con_loss(logits: torch.Tensor, cpl: torch.Tensor, variant: str = "soft_ce",
             normalisation: str = "voxel") -> torch.Tensor:
    """L_con (eq. 6): cross-entropy of the prediction against the continuous pseudo labels.

    ``"soft_ce"`` (default, methods.md): ``-1/|C| * sum_c [sum_p cpl^c_p * log y'_c,p] / N``; ``"printed"``: the
    formula as printed, ``-1/|C| * sum_c [sum_p cpl^c_p * y'_c,p * log y'_c,p] / N`` (a confidence-weighted
    entropy, which rewards any confident prediction rather than class ``c``). ``log y'`` is computed as
    ``log_softmax`` of the logits, for stability.

    The normaliser ``|N|`` of eq. 6 is ambiguous (the text defines ``N = ||cpl^c||_0`` inside a sum over ``c``):

    - ``"class"``: ``N_c = ||cpl^c||_0`` per class (the literal reading). The background's pseudo label has the
      floor ``tau`` everywhere, so ``N_bg`` counts every voxel while a foreground class counts only its
      ~``ln(1/tau)/alpha`` halo: per voxel a foreground class weighs ``N_bg / N_c`` times more than the
      background, and the loss's optimum labels the whole halo as foreground. On ACDC (all training slices at the
      planned spacing) the argmax of these weights covers 4.9x the true RV and 5.5x the true MYO area (precision
      20 % / 13 %; ``benchmarks/cpl_targets.py``).
    - ``"voxel"`` (default; deviation from the literal reading): one ``N`` for all classes, the number of voxels
      where any class has a non-zero pseudo label (every voxel when the background has a scribble): a plain
      per-voxel soft-label cross-entropy divided by ``|C|``, whose optimum is the normalised pseudo label (the
      nearest scribble's class).

    ``N`` is counted over the whole batch (deviation: the paper's formula is per image); a class with ``N_c = 0``
    contributes 0 but still counts in ``|C|``.

    Args:
        logits: ``(B, C, *spatial)`` network output (full resolution).
        cpl: ``(B, C, *spatial)`` pseudo labels (continuous, or one-hot for the hard-label ablation).
        variant: one of :data:`CON_VARIANTS`.
        normalisation: one of :data:`CON_NORMALISATIONS`.

    Returns:
        Scalar loss (0 if every pseudo label is 0).
    """
    if variant not in CON_VARIANTS:
        raise ValueError(f"L_con variant must be one of {CON_VARIANTS}, got {variant!r}")
    if normalisation not in CON_NORMALISATIONS:
        raise ValueError(f"L_con normalisation must be one of {CON_NORMALISATIONS}, got {normalisation!r}")
    if logits.shape != cpl.shape:
        raise ValueError(f"logits and cpl must have equal shapes, got {tuple(logits.shape)} and {tuple(cpl.shape)}")
    log_p = F.log_softmax(logits.float(), dim=1)
    weight = cpl.float() * log_p.exp() if variant == "printed" else cpl.float()
    reduce = [0] + list(range(2, logits.ndim))
    if normalisation == "class":
        count = (cpl != 0).sum(reduce)
    else:
        count = (cpl != 0).any(1).sum()
    per_class = -(weight * log_p).sum(reduce) / count.clamp_min(1)
    return per_class.sum() / logits.shape[1]
