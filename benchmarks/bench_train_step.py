#!/usr/bin/env python
"""Training-step time, peak memory and inference time of trainers, side by side with ``nnUNetTrainer``.

Examples:

    # plans of a preprocessed dataset (nnU-Net folders from the environment)
    python benchmarks/bench_train_step.py -d 901 -c 2d -tr nnUNetTrainerScribble nnUNetTrainerDMPLS
    # the tiny plans of the test suite (no dataset needed), 3D
    python benchmarks/bench_train_step.py --tiny 3 -tr nnUNetTrainerDMPLS --device cpu

What is measured, for ``nnUNetTrainer`` first and then each trainer of ``-tr``, on the same plans and configuration:

- **step time**: wall time of ``trainer.train_step(batch)`` (forward, loss, backward, optimiser step; CUDA
  synchronised before and after) on one synthetic batch shaped like nnU-Net's loader output (``data`` plus one
  target per deep-supervision scale; ``--annotated`` of the voxels carry a random class, the rest the ignore label
  when the dataset has one; plus the channels the trainer's augmentation workers append, computed before the timed
  steps: MaCo's distance maps, CSPNet's pseudo label and maps). Median over every timed step of every repetition,
  after ``--warmup`` steps. On CUDA with nnU-Net's mixed precision and with ``torch.compile`` (nnU-Net's default on
  CUDA) unless ``--no_compile``; compilation happens during the warm-up steps, give it enough. A trainer that fails
  is reported and left out of the table; ``--json`` is rewritten after every measurement, so a run stopped early
  keeps what it measured.
- **peak memory**: CUDA: ``torch.cuda.max_memory_allocated`` over the warm-up and timed steps (reset after the
  network and optimiser are built, so it is the training footprint: weights, gradients, optimiser state,
  activations). CPU: the increase of the process's peak resident set size (``resource.getrusage`` ``ru_maxrss``)
  over its resident size just before the first step; every measurement runs in a fresh subprocess, so peaks of one
  trainer never hide another's. Median over repetitions.
- **FLOPs per step**: the floating-point operations of one ``train_step`` (forward and backward; convolutions and
  matrix products, counted by ``torch.utils.flop_counter.FlopCounterMode``): a machine-independent figure, the
  ratio a quiet machine's step-time ratio tends to when the step is compute-bound.
- **data pipeline**: (``-d`` only; ``--data_batches``) wall time of ``next()`` on the trainer's own training
  loader (``trainer.get_dataloaders()`` with ``nnUNet_n_proc_DA=0``: loading, nnU-Net's augmentation, the
  trainer's extra per-sample transforms such as distance maps, deep-supervision targets) per batch in one process,
  median after one warm-up batch, per sample and relative to the step time it feeds. nnU-Net runs
  ``nnUNet_n_proc_DA`` such processes in parallel; ``DA procs`` is how many the step needs so that data loading
  does not stall training (``ceil(data time / step time)``). CSPNet's stage 2 reads its stage-1 pseudo labels
  when they exist, otherwise stand-ins (each case's scribbles spread to the nearest voxel; the table says so).
- **inference time per case**: ``nnUNetPredictor.predict_single_npy_array`` on the same random volume
  (``--volume``, default twice the patch in every axis; 2D configurations get ``--slices`` slices), with the network
  built as ``nnUNetv2_predict`` builds it (``build_network_architecture(..., enable_deep_supervision=False)`` and a
  strict ``load_state_dict`` of the training weights); mirroring off unless ``--mirroring``. Median of
  ``--inference_reps`` predictions after one warm-up, including nnU-Net's preprocessing of the array.
- **where the time goes** (``--profile N``): ``torch.profiler`` over N more steps; per step, the GPU's busy time (the
  sum of its kernels; CPU: the operators' own CPU time) and, for each trainer, the operators and the kernels whose
  time exceeds the reference's times the trainer's FLOP ratio the most: the work FLOPs do not explain
  (memory-bound losses, layout transposes, gradient sums). An operator's own time includes the kernels it launched,
  so the two tables overlap; ``busy_ms`` counts each kernel once.

Repetitions are interleaved (trainer A, B, C, A, B, C, ...), each in its own subprocess, to spread a noisy machine's
slow phases over all trainers. The table prints absolute values and ratios to ``nnUNetTrainer``; ``--json`` saves
the raw numbers.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REFERENCE = "nnUNetTrainer"
RESULT_TAG = "BENCH_RESULT "
ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("-d", "--dataset_id", type=int, help="preprocessed dataset ID (uses $nnUNet_preprocessed)")
    src.add_argument("--tiny", type=int, choices=(2, 3), help="the test suite's tiny 2D or 3D plans instead")
    p.add_argument("-c", "--configuration", default=None,
                   help="configuration (default: 2d; with --tiny, the tiny plans' only one)")
    p.add_argument("-p", "--plans", default="nnUNetPlans", help="plans identifier (default: %(default)s)")
    p.add_argument("-tr", "--trainers", nargs="+", default=["nnUNetTrainerScribble"], help="trainers to compare")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--steps", type=int, default=10, help="timed steps per repetition (default: %(default)s)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps per repetition (default: %(default)s)")
    p.add_argument("--reps", type=int, default=3, help="interleaved repetitions (default: %(default)s)")
    p.add_argument("--annotated", type=float, default=0.1, help="annotated voxel fraction (default: %(default)s)")
    p.add_argument("--inference_reps", type=int, default=3, help="timed predictions (0: skip; default: %(default)s)")
    p.add_argument("--volume", type=int, nargs="+", default=None, help="inference volume shape (spatial axes)")
    p.add_argument("--slices", type=int, default=4, help="slices of the 2D inference volume (default: %(default)s)")
    p.add_argument("--mirroring", action="store_true", help="test-time mirroring in the inference measurement")
    p.add_argument("--batch_size", type=int, default=None,
                   help="override the plans' batch size (ratios of FLOPs do not depend on it; CPU runs get cheaper)")
    p.add_argument("--data_batches", type=int, default=5,
                   help="timed batches of the training data loader (with -d; 0: skip; default: %(default)s)")
    p.add_argument("--no_compile", action="store_true",
                   help="set nnUNet_compile=false (nnU-Net compiles the network on CUDA by default)")
    p.add_argument("--no_flops", action="store_true",
                   help="skip the FLOP count (device-independent; under torch.compile it costs another compilation)")
    p.add_argument("--profile", type=int, default=0,
                   help="profile this many extra steps per trainer (torch.profiler) and print where the time goes "
                        "beyond the FLOP ratio (0: off; default: %(default)s)")
    p.add_argument("--json", default=None, help="write the raw results to this file")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


# ----------------------------------------------------------------------------- worker (one trainer, one process)
def load_plans(args: argparse.Namespace, tmp: Path) -> tuple[dict, dict, str]:
    """Plans, dataset.json and configuration; makes sure ``trainer.initialize()`` finds a data folder."""
    if args.tiny is not None:
        sys.path.insert(0, str(ROOT / "tests"))
        from nnunet_helpers import DATASET_JSON, tiny_plans

        plans, dataset_json = tiny_plans(args.tiny), dict(DATASET_JSON)
        config = args.configuration or next(iter(plans["configurations"]))
        os.environ["nnUNet_preprocessed"] = str(tmp / "preprocessed")
        folder = tmp / "preprocessed" / plans["dataset_name"] / plans["configurations"][config]["data_identifier"]
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "dummy.b2nd").touch()
        return plans, dataset_json, config
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name

    pre = Path(os.environ["nnUNet_preprocessed"]) / maybe_convert_to_dataset_name(args.dataset_id)
    plans = json.loads((pre / f"{args.plans}.json").read_text())
    plans.setdefault("continue_training", False)  # set by nnUNetv2_train's run_training, popped by the trainer
    return plans, json.loads((pre / "dataset.json").read_text()), args.configuration or "2d"


def synthetic_batch(trainer, annotated: float, seed: int = 0) -> dict:
    """``data`` and one target per deep-supervision scale, like nnU-Net's loader (random classes, ignore elsewhere)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    cm, lm = trainer.configuration_manager, trainer.label_manager
    shape = (cm.batch_size, trainer.num_input_channels, *cm.patch_size)
    data = torch.randn(shape, generator=g)
    seg = torch.randint(0, len(lm.foreground_labels) + 1, (cm.batch_size, 1, *cm.patch_size), generator=g)
    if lm.ignore_label is not None:
        seg[torch.rand(seg.shape, generator=g) > annotated] = lm.ignore_label
    seg = pipeline_channels(trainer, seg, g)
    if not trainer.enable_deep_supervision:
        return {"data": data, "target": seg}
    dtype = seg.dtype if seg.shape[1] == 1 else torch.float32  # extra channels arrive as float, like the loader's
    targets = [torch.nn.functional.interpolate(seg.float(), scale_factor=s, mode="nearest-exact").to(dtype)
               for s in trainer._get_deep_supervision_scales()]
    return {"data": data, "target": targets}


