"""MedCL's loss terms as tensor functions: mix consistency, prototype mapping, cluster, anatomy consistency, category.

Notation (MedCL §2): ``m`` foreground classes; the ``2m − 1`` maps ``ŷ`` are the class maps ``ŷ_1..ŷ_m`` followed by
the union maps ``ŷ'_2..ŷ'_m`` of ``Ω_k = {1..k}``; a *code* ``a_i^b`` is the distribution over the ``K`` prototypes of
map ``i`` of sample ``b``; the centre ``a_i^*`` is its mean over the batch.

Deviations from the paper, stated once:

- ``sim`` is the negative cosine in the paper. Eq. 1 and 5 minimise it; here they minimise ``1 − cos`` (same
  gradients, non-negative values for the logs). In eq. 4 the exponent must be the *positive* cosine, otherwise the
  loss would push codes away from their centres; it is used so.
- Eq. 4 sums over the ``m`` class maps, as printed (``i, j ∈ [1, m]``); the union maps enter through eq. 5.
- DDP: centres and the sums of eq. 4 are over the global batch (eq. 4 gathers the codes of all ranks, eq. 5's
  centres are all-reduced means), so each rank gets the exact gradient of the global loss for its own rows; the
  gradient of these batch-coupled terms is multiplied by the world size so that DDP's gradient averaging yields the
  single-process gradient (:func:`_sum_over_ranks_gradient`). Per-sample terms (eq. 1, 5 first term, category)
  are local means, which DDP's averaging already makes global.

References:
    Zhang & Patel, "MedCL", arXiv 2503.22890, eq. 1-6 and appendix section 7. Code: BWGZK-keke/MedCL.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import distributed as dist

from nnunet_scribble.losses.sinkhorn import gather_global_batch, global_batch_mean, sinkhorn_knopp


def _world_size(group: object | None) -> int:
    if group is False or not (dist.is_available() and dist.is_initialized()):
        return 1
    return dist.get_world_size(group)


def _sum_over_ranks_gradient(loss: torch.Tensor, group: object | None) -> torch.Tensor:
    """Same value, gradient times the world size (a loss defined on the global batch, see the module docstring)."""
    w = _world_size(group)
    return loss if w == 1 else loss * w - loss.detach() * (w - 1)


def cosine_per_sample(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Cosine similarity of each sample's flattened tensors. Shape: ``(B, ...)`` twice -> ``(B,)``."""
    return F.cosine_similarity(a.flatten(1).float(), b.flatten(1).float(), dim=1, eps=eps)


def mix_consistency_loss(pred_mixed: torch.Tensor, mixed_of_preds: torch.Tensor) -> torch.Tensor:
    """Eq. 1: ``1 − cos(ŷ_12, β·ŷ'_1 + (1 − β)·ŷ'_2)`` per sample, averaged; the right side is detached.

    The cosine is over all maps and voxels of a sample (``z_1·z_2`` of eq. 1; the reference code averages per-map
    cosines, which are ill-defined for maps that are empty in a patch).

    Shape:
        ``(B, M, *spatial)`` probability maps, both.
    """
    return (1 - cosine_per_sample(pred_mixed, mixed_of_preds.detach())).mean()


