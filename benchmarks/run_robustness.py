#!/usr/bin/env python
"""Robustness benchmark: how each trainer's quality degrades with worse scribbles.

For one scribble dataset and a list of trainers, runs ``benchmarks/run_quality.py`` under several conditions:

    full        the dataset itself
    shrink30/50 every class's scribble pixels per slice cut by 30/50 % (degrade_scribbles.py --mode shrink)
    drop30/50   30/50 % of the (slice, class) objects lose all their scribbles (degrade_scribbles.py --mode drop)
    s1, s2, s3  scribbles simulated from the dense labels by three annotators (simulate_scribbles.py on the dense twin)

and writes ``robustness.md`` / ``robustness.csv``: mean foreground Dice per condition, the Dice retained vs full, and
the mean and standard deviation across s1-s3. Example (the embedded synthetic dataset):

    nnunet_scribble_generate -d 901 --dim 2
    python benchmarks/run_robustness.py -d 901 -c 2d -f 0 --preset cpu -tr nnUNetTrainerScribble \\
        --conditions shrink30 drop50 s1

Derived datasets get IDs ``--id_base + 1..7`` (shrink30, shrink50, drop30, drop50, s1, s2, s3), names such as
``Dataset501_<SourceName>Shrink30``, the source's split and the source's plans (copied, not re-planned). They are
created once and reused; an ID taken by any other dataset is refused. Trainers that are not scribble trainers
(``nnUNetTrainerFullySupervised``) learn from the dense labels, which no condition changes: they run under ``full``
only. Per-condition results (``results.md``, ``summary_<trainer>.json``, ...) go to ``<output>/<condition>/``.

``--full_from FOLDER`` takes the ``full`` cell from an earlier ``run_quality.py`` output of the source dataset (or an
earlier robustness run's ``<output>/full``) instead of training it again, so a condition can be added on a machine
that no longer has the ``full`` models:

    python benchmarks/run_robustness.py -d 27 -c 2d -f 0 --preset cpu -tr nnUNetTrainerPCLMix \\
        --conditions shrink30 --full_from benchmarks/results/Dataset027_ACDCScribble_2d_fold0_cpu

Its summaries must match this run's dataset, configuration, fold, preset, hyperparameters and (where the summary
records it) schedule; they are copied to ``<output>/full/`` and the table names where they came from.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

from nnunet_scribble import benchmarking as bm
from nnunet_scribble import pipeline, provenance
from nnunet_scribble import robustness as rb
from nnunet_scribble.dataset_conversion.common import install_splits
from nnunet_scribble.dataset_conversion.raw_dataset import open_raw_dataset
from nnunet_scribble.dataset_conversion.scribble_simulation import STYLES
from nnunet_scribble.derived_preprocessing import preprocess_like_source
from nnunet_scribble.trainers.hparams import format_differences

REPO = Path(__file__).resolve().parents[1]
TOOLS = {"degraded": REPO / "dataset_conversion" / "degrade_scribbles.py",
         "simulated": REPO / "dataset_conversion" / "simulate_scribbles.py"}
HELD_OUT_FOLDERS = ("imagesTs", "labelsTs")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-d", "--dataset_id", type=int, required=True, help="scribble dataset ID (the 'full' condition)")
    p.add_argument("-c", "--configuration", default="2d", help="nnU-Net configuration (default: %(default)s)")
    p.add_argument("-f", "--fold", default="0", help="fold of splits_final.json (default: %(default)s)")
    p.add_argument("-tr", "--trainers", nargs="+", default=["nnUNetTrainerScribble"],
                   help="trainer class names (default: %(default)s)")
    p.add_argument("--conditions", nargs="+", default=["all"],
                   help=f"conditions to run, from {', '.join(rb.CONDITION_NAMES)} or 'all' (default); 'full' is "
                        f"always run (the reference of the retained columns)")
    p.add_argument("--id_base", type=int, default=500,
                   help="derived datasets get IDs id_base + 1..7 (default: %(default)s)")
    p.add_argument("--preset", default="cpu", choices=sorted(pipeline.PRESETS), help="(default: %(default)s)")
    p.add_argument("--schedule", default=None,
                   help="JSON overriding the preset's schedule, e.g. "
                        "'{\"num_epochs\": 1, \"num_iterations_per_epoch\": 10}' (passed to run_quality.py)")
    p.add_argument("--dense_dataset_id", type=int, default=None,
                   help="ID of the dense twin (input of the simulated conditions, and where run_quality.py trains "
                        "non-scribble trainers; default: dataset ID + 100, or - 100 above 899)")
    p.add_argument("--seed", type=int, default=0, help="random seed of shrink/drop (default: %(default)s)")
    p.add_argument("--style", default="cspnet", choices=STYLES,
                   help="scribble style of s1-s3 (default: %(default)s)")
    p.add_argument("-device", "--device", default="cpu", choices=("cpu", "cuda", "mps"))
    p.add_argument("--output", default=None, help="results folder")
    p.add_argument("--reuse", action="store_true",
                   help="passed to run_quality.py: skip training when checkpoint_final.pth exists")
    p.add_argument("--full_from", default=None, metavar="FOLDER",
                   help="take the 'full' cell from the summary_<trainer>.json files run_quality.py wrote into "
                        "FOLDER (same dataset, configuration, fold, preset and schedule; checked) instead of "
                        "training it again")
    p.add_argument("--repeats", type=int, default=1,
                   help="independent trainings per cell (passed to run_quality.py, whose repeat k trains into "
                        "$nnUNet_results/repeat_k): each cell is their mean, and a second table lists every run "
                        "(default: %(default)s)")
    args = p.parse_args(argv)
    if args.repeats < 1:
        p.error(f"--repeats must be at least 1, got {args.repeats}")
    try:
        args.condition_list = rb.parse_conditions(args.conditions)
        for c in args.condition_list[1:]:
            rb.derived_dataset_id(c, args.id_base)
    except ValueError as e:
        p.error(str(e))
    if args.schedule is not None:
        try:
            json.loads(args.schedule)
        except json.JSONDecodeError as e:
            p.error(f"--schedule is not valid JSON ({e}): {args.schedule!r}")
    return args


def dense_twin(args, source: Path) -> tuple[int, str]:
    """ID and folder name of the source's dense twin (as :func:`bm.make_dense_twin` names it)."""
    twin_id = args.dense_dataset_id or bm.default_twin_id(args.dataset_id)
    return twin_id, f"Dataset{twin_id:03d}_{source.name.split('_', 1)[1]}Dense"


