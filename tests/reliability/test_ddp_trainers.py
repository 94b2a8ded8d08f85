"""Every trainer under nnU-Net's own DDP wrapping, on a 2-process CPU (gloo) process group.

nnU-Net's ``nnUNetTrainer.initialize`` wraps the network in ``DistributedDataParallel`` when a process group exists;
DDP (without ``find_unused_parameters``) fails at the next step if a parameter received no gradient, and averages the
gradients over ranks. Each rank runs two real ``train_step`` calls on its own half of a batch, through the trainer's
own DDP-wrapped network. Checked: no DDP error, finite losses, every parameter has a gradient on every rank after each
step, and the ranks' parameters are identical afterwards (the all-reduce happened). The only change to nnU-Net is
made here, for the test: CPU instead of ``cuda:<rank>`` (nnU-Net's DDP is CUDA-only), so DDP is built without
``device_ids`` and without a grad scaler.
"""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from nnunet_helpers import DATASET_JSON, synthetic_batch, tiny_plans

TRAINERS = ["nnUNetTrainerScribble", "nnUNetTrainerDMPLS", "nnUNetTrainerMaCo", "nnUNetTrainerPCLMix",
            "nnUNetTrainerMedCL", "nnUNetTrainerCSPNet"]


def _run_trainer(rank: int, trainer_name: str, dim: int, root: str) -> dict:
    from torch.nn.parallel import DistributedDataParallel

    import nnunet_scribble.trainers as trainers
    from nnunet_scribble.trainers.common import unwrap_network

    plans = tiny_plans(dim)
    config = next(iter(plans["configurations"]))
    plans["configurations"][config]["batch_size"] = 4  # global batch: 2 per rank
    trainer = getattr(trainers, trainer_name)(plans, config, 0, dict(DATASET_JSON), torch.device("cpu"))
    trainer.device, trainer.grad_scaler = torch.device("cpu"), None
    trainer.initialize()
    assert trainer.is_ddp and trainer.batch_size == 2
    assert isinstance(trainer.network, DistributedDataParallel)
    net = unwrap_network(trainer.network)
    if hasattr(trainer, "iteration"):
        trainer.iteration = 5000  # PCLMix: contrast and the gathered queue switched on
    trainer.network.train()
    report = {"loss": [], "missing": []}
    for step in range(2):
        batch = synthetic_batch(trainer, annotated=0.3, seed=10 * step + rank)  # each rank its own samples
        batch = {"data": batch["data"][:2], "target": [t[:2] for t in batch["target"]]}
        if trainer_name == "nnUNetTrainerMedCL":
            batch["class_presence"] = torch.tensor([[True, True, rank == 0, True], [True, True, True, True]])
        out = trainer.train_step(batch)
        report["loss"].append(float(out["loss"]))
        report["missing"].append(sorted(n for n, p in net.named_parameters() if p.grad is None))
    report["params"] = torch.cat([p.detach().flatten() for p in net.parameters()])
    if hasattr(trainer, "queue"):
        report["queue"] = trainer.queue.state_dict()
    return report


def _worker(rank: int, root: str) -> None:
    from torch import distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    import nnunetv2.training.nnUNetTrainer.nnUNetTrainer as trainer_module

    for k in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        os.environ[k] = os.path.join(root, k)
    dist.init_process_group("gloo", init_method=f"file://{root}/init", rank=rank, world_size=2)
    try:
        trainer_module.DDP = lambda module, device_ids=None: DistributedDataParallel(module)
        reports = {(name, dim): _run_trainer(rank, name, dim, root) for name in TRAINERS for dim in (2, 3)}
        torch.save(reports, os.path.join(root, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def ddp_reports(tmp_path_factory):
    """Both ranks' reports of every trainer in 2D and 3D, from one 2-process run."""
    root = tmp_path_factory.mktemp("ddp")
    for k in ("nnUNet_raw", "nnUNet_results"):
        (root / k).mkdir()
    for dim in (2, 3):
        plans = tiny_plans(dim)
        config = next(iter(plans["configurations"]))
        data_dir = root / "nnUNet_preprocessed" / plans["dataset_name"] / f"nnUNetPlans_{config}"
        data_dir.mkdir(parents=True, exist_ok=True)
        (data_dir / "dummy.b2nd").touch()
    # spawn, not fork: a forked child deadlocks in OpenMP regions (e.g. affine_grid) the parent's pool has used
    mp.spawn(_worker, args=(str(root),), nprocs=2, join=True)
    return [torch.load(root / f"rank{r}.pt", weights_only=False) for r in range(2)]


@pytest.mark.parametrize("dim", [2, 3])
@pytest.mark.parametrize("trainer_name", TRAINERS)
def test_trainer_steps_under_ddp_with_two_ranks(ddp_reports, trainer_name, dim):
    ranks = [r[(trainer_name, dim)] for r in ddp_reports]
    for r in ranks:
        assert np.isfinite(r["loss"]).all()
        assert r["missing"] == [[], []], f"parameters without gradient: {r['missing']}"
    assert torch.equal(ranks[0]["params"], ranks[1]["params"])  # DDP averaged the gradients
    if "queue" in ranks[0]:  # PCLMix: both ranks enqueued the gathered class means of the global batch
        assert all(torch.equal(a, b) for a, b in zip(ranks[0]["queue"].values(), ranks[1]["queue"].values()))
        assert int(ranks[0]["queue"]["count"].sum()) > 0
