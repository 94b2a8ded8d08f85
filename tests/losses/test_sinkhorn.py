"""Sinkhorn-Knopp targets: a hand-worked case, row/column sums, and the global batch under a 2-process gloo group."""
from __future__ import annotations

import math

import pytest
import torch
import torch.multiprocessing as mp
from torch import distributed as dist

from nnunet_scribble.losses.medcl import cluster_loss
from nnunet_scribble.losses.sinkhorn import global_batch_mean, sinkhorn_knopp


def test_hand_worked_two_samples_three_prototypes():
    # exp(scores / eps) = [[1, 1, 2], [1, 3, 2]] (samples x prototypes); Q = its transpose, total 10 -> Q / 10.
    # Prototype (row) sums [2, 4, 4] / 10: rows scaled to 1/3 -> Q = [[1/6, 1/6], [1/12, 1/4], [1/6, 1/6]].
    # Sample (column) sums 5/12 and 7/12; one iteration's column step and the final normalisation give
    # sample 1: [1/6, 1/12, 1/6] / (5/12) = [2/5, 1/5, 2/5], sample 2: [1/6, 1/4, 1/6] / (7/12) = [2/7, 3/7, 2/7].
    eps = 0.05
    scores = eps * torch.tensor([[1.0, 1.0, 2.0], [1.0, 3.0, 2.0]]).log()
    q = sinkhorn_knopp(scores, epsilon=eps, iterations=1, group=False)
    expected = torch.tensor([[2 / 5, 1 / 5, 2 / 5], [2 / 7, 3 / 7, 2 / 7]])
    assert torch.allclose(q, expected, atol=1e-6)
    assert not q.requires_grad


def test_row_and_column_sums():
    g = torch.Generator().manual_seed(0)
    scores = torch.nn.functional.normalize(torch.randn(24, 6, generator=g), dim=1)
    q = sinkhorn_knopp(scores, 0.05, 3, group=False)
    assert q.shape == (24, 6) and (q >= 0).all()
    assert torch.allclose(q.sum(1), torch.ones(24), atol=1e-6)  # every sample's assignment is a distribution
    q = sinkhorn_knopp(scores, 0.05, 500, group=False)  # converged: equal cluster sizes N / K
    assert torch.allclose(q.sum(0), torch.full((6,), 24 / 6), atol=1e-3)
    # scores far beyond cosines stay finite (the maximum is subtracted, double precision inside)
    assert torch.isfinite(sinkhorn_knopp(scores * 10, 0.05, 3, group=False)).all()


def test_invalid_arguments():
    with pytest.raises(ValueError, match="samples, prototypes"):
        sinkhorn_knopp(torch.zeros(3))
    with pytest.raises(ValueError, match="epsilon"):
        sinkhorn_knopp(torch.zeros(2, 2), epsilon=0.0)


def _rank_worker(rank: int, world: int, init: str, scores: torch.Tensor, codes: torch.Tensor, out: str):
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        half = scores.shape[0] // world
        part = slice(rank * half, (rank + 1) * half)
        q = sinkhorn_knopp(scores[part], 0.05, 3)
        local_codes = codes[part].clone().requires_grad_(True)
        centre = global_batch_mean(local_codes)
        loss = cluster_loss(local_codes, 0.1)
        loss.backward()
        torch.save({"q": q, "centre": centre.detach(), "loss": loss.detach(), "grad": local_codes.grad},
                   f"{out}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_two_ranks_with_half_batches_match_one_rank_with_the_whole_batch(tmp_path):
    g = torch.Generator().manual_seed(1)
    scores = torch.nn.functional.normalize(torch.randn(8, 5, generator=g), dim=1)
    codes = torch.softmax(torch.randn(8, 3, 5, generator=g), -1)
    mp.spawn(_rank_worker, args=(2, f"file://{tmp_path}/store", scores, codes, str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    assert torch.allclose(torch.cat([r["q"] for r in ranks]), sinkhorn_knopp(scores, 0.05, 3, group=False),
                          atol=1e-6)
    assert all(torch.allclose(r["centre"], codes.mean(0), atol=1e-6) for r in ranks)
    full = codes.clone().requires_grad_(True)
    loss = cluster_loss(full, 0.1, group=False)
    loss.backward()
    assert all(math.isclose(float(r["loss"]), float(loss.detach()), rel_tol=1e-5) for r in ranks)
    # each rank gets the exact partial derivative of the global loss for its rows, times the world size, so that
    # DDP's averaging of parameter gradients over ranks gives the single-process gradient
    assert torch.allclose(torch.cat([r["grad"] for r in ranks]), full.grad * 2, atol=1e-5)
