#!/usr/bin/env python
"""Reproduce a results table of benchmarks/README.md with one command, from a fresh clone plus the data.

Each target runs every step its table needs, in order, and skips the steps whose output already exists (a
converted dataset, nnU-Net's plans; trained models through ``--reuse``), so an interrupted run is resumed by
running the same command again:

    acdc         ACDC 2d fold 0, all trainers, two runs each (the ACDC run-0 and repeats tables)
    mscmr        MSCMRseg 2d, the scribble trainers, 25 scribbled -> 5 dense subjects (half in-plane resolution),
                 the papers' scribbles unchanged (Dataset028, converted with --no-zero_border_background)
    mscmr_zero_border  the same with the zero-intensity slice borders labelled and trained as background (528;
                 the converter's default)
    robustness   ACDC under shrink/drop 30/50 % and three simulated annotators (robustness table)
    cost         training step, memory, FLOPs, data pipeline and inference vs nnUNetTrainer (cost table)
    cpl_targets  MaCo's L_con targets against the dense labels (MaCo analysis table)
    coverage     nnU-Net's patch sampling on a scribble dataset (patch-coverage figures)
    term_gradients  per-term gradient norms and cosines of MedCL, PCLMix and the baseline on the
                 mscmr_zero_border models (trains them first where they are missing)
    postprocessing  the post-processing nnU-Net chooses on the scribbles (nnUNetv2_find_best_configuration) vs on
                 the dense labels, for the ACDC models of the scribble trainers (trains them where they are missing),
                 after the reach of the dense foreground from the scribbles (beyond_distance.py); each model
                 again with its images padded to put the heart off the centre (--off_centre 1); the upper bound
                 with nnU-Net's own choice; then every trainer pooled over the folds before and after
                 post-processing, against the baseline and the upper bound (postprocessing_summary.py); with
                 --repeats N every run is scored and the table gives the run-to-run spread after post-processing

Example (the nnU-Net folders of the shell are used; ``--workdir`` creates them when they are not set):

    python benchmarks/reproduce.py acdc --data ../shared/data --workdir /tmp/nnunet_scribble_bench
    python benchmarks/reproduce.py robustness --dry_run          # print the commands only

Training is not seeded (nnU-Net has no seed option): a reproduced quality figure differs from the table by
run-to-run noise (the tables give the spread between runs). Running times on 2 CPU cores with the ``cpu`` preset:
``acdc`` about 2.5 h per run of the eight trainers (5 h with the default two runs), ``mscmr`` about 2.5 h,
``mscmr_zero_border`` about 3.3 h per run (PCLMix alone 1 h), ``robustness`` about 15 h, ``cost`` 20 min,
``cpl_targets`` 2 min, ``coverage`` 5 min, ``term_gradients`` 5 min once its models exist, ``postprocessing``
about 5 min per trainer, run and fold once the ``acdc`` models exist. With a GPU pass ``-device cuda`` (and
``--preset paper`` for nnU-Net's full schedule). ``--folds 1 2`` or ``--folds all`` trains the ``acdc``,
``robustness`` and ``postprocessing`` targets on other folds of ACDC's 5-fold patient split (one results folder
per fold; the tables are fold 0); ``acdc`` with several folds ends with ``cross_validation.py``, the table over
every case scored once (``acdc_2d_folds01234_<preset>`` for all five: the papers' 5-fold protocol).
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data"

ACDC_ID, MSCMR_ID = 27, 28
SCRIBBLE_TRAINERS = ["nnUNetTrainerScribble", "nnUNetTrainerDMPLS", "nnUNetTrainerMaCo", "nnUNetTrainerCSPNet",
                     "nnUNetTrainerMedCL", "nnUNetTrainerPCLMix"]
ACDC_TRAINERS = ["nnUNetTrainerFullySupervised", *SCRIBBLE_TRAINERS, "nnUNetTrainerMaCoPerClassN"]
COST_TRAINERS = ["nnUNetTrainerScribble", "nnUNetTrainerDMPLS", "nnUNetTrainerMaCo", "nnUNetTrainerPCLMix",
                 "nnUNetTrainerMedCL", "nnUNetTrainerCSPNet"]
# MSCMRseg LGE is 0.73 mm in plane (about 480 x 480): the benchmark plans halve the in-plane resolution (256 x 256
# patch, as the papers' 256/212 crops); the slice spacing (5 mm) is nnU-Net's
MSCMR_SPACING = ("5.0", "1.4581333", "1.4581333")
MSCMR_PLANS = "nnUNetPlans_1p46mm"
# the MSCMRseg variant whose exact-zero slice borders (outside the body) are labelled background
MSCMR_ZERO_BORDER_ID, MSCMR_ZERO_BORDER_NAME = 528, "MSCMRScribbleZeroBorder"
TARGETS = ("acdc", "mscmr", "mscmr_zero_border", "robustness", "cost", "cpl_targets", "coverage", "term_gradients",
           "postprocessing")
#: trainers of the term_gradients target (MedCL also at initialisation); PCLMix and the baseline for comparison
GRADIENT_TRAINERS = ["nnUNetTrainerMedCL", "nnUNetTrainerPCLMix", "nnUNetTrainerScribble"]
#: the folds of Dataset027's splits_final.json (patients 1-20, 21-40, ... validate fold 0, 1, ...)
ACDC_FOLDS = range(5)
#: targets that train on ACDC folds (--folds)
FOLD_TARGETS = ("acdc", "robustness", "postprocessing")
#: runs per trainer (and condition) when --repeats is not given
DEFAULT_REPEATS = {"acdc": 2}


@dataclass
class Step:
    """One step of a target: a command, or a Python call when ``call`` is set; skipped when ``done()`` is true."""
    what: str
    cmd: list[str] = field(default_factory=list)
    call: object = None
    done: object = None


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("target", choices=TARGETS, help="the table to reproduce")
    p.add_argument("--data", default=os.environ.get("NNUNET_SCRIBBLE_DATA", str(DEFAULT_DATA)),
                   help="folder holding ACDC/ and MSCMR/ as in ../shared/data (default: $NNUNET_SCRIBBLE_DATA or "
                        "%(default)s)")
    p.add_argument("--workdir", default=None,
                   help="sets nnUNet_raw/preprocessed/results to WORKDIR/nnUNet_* when they are not set already")
    p.add_argument("--output", default=None,
                   help="results root (default: benchmarks/results); each target writes a sub-folder")
    p.add_argument("--preset", default="cpu", help="benchmark preset (default: %(default)s)")
    p.add_argument("-device", "--device", default="cpu", choices=("cpu", "cuda", "mps"))
    p.add_argument("-tr", "--trainers", nargs="+", default=None, help="override the target's trainer list")
    p.add_argument("--repeats", type=int, default=None,
                   help="independent trainings per trainer (acdc, mscmr, postprocessing) or per trainer and "
                        "condition (robustness) (default: 2 for acdc, 1 for the others)")
    p.add_argument("--folds", nargs="+", default=["0"],
                   help="ACDC folds of the 5-fold patient split (acdc, robustness): numbers 0-4 or 'all'; one "
                        "results folder per fold (default: 0, the fold of the tables)")
    p.add_argument("--dry_run", action="store_true", help="print the steps and commands without running them")
    args = p.parse_args(argv)
    args.folds = parse_folds(p, args)
    if args.repeats is None:
        args.repeats = DEFAULT_REPEATS.get(args.target, 1)
    elif args.repeats < 1:
        p.error(f"--repeats must be at least 1, got {args.repeats}")
    return args


def parse_folds(p: argparse.ArgumentParser, args: argparse.Namespace) -> list[int]:
    """``--folds`` as sorted fold numbers; 'all' is 0-4. Folds other than 0 only for the ACDC targets."""
    folds = set()
    for value in args.folds:
        if value == "all":
            folds.update(ACDC_FOLDS)
        elif value.isdigit() and int(value) in ACDC_FOLDS:
            folds.add(int(value))
        else:
            p.error(f"--folds: {value!r} is not a fold of ACDC's 5-fold patient split; expected 0-4 or 'all'")
    if folds != {0} and args.target not in FOLD_TARGETS:
        p.error(f"--folds {' '.join(args.folds)}: the {args.target} target has one split (fold 0); folds are for "
                f"{' and '.join(FOLD_TARGETS)}")
    return sorted(folds)


def nnunet_folders(args) -> dict:
    """The environment with nnU-Net's three folders, from the shell or ``--workdir``.

    Raises:
        SystemExit: naming the unset variables when neither the shell nor ``--workdir`` provides them.
    """
    from nnunet_scribble.pipeline import nnunet_env

    names = ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")
    missing = [n for n in names if not os.environ.get(n)]
    if missing and not args.workdir:
        raise SystemExit(f"{', '.join(missing)} not set: export nnU-Net's folders or pass --workdir DIR")
    folders = [os.environ.get(n) or str(Path(args.workdir).resolve() / n) for n in names]
    return nnunet_env(*folders)  # also nnUNet_def_n_proc=1, nnUNet_n_proc_DA left to the training step


def has_dataset(root: str, dataset_id: int) -> bool:
    return any(Path(root).glob(f"Dataset{dataset_id:03d}_*/dataset.json"))


def check_papers_scribbles(root: str, dataset_id: int) -> None:
    """Raises SystemExit when an existing ``Dataset<id>`` of ``root`` declares ``outside_image_background``.

    The ``mscmr`` target reproduces the table made with the papers' scribbles; a Dataset028 converted with the
    converter's default (zero border labelled) would silently give the other table.
    """
    for path in Path(root).glob(f"Dataset{dataset_id:03d}_*/dataset.json"):
        declared = json.loads(path.read_text()).get("outside_image_background")
        if declared:
            raise SystemExit(f"{path} declares outside_image_background={declared!r} (converted with the zero border "
                             f"labelled, the converter's default), but this target needs the papers' scribbles "
                             f"unchanged: move that dataset away (or use another nnUNet_raw) so that it is "
                             f"converted again with --no-zero_border_background, or run the mscmr_zero_border target")


def has_plans(env: dict, dataset_id: int, plans: str = "nnUNetPlans") -> bool:
    return any(Path(env["nnUNet_preprocessed"]).glob(f"Dataset{dataset_id:03d}_*/{plans}.json"))


def check_data(path: Path, what: str, hint: str) -> None:
    """Raises SystemExit naming ``path`` when it is missing."""
    if not path.exists():
        raise SystemExit(f"{path} not found: expected {what} ({hint}); pass --data")


def script(name: str) -> str:
    """A console script next to the running interpreter (nnU-Net's commands), else the bare name."""
    from nnunet_scribble.pipeline import console_script

    return console_script(name)


def acdc_preparation(args, env: dict) -> list[Step]:
    """Convert ACDC + Valvano scribbles to Dataset027 and plan/preprocess its 2d configuration."""
    data = Path(args.data) / "ACDC"
    convert = Step("convert ACDC (Dataset027_ACDCScribble, 5-fold patient split)",
                   [sys.executable, str(REPO / "dataset_conversion" / "Dataset027_ACDCScribble.py"), str(data),
                    "-s", str(data / "scribbles_valvano")],
                   done=lambda: has_dataset(env["nnUNet_raw"], ACDC_ID))
    if not args.dry_run and not convert.done():
        check_data(data / "training", "ACDC's training/ folder", "patientNNN/ of the official release")
        check_data(data / "scribbles_valvano", "the Valvano scribbles", "patientNNN_frameFF_scribble.nii.gz")
    plan = Step("plan and preprocess Dataset027 (2d)",
                [script("nnUNetv2_plan_and_preprocess"), "-d", str(ACDC_ID), "-c", "2d", "-np", "1", "-npfp", "1",
                 "--verify_dataset_integrity"],
                done=lambda: has_plans(env, ACDC_ID))
    return [convert, plan]


def preset_plans_step(args, env: dict, dataset_id: int) -> Step:
    """Write the preset's reduced plans (what run_quality.py trains with) for the cost and coverage targets."""
    from nnunet_scribble import pipeline

    preset = pipeline.PRESETS[args.preset]

    def write():
        from nnunet_scribble.benchmarking import find_dataset_folder
        pipeline.write_preset_plans(find_dataset_folder(env["nnUNet_preprocessed"], dataset_id), preset)

    return Step(f"write {preset.plans_identifier}.json (preset '{args.preset}')", call=write,
                done=lambda: has_plans(env, dataset_id, preset.plans_identifier))


def preset_plans_name(args) -> str:
    from nnunet_scribble import pipeline

    return pipeline.PRESETS[args.preset].plans_identifier


def mscmr_steps(args, env: dict, out: Path, common: list[str], zero_border: bool = False) -> list[Step]:
    """Convert, fingerprint, plan (1.46 mm in plane), preprocess MSCMRseg and score the scribble trainers.

    With ``zero_border`` the dataset is ``Dataset528_MSCMRScribbleZeroBorder``, converted with
    ``--zero_border_background`` (the exact-zero region at the slice borders labelled background), and the trainers
    run with ``outside_image_background`` (nnU-Net's preprocessing turns background outside its non-zero mask into
    -1, which the scribble trainers would otherwise ignore). The converter declares it in ``dataset.json`` and the
    trainers follow that; ``--schedule`` passes it as well, for a Dataset528 converted before the declaration
    existed (commit 0420cf2 and older). Its plans equal Dataset028's but for the foreground
    intensity statistics, which z-score normalisation does not use. Without ``zero_border`` Dataset028 holds the
    papers' scribbles unchanged (``--no-zero_border_background``; the converter's default labels the zero border);
    an existing Dataset028 that declares ``outside_image_background`` is refused rather than reused.
    """
    data = Path(args.data) / "MSCMR"
    dataset_id = MSCMR_ZERO_BORDER_ID if zero_border else MSCMR_ID
    extra = (["-d", str(dataset_id), "-n", MSCMR_ZERO_BORDER_NAME, "--zero_border_background"] if zero_border
             else ["--no-zero_border_background"])   # the papers' scribbles (the converter's default labels it)
    convert = Step(f"convert MSCMRseg (Dataset{dataset_id:03d}: 25 scribbled train, 5 dense in imagesTs"
                   + ("; zero border labelled background)" if zero_border else ")"),
                   [sys.executable, str(REPO / "dataset_conversion" / "Dataset028_MSCMRScribble.py"), str(data),
                    *extra],
                   done=lambda: has_dataset(env["nnUNet_raw"], dataset_id))
    if not args.dry_run and not convert.done():
        check_data(data, "the MSCMRseg folder", "holding MSCMR_dataset/train and MSCMR_dataset/val")
    if not zero_border:
        check_papers_scribbles(env["nnUNet_raw"], dataset_id)
    trainers = args.trainers or SCRIBBLE_TRAINERS
    folder = f"Dataset{dataset_id:03d}_*"
    return [
        convert,
        Step(f"fingerprint Dataset{dataset_id:03d}",
             [script("nnUNetv2_extract_fingerprint"), "-d", str(dataset_id), "-np", "1"],
             done=lambda: any(Path(env["nnUNet_preprocessed"]).glob(f"{folder}/dataset_fingerprint.json"))),
        Step(f"plan {MSCMR_PLANS} (in-plane spacing doubled to 1.46 mm)",
             [script("nnUNetv2_plan_experiment"), "-d", str(dataset_id), "-overwrite_target_spacing",
              *MSCMR_SPACING, "-overwrite_plans_name", MSCMR_PLANS],
             done=lambda: has_plans(env, dataset_id, MSCMR_PLANS)),
        Step(f"preprocess {MSCMR_PLANS} (2d)",
             [script("nnUNetv2_preprocess"), "-d", str(dataset_id), "-plans_name", MSCMR_PLANS, "-c", "2d",
              "-np", "1"],
             done=lambda: any(Path(env["nnUNet_preprocessed"]).glob(f"{folder}/{MSCMR_PLANS}_2d/*.pkl"))),
        Step(f"train {len(trainers)} trainers, score the 5 dense subjects",
             [sys.executable, str(REPO / "benchmarks" / "run_quality.py"), "-d", str(dataset_id), "-c", "2d",
              "-f", "0", *common, "-p", MSCMR_PLANS, "--reuse", "--repeats", str(args.repeats),
              *(["--schedule", json.dumps({"outside_image_background": True})] if zero_border else []),
              "--output", str(out / f"{args.target}_2d_{args.preset}"), "-tr", *trainers]),
    ]


def steps_for(args, env: dict) -> list[Step]:
    """The steps of ``args.target``."""
    out = Path(args.output or REPO / "benchmarks" / "results")
    bench = REPO / "benchmarks"
    common = ["--preset", args.preset, "-device", args.device]
    if args.target == "acdc":
        trainers = args.trainers or ACDC_TRAINERS
        fold_dirs = [str(out / f"acdc_2d_fold{f}_{args.preset}") for f in args.folds]
        steps = acdc_preparation(args, env) + [Step(
            f"fold {f}: train and score {len(trainers)} trainers, {args.repeats} run(s) each",
            [sys.executable, str(bench / "run_quality.py"), "-d", str(ACDC_ID), "-c", "2d", "-f", str(f), *common,
             "--repeats", str(args.repeats), "--reuse", "--output", folder, "-tr", *trainers])
            for f, folder in zip(args.folds, fold_dirs)]
        if len(args.folds) > 1:
            steps.append(Step(
                f"pool folds {', '.join(map(str, args.folds))}: every case scored once (cross-validation table)",
                [sys.executable, str(bench / "cross_validation.py"), *fold_dirs, "--output",
                 str(out / f"acdc_2d_folds{''.join(map(str, args.folds))}_{args.preset}")]))
        return steps
    if args.target in ("mscmr", "mscmr_zero_border"):
        return mscmr_steps(args, env, out, common, zero_border=args.target == "mscmr_zero_border")
    if args.target == "robustness":
        trainers = args.trainers or SCRIBBLE_TRAINERS
        return acdc_preparation(args, env) + [Step(
            f"fold {f}: {len(trainers)} trainers under full, shrink30/50, drop30/50, s1-s3",
            [sys.executable, str(bench / "run_robustness.py"), "-d", str(ACDC_ID), "-c", "2d", "-f", str(f),
             *common, "--reuse", "--repeats", str(args.repeats),
             "--output", str(out / f"robustness_acdc_2d_fold{f}_{args.preset}"), "-tr", *trainers])
            for f in args.folds]
    if args.target == "cost":
        trainers = args.trainers or COST_TRAINERS
        return acdc_preparation(args, env) + [preset_plans_step(args, env, ACDC_ID), Step(
            "step time, memory, FLOPs, data pipeline and inference, side by side",
            [sys.executable, str(bench / "bench_train_step.py"), "-d", str(ACDC_ID), "-c", "2d",
             "-p", preset_plans_name(args), "--device", "cpu" if args.device == "mps" else args.device,
             "--steps", "5", "--warmup", "2" if args.device == "cpu" else "10", "--reps", "3",
             "--inference_reps", "3", "--data_batches", "5",
             "--json", str(out / f"cost_acdc_2d_{args.preset}_{args.device}.json"), "-tr", *trainers])]
    if args.target == "cpl_targets":
        return acdc_preparation(args, env) + [Step(
            "MaCo L_con targets vs dense labels, all training volumes",
            [sys.executable, str(bench / "cpl_targets.py"), "-d", str(ACDC_ID)])]
    if args.target == "coverage":
        return acdc_preparation(args, env) + [preset_plans_step(args, env, ACDC_ID), Step(
            "patch coverage: planned patch vs 128x128",
            [sys.executable, str(bench / "patch_coverage.py"), "-d", str(ACDC_ID), "-c", "2d",
             "-p", preset_plans_name(args), "--patch", "128", "128", "--cases", "10", "--draws", "1000"])]
    if args.target == "term_gradients":
        trainers = args.trainers or GRADIENT_TRAINERS
        args_zb = argparse.Namespace(**{**vars(args), "target": "mscmr_zero_border", "trainers": trainers})
        from nnunet_scribble import pipeline
        plans = pipeline.preset_plans_identifier(pipeline.PRESETS[args.preset], MSCMR_PLANS)
        checkpoints = [(t, c) for t in trainers for c in (("none", "final") if t == "nnUNetTrainerMedCL"
                                                          else ("final",))]
        return mscmr_steps(args_zb, env, out, common, zero_border=True) + [Step(
            f"per-term gradients of {t}, checkpoint {c}",
            [sys.executable, str(bench / "term_gradients.py"), "-d", str(MSCMR_ZERO_BORDER_ID), "-c", "2d",
             "-f", "0", "-tr", t, "-p", plans, "--checkpoint", c, "--batches", "8",
             "-device", "cpu" if args.device == "mps" else args.device]) for t, c in checkpoints]
    if args.target == "postprocessing":
        return postprocessing_steps(args, env, out, common)
    raise ValueError(f"unknown target {args.target!r}; expected one of {TARGETS}")


def postprocessing_steps(args, env: dict, out: Path, common: list[str]) -> list[Step]:
    """Measure the scribbles' reach, train (or reuse) the trainers on the folds, compare the choices, pool them.

    The models are the ``acdc`` target's (same nnU-Net folders and plans; run ``k`` > 0 in ``repeat_k``, as
    ``run_quality.py`` keeps them), so after ``acdc`` with as many ``--repeats`` nothing trains. Every run is scored;
    the pooled table averages a trainer's runs and gives their run-to-run spread after post-processing. Only run 0 is
    also scored padded off the centre. The upper bound (a trainer that is not a scribble trainer, on the dense twin)
    gets nnU-Net's own choice only.
    """
    from nnunet_scribble import benchmarking as bm

    trainers = args.trainers or [*SCRIBBLE_TRAINERS, "nnUNetTrainerFullySupervised"]
    folds = "".join(map(str, args.folds))
    plans = preset_plans_name(args)
    # its own results folder: run_quality.py writes the table of the trainers it is given, which would replace the
    # acdc target's table in acdc_2d_fold<f>_<preset>
    base = out / f"postprocessing_acdc_2d_folds{folds}_{args.preset}"
    reach = base / "beyond_distance"
    steps = acdc_preparation(args, env) + [Step(
        "how far the dense foreground reaches from the scribbles (--beyond_mm)",
        [sys.executable, str(REPO / "benchmarks" / "beyond_distance.py"),
         str(Path(env["nnUNet_raw"]) / "Dataset027_ACDCScribble"), "--sizes", "3", "5", "10", "20", "-o", str(reach)],
        done=lambda: bm.saved_table(reach).is_file())] + [Step(
        f"fold {f}: train (or reuse) and score {len(trainers)} trainers, {args.repeats} run(s) each",
        [sys.executable, str(REPO / "benchmarks" / "run_quality.py"), "-d", str(ACDC_ID), "-c", "2d", "-f", str(f),
         *common, "--repeats", str(args.repeats), "--reuse", "--output", str(base / f"fold{f}"), "-tr", *trainers])
        for f in args.folds]
    results = []
    for trainer, run in ((t, r) for t in trainers for r in range(args.repeats)):
        scribble = bm.is_scribble_trainer(trainer)
        dataset = ("Dataset027_ACDCScribble" if scribble
                   else f"Dataset{bm.default_twin_id(ACDC_ID):03d}_ACDCScribbleDense")   # run_quality.py's dense twin
        model = Path(env["nnUNet_results"], *([f"repeat_{run}"] if run else []), dataset, f"{trainer}__{plans}__2d")
        label = trainer + (f"_repeat{run}" if run else "")
        # as trained, then (run 0) with every image padded by its width on one side: the heart off the centre
        for extra, name, what in (([], label, "scribbles vs dense labels" if scribble else "its dense labels"),
                                  (["--off_centre", "1"], f"{trainer}_off_centre", "the heart moved off the centre")
                                  )[:2 if scribble and not run else 1]:
            result = base / name
            if not extra:   # the pooled table compares the models as trained
                results.append(result)
            steps.append(Step(
                f"{label}: nnU-Net's post-processing chosen on {what}, folds {' '.join(folds)}",
                [sys.executable, str(REPO / "benchmarks" / "postprocessing_choice.py"), str(model), "--folds",
                 *map(str, args.folds), *extra, "-o", str(result)],
                done=lambda result=result: bm.saved_table(result).is_file()))
    steps.append(Step(
        "pool the folds: every trainer as trained, before and after post-processing, vs baseline and upper bound",
        [sys.executable, str(REPO / "benchmarks" / "postprocessing_summary.py"),
         *(str(bm.saved_table(r).with_suffix(".json")) for r in results), "-o", str(base / "summary")]))
    return steps


def run(steps: list[Step], env: dict, dry_run: bool, log: Path | None) -> None:
    """Run (or print) the steps in order; a command's output is shown as it runs and appended to ``log``."""
    for i, step in enumerate(steps, 1):
        skip = step.done is not None and step.done()
        line = " ".join(shlex.quote(c) for c in step.cmd) if step.cmd else "(Python)"
        print(f"[{i}/{len(steps)}] {step.what}" + ("  -- done already, skipped" if skip else ""), flush=True)
        if skip:
            continue
        print(f"$ {line}", flush=True)
        if dry_run:
            continue
        start = time.perf_counter()
        if step.call is not None:
            step.call()
            continue
        with subprocess.Popen(step.cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, bufsize=1) as proc:
            # line-buffered: a run stopped midway (Ctrl-C, kill) keeps the log of everything it did
            with open(log, "a", buffering=1) if log else open(os.devnull, "w") as f:
                f.write(f"$ {line}\n")
                for out_line in proc.stdout:
                    sys.stdout.write(out_line)
                    f.write(out_line)
                f.write(f"[exit {proc.wait()}, {time.perf_counter() - start:.1f} s]\n")
        if proc.returncode != 0:
            raise SystemExit(f"step {i} ({step.what}) failed with exit code {proc.returncode}: {line}")


def main(argv=None) -> int:
    args = parse_args(argv)
    env = nnunet_folders(args)
    steps = steps_for(args, env)
    print(f"Target '{args.target}': nnUNet_raw={env['nnUNet_raw']}, nnUNet_preprocessed="
          f"{env['nnUNet_preprocessed']}, nnUNet_results={env['nnUNet_results']}", flush=True)
    log = None
    if not args.dry_run:
        for n in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
            Path(env[n]).mkdir(parents=True, exist_ok=True)
        out = Path(args.output or REPO / "benchmarks" / "results")
        out.mkdir(parents=True, exist_ok=True)
        log = out / f"reproduce_{args.target}.log"
    run(steps, env, args.dry_run, log)
    if log:
        print(f"Commands and their output: {log}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