def plan_datasets(args, source: Path, roots: list[str]) -> dict[str, tuple[int, str, Path | None]]:
    """Per derived condition: (ID, folder name, existing raw folder or None). Checks every ID before any work.

    Raises:
        DatasetIdConflict: if an ID is taken by another dataset, or an existing one was derived differently.
    """
    twin_id, twin_name = dense_twin(args, source)
    if any(c.is_simulated for c in args.condition_list):
        rb.find_existing(twin_id, twin_name, roots)
    planned = {}
    for c in args.condition_list[1:]:
        dataset_id, name = rb.derived_dataset_id(c, args.id_base), rb.derived_dataset_name(source.name, c, args.id_base)
        if dataset_id in (args.dataset_id, twin_id):
            raise rb.DatasetIdConflict(f"--id_base {args.id_base} gives condition {c.name} the ID {dataset_id} of "
                                       f"the {'source' if dataset_id == args.dataset_id else 'dense twin'} "
                                       f"dataset; choose another --id_base")
        existing = rb.find_existing(dataset_id, name, roots)
        if existing is not None:
            key, expected = rb.expected_provenance(c, source.name, twin_name, args.seed, args.style)
            rb.check_provenance(json.loads((existing / "dataset.json").read_text()), existing / "dataset.json", key,
                                expected)
        planned[c.name] = (dataset_id, name, existing)
    return planned


