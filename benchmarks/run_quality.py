#!/usr/bin/env python
"""Quality benchmark: train trainers on one dataset and fold, predict held-out cases, score on dense labels.

Example (the embedded synthetic dataset, CPU preset, baseline vs. fully supervised upper bound):

    nnunet_scribble_generate -d 901 --dim 2
    python benchmarks/run_quality.py -d 901 -c 2d -f 0 --preset cpu \\
        -tr nnUNetTrainerScribble nnUNetTrainerFullySupervised

Uses the nnU-Net folders of the environment (nnUNet_raw, nnUNet_preprocessed, nnUNet_results). Results go to
``--output`` (default ``benchmarks/results/<dataset>_<config>_fold<f>_<preset>``): ``results.md``, ``results.csv``,
``results.png`` and one ``summary_<trainer>.json`` per trainer. See benchmarks/README.md for the presets.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import pickle
import platform
import shutil
import time
from pathlib import Path

from nnunet_scribble import benchmarking as bm
from nnunet_scribble import pipeline, provenance
from nnunet_scribble.evaluation import evaluate_folder
from nnunet_scribble.trainers import hparams as hp
from nnunet_scribble.trainers.common import CHECKPOINT_KEY


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-d", "--dataset_id", type=int, required=True, help="scribble dataset ID")
    p.add_argument("-c", "--configuration", default="2d", help="nnU-Net configuration (default: %(default)s)")
    p.add_argument("-f", "--fold", default="0", help="fold of splits_final.json (default: %(default)s)")
    p.add_argument("-tr", "--trainers", nargs="+", default=["nnUNetTrainerScribble", "nnUNetTrainerFullySupervised"],
                   help="trainer class names (default: %(default)s)")
    p.add_argument("--preset", default="cpu", choices=sorted(pipeline.PRESETS), help="(default: %(default)s)")
    p.add_argument("-p", "--plans", default="nnUNetPlans",
                   help="plans the preset reduces (default: %(default)s), e.g. ones made with nnUNetv2_plan_experiment "
                        "-overwrite_target_spacing ... -overwrite_plans_name NAME and preprocessed with "
                        "nnUNetv2_preprocess -plans_name NAME")
    p.add_argument("--schedule", default=None,
                   help="JSON overriding the preset's schedule, e.g. "
                        "'{\"num_epochs\": 1, \"num_iterations_per_epoch\": 10}'")
    p.add_argument("--upper_bound", default="nnUNetTrainerFullySupervised",
                   help="trainer whose Dice is 100%% in the table (default: %(default)s)")
    p.add_argument("--dense_dataset_id", type=int, default=None,
                   help="ID of the dense twin for non-scribble trainers "
                        "(default: dataset ID + 100, or - 100 above 899)")
    p.add_argument("-device", "--device", default="cpu", choices=("cpu", "cuda", "mps"))
    p.add_argument("--output", default=None, help="results folder")
    p.add_argument("--reuse", action="store_true",
                   help="skip training when checkpoint_final.pth exists (rerun prediction and evaluation only)")
    p.add_argument("--repeats", type=int, default=1,
                   help="independent training runs per trainer (default: %(default)s). Run k > 0 keeps its models in "
                        "$nnUNet_results/repeat_k; the table pools the runs and adds their spread and the ranking")
    args = p.parse_args(argv)
    if args.repeats < 1:
        p.error(f"--repeats must be at least 1, got {args.repeats}")
    return args


def _previous_train_seconds(summary_json: Path, fold_dir: Path) -> tuple[float, str]:
    """Training time recorded by an earlier run of the same model and where it came from, or NaN (a model trained
    elsewhere)."""
    try:
        previous = json.loads(summary_json.read_text())
    except (OSError, ValueError):
        return float("nan"), "previous summary"
    recorded = previous.get("model_folder") or str(Path(previous.get("prediction_folder", "")).parent)
    same_model = Path(recorded) == fold_dir
    seconds = float(previous.get("train_seconds", float("nan"))) if same_model else float("nan")
    return seconds, previous.get("train_seconds_source", "previous summary")


def _read_checkpoint(fold_dir: Path) -> dict | None:
    """``fold_dir/checkpoint_final.pth`` on the CPU, or None (missing or unreadable; the reason is printed)."""
    import torch

    try:
        return torch.load(fold_dir / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as e:
        print(f"    cannot read {fold_dir / 'checkpoint_final.pth'}: {e}", flush=True)
        return None


def _checkpoint_train_seconds(checkpoint: dict | None) -> float:
    """Span of the training epochs logged in a ``checkpoint_final.pth`` (first epoch start to last epoch end), or NaN.

    A lower bound of the wall time :func:`pipeline.train` measures: it leaves out start-up (plans, data loaders,
    network build) and nnU-Net's final validation. Used when a reused model has no earlier summary in this output
    folder, and marked in the table (``train s`` reads ``>=N``).
    """
    try:
        logging = (checkpoint or {})["logging"]
        start, end = logging["epoch_start_timestamps"], logging["epoch_end_timestamps"]
        return float(end[-1] - start[0]) if start and end else float("nan")
    except (KeyError, TypeError) as e:  # not nnU-Net's layout
        print(f"    no epoch timestamps in the checkpoint ({e!r}): train time unknown", flush=True)
        return float("nan")


def _reused_model_differences(checkpoint: dict | None, trainer: str, overrides: dict) -> dict[str, tuple]:
    """Hyperparameters a reused model's checkpoint records that differ from what ``trainer`` would use now (its class
    defaults plus ``overrides``: ``nnUNet_scribble_hparams`` and the preset's schedule); empty when they agree or the
    checkpoint records none (not one of this package's trainers)."""
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

    recorded = ((checkpoint or {}).get(CHECKPOINT_KEY) or {}).get("hyperparameters")
    if recorded is None:
        return {}
    expected = {**hp.class_hyperparameters(recursive_find_trainer_class_by_name(trainer)), **overrides}
    return hp.differences(recorded, expected)


def _recorded_code(checkpoint: dict | None) -> dict | None:
    """The package code a checkpoint records (:func:`provenance.code_version` of the training process), or None."""
    return ((checkpoint or {}).get(CHECKPOINT_KEY) or {}).get("code")


def run_trainer(args, trainer: str, raw_dir: Path, dataset_id: int, env: dict, out: Path,
                eval_raw_dir: Path, run: int = 0) -> bm.TrainerResult:
    """Train ``trainer`` on ``raw_dir`` (the dataset or its dense twin), score it on ``eval_raw_dir``'s held-out cases.

    Run ``run`` > 0 (a repeat) trains into ``$nnUNet_results/repeat_<run>`` (nnU-Net's model folder has no room for
    a run index) and predicts into ``pred_<trainer>_repeat<run>``.
    """
    if run > 0:
        env = dict(env, nnUNet_results=str(Path(env["nnUNet_results"]) / f"repeat_{run}"))
    pre = Path(env["nnUNet_preprocessed"]) / raw_dir.name
    preset = pipeline.PRESETS[args.preset]
    plans_id = pipeline.write_preset_plans(pre, preset, args.plans)
    model = Path(env["nnUNet_results"]) / raw_dir.name / f"{trainer}__{plans_id}__{args.configuration}"
    log = out / "commands.log"
    schedule = {**preset.schedule, **json.loads(args.schedule or "{}")}
    fold_dir = model / f"fold_{args.fold}"
    images, reference, what = bm.held_out_set(eval_raw_dir, Path(env["nnUNet_preprocessed"]) / eval_raw_dir.name,
                                              args.fold, out)
    train_s, train_source, stale, code_changed = float("nan"), "measured", {}, False
    summary_json = out / bm.summary_file_name(trainer, run)
    reused = args.reuse and (fold_dir / "checkpoint_final.pth").is_file()
    if reused:
        checkpoint = _read_checkpoint(fold_dir)
        train_s, train_source = _previous_train_seconds(summary_json, fold_dir)
        if math.isnan(train_s):  # reused into a new output folder: the epochs' span, a lower bound of the wall time
            train_s, train_source = _checkpoint_train_seconds(checkpoint), bm.TRAIN_TIME_FROM_CHECKPOINT
        overrides = {**json.loads(env.get(pipeline.HPARAMS_ENV) or "{}"), **schedule}  # as pipeline.train sets them
        stale = _reused_model_differences(checkpoint, trainer, overrides)
        if stale:  # e.g. trained before a default changed: its numbers are not the current trainer's
            print(f"    WARNING: the reused model {fold_dir} was trained with other hyperparameters than {trainer} "
                  f"uses now (checkpoint -> now): {hp.format_differences(stale)}. Delete or move it to retrain.",
                  flush=True)
        code = _recorded_code(checkpoint)
        code_changed = provenance.differs(code)
        if code_changed:  # same hyperparameters, but the method's code may have changed since
            print(f"    note: the reused model {fold_dir} was trained by {provenance.describe(code)}; this checkout's "
                  f"package code differs from it or cannot be compared", flush=True)
        if reference.name == "labelsTr_dense" and not bm.has_predictions(fold_dir / "validation", images):
            pipeline.train(dataset_id, args.configuration, args.fold, trainer, plans_id, env, schedule, args.device,
                           extra_args=["--val"], log_file=log)  # final validation only
    else:
        train_s = pipeline.train(dataset_id, args.configuration, args.fold, trainer, plans_id, env, schedule,
                                 args.device, log_file=log)
    if reference.name == "labelsTr_dense":
        # the held-out cases are this fold's validation cases: nnU-Net's final validation already predicted them
        # (sliding window, same settings as nnUNetv2_predict), so they are not predicted a second time
        pred, predict_s = fold_dir / "validation", float("nan")
    else:
        pred = out / (f"pred_{trainer}" + (f"_repeat{run}" if run else ""))
        shutil.rmtree(pred, ignore_errors=True)  # nnUNetv2_predict does not clear it; stale cases would be scored
        predict_s = pipeline.predict(images, pred, dataset_id, args.configuration, args.fold, trainer, plans_id,
                                     env, args.device, log_file=log)
    summary = evaluate_folder(reference, pred, cases=bm.case_ids(images), output_json=summary_json,
                              extra_metrics=True)
    if not reused:
        code = _recorded_code(_read_checkpoint(fold_dir))
    hparams = env.get("nnUNet_scribble_hparams") or ""
    label = f"{trainer} {hparams}" if hparams else None
    if stale:
        summary["reused_model_differs"] = {k: {"checkpoint": then, "now": now} for k, (then, now) in stale.items()}
    if code_changed:
        summary["reused_model_code"] = provenance.describe(code)
    summary["model_code"] = code
    summary.update(train_seconds=train_s, train_seconds_source=train_source, predict_seconds=predict_s,
                   model_folder=str(fold_dir), held_out=what, dataset=raw_dir.name, run=run,
                   preset=args.preset, schedule=schedule,
                   hparams=json.loads(hparams) if hparams else {}, label=label)
    summary_json.write_text(json.dumps(summary, indent=2))
    return bm.TrainerResult(trainer, summary, train_s, predict_s, raw_dir.name, run=run, label=label)


def main(argv=None) -> int:
    args = parse_args(argv)
    env = bm.benchmark_env()
    raw_dir = bm.find_dataset_folder(env["nnUNet_raw"], args.dataset_id)
    pre_root = Path(env["nnUNet_preprocessed"])
    out = Path(args.output or Path(__file__).parent / "results" /
               f"{raw_dir.name}_{args.configuration}_fold{args.fold}_{args.preset}")
    out.mkdir(parents=True, exist_ok=True)
    log = out / "commands.log"
    if not (pre_root / raw_dir.name / f"{args.plans}.json").is_file():
        if args.plans != "nnUNetPlans":
            raise SystemExit(f"{pre_root / raw_dir.name / (args.plans + '.json')} not found: plan and preprocess "
                             f"these plans first (nnUNetv2_plan_experiment ... -overwrite_plans_name {args.plans}, "
                             f"nnUNetv2_preprocess -d {args.dataset_id} -plans_name {args.plans} "
                             f"-c {args.configuration})")
        pipeline.plan_and_preprocess(args.dataset_id, [args.configuration], env, log)
    results = []
    for run in range(args.repeats):
        for trainer in args.trainers:
            start = time.strftime("%H:%M:%S")
            print(f"[{start}] {trainer}" + (f" (run {run + 1}/{args.repeats})" if args.repeats > 1 else ""),
                  flush=True)
            if bm.is_scribble_trainer(trainer):
                results.append(run_trainer(args, trainer, raw_dir, args.dataset_id, env, out, raw_dir, run))
            else:
                twin_id = args.dense_dataset_id or bm.default_twin_id(args.dataset_id)
                twin = bm.make_dense_twin(raw_dir, twin_id, pre_root, env, args.configuration, log, args.plans)
                results.append(run_trainer(args, trainer, twin, twin_id, env, out, raw_dir, run))
            print(f"    mean Dice {results[-1].summary['mean']['Dice']['mean']:.4f}, "
                  f"train {results[-1].train_seconds:.0f} s", flush=True)
    commit = provenance.describe(provenance.code_version())
    schedule = {**pipeline.PRESETS[args.preset].schedule, **json.loads(args.schedule or "{}")}
    header = (f"# {raw_dir.name}, {args.configuration}, fold {args.fold}, preset '{args.preset}' "
              + (f"of {args.plans} " if args.plans != "nnUNetPlans" else "") +
              f"({schedule or 'nnU-Net schedule'})\n\n"
              f"Held-out: {results[0].summary['held_out']}. Date {time.strftime('%Y-%m-%d')}, {commit}, "
              f"machine: {platform.node()} ({os.cpu_count()} CPUs, {platform.processor() or platform.machine()}), "
              f"device {args.device}. Dice in %, HD95 in mm, mean ± std over cases"
              + (f"; hyperparameters {env['nnUNet_scribble_hparams']}" if env.get("nnUNet_scribble_hparams") else "")
              + (f"; {args.repeats} runs per trainer pooled (mean over runs)" if args.repeats > 1 else "") + ".")
    stale = [f"{r.name} (run {r.run}): {hp.format_differences(d)}"
             for r in results if (d := r.summary.get("reused_model_differs"))]
    other_code = [f"{r.name} (run {r.run}): {c}" for r in results if (c := r.summary.get("reused_model_code"))]
    header += bm.reused_models_note(stale, other_code)
    rows = bm.results_rows(results, args.upper_bound)
    _, md = bm.write_tables(rows, out, header)
    bm.plot_results(results, out / "results.png")
    print(md.read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
