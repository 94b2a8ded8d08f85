"""Sinkhorn-Knopp cluster assignments and batch means over the global (all-rank) batch.

Under DDP every rank holds a part of the batch. The equipartition constraint of the Sinkhorn-Knopp targets and the
cluster centres of MedCL are defined on the whole batch, so the normalisation sums are all-reduced: two ranks with
half batches produce exactly the targets that one rank produces for the whole batch (tested with a 2-process gloo
group). Without an initialised process group (or with ``group=False``) everything is local.

References:
    Cuturi, "Sinkhorn distances: lightspeed computation of optimal transport", NeurIPS 2013.
    Caron et al., "Unsupervised learning of visual features by contrasting cluster assignments" (SwAV), NeurIPS 2020.
    Zhang & Patel, "MedCL", arXiv 2503.22890, eq. 2-3 and appendix section 7 (pseudocode).
"""
from __future__ import annotations

import torch
from torch import distributed as dist


def _distributed(group: object | None) -> bool:
    return group is not False and dist.is_available() and dist.is_initialized()


def all_reduce_sum(x: torch.Tensor, group: object | None = None) -> torch.Tensor:
    """Sum of ``x`` over all ranks (a copy; ``x`` unchanged). Identity when not distributed. No gradient."""
    x = x.detach().clone()
    if _distributed(group):
        dist.all_reduce(x, op=dist.ReduceOp.SUM, group=group)
    return x


def all_reduce_max(x: torch.Tensor, group: object | None = None) -> torch.Tensor:
    """Maximum of ``x`` over all ranks (a copy). Identity when not distributed. No gradient."""
    x = x.detach().clone()
    if _distributed(group):
        dist.all_reduce(x, op=dist.ReduceOp.MAX, group=group)
    return x


def global_batch_mean(x: torch.Tensor, group: object | None = None) -> torch.Tensor:
    """Mean over dimension 0 of the global batch, differentiable with respect to this rank's rows.

    The value is ``sum over all ranks / global batch size``; the gradient reaching the local rows is the one of the
    global mean (the other ranks' rows are constants here; their own ranks back-propagate into them).

    Shape:
        x: ``(N_local, *rest)``; returns ``(*rest)``.
    """
    local = x.sum(0)
    total = all_reduce_sum(local, group)
    count = all_reduce_sum(torch.tensor(float(x.shape[0]), device=x.device), group)
    return (local + (total - local.detach())) / count.clamp_min(1.0)


def gather_global_batch(x: torch.Tensor, group: object | None = None) -> torch.Tensor:
    """The global batch (all ranks' rows, rank order), differentiable with respect to this rank's rows only.

    Ranks may hold different numbers of rows (nnU-Net splits the global batch unevenly); rows are padded for the
    all-gather and trimmed. Identity when not distributed.

    Shape:
        x: ``(N_local, *rest)``; returns ``(N_global, *rest)``.
    """
    if not _distributed(group):
        return x
    world, rank = dist.get_world_size(group), dist.get_rank(group)
    sizes = [torch.zeros((), dtype=torch.long, device=x.device) for _ in range(world)]
    dist.all_gather(sizes, torch.tensor(x.shape[0], device=x.device), group=group)
    longest = int(max(sizes))
    padded = torch.zeros((longest, *x.shape[1:]), dtype=x.dtype, device=x.device)
    padded[:x.shape[0]] = x.detach()
    parts = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded, group=group)
    parts = [p[:int(n)] for p, n in zip(parts, sizes)]
    parts[rank] = x
    return torch.cat(parts)


@torch.no_grad()
def sinkhorn_knopp(scores: torch.Tensor, epsilon: float = 0.05, iterations: int = 3,
                   group: object | None = None) -> torch.Tensor:
    """Soft cluster assignments with equal cluster sizes over the (global) batch (MedCL eq. 3, appendix pseudocode).

    ``Q = exp(scores / epsilon)ᵀ`` (prototypes x samples) is normalised to total 1, then ``iterations`` times its
    rows (prototypes) are scaled to sum ``1/K`` and its columns (samples) to ``1/N``; the result is returned with
    every sample's row summing to 1 (the pseudocode's final column normalisation). ``N`` is the global number of
    samples; the total and the prototype sums are all-reduced over ranks, the per-sample sums are local.
    The maximum score (global) is subtracted before the exponential; it cancels in the normalisation and keeps
    ``exp`` finite for any scores.

    Args:
        scores: similarity of each sample (row) to each prototype (column).
        epsilon: entropy regularisation ``w`` of eq. 2 (paper: 0.05).
        iterations: Sinkhorn-Knopp iterations (paper: 3).
        group: process group for the all-reduces (default group when ``None``; ``False`` for local only).

    Returns:
        ``(N_local, K)`` targets, rows summing to 1, no gradient.

    Shape:
        scores: ``(N_local, K)``.
    """
    if scores.ndim != 2:
        raise ValueError(f"scores must be (samples, prototypes), got shape {tuple(scores.shape)}")
    if epsilon <= 0 or iterations < 0:
        raise ValueError(f"need epsilon > 0 and iterations >= 0, got epsilon={epsilon}, iterations={iterations}")
    out_dtype = torch.float64 if scores.dtype == torch.float64 else torch.float32
    scores = scores.detach().double()
    local_max = scores.max() if scores.numel() else scores.new_tensor(-torch.inf)
    q = torch.exp((scores - all_reduce_max(local_max, group)) / epsilon).t()  # (K, N_local)
    num_prototypes = q.shape[0]
    num_samples = all_reduce_sum(q.new_tensor(float(q.shape[1])), group)
    q = q / all_reduce_sum(q.sum(), group)
    for _ in range(iterations):
        q = q / all_reduce_sum(q.sum(1, keepdim=True), group) / num_prototypes
        q = q / q.sum(0, keepdim=True) / num_samples
    q = q / q.sum(0, keepdim=True)
    return q.t().to(out_dtype)
