"""Drive nnU-Net's real commands (plan/preprocess, train, predict) for the demo and the benchmark runner.

Everything runs through nnU-Net's own console scripts in subprocesses, exactly as a user would type them, with
the nnU-Net folders and the CPU-friendly settings in the environment. Training presets (:data:`PRESETS`) shrink the
*planned* configuration into a separate plans file (``nnUNetPlans_<preset>.json``, same preprocessed data) and the
schedule through ``nnUNet_scribble_hparams``, so every trainer runs under the same reduced plan.
"""
from __future__ import annotations

import copy
import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from nnunet_scribble.trainers.hparams import HPARAMS_ENV


@dataclass(frozen=True)
class Preset:
    """A training preset: a reduction of nnU-Net's planned configuration plus a schedule.

    Attributes:
        name: preset name; the plans identifier becomes ``nnUNetPlans_<name>`` (``None`` reduction: nnU-Net's plans).
        max_stages: at most this many resolution stages (the planned strides/kernels of the first stages are kept).
        base_features: features of the first stage, doubled per stage up to ``max_features``.
        max_features: cap of the features per stage.
        max_patch_2d: cap of each in-plane patch axis (voxels), rounded down to the network's divisibility;
            ``None`` keeps nnU-Net's planned 2D patch. The ``cpu`` preset keeps it: nnU-Net plans 2D patches to
            cover the median slice, and with an ignore label its loader centres every patch on an annotated voxel,
            so a smaller patch hides the unannotated periphery of each slice from training (ACDC: with a 128x128
            patch, 42 % of the pixels more than 10 px from the heart lie in a sampled patch less than 5 % of the
            time; with the planned 256x224, 0.4 %). The methods' unsupervised terms act on exactly those pixels.
        max_patch_3d: cap of each 3D patch axis.
        max_batch_size: cap of the planned batch size.
        schedule: nnU-Net knobs for ``nnUNet_scribble_hparams`` (epochs, iterations per epoch, ...).
    """

    name: str
    reduce_plan: bool = True
    max_stages: int = 5
    base_features: int = 16
    max_features: int = 128
    max_patch_2d: int | None = 96
    max_patch_3d: tuple[int, int, int] = (16, 64, 64)
    max_batch_size: int = 4
    schedule: dict = field(default_factory=dict)

    @property
    def plans_identifier(self) -> str:
        return f"nnUNetPlans_{self.name}" if self.reduce_plan else "nnUNetPlans"


#: ``cpu``: about 15 minutes for the baseline on 2 CPU cores (ACDC 2d; a method costs its step-time ratio more):
#: the planned 2D patch, a 5-stage 16-256 network, batch 2 and 2500 iterations (more, smaller steps than batch 4 x
#: 1250 for about the same time: with whole-slice patches and dense labels, the fully supervised model predicts only
#: background for its first ~600 iterations, and at 1250 it had still not found the RV); ``demo``: the quick-start
#: demo (~2 minutes of training); ``paper``: nnU-Net's own plans and schedule (1000 epochs x 250 iterations; a GPU).
PRESETS: dict[str, Preset] = {
    "demo": Preset("demo", max_stages=4, base_features=16, max_features=128, max_patch_2d=96, max_batch_size=4,
                   schedule={"num_epochs": 12, "num_iterations_per_epoch": 100, "num_val_iterations_per_epoch": 5,
                             "save_every": 5}),
    "cpu": Preset("cpu", max_stages=5, base_features=16, max_features=256, max_patch_2d=None, max_batch_size=2,
                  schedule={"num_epochs": 50, "num_iterations_per_epoch": 50, "num_val_iterations_per_epoch": 10,
                            "save_every": 10, "test_time_mirroring": False}),
    "paper": Preset("paper", reduce_plan=False),
}


