"""ClassMemoryQueue: FIFO per class, written entries only, checkpoint round trip, DDP gather (2 CPU processes)."""
from __future__ import annotations

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from nnunet_scribble.memory_queue import ClassMemoryQueue, all_gather_variable


def test_fifo_per_class_and_written_entries_only():
    q = ClassMemoryQueue(num_classes=3, size=3, dim=2)
    assert q.entries()[0].shape == (0, 2)
    rows = torch.tensor([[1.0, 0], [2, 0], [3, 0], [4, 0]])
    q.enqueue(rows, torch.tensor([0, 0, 2, 0]))
    emb, cls = q.entries()
    assert cls.tolist() == [0, 0, 0, 2] and emb[:, 0].tolist() == [1, 2, 4, 3]
    q.enqueue(torch.tensor([[5.0, 0], [6, 0]]), torch.tensor([0, 0]))  # class 0 full: 1 and 2 leave, oldest first
    emb, cls = q.entries()
    assert emb[cls == 0][:, 0].tolist() == [5, 6, 4]  # ring buffer: slots 0 and 1 overwritten
    assert sorted(emb[cls == 0][:, 0].tolist()) == [4, 5, 6]
    assert q.pointer.tolist() == [2, 0, 1] and q.count.tolist() == [3, 0, 1]
    q.enqueue(torch.arange(10.0)[:, None].repeat(1, 2), torch.ones(10, dtype=torch.long))  # > size: newest kept
    assert sorted(q.entries()[0][q.entries()[1] == 1][:, 0].tolist()) == [7, 8, 9]


def test_checkpoint_round_trip(tmp_path):
    q = ClassMemoryQueue(4, 5, 3)
    q.enqueue(torch.randn(7, 3), torch.tensor([0, 1, 1, 3, 3, 3, 0]))
    torch.save({"queue": q.state_dict()}, tmp_path / "c.pth")
    r = ClassMemoryQueue(4, 5, 3)
    r.load_state_dict(torch.load(tmp_path / "c.pth")["queue"])
    for a, b in zip(q.entries(), r.entries()):
        assert torch.equal(a, b)
    assert torch.equal(q.pointer, r.pointer) and torch.equal(q.count, r.count)
    with pytest.raises(ValueError, match="does not fit"):
        ClassMemoryQueue(4, 6, 3).load_state_dict(q.state_dict())


def _ddp_worker(rank: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        q = ClassMemoryQueue(2, 4, 2)
        if rank == 0:  # rank 0 has one embedding, rank 1 two: variable sizes
            emb, lab = torch.tensor([[1.0, 0.0]]), torch.tensor([0])
        else:
            emb, lab = torch.tensor([[2.0, 0.0], [3.0, 0.0]]), torch.tensor([1, 0])
        q.enqueue(emb, lab)
        gathered = all_gather_variable(torch.tensor([rank] * (rank + 1)))
        torch.save({"state": q.state_dict(), "gathered": gathered}, os.path.join(out_dir, f"rank{rank}.pth"))
    finally:
        dist.destroy_process_group()


def test_ddp_ranks_gather_before_enqueueing(tmp_path):
    # fork: no re-import of torch in the children (CPU only, no CUDA context to inherit)
    mp.start_processes(_ddp_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True,
                       start_method="fork")
    states = [torch.load(tmp_path / f"rank{r}.pth") for r in range(2)]
    for s in states:
        assert s["gathered"].tolist() == [0, 1, 1]  # rank order, variable lengths
        q = ClassMemoryQueue(2, 4, 2)
        q.load_state_dict(s["state"])
        emb, cls = q.entries()
        assert cls.tolist() == [0, 0, 1] and emb[:, 0].tolist() == [1, 3, 2]  # all ranks' entries, rank order
    assert torch.equal(states[0]["state"]["queue"], states[1]["state"]["queue"])  # identical queues


def test_gather_is_identity_without_process_group():
    x = torch.randn(3, 2)
    assert all_gather_variable(x) is x