def ensure_source_splits(source: Path, pre_root: Path) -> Path:
    """``splits_final.json`` of the source in nnUNet_preprocessed; every derived dataset must share it.

    Installs the raw folder's file when there is one, else writes the split ``nnUNetv2_train`` would create (nnU-Net's
    seeded 5-fold split of the sorted case identifiers).
    """
    dst = pre_root / source.name / "splits_final.json"
    if dst.is_file():
        return dst
    if install_splits(source, pre_root):
        return dst
    from nnunetv2.utilities.crossval_split import generate_crossval_split

    cases = open_raw_dataset(str(source)).cases()
    splits = generate_crossval_split(cases, seed=12345, n_splits=5)
    dst.write_text(json.dumps([{k: [str(x) for x in v] for k, v in s.items()} for s in splits], indent=2))
    print(f"{source.name} had no splits_final.json: wrote nnU-Net's default 5-fold split to {dst}")
    return dst


def copy_held_out(source: Path, derived: Path) -> None:
    """Give a simulated dataset the source's ``imagesTs``/``labelsTs`` (its dense-twin input has none).

    Without them run_quality.py would score it on the fold's validation cases, the other conditions on imagesTs.
    """
    for name in HELD_OUT_FOLDERS:
        src, dst = source / name, derived / name
        if not src.is_dir() or (dst.is_dir() and sorted(p.name for p in dst.iterdir())
                                == sorted(p.name for p in src.iterdir())):
            continue
        tmp = derived / f".{name}.partial"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(src, tmp)
        shutil.rmtree(dst, ignore_errors=True)
        os.replace(tmp, dst)


def check_derived(source: Path, derived: Path, pre_root: Path, fold: str) -> None:
    """Check that a derived dataset has the source's training cases, split and held-out set.

    Raises:
        ValueError: naming the files and what differs.
    """
    src_cases, cases = open_raw_dataset(str(source)).cases(), open_raw_dataset(str(derived)).cases()
    if src_cases != cases:
        raise ValueError(f"{derived / 'labelsTr'} has {len(cases)} cases, {source / 'labelsTr'} {len(src_cases)}; "
                         f"expected the same training cases (first differences: "
                         f"{sorted(set(src_cases) ^ set(cases))[:5]})")
    src_split, split = pre_root / source.name / "splits_final.json", pre_root / derived.name / "splits_final.json"
    if not split.is_file():
        raise ValueError(f"{split} not found: the conversion tool did not install the source's split")
    if rb.normalise_splits(json.loads(split.read_text())) != rb.normalise_splits(json.loads(src_split.read_text())):
        raise ValueError(f"{split} differs from {src_split}; expected the same split (delete {derived.name} from "
                         f"nnUNet_raw and nnUNet_preprocessed to derive it again)")
    for name in HELD_OUT_FOLDERS:
        if (source / name).is_dir() != (derived / name).is_dir():
            raise ValueError(f"{source / name} and {derived / name}: only one exists; expected the same held-out set")
    if not (source / "imagesTs").is_dir() or not (source / "labelsTs").is_dir():
        val = json.loads(src_split.read_text())[int(fold)]["val"]
        dense = derived / "labelsTr_dense"
        ending = open_raw_dataset(str(derived)).file_ending
        missing = [c for c in val if not (dense / f"{c}{ending}").is_file()]
        if missing:
            raise ValueError(f"{dense} lacks the dense labels of validation cases {missing[:5]} of fold {fold}; "
                             f"expected them for the evaluation (the dataset has no imagesTs/labelsTs)")


def derive(args, condition: rb.Condition, source: Path, twin: Path | None, dataset_id: int, name: str,
           env: dict, log: Path) -> Path:
    """Create a derived dataset with the project's conversion tool; return its raw folder."""
    short = name.split("_", 1)[1]
    tool = TOOLS["degraded" if condition.is_degraded else "simulated"]
    src = source if condition.is_degraded else twin
    cmd = [sys.executable, str(tool), "-i", str(src), "-d", str(dataset_id), "-n", short,
           "-o", env["nnUNet_raw"], "--preprocessed_root", env["nnUNet_preprocessed"],
           *condition.tool_args(args.seed, args.style)]
    pipeline.run_command(cmd, env, log)
    return Path(env["nnUNet_raw"]) / name