def pipeline_channels(trainer, seg, generator):
    """``seg`` with the channels the trainer's data pipeline appends (distance maps, CSPNet's pseudo label and maps).

    In training the augmentation workers compute them (``extra_target_transforms``, timed in the data-pipeline
    column); a batch without them would make MaCo and CSPNet compute them inside ``train_step`` on the CPU (their
    fallback for such batches), which is not what training does. They are computed here once, before the timed
    steps. CSPNet's stage 2 reads ``[scribble, pseudo label]``: a dense random pseudo label stands in.
    """
    import torch

    transforms = trainer.extra_target_transforms() if hasattr(trainer, "extra_target_transforms") else []
    if not transforms:
        return seg
    if hasattr(trainer, "pseudo_label_folder_path"):  # CSPNet
        dense = torch.randint(0, len(trainer.label_manager.foreground_labels) + 1, seg.shape, generator=generator)
        seg = torch.cat([seg, dense], 1)
    out = []
    for sample in seg:
        for t in transforms:
            sample = t(segmentation=sample)["segmentation"]
        out.append(sample)
    return torch.stack(out)


def _rss_kib() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def time_steps(trainer, batch: dict, warmup: int, steps: int, device) -> tuple[list[float], float]:
    """Seconds of each timed step and the peak memory of all steps in MiB (see the module docstring)."""
    import torch

    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    rss_before = _rss_kib()
    trainer.network.train()
    times = []
    for i in range(warmup + steps):
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        trainer.train_step(batch)
        if cuda:
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    if cuda:
        return times, torch.cuda.max_memory_allocated() / 2 ** 20
    return times, (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024


def profile_steps(trainer, batch: dict, steps: int, device) -> dict:
    """Milliseconds per step by operator and by kernel, from ``torch.profiler`` over ``steps`` more steps.

    CUDA: each operator's own kernel time (``self_device_time_total``) and each kernel's (the kernels also count in
    the operator that launched them, so ``busy_ms``, the GPU's busy time per step, sums the kernels only). CPU: each
    operator's own CPU time; ``busy_ms`` sums them.
    """
    import torch
    from torch.profiler import ProfilerActivity, profile

    cuda = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    trainer.network.train()
    with profile(activities=activities) as prof:
        for _ in range(steps):
            trainer.train_step(batch)
        if cuda:
            torch.cuda.synchronize()
    ops: dict[str, float] = {}
    kernels: dict[str, float] = {}
    for event in prof.key_averages():
        on_cpu = event.device_type == torch.autograd.DeviceType.CPU
        ms = (event.self_device_time_total if cuda else event.self_cpu_time_total) / 1000 / steps
        if ms > 0:
            (ops if on_cpu else kernels)[event.key] = ms
    return {"ops_ms": ops, "kernels_ms": kernels, "busy_ms": sum(kernels.values() if cuda else ops.values())}


def excess_over_flops(profile: dict, reference: dict, flop_ratio: float, kind: str, rows: int = 10
                      ) -> list[tuple[str, float, float, float]]:
    """``(name, reference ms, trainer ms, trainer - flop_ratio * reference)`` of ``kind`` (``ops_ms`` or
    ``kernels_ms``), largest excess first: the time a trainer spends beyond what its FLOP ratio explains."""
    ref, own = reference[kind], profile[kind]
    table = [(name, ref.get(name, 0.0), own.get(name, 0.0), own.get(name, 0.0) - flop_ratio * ref.get(name, 0.0))
             for name in set(ref) | set(own)]
    return sorted(table, key=lambda row: -row[3])[:rows]


def _conv_backward_flop(grad_out_shape, x_shape, w_shape, _bias, _stride, _padding, _dilation, transposed,
                        _output_padding, _groups, output_mask, out_shape=None) -> int:
    """Backward FLOPs of a convolution: the forward count once per requested gradient (input, weight).

    PyTorch's own formula (2.13) multiplies the weight gradient of a grouped convolution by the number of groups
    (a depth-wise 3x3 convolution's backward is counted ~64x too high), which would inflate every network with
    depth-wise convolutions (PCLMix's transformer decoder).
    """
    from torch.utils.flop_counter import conv_flop_count

    forward = conv_flop_count(list(x_shape), list(w_shape), list(grad_out_shape), transposed=transposed)
    return forward * (int(output_mask[0]) + int(output_mask[1]))


def count_flops(trainer, batch: dict) -> float:
    """FLOPs of one ``train_step`` (forward + backward), counted by PyTorch's ``FlopCounterMode``."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    trainer.network.train()
    mapping = {torch.ops.aten.convolution_backward: _conv_backward_flop}
    with FlopCounterMode(display=False, custom_mapping=mapping) as counter:
        trainer.train_step(batch)
    return float(counter.get_total_flops())


def time_inference(trainer, args: argparse.Namespace, device) -> list[float]:
    """Seconds per ``predict_single_npy_array`` call on one random volume, as ``nnUNetv2_predict`` runs it."""
    import numpy as np
    import torch
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    pm, cm = trainer.plans_manager, trainer.configuration_manager
    net = type(trainer).build_network_architecture(pm, cm, trainer.num_input_channels,
                                                   trainer.label_manager.num_segmentation_heads, False)
    net.load_state_dict(trainer.network.state_dict(), strict=True)
    predictor = nnUNetPredictor(use_mirroring=args.mirroring, perform_everything_on_device=device.type == "cuda",
                                device=device, verbose=False, allow_tqdm=False)
    predictor.manual_initialization(net.to(device), pm, cm, [net.state_dict()], trainer.dataset_json,
                                    type(trainer).__name__, trainer.inference_allowed_mirroring_axes)
    patch = list(cm.patch_size)
    shape = args.volume or ([args.slices] + [2 * s for s in patch] if len(patch) == 2 else [2 * s for s in patch])
    spacing = list(cm.spacing) if len(cm.spacing) == 3 else [1.0] + list(cm.spacing)
    image = np.random.default_rng(0).standard_normal((trainer.num_input_channels, *shape)).astype(np.float32)
    times = []
    for i in range(args.inference_reps + 1):
        t0 = time.perf_counter()
        predictor.predict_single_npy_array(image, {"spacing": spacing})
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i > 0:
            times.append(time.perf_counter() - t0)
    return times


def write_stand_in_pseudo_labels(trainer, folder: str) -> None:
    """CSPNet stage-2 pseudo labels for timing only: each training case's scribbles spread to every voxel.

    Every voxel takes the label of its nearest scribbled voxel (a dense, plausible-looking label map with the
    scribbles' classes), written in the preprocessed dataset's format where CSPNet's loader reads its pseudo
    labels (as a cascade's previous-stage segmentation). The loader, augmentation and distance maps then do the
    work of stage 2; only the label values differ from real stage-1 output.
    """
    import numpy as np
    from scipy.ndimage import distance_transform_edt

    from nnunet_scribble.cspnet import stage1
    from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class

    dataset_class = trainer.dataset_class or infer_dataset_class(trainer.preprocessed_dataset_folder)
    dataset = dataset_class(trainer.preprocessed_dataset_folder)
    ignore = trainer.label_manager.ignore_label
    os.makedirs(folder, exist_ok=True)
    for key in trainer.do_split()[0]:
        seg = np.asarray(dataset.load_case(key)[1][:])[0]  # (1, *spatial); pseudo labels have no channel axis
        unlabelled = (seg == ignore) | (seg < 0)
        if unlabelled.all():
            dense = np.zeros_like(seg)
        else:
            dense = seg[tuple(distance_transform_edt(unlabelled, return_distances=False, return_indices=True))]
        stage1.save_label(os.path.join(folder, key), dense, dataset_class)


def time_data_pipeline(trainer, batches: int, scratch: str) -> tuple[list[float], str | None]:
    """Seconds per batch of the trainer's training loader in this process (one data-augmentation worker).

    Returns the times and a note for the table (``None`` when nothing stood in for missing inputs). CSPNet's stage
    2 reads its existing pseudo labels; without them (stage 1 never ran on this machine), stand-ins written to
    ``scratch`` (:func:`write_stand_in_pseudo_labels`).
    """
    os.environ["nnUNet_n_proc_DA"] = "0"  # nnU-Net then iterates loader + transforms in the calling process
    note = None
    folder = getattr(trainer, "pseudo_label_folder_path", lambda: None)()
    if folder is not None:  # CSPNet
        if not os.path.isdir(folder):
            folder = os.path.join(scratch, "stand_in_pseudo_labels")
            write_stand_in_pseudo_labels(trainer, folder)
            note = "stand-in pseudo labels (each case's scribbles spread to the nearest voxel; stage 1 not run)"
        trainer.pseudo_label_folder = folder
    trainer.dataloader_train, trainer.dataloader_val = trainer.get_dataloaders()
    times = []
    for i in range(batches + 1):
        t0 = time.perf_counter()
        next(trainer.dataloader_train)
        if i > 0:
            times.append(time.perf_counter() - t0)
    return times, note


def worker(args: argparse.Namespace) -> dict:
    import torch
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["nnUNet_results"] = tmp  # trainer logs go to a throw-away folder
        plans, dataset_json, config = load_plans(args, Path(tmp))
        if args.batch_size is not None:
            plans["configurations"][config]["batch_size"] = args.batch_size
        device = torch.device(args.device)
        cls = recursive_find_trainer_class_by_name(args.worker)
        torch.manual_seed(0)
        trainer = cls(plans, config, 0, dataset_json, device)
        trainer.initialize()
        batch = synthetic_batch(trainer, args.annotated)
        step_times, peak_mib = time_steps(trainer, batch, args.warmup, args.steps, device)
        profile = profile_steps(trainer, batch, args.profile, device) if args.profile > 0 else None
        try:
            flops = float("nan") if args.no_flops else count_flops(trainer, batch)
        except Exception as e:  # e.g. FlopCounterMode inside a compiled graph: keep the timings
            flops, flops_error = float("nan"), f"{type(e).__name__}: {e}"
        else:
            flops_error = None
        data, data_error, data_note = [], None, None
        if args.dataset_id is not None and args.data_batches:
            try:
                data, data_note = time_data_pipeline(trainer, args.data_batches, tmp)
            except Exception as e:  # e.g. a dataset the loader cannot read: report, keep the rest
                data_error = f"{type(e).__name__}: {e}"
        inference = time_inference(trainer, args, device) if args.inference_reps > 0 else []
    return {"trainer": args.worker, "step_s": step_times, "peak_mib": peak_mib, "inference_s": inference,
            "flops": flops, "flops_error": flops_error, "data_s": data, "data_error": data_error,
            "data_note": data_note, "profile": profile,
            "patch_size": list(trainer.configuration_manager.patch_size),
            "batch_size": trainer.configuration_manager.batch_size,
            "parameters": sum(p.numel() for p in trainer.network.parameters())}


# ----------------------------------------------------------------------------- driver
def run_worker(argv: list[str], trainer: str, no_compile: bool = False) -> dict:
    cmd = [sys.executable, __file__, *argv, "--worker", trainer]
    env = dict(os.environ, nnUNet_compile="false") if no_compile else None
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(RESULT_TAG)]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"benchmark of {trainer} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(lines[-1][len(RESULT_TAG):])


def summarise(results: dict[str, list[dict]]) -> dict[str, dict]:
    """Per trainer: median step time over all timed steps, median peak memory, median inference time."""
    out = {}
    for name, runs in results.items():
        steps = [t for r in runs for t in r["step_s"]]
        inference = [t for r in runs for t in r["inference_s"]]
        data = [t for r in runs for t in r.get("data_s", [])]
        out[name] = {"step_ms": 1000 * statistics.median(steps), "peak_mib": statistics.median(r["peak_mib"]
                                                                                              for r in runs),
                     "inference_s": statistics.median(inference) if inference else float("nan"),
                     "parameters": runs[0]["parameters"], "steps": len(steps), "gflops": runs[0]["flops"] / 1e9,
                     "data_ms": 1000 * statistics.median(data) if data else float("nan"),
                     "batch_size": runs[0]["batch_size"]}
    return out


def format_table(summary: dict[str, dict]) -> str:
    ref = summary[REFERENCE]
    rows = ["| trainer | params | GFLOP/step | × FLOPs | step ms | × time | peak MiB | × memory | inference s/case "
            "| × inference | data ms/sample | data / step | DA procs |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, s in summary.items():
        data = s.get("data_ms", float("nan"))
        procs = "-" if math.isnan(data) else str(max(1, math.ceil(data / s["step_ms"])))
        rows.append(f"| {name} | {s['parameters']:,} | {s['gflops']:.1f} | {s['gflops'] / ref['gflops']:.2f} | "
                    f"{s['step_ms']:.1f} | {s['step_ms'] / ref['step_ms']:.2f} | "
                    f"{s['peak_mib']:.1f} | {s['peak_mib'] / ref['peak_mib']:.2f} | {s['inference_s']:.3f} | "
                    f"{s['inference_s'] / ref['inference_s']:.3f} | {data / s.get('batch_size', 1):.1f} | "
                    f"{data / s['step_ms']:.2f} | {procs} |")
    return "\n".join(rows)


def format_profile(results: dict[str, list[dict]], summary: dict[str, dict], cuda: bool) -> str:
    """Per trainer: busy time per step against the reference's, and the operators and kernels beyond its FLOP ratio
    (first repetition's profile; without a FLOP count, beyond the reference's time)."""
    ref = results[REFERENCE][0].get("profile")
    if not ref:
        return ""
    lines = []
    for name, runs in results.items():
        prof = runs[0].get("profile")
        if name == REFERENCE or not prof:
            continue
        ratio = summary[name]["gflops"] / summary[REFERENCE]["gflops"]
        scale, basis = (ratio, f"its FLOP ratio {ratio:.2f}") if math.isfinite(ratio) else (1.0, "the reference")
        lines.append(f"\n{name}: {'GPU busy' if cuda else 'CPU time'} {prof['busy_ms']:.1f} ms per step against "
                     f"{ref['busy_ms']:.1f} ({prof['busy_ms'] / ref['busy_ms']:.2f} ×), "
                     f"{prof['busy_ms'] - scale * ref['busy_ms']:+.1f} ms beyond {basis}:")
        for kind, title in (("ops_ms", "operator (own time)"), ("kernels_ms", "kernel")):
            if not prof[kind]:
                continue
            lines += [f"| {title} | {REFERENCE} ms | {name} ms | beyond ms |", "|---|---:|---:|---:|"]
            lines += [f"| {key[:80]} | {r:.2f} | {t:.2f} | {x:+.2f} |"
                      for key, r, t, x in excess_over_flops(prof, ref, scale, kind)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.worker:
        print(RESULT_TAG + json.dumps(worker(args)), flush=True)
        return
    trainers = [REFERENCE] + [t for t in args.trainers if t != REFERENCE]
    results: dict[str, list[dict]] = {t: [] for t in trainers}
    errors: dict[str, str] = {}
    for rep in range(args.reps):
        for t in trainers:
            if t in errors:
                continue
            try:
                results[t].append(run_worker(argv, t, args.no_compile))
            except RuntimeError as e:  # one trainer failing (a CUDA-only bug, say) must not lose the others
                errors[t] = str(e)
                print(f"rep {rep + 1}/{args.reps} {t}: FAILED\n{e}", flush=True)
            else:
                print(f"rep {rep + 1}/{args.reps} {t}: step "
                      f"{1000 * statistics.median(results[t][-1]['step_s']):.1f} ms", flush=True)
            if args.json:  # after every worker, so that a run stopped early keeps what it measured
                Path(args.json).write_text(json.dumps({"args": vars(args), "runs": results, "errors": errors},
                                                      indent=1))
    results = {t: runs for t, runs in results.items() if runs}
    if REFERENCE not in results:
        raise SystemExit(f"{REFERENCE} failed, no ratios to report:\n{errors.get(REFERENCE, '')}")
    summary = summarise(results)
    first = results[REFERENCE][0]
    print(f"\n{'tiny %dD plans' % args.tiny if args.tiny else f'Dataset {args.dataset_id} {args.plans}'} "
          f"{args.configuration or ''} patch {first['patch_size']} batch {first['batch_size']}, {args.device}, "
          f"{platform.processor() or platform.machine()}, torch threads from the environment; "
          f"{args.reps}×{args.steps} steps per trainer\n")
    print(format_table(summary))
    if args.profile:
        print(format_profile(results, summary, args.device == "cuda"))
    for t, runs in results.items():
        if runs[0].get("data_error"):
            print(f"\n{t}: data pipeline not measured: {runs[0]['data_error']}")
        if runs[0].get("data_note"):
            print(f"\n{t}: data pipeline measured with {runs[0]['data_note']}")
        if runs[0].get("flops_error"):
            print(f"\n{t}: FLOPs not counted: {runs[0]['flops_error']}")
    for t in errors:
        print(f"\n{t}: FAILED, not in the table (error above)")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "summary": summary, "runs": results,
                                               "errors": errors}, indent=1))
    if errors:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