def category_loss(probs: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """Image-level label loss ``−mean_p log Σ_{i∈Ψ} ŷ_{i,p}`` (MedCL §2.2, "Weak supervision").

    ``Ψ`` is the set of classes annotated anywhere in the sample's image. Zero when ``Ψ`` holds every class; it grows
    with the probability given to classes outside ``Ψ``. Samples with an empty ``Ψ`` (no annotation at all) are left
    out; with none left the loss is an exact, differentiable zero.

    Shape:
        probs: ``(B, C, *spatial)`` softmax; present: ``(B, C)`` bool.
    """
    if present.shape != probs.shape[:2]:
        raise ValueError(f"present must be (B, C) = {tuple(probs.shape[:2])}, got {tuple(present.shape)}")
    present = present.to(probs.device, torch.bool)
    valid = present.any(1)
    mask = present.view(*present.shape, *([1] * (probs.ndim - 2))).to(probs.dtype)
    log_mass = torch.log((probs * mask).sum(1).clamp_min(1e-10)).flatten(1).mean(1)  # (B,)
    if not valid.any():
        return probs.sum() * 0.0
    return -(log_mass[valid]).mean()


def prototype_loss(scores: torch.Tensor, temperature: float = 0.05, epsilon: float = 0.05, iterations: int = 3,
                   group: object | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Online mapping to prototypes (eq. 2-3, appendix pseudocode): ``−mean Σ_k q_k log p_k``.

    ``q`` are the Sinkhorn-Knopp targets of the scores over the global batch (no gradient) and
    ``p = softmax(scores / temperature)`` the codes. The appendix predicts each row's own target from its own
    scores (not SwAV's swap between two views); with intra- and inter-mixed images in one Sinkhorn problem, the
    equipartition couples every row to the whole batch.

    Args:
        scores: ``(N, K)`` similarities of embeddings (rows: sample x map) to the ``K`` prototypes.
        temperature: softmax temperature of the codes (the pseudocode's ``w``, which equals ``epsilon``).

    Returns:
        ``(loss, codes)`` with codes ``(N, K)`` (differentiable).
    """
    q = sinkhorn_knopp(scores, epsilon, iterations, group)
    log_p = F.log_softmax(scores.float() / temperature, dim=1)
    return -(q * log_p).sum(1).mean(), log_p.exp()


def cluster_loss(codes: torch.Tensor, tau: float = 0.1, group: object | None = None) -> torch.Tensor:
    """Eq. 4: compactness of each class's codes around its centre against the similarity between centres.

    ``−log[Σ_{b,i} e^{cos(a_i^b, a_i^*)/τ} / (Σ_{b,i} e^{cos(a_i^b, a_i^*)/τ} + Σ_{i≠j} e^{cos(a_i^*, a_j^*)/τ})]``
    with the centres and the sum over ``b`` over the global batch.

    Shape:
        codes: ``(N, m, K)``, the codes of the class maps only.
    """
    if codes.ndim != 3:
        raise ValueError(f"codes must be (N, maps, prototypes), got shape {tuple(codes.shape)}")
    codes = gather_global_batch(codes.float(), group)  # other ranks' rows enter as constants
    centres = codes.mean(0)  # (m, K)
    pos = torch.exp(F.cosine_similarity(codes, centres[None], dim=-1) / tau).sum()
    sim = F.cosine_similarity(centres[:, None], centres[None], dim=-1)
    off_diagonal = ~torch.eye(sim.shape[0], dtype=torch.bool, device=sim.device)
    neg = torch.exp(sim[off_diagonal] / tau).sum()
    return _sum_over_ranks_gradient(-torch.log(pos / (pos + neg)), group)


def union_of_classes(class_maps: torch.Tensor, k: int) -> torch.Tensor:
    """``Σ_{i∈Ω_k} ŷ_i`` for ``Ω_k = {1..k}``: the sum of the first ``k`` class maps (dimension 1)."""
    return class_maps[:, :k].sum(1)


def anatomy_consistency_loss(class_maps: torch.Tensor, union_maps: torch.Tensor, class_codes: torch.Tensor,
                             union_codes: torch.Tensor, group: object | None = None) -> torch.Tensor:
    """Eq. 5: ``Σ_{k=2..m} [1 − cos(ŷ'_k, Σ_{i≤k} ŷ_i)] + [1 − cos(a'^*_k, Σ_{i≤k} a_i^*)]``.

    The map term is a per-sample cosine over voxels, averaged over the (local) batch; the centre term uses the
    global-batch centres.

    Shape:
        class_maps: ``(B, m, *spatial)``; union_maps: ``(B, m − 1, *spatial)``;
        class_codes: ``(N, m, K)``; union_codes: ``(N, m − 1, K)``.
    """
    m = class_maps.shape[1]
    if union_maps.shape[1] != m - 1 or union_codes.shape[1] != m - 1:
        raise ValueError(f"need m - 1 = {m - 1} union maps and codes, got {union_maps.shape[1]} and "
                         f"{union_codes.shape[1]}")
    if m < 2:
        return class_maps.sum() * 0.0
    class_centres = global_batch_mean(class_codes.float(), group)
    union_centres = global_batch_mean(union_codes.float(), group)
    maps_term = class_maps.new_zeros(())
    centre_term = class_maps.new_zeros(())
    for j, k in enumerate(range(2, m + 1)):
        maps_term = maps_term + (1 - cosine_per_sample(union_maps[:, j], union_of_classes(class_maps, k))).mean()
        centre_term = centre_term + 1 - F.cosine_similarity(union_centres[j], class_centres[:k].sum(0), dim=0)
    return maps_term + _sum_over_ranks_gradient(centre_term, group)