def reduce_configuration(config: dict, preset: Preset, is_3d: bool) -> dict:
    """Return a copy of a planned configuration shrunk as ``preset`` says (architecture, patch, batch size)."""
    config = copy.deepcopy(config)
    kwargs = config["architecture"]["arch_kwargs"]
    n = min(preset.max_stages, kwargs["n_stages"])
    for key in ("kernel_sizes", "strides", "n_conv_per_stage"):
        kwargs[key] = kwargs[key][:n]
    kwargs["n_conv_per_stage_decoder"] = kwargs["n_conv_per_stage_decoder"][:n - 1]
    kwargs["n_stages"] = n
    kwargs["features_per_stage"] = [min(preset.base_features * 2 ** i, preset.max_features) for i in range(n)]
    ndim = len(config["patch_size"])
    divisor = np.prod([s if isinstance(s, (list, tuple)) else [s] * ndim for s in kwargs["strides"]], axis=0)
    caps = preset.max_patch_3d if is_3d else [preset.max_patch_2d or max(config["patch_size"])] * ndim
    config["patch_size"] = [int(max(d, min(p, c) // d * d)) for p, c, d in zip(config["patch_size"], caps, divisor)]
    config["batch_size"] = min(config["batch_size"], preset.max_batch_size)
    config["pool_op_kernel_sizes"] = kwargs["strides"]
    config["conv_kernel_sizes"] = kwargs["kernel_sizes"]
    return config


def preset_plans_identifier(preset: Preset, source_plans: str = "nnUNetPlans") -> str:
    """The plans a preset trains with: ``source_plans`` unchanged, or the reduced ``<source>_<preset>`` (see below)."""
    if not preset.reduce_plan:
        return source_plans
    return preset.plans_identifier if source_plans == "nnUNetPlans" else f"{source_plans}_{preset.name}"


def write_preset_plans(preprocessed_dataset_dir: str | os.PathLike, preset: Preset,
                       source_plans: str = "nnUNetPlans") -> str:
    """Write ``<identifier>.json`` next to nnU-Net's plans (all configurations reduced) and return the identifier.

    The identifier is ``nnUNetPlans_<preset>`` for nnU-Net's default plans and ``<source_plans>_<preset>`` for other
    plans (e.g. ones made by ``nnUNetv2_plan_experiment -overwrite_target_spacing ... -overwrite_plans_name ...``);
    the reduced plans keep the source's ``data_identifier``, so they train on its preprocessed data.
    """
    if not preset.reduce_plan:
        return source_plans
    src = Path(preprocessed_dataset_dir) / f"{source_plans}.json"
    if not src.is_file():
        raise FileNotFoundError(f"{src} not found: run nnUNetv2_plan_and_preprocess first")
    identifier = preset_plans_identifier(preset, source_plans)
    plans = json.loads(src.read_text())
    plans["plans_name"] = identifier
    for name, config in plans["configurations"].items():
        if "architecture" in config:  # configurations with 'inherits_from' only carry overrides
            plans["configurations"][name] = reduce_configuration(config, preset, len(config["patch_size"]) == 3)
    dst = Path(preprocessed_dataset_dir) / f"{identifier}.json"
    dst.write_text(json.dumps(plans, indent=2))
    return identifier


def nnunet_env(raw: str | os.PathLike, preprocessed: str | os.PathLike, results: str | os.PathLike,
               base: dict | None = None) -> dict:
    """Environment with the three nnU-Net folders and CPU-friendly process counts (``nnUNet_def_n_proc=1``)."""
    env = dict(os.environ if base is None else base)
    env.update(nnUNet_raw=str(raw), nnUNet_preprocessed=str(preprocessed), nnUNet_results=str(results))
    env.setdefault("nnUNet_def_n_proc", "1")
    env.pop("nnUNet_n_proc_DA", None)  # set for training only: 0 crashes planning (see README)
    return env


def run_command(cmd: Sequence[str], env: dict, log_file: str | os.PathLike | None = None,
                echo: bool = True) -> float:
    """Run one command, appending its output to ``log_file``; return the wall time in seconds.

    Raises:
        RuntimeError: if the command fails; the message holds the command and the last lines of its output.
    """
    line = " ".join(shlex.quote(str(c)) for c in cmd)
    if echo:
        print(f"$ {line}", flush=True)
    start = time.perf_counter()
    proc = subprocess.run([str(c) for c in cmd], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True)
    elapsed = time.perf_counter() - start
    if log_file is not None:
        with open(log_file, "a") as f:
            f.write(f"$ {line}\n{proc.stdout}\n[exit {proc.returncode}, {elapsed:.1f} s]\n")
    if proc.returncode != 0:
        tail = "\n".join(proc.stdout.splitlines()[-40:])
        raise RuntimeError(f"command failed with exit code {proc.returncode}: {line}\n--- last output ---\n{tail}")
    return elapsed


def console_script(name: str) -> str:
    """Path of a console script installed next to the running interpreter (falls back to the bare name)."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


def plan_and_preprocess(dataset_id: int, configurations: Sequence[str], env: dict, log_file=None) -> float:
    """``nnUNetv2_plan_and_preprocess -d ID -c ... --verify_dataset_integrity`` with one process each.

    ``nnUNet_n_proc_DA=0`` (right for CPU training) is dropped from the environment here: nnU-Net 2.8.1's planner
    passes it to ``torch.set_num_threads``, which rejects 0.
    """
    env = {k: v for k, v in env.items() if not (k == "nnUNet_n_proc_DA" and v.strip() == "0")}
    cmd = [console_script("nnUNetv2_plan_and_preprocess"), "-d", str(dataset_id), "-c", *configurations,
           "--verify_dataset_integrity", "-npfp", "1", "-np", *(["1"] * len(configurations))]
    return run_command(cmd, env, log_file)


def train(dataset_id: int, configuration: str, fold: int | str, trainer: str, plans_identifier: str, env: dict,
          schedule: dict | None = None, device: str = "cpu", extra_args: Sequence[str] = (), log_file=None) -> float:
    """``nnUNetv2_train ID CONFIG FOLD -tr T -p P -device D`` with the preset's schedule in the environment."""
    env = dict(env)
    if schedule:
        env[HPARAMS_ENV] = json.dumps({**json.loads(env.get(HPARAMS_ENV) or "{}"), **schedule})
    if device == "cpu":
        env.setdefault("nnUNet_n_proc_DA", "0")
    cmd = [console_script("nnUNetv2_train"), str(dataset_id), configuration, str(fold), "-tr", trainer,
           "-p", plans_identifier, "-device", device, *extra_args]
    return run_command(cmd, env, log_file)


def predict(input_dir: str | os.PathLike, output_dir: str | os.PathLike, dataset_id: int, configuration: str,
            fold: int | str, trainer: str, plans_identifier: str, env: dict, device: str = "cpu",
            log_file=None) -> float:
    """``nnUNetv2_predict`` of one fold's final checkpoint (sequential pre/post-processing on CPU)."""
    cmd = [console_script("nnUNetv2_predict"), "-i", str(input_dir), "-o", str(output_dir), "-d", str(dataset_id),
           "-c", configuration, "-f", str(fold), "-tr", trainer, "-p", plans_identifier, "-device", device,
           "--disable_progress_bar"]
    if device == "cpu":
        cmd += ["-npp", "0", "-nps", "0"]
    return run_command(cmd, env, log_file)
