"""Shared fixtures: trainers built on tiny nnU-Net plans in temporary nnU-Net folders."""
from __future__ import annotations

import pytest
import torch
from nnunet_helpers import DATASET_JSON, tiny_plans


@pytest.fixture
def nnunet_dirs(tmp_path, monkeypatch):
    """Temporary nnU-Net folders in the environment (nnunetv2 2.8 reads them lazily)."""
    dirs = {k: tmp_path / k for k in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")}
    for k, v in dirs.items():
        v.mkdir()
        monkeypatch.setenv(k, str(v))
    monkeypatch.delenv("nnUNet_scribble_hparams", raising=False)
    return dirs


@pytest.fixture
def make_trainer(nnunet_dirs):
    """``make_trainer(cls, dim=2, dataset_json=DATASET_JSON, initialize=True)`` on CPU in temporary folders."""

    def _make(cls, dim: int = 2, dataset_json: dict | None = None, initialize: bool = True):
        plans = tiny_plans(dim)
        config = next(iter(plans["configurations"]))
        data_dir = nnunet_dirs["nnUNet_preprocessed"] / plans["dataset_name"] / f"nnUNetPlans_{config}"
        data_dir.mkdir(parents=True, exist_ok=True)
        (data_dir / "dummy.b2nd").touch()  # lets nnU-Net infer its dataset class in initialize()
        trainer = cls(plans, config, 0, dict(dataset_json or DATASET_JSON), torch.device("cpu"))
        if initialize:
            trainer.initialize()
        return trainer

    return _make
