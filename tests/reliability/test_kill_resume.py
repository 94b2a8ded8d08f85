"""Interrupted training loses nothing (issue 9): SIGKILL at any moment, ``--c`` resumes with the method state.

- A real ``nnUNetv2_train`` of PCLMix (the trainer with the most method state: memory queue and iteration counter
  that drives the contrast ramp) is killed with SIGKILL at a random moment (0-2 s) after its first checkpoint; the last
  checkpoint loads, ``nnUNetv2_train ... --c`` restores exactly its method state (logged, compared here), and the run
  finishes with the iteration counter of an uninterrupted run.
- A process killed with SIGKILL *while* ``save_checkpoint`` is writing leaves the previous checkpoint intact and
  loadable; the next save removes the partial file.
"""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from nnunet_scribble import pipeline
from nnunet_scribble.data.synthetic import generate_synthetic_dataset
from nnunet_scribble.trainers.common import CHECKPOINT_KEY, describe_state

PRESET = pipeline.Preset("kill", max_stages=4, base_features=8, max_features=32, max_patch_2d=48, max_batch_size=2,
                         schedule={"num_epochs": 5, "num_iterations_per_epoch": 4, "num_val_iterations_per_epoch": 1,
                                   "save_every": 1, "test_time_mirroring": False})
DATASET_ID = 954
TESTS = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("kill")
    raw, pre, res = (root / n for n in ("raw", "preprocessed", "results"))
    for d in (raw, pre, res):
        d.mkdir()
    env = pipeline.nnunet_env(raw, pre, res)
    ds = generate_synthetic_dataset(raw, dataset_id=DATASET_ID, dim=2, num_train=6, num_test=1, seed=4,
                                    progress=False)
    pipeline.plan_and_preprocess(DATASET_ID, ["2d"], env)
    plans_id = pipeline.write_preset_plans(pre / ds.name, PRESET)
    return {"root": root, "env": env, "plans": plans_id, "res": res / ds.name}


@pytest.mark.slow
def test_sigkill_at_a_random_moment_then_continue_restores_the_method_state(dataset):
    trainer = "nnUNetTrainerPCLMix"
    fold_dir = dataset["res"] / f"{trainer}__{dataset['plans']}__2d" / "fold_0"
    env = dict(dataset["env"], nnUNet_n_proc_DA="0",
               nnUNet_scribble_hparams=__import__("json").dumps(PRESET.schedule))
    cmd = [pipeline.console_script("nnUNetv2_train"), str(DATASET_ID), "2d", "0", "-tr", trainer,
           "-p", dataset["plans"], "-device", "cpu"]
    with open(dataset["root"] / "killed.log", "w") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.time() + 600
            while not (fold_dir / "checkpoint_latest.pth").is_file() and proc.poll() is None:
                assert time.time() < deadline, "no checkpoint within 10 minutes"
                time.sleep(0.2)
            time.sleep(random.Random(os.getpid()).uniform(0.0, 2.0))  # within the next epochs (each >= 2 s)
            os.killpg(proc.pid, signal.SIGKILL)
        finally:
            proc.wait()
    assert proc.returncode == -signal.SIGKILL, "training finished before it could be killed"
    assert not (fold_dir / "checkpoint_final.pth").exists()
    latest = torch.load(fold_dir / "checkpoint_latest.pth", map_location="cpu", weights_only=False)
    epoch, state = latest["current_epoch"], latest[CHECKPOINT_KEY]["state"]
    assert 1 <= epoch < 5 and state["iteration"] == 4 * epoch and int(state["queue"]["count"].sum()) > 0

    log = dataset["root"] / "continued.log"
    pipeline.train(DATASET_ID, "2d", 0, trainer, dataset["plans"], dataset["env"], PRESET.schedule,
                   extra_args=["--c"], log_file=log)
    text = log.read_text()
    assert f"epoch {epoch}, method state {describe_state(state)}, random generator states" in text
    final = torch.load(fold_dir / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    assert final["current_epoch"] == 5
    assert final[CHECKPOINT_KEY]["state"]["iteration"] == 20  # as if never interrupted
    assert not list(fold_dir.glob("*.tmp-*"))


CHILD = textwrap.dedent('''
    import os, signal, sys, torch
    sys.path.insert(0, {tests!r})
    from nnunet_helpers import DATASET_JSON, tiny_plans
    from nnunet_scribble.trainers import nnUNetTrainerPCLMix
    import nnunet_scribble.trainers.common as common

    plans = tiny_plans(2)
    folder = os.path.join(os.environ["nnUNet_preprocessed"], plans["dataset_name"], "nnUNetPlans_2d")
    os.makedirs(folder, exist_ok=True)
    open(os.path.join(folder, "dummy.b2nd"), "w").close()
    trainer = nnUNetTrainerPCLMix(plans, "2d", 0, dict(DATASET_JSON), torch.device("cpu"))
    trainer.initialize()
    target = {target!r}
    trainer.current_epoch = 2
    trainer.save_checkpoint(target)                       # the last complete checkpoint: epoch 3

    real_save = torch.save
    def save_then_die(obj, f, *a, **k):                   # write half of the new checkpoint, then SIGKILL
        real_save(obj, f, *a, **k)
        with open(f, "r+b") as fh:
            fh.truncate(os.path.getsize(f) // 2)
        os.kill(os.getpid(), signal.SIGKILL)
    common.torch.save = save_then_die
    trainer.current_epoch = 7
    trainer.save_checkpoint(target)
''')


def test_sigkill_while_writing_a_checkpoint_keeps_the_previous_one(nnunet_dirs, tmp_path):
    target = tmp_path / "checkpoint_latest.pth"
    proc = subprocess.run([sys.executable, "-c", CHILD.format(tests=str(TESTS), target=str(target))],
                          env=os.environ.copy(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    leftovers = list(tmp_path.glob("checkpoint_latest.pth.tmp-*"))
    assert len(leftovers) == 1  # the half-written file, never renamed
    checkpoint = torch.load(target, map_location="cpu", weights_only=False)
    assert checkpoint["current_epoch"] == 3 and "queue" in checkpoint[CHECKPOINT_KEY]["state"]
    with pytest.raises(Exception):
        torch.load(leftovers[0], map_location="cpu", weights_only=False)

    from nnunet_helpers import DATASET_JSON, tiny_plans
    from nnunet_scribble.trainers import nnUNetTrainerPCLMix
    trainer = nnUNetTrainerPCLMix(tiny_plans(2), "2d", 0, dict(DATASET_JSON), torch.device("cpu"))
    trainer.initialize()
    trainer.load_checkpoint(str(target))
    assert trainer.current_epoch == 3
    trainer.save_checkpoint(str(target))  # the next save replaces the file and removes the partial one
    assert not list(tmp_path.glob("checkpoint_latest.pth.tmp-*"))