def run_condition(args, condition: rb.Condition, dataset_id: int, trainers: list[str], env: dict, out: Path,
                  log: Path) -> dict[str, list[dict]]:
    """``run_quality.py`` on one condition's dataset; returns ``{trainer: [summary of each run]}``."""
    cond_out = out / condition.name
    cmd = [sys.executable, str(REPO / "benchmarks" / "run_quality.py"), "-d", str(dataset_id),
           "-c", args.configuration, "-f", str(args.fold), "--preset", args.preset, "-device", args.device,
           "--output", str(cond_out), "-tr", *trainers]
    if args.schedule:
        cmd += ["--schedule", args.schedule]
    if args.reuse:
        cmd.append("--reuse")
    if args.repeats > 1:
        cmd += ["--repeats", str(args.repeats)]
    if condition.kind == "full" and args.dense_dataset_id:
        cmd += ["--dense_dataset_id", str(args.dense_dataset_id)]
    pipeline.run_command(cmd, env, log)
    summaries = {}
    for t in trainers:
        summaries[t] = []
        for run in range(args.repeats):
            f = cond_out / bm.summary_file_name(t, run)
            if not f.is_file():
                raise FileNotFoundError(f"{f} not found after run_quality.py; see {log}")
            summaries[t].append(json.loads(f.read_text()))
    return summaries


def load_full_cell(args, folder: Path, source: Path, trainers: list[str], env: dict) -> dict[str, list[dict]]:
    """The ``full`` cell from ``run_quality.py`` summaries in ``folder`` instead of training it; ``{trainer: runs}``.

    Every trainer needs ``--repeats`` summaries, each made on the source dataset (the dense twin for non-scribble
    trainers) by a model of this configuration, fold and preset's plans, with this run's hyperparameter overrides and,
    where the summary records one (run_quality.py since this option exists), this run's schedule.

    Raises:
        FileNotFoundError: a summary is missing.
        ValueError: naming the summary, the value and what was expected.
    """
    preset = pipeline.PRESETS[args.preset]
    plans_id = preset.plans_identifier
    schedule = {**preset.schedule, **json.loads(args.schedule or "{}")}
    hparams = json.loads(env.get(pipeline.HPARAMS_ENV) or "{}")
    summaries = {}
    for t in trainers:
        dataset = source.name if bm.is_scribble_trainer(t) else dense_twin(args, source)[1]
        summaries[t] = []
        for run in range(args.repeats):
            f = folder / bm.summary_file_name(t, run)
            if not f.is_file():
                raise FileNotFoundError(f"{f} not found; --full_from needs run_quality.py's summary of {t} "
                                        f"(run {run} of --repeats {args.repeats}) on {dataset}")
            s = json.loads(f.read_text())
            model = Path(s.get("model_folder") or "")
            checks = [("dataset", s.get("dataset"), dataset),
                      ("model folder", f"{model.parent.name}/{model.name}",
                       f"{t}__{plans_id}__{args.configuration}/fold_{args.fold}"),
                      ("hyperparameter overrides", s.get("hparams") or {}, hparams)]
            if s.get("reused_model_differs"):
                raise ValueError(f"{f}: its model was trained with other hyperparameters than {t} uses now "
                                 f"({format_differences(s['reused_model_differs'])}); expected a current model")
            if "schedule" in s:
                checks.append(("schedule", s["schedule"], schedule))
            else:
                print(f"    note: {f} records no schedule (written before run_quality.py recorded it); "
                      f"assuming {schedule or 'nnU-Net schedule'}", flush=True)
            for what, got, want in checks:
                if got != want:
                    raise ValueError(f"{f}: {what} is {got!r}, expected {want!r} for -d {args.dataset_id} "
                                     f"-c {args.configuration} -f {args.fold} --preset {args.preset}")
            summaries[t].append(s)
    return summaries


