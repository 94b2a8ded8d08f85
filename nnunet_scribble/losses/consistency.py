"""Dual-consistency terms of PCLMix (§3.4, eq. 9-13) and its mixed pseudo-label target: pure tensor functions.

References:
    Lei et al., "PCLMix", ICIC 2024 (arXiv 2405.06288). Reference code Torpedo2648/PCLMix, not copied.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from nnunet_scribble.losses.maco import cosine_loss


def heterogeneous_consistency(pairs: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """``L_het = sum_k MSE(softmax(a_k), softmax(b_k))`` over the (CNN, transformer) logit pairs (eq. 9).

    On softmax probabilities, as the paper's "segmentation predictions" read; deviation: the reference code takes
    the MSE of the logits, which is unbounded and scale-dependent. Gradients reach both decoders.

    Shape:
        each tensor ``(B, C, *spatial)``; returns a scalar.
    """
    return sum(F.mse_loss(torch.softmax(a.float(), 1), torch.softmax(b.float(), 1)) for a, b in pairs)


def mix_consistency(mixed_predictions: list[torch.Tensor], predictions_of_mixed: list[torch.Tensor]
                    ) -> torch.Tensor:
    """``L_mix = sum_k 1 - cos(M(q(x^1), q(x^2)), q(M(x^1, x^2)))`` over both mix directions (eq. 10).

    The printed eq. 11-12 compare ``q^12`` with itself; this is the intended eq. 10 (methods.md): the mix of the
    first-pass predictions (detached here: it is the target) against the prediction of the mixed image. Cosine over
    all classes and voxels of a sample, averaged over the batch; ``1 - cos`` differs from the paper's negative cosine
    by a constant.

    Shape:
        lists of ``(B, C, *spatial)`` probabilities, one per direction; returns a scalar.
    """
    return sum(cosine_loss(q, target.detach().float()) for target, q in zip(mixed_predictions, predictions_of_mixed))


def ensemble(probs_cnn: torch.Tensor, probs_tf: torch.Tensor, lambda_t: float) -> torch.Tensor:
    """``q = (1 - λ_t) p_c + λ_t p_t`` (eq. 6 and 11)."""
    return (1.0 - lambda_t) * probs_cnn + lambda_t * probs_tf