def copy_summaries(src: Path, dst: Path, trainers: list[str], repeats: int) -> None:
    """Copy the ``summary_<trainer>[_repeat<k>].json`` files from ``src`` to ``dst`` (nothing when they are one)."""
    dst.mkdir(parents=True, exist_ok=True)
    if src.resolve() == dst.resolve():
        return
    for t in trainers:
        for run in range(repeats):
            shutil.copy2(src / bm.summary_file_name(t, run), dst / bm.summary_file_name(t, run))


def annotated_percent(raw: Path) -> float | None:
    """Share of annotated (not ignore) training voxels in %, None when the dataset has no labelsTr_dense."""
    if not (raw / "labelsTr_dense").is_dir():
        return None
    from nnunet_scribble.dataset_conversion.scribble_stats import dataset_stats

    return dataset_stats(str(raw))["annotated_percent"]


def main(argv=None) -> int:
    args = parse_args(argv)
    env = bm.benchmark_env()
    roots = [env["nnUNet_raw"], env["nnUNet_preprocessed"], env["nnUNet_results"]]
    pre_root = Path(env["nnUNet_preprocessed"])
    source = bm.find_dataset_folder(env["nnUNet_raw"], args.dataset_id)
    if "ignore" not in json.loads((source / "dataset.json").read_text())["labels"]:
        sys.exit(f"{source / 'dataset.json'} declares no 'ignore' label; expected a scribble dataset")
    try:
        planned = plan_datasets(args, source, roots)
    except (rb.DatasetIdConflict, ValueError) as e:
        sys.exit(f"error: {e}")
    scribble_trainers = [t for t in args.trainers if bm.is_scribble_trainer(t)]
    if not scribble_trainers:
        sys.exit(f"none of {args.trainers} is a scribble trainer; the robustness benchmark needs at least one")
    out = Path(args.output or Path(__file__).parent / "results" /
               f"robustness_{source.name}_{args.configuration}_fold{args.fold}_{args.preset}")
    full_from = Path(args.full_from) if args.full_from else None
    if full_from is not None:  # checked before any work
        try:
            full_cell = load_full_cell(args, full_from, source, args.trainers, env)
        except (FileNotFoundError, ValueError) as e:
            sys.exit(f"error: --full_from: {e}")
    out.mkdir(parents=True, exist_ok=True)
    log = out / "commands.log"
    print(f"Conditions: {', '.join(c.name for c in args.condition_list)}; log: {log}", flush=True)

    if not (pre_root / source.name / "nnUNetPlans.json").is_file():
        pipeline.plan_and_preprocess(args.dataset_id, [args.configuration], env, log)
    ensure_source_splits(source, pre_root)
    twin = None
    if any(c.is_simulated for c in args.condition_list):
        twin_id = args.dense_dataset_id or bm.default_twin_id(args.dataset_id)
        twin = bm.make_dense_twin(source, twin_id, pre_root, env, args.configuration, log)
    datasets = {"full": (args.dataset_id, source)}
    for c in args.condition_list[1:]:
        dataset_id, name, existing = planned[c.name]
        print(f"[{time.strftime('%H:%M:%S')}] {c.name}: {'reusing' if existing else 'creating'} {name}", flush=True)
        try:
            raw = existing or derive(args, c, source, twin, dataset_id, name, env, log)
            if c.is_simulated:
                copy_held_out(source, raw)
            check_derived(source, raw, pre_root, args.fold)
            preprocess_like_source(pre_root / source.name, raw, dataset_id, pre_root, env, args.configuration,
                                   open_raw_dataset(str(raw)).cases(), log)
        except (ValueError, FileNotFoundError) as e:
            sys.exit(f"error: {c.name}: {e}")
        datasets[c.name] = (dataset_id, raw)

    summaries: dict[str, dict[str, list[dict]]] = {}
    for c in args.condition_list:
        trainers = args.trainers if c.kind == "full" else scribble_trainers
        if c.kind == "full" and full_from is not None:
            print(f"[{time.strftime('%H:%M:%S')}] full: taken from {full_from}", flush=True)
            summaries[c.name] = full_cell
            copy_summaries(full_from, out / c.name, args.trainers, args.repeats)
        else:
            print(f"[{time.strftime('%H:%M:%S')}] {c.name}: run_quality.py on {datasets[c.name][1].name}", flush=True)
            summaries[c.name] = run_condition(args, c, datasets[c.name][0], trainers, env, out, log)
        for t, runs in summaries[c.name].items():
            print(f"    {t}: mean Dice {' / '.join(f'{rb.mean_dice(s):.4f}' for s in runs)}", flush=True)
    cases = {c: rb.held_out_cases(s) for c, per in summaries.items() for runs in per.values() for s in runs}
    if len({tuple(v) for v in cases.values()}) > 1:
        sys.exit(f"error: the held-out cases differ between conditions ({ {c: len(v) for c, v in cases.items()} } "
                 f"cases); expected the same set everywhere")

    dice = {t: {c: [rb.mean_dice(s) for s in per[t]] for c, per in summaries.items() if t in per}
            for t in args.trainers}
    rows = rb.robustness_rows(dice, args.condition_list)
    schedule = {**pipeline.PRESETS[args.preset].schedule, **json.loads(args.schedule or "{}")}
    full = summaries["full"][args.trainers[0]][0]
    runs = ("One training per cell (unseeded): differences of a few points can be run-to-run noise."
            if args.repeats == 1 else
            f"{args.repeats} independent (unseeded) trainings per cell: every cell and derived column is computed "
            f"from their mean; the runs are listed below the table.")
    header = (f"# Scribble robustness: {source.name}, {args.configuration}, fold {args.fold}, preset '{args.preset}' "
              f"({schedule or 'nnU-Net schedule'})\n\n"
              f"Date {time.strftime('%Y-%m-%d')}, {provenance.describe(provenance.code_version())}, "
              f"machine: {platform.node()} "
              f"({os.cpu_count()} CPUs, {platform.processor() or platform.machine()}), device {args.device}. "
              f"Held-out: {full['held_out']} ({len(full['cases'])} cases, the same in every condition).\n\n"
              f"`Dice <condition>`: mean foreground Dice (%) over the held-out cases; `retained <condition>`: "
              f"Dice_condition / Dice_full (%); `simulated mean/std`: mean and population standard deviation (ddof 0) "
              f"of the Dice of the simulated annotators (style '{args.style}'). Degradation seed {args.seed}. "
              f"Non-scribble trainers learn from the dense labels and run under `full` only. {runs}")
    stats = [{"condition": c.name, "dataset": datasets[c.name][1].name,
              "annotated % of training voxels": annotated_percent(datasets[c.name][1])} for c in args.condition_list]
    footer = "\n".join(["Conditions:", "", *rb.markdown_table(stats, digits=2)])
    if args.repeats > 1:
        footer += "\n".join(["", "", "Dice (%) of each run, in run order, (max - min) in brackets:", "",
                              *rb.markdown_table(rb.runs_rows(dice, args.condition_list))])
    stale = [f"{t} {c} (run {run}): {format_differences(d)}"
             for c, per in summaries.items() for t, runs in per.items() for run, s in enumerate(runs)
             if (d := s.get("reused_model_differs"))]
    other_code = [f"{t} {c} (run {run}): {code}"
                  for c, per in summaries.items() for t, runs in per.items() for run, s in enumerate(runs)
                  if (code := s.get("reused_model_code"))]
    footer += bm.reused_models_note(stale, other_code)
    if full_from is not None:
        codes = sorted({provenance.describe(s.get("model_code")) for runs in full_cell.values() for s in runs})
        footer += (f"\n\nThe `full` cell was not trained in this run: its summaries were taken from {full_from} "
                   f"(models trained by {', '.join(codes)}).")
    if stale:  # run_quality.py reused a model trained with other settings: its cell is not the current trainer's
        print("WARNING: " + "; ".join(stale), flush=True)
    _, md = rb.write_tables(rows, out, header, footer)
    print(md.read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
