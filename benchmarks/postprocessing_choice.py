#!/usr/bin/env python
"""Which post-processing nnU-Net picks for a scribble-trained model, and what it does to the dense Dice.

After a cross-validation nnU-Net users run ``nnUNetv2_find_best_configuration``; it decides whether to keep only
the largest foreground component (then, class by class, the largest component of each class) by comparing the
cross-validation Dice with and without it, and ``nnUNetv2_apply_postprocessing`` applies the decision to test
predictions. It compares against ``nnUNet_preprocessed/<dataset>/gt_segmentations``, a copy of ``labelsTr``: for a
scribble dataset that is the scribbles, scored on the annotated voxels only (nnU-Net skips the ignore label). This
script chooses among nnU-Net's candidates with nnU-Net's rule on the merged validation predictions of a trained
model three ways: nnU-Net's own ``determine_postprocessing`` against the scribbles (the choice
``nnUNetv2_find_best_configuration`` makes); ``nnunet_scribble_determine_postprocessing``'s, scored by the Dice
estimated from the scribbles plus every unannotated voxel farther than ``--beyond_mm`` from all foreground scribbles
as background (``nnunet_scribble.evaluation.postprocessing``); nnU-Net's ``determine_postprocessing`` against the
dense labels (the choice dense training labels would give, an oracle). Then it scores against the dense labels:

    none                    the predictions as they are
    on scribbles            nnU-Net's choice against the scribbles
    scribbles + background  nnunet_scribble_determine_postprocessing's choice among nnU-Net's candidates, and with
                            the foreground component closest to the image centre as a further candidate (its
                            default)
    on dense labels         nnU-Net's choice against the dense labels
    always                  nnU-Net's "keep the largest foreground component" applied to every case
    always, central         keep the foreground component closest to the image centre (among those of at least
                            10 % of the largest's size) in every case

It prints one Markdown table (post-processing, who chose it, the foreground-mean score it was chosen by before and
after, mean dense Dice and HD95 ± sd over cases, Dice per class) and whether the scribble choices agree with the
dense one.
Example (ACDC fold 1 of ``benchmarks/README.md``; give every trained fold to score a whole cross-validation):

    python benchmarks/postprocessing_choice.py \\
        $nnUNet_results/Dataset027_ACDCScribble/nnUNetTrainerScribble__nnUNetPlans_cpu__2d --folds 1

The model folder's ``fold_<f>/validation`` predictions are copied into ``--workdir`` (default: a temporary folder,
removed at the end), so nothing in the model folder is changed; nnU-Net's rule is applied unchanged (a step is kept
when it raises the foreground-mean Dice and lowers no class's Dice, nnunetv2/postprocessing/
remove_connected_components.py).

``--steps`` adds a second table: why the default choice (scribbles + background, + central component) keeps or
rejects each candidate, class by class: the mean over cases of the estimate and of its two parts (recall on the
class's scribbles, precision against the voxels known not to be the class), the dense Dice, and the class's voxels the
candidate removes, split into those scribbled as the class, those of the class in the dense labels and those known not
to be the class (annotated otherwise, or beyond ``--beyond_mm``). A per-class step removes pieces of the true class
that are disconnected from its largest component (recall can fall) along with false islands, which the estimate sees
only where they reach annotated voxels (precision rises less than the dense Dice).

A model trained on dense labels (the fully supervised upper bound, ``nnUNetTrainerFullySupervised`` on the dense twin
of the scribble dataset; its ``dataset.json`` declares no ignore label) gets the rows that need no scribbles: none,
nnU-Net's choice on its own training labels (what ``nnUNetv2_find_best_configuration`` chooses for it; ``--dense``
defaults to its ``labelsTr``) and the two ``always`` rows, for the "% of full supervision" after post-processing of
``postprocessing_summary.py``.

``--off_centre F`` first pads every merged prediction, scribble and dense label with F times its width of background
(ignore for the scribbles) on the low side of its last axis, so the target no longer lies at the array centre (F = 1:
an ACDC heart lies at three quarters of the width): a stress test of the central candidate, which the estimate
should then reject wherever it keeps an island instead of the organ.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from nnunet_scribble.benchmarking import print_and_save
from nnunet_scribble.evaluation import postprocessing as pp
from nnunet_scribble.evaluation.folder import evaluate_folder
from nnunet_scribble.evaluation.metrics import foreground_labels


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="trained model folder, $nnUNet_results/DatasetXXX/TRAINER__PLANS__CONFIGURATION")
    p.add_argument("--folds", nargs="+", type=int, default=[0, 1, 2, 3, 4], help="folds to merge (default 0-4)")
    p.add_argument("--scribbles", default=None,
                   help="reference nnU-Net chooses on (default: $nnUNet_preprocessed/<dataset>/gt_segmentations)")
    p.add_argument("--dense", default=None, help="dense labels (default: $nnUNet_raw/<dataset>/labelsTr_dense; "
                                                 "labelsTr for a model trained on dense labels)")
    p.add_argument("--beyond_mm", type=float, default=pp.DEFAULT_BEYOND_MM,
                   help="distance from every foreground scribble beyond which the third choice counts unannotated "
                        "voxels as background (nnunet_scribble_determine_postprocessing; default %(default)s)")
    p.add_argument("--workdir", default=None, help="keep the merged and post-processed predictions here")
    p.add_argument("-np", type=int, default=1, help="processes for nnU-Net's post-processing and evaluation")
    p.add_argument("--off_centre", type=float, default=0.0, metavar="F",
                   help="pad every case with F x its width of background on one side first, moving the target off "
                        "the centre (a stress test of the central candidate; default 0: as trained)")
    p.add_argument("--steps", action="store_true",
                   help="also explain the default choice candidate by candidate and class by class (second table)")
    p.add_argument("-o", "--output", default=None, help="also write the table (.md) and the numbers (.json) here")
    return p.parse_args(argv)


def _env_folder(variable: str, *parts: str) -> Path:
    root = os.environ.get(variable)
    if not root:
        raise SystemExit(f"{variable} is not set: pass the folder explicitly")
    return Path(root, *parts)


def describe(pp_fns, pp_kwargs, labels: dict) -> str:
    """Name nnU-Net's chosen post-processing steps, e.g. ``largest foreground component + largest RV component``."""
    names = {v: k for k, v in labels.items()}
    steps = []
    for fn, kwargs in zip(pp_fns, pp_kwargs):
        if fn.__name__ == pp.keep_central_component.__name__:
            steps.append("central foreground component")
            continue
        target = kwargs["labels_or_regions"]
        what = "foreground" if isinstance(target, list) and len(target) > 1 else names.get(
            target[0] if isinstance(target, list) else target, str(target))
        steps.append(f"largest {what} component" if fn.__name__.startswith("remove_all_but_largest") else fn.__name__)
    return " + ".join(steps) or "none"


def off_centre_copy(model: Path, folds: list[int], scribbles: Path, dense: Path, out: Path,
                    fraction: float) -> tuple[Path, Path, Path]:
    """Copies of a model's validation predictions and their references, padded on the low side of the last axis.

    Every array gets ``round(fraction * width)`` voxels of background (the ignore label for the scribbles) before its
    first column, so the array centre moves ``fraction / 2`` of the width towards that side while the target stays
    where it was.

    Returns:
        The padded model folder (``plans.json``, ``dataset.json``, ``fold_<f>/validation``), scribbles and dense labels.
    """
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    if fraction <= 0:
        raise ValueError(f"--off_centre must be positive, got {fraction}")
    plans, dataset_json = (json.loads((model / n).read_text()) for n in ("plans.json", "dataset.json"))
    ending, ignore = dataset_json["file_ending"], dataset_json["labels"].get("ignore")
    if ignore is None:
        raise ValueError(f"{model / 'dataset.json'} declares no 'ignore' label: not a scribble dataset")
    rw = PlansManager(plans).image_reader_writer_class()
    padded = out / model.name
    padded.mkdir(parents=True)
    for name in ("plans.json", "dataset.json"):
        shutil.copy(model / name, padded / name)

    def pad(src: Path, dst: Path, value: int) -> None:
        seg, props = rw.read_seg(str(src))
        seg = seg[0]
        width = [(0, 0)] * (seg.ndim - 1) + [(int(round(fraction * seg.shape[-1])), 0)]
        dst.parent.mkdir(parents=True, exist_ok=True)
        rw.write_seg(np.pad(seg, width, constant_values=value), str(dst), props)

    for fold in folds:
        for f in sorted((model / f"fold_{fold}" / "validation").glob(f"*{ending}")):
            pad(f, padded / f"fold_{fold}" / "validation" / f.name, 0)
            for folder, name, value in ((scribbles, "scribbles", ignore), (dense, "dense", 0)):
                if not (folder / f.name).is_file():
                    raise FileNotFoundError(f"{folder / f.name} not found: expected the reference of {f.name}")
                pad(folder / f.name, out / name / f.name, value)
    return padded, out / "scribbles", out / "dense"


def choose(predictions: Path, reference: Path, model: Path, num_processes: int) -> tuple[str, list, list, dict]:
    """Run nnU-Net's ``determine_postprocessing`` on ``predictions`` against ``reference``.

    Returns:
        The folder of post-processed predictions, the chosen functions and their keyword arguments, and nnU-Net's
        ``postprocessing.json`` (foreground-mean Dice before and after against ``reference``).
    """
    from nnunetv2.postprocessing.remove_connected_components import determine_postprocessing

    pp_fns, pp_kwargs = determine_postprocessing(str(predictions), str(reference), str(model / "plans.json"),
                                                 str(model / "dataset.json"), num_processes=num_processes)
    return (str(predictions / "postprocessed"), pp_fns, pp_kwargs,
            json.loads((predictions / "postprocessing.json").read_text()))


def apply(predictions: Path, out: Path, model: Path, fns: list, kwargs: list, num_processes: int) -> Path:
    """Apply post-processing steps to every case, as ``nnUNetv2_apply_postprocessing`` does."""
    from nnunetv2.postprocessing import remove_connected_components as rcc

    rcc.apply_postprocessing_to_folder(str(predictions), str(out), fns, kwargs, str(model / "plans.json"),
                                       str(model / "dataset.json"), num_processes=num_processes)
    return out


def _step_stats(seg: np.ndarray, ref: np.ndarray, dense: np.ndarray, label: int, ignore: int) -> dict:
    """One case's estimate, its recall and precision, and dense Dice of ``label`` (None / nan where undefined)."""
    parts = pp.scribble_recall_precision(seg, ref, label, ignore)
    pred_c, dense_c = seg == label, dense == label
    total = int(pred_c.sum()) + int(dense_c.sum())
    return {"estimate": pp.scribble_dice(seg, ref, [label], ignore).get(label),
            "recall": parts[0] if parts else None, "precision": parts[1] if parts else None,
            "dense Dice": 2 * int((pred_c & dense_c).sum()) / total if total else float("nan")}


def step_by_step(model: Path, merged: Path, cases: list[str], scribbles: Path, dense: Path, work: Path,
                 beyond_mm: float = pp.DEFAULT_BEYOND_MM, central: bool = True) -> list[dict]:
    """Why ``nnunet_scribble_determine_postprocessing`` keeps or rejects each candidate, class by class.

    Tries the same candidates with the same rule (``choose_steps``) on the same estimate, and records per candidate
    and class the means over cases of the estimate, its recall and precision (over the cases that annotate the
    class) and the dense Dice (over the cases where the class is predicted or present), before and after the
    candidate, and the class's voxels it removes (sums over cases). The estimate is the mean of per-case F1 scores,
    not the F1 of the mean recall and precision beside it. Reads every case from disk once per candidate.

    Returns:
        One row per candidate and class (a per-class candidate: its class only), in the order tried.
    """
    from nnunetv2.postprocessing.remove_connected_components import apply_postprocessing
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    dataset_json = json.loads((model / "dataset.json").read_text())
    labels, ending = dataset_json["labels"], dataset_json["file_ending"]
    fg, ignore = foreground_labels(labels), labels["ignore"]
    rw = PlansManager(json.loads((model / "plans.json").read_text())).image_reader_writer_class()
    refs = pp.write_background_beyond(scribbles, work / "background_beyond", cases, rw, ending, beyond_mm, ignore)
    calls: list[dict] = []

    def score(chain: list) -> dict[int, float]:
        base, step = chain[:-1], chain[-1:]
        per = {c: {"before": [], "after": [], "removed": np.zeros(4, np.int64)} for c in fg.values()}
        for case in cases:
            pred = rw.read_seg(str(merged / f"{case}{ending}"))[0][0]
            ref = rw.read_seg(str(refs / f"{case}{ending}"))[0][0]
            den = rw.read_seg(str(dense / f"{case}{ending}"))[0][0]
            a = apply_postprocessing(pred, [f for f, _ in base], [k for _, k in base])
            b = apply_postprocessing(a, [f for f, _ in step], [k for _, k in step])
            for c, acc in per.items():
                acc["before"].append(_step_stats(a, ref, den, c, ignore))
                acc["after"].append(_step_stats(b, ref, den, c, ignore))
                gone = (a == c) & (b != c)
                acc["removed"] += [int(gone.sum()), int((gone & (ref == c)).sum()), int((gone & (den == c)).sum()),
                                   int((gone & (ref != ignore) & (ref != c)).sum())]

        def mean(stats: list[dict], key: str) -> float | None:
            values = [s[key] for s in stats if s[key] is not None and not np.isnan(s[key])]
            return float(np.mean(values)) if values else None

        summary = {c: {key: (mean(acc["before"], key), mean(acc["after"], key))
                       for key in ("estimate", "recall", "precision", "dense Dice")} | {"removed": acc["removed"]}
                   for c, acc in per.items()}
        calls.append({"after": describe([f for f, _ in base], [k for _, k in base], labels), "classes": summary})
        return {c: v["estimate"][1] for c, v in summary.items() if v["estimate"][1] is not None}

    _, _, _, candidates = pp.choose_steps(score, list(fg.values()), central)
    names = {v: k for k, v in fg.items()}
    rows = []
    for candidate, call in zip(candidates, calls[1:]):
        step, only = candidate["step"][0], candidate.get("label")
        for c, stats in call["classes"].items():
            if only is not None and c != only:
                continue
            removed, scribbled, true, known = (int(n) for n in stats["removed"])
            rows.append({"candidate": f"largest {names[c]} component" if only is not None else step,
                         "after": call["after"], "kept": candidate["kept"], "class": names[c],
                         **{key: stats[key] for key in ("estimate", "recall", "precision", "dense Dice")},
                         "removed": removed, "scribbled as the class": scribbled, "the class in the dense labels": true,
                         "known not the class": known})
    return rows


def compare(model: Path, folds: list[int], scribbles: Path | None, dense: Path, work: Path, num_processes: int = 1,
            beyond_mm: float = pp.DEFAULT_BEYOND_MM, steps: bool = False) -> dict:
    """The rows of the table (see the module docstring) as a dict; with ``steps`` also :func:`step_by_step`'s.

    ``scribbles`` None: a densely trained model (no ignore label), scored without the rows that need scribbles.
    """
    from nnunetv2.postprocessing import remove_connected_components as rcc

    dataset_json = json.loads((model / "dataset.json").read_text())
    labels, ending = dataset_json["labels"], dataset_json["file_ending"]
    for name, folder in (("scribble", scribbles), ("dense", dense)):
        if folder is not None and not folder.is_dir():
            raise FileNotFoundError(f"{folder} not found: expected the {name} reference labels")
    merged = work / "merged"
    cases = pp.merge_validation(model, folds, merged, ending)
    rows = [{"post-processing": "none", "chosen by": "-", "folder": merged}]
    for who, ref, name in (("nnU-Net on scribbles", scribbles, "choice_on_scribbles"),
                           ("nnU-Net on dense labels", dense, "choice_on_dense")):
        if ref is None:
            continue
        shutil.copytree(merged, work / name)
        folder, fns, kwargs, info = choose(work / name, ref, model, num_processes)
        rows.append({"post-processing": describe(fns, kwargs, labels), "chosen by": who, "folder": Path(folder),
                     "nnU-Net Dice before": info["input_folder"]["foreground_mean"]["Dice"],
                     "nnU-Net Dice after": info["postprocessed"]["foreground_mean"]["Dice"]})
    ours = ((False, "choice_beyond_nnunet", "nnU-Net's candidates"), (True, "choice_beyond", "+ central component"))
    for i, (central, name, what) in enumerate(ours if scribbles is not None else ()):   # ours needs the scribbles
        fns, kwargs = pp.determine_postprocessing(model, folds, scribbles, work / name, beyond_mm, central)
        info = json.loads((work / name / "postprocessing.json").read_text())
        rows.insert(2 + i, {"post-processing": describe(fns, kwargs, labels),
                            "chosen by": f"scribbles + background beyond {beyond_mm:g} mm, estimated Dice, {what}",
                            "folder": apply(merged, work / name / "postprocessed", model, fns, kwargs,
                                            num_processes),
                            "nnU-Net Dice before": float(np.mean(list(info["scores_before"].values()))),
                            "nnU-Net Dice after": float(np.mean(list(info["scores_after"].values())))})
    rows.append({"post-processing": "largest foreground component", "chosen by": "always",
                 "folder": apply(merged, work / "largest_everywhere", model,
                                 [rcc.remove_all_but_largest_component_from_segmentation],
                                 [{"labels_or_regions": list(foreground_labels(labels).values())}], num_processes)})
    rows.append({"post-processing": "central foreground component", "chosen by": "always",
                 "folder": apply(merged, work / "central_everywhere", model, [pp.keep_central_component],
                                 [{"labels": list(foreground_labels(labels).values())}], num_processes)})
    fg = foreground_labels(labels)
    for row in rows:
        summary = evaluate_folder(dense, row.pop("folder"), labels=fg, file_ending=ending, cases=cases,
                                  num_processes=num_processes)
        row["dense Dice"] = (summary["mean"]["Dice"]["mean"], summary["mean"]["Dice"]["std"])
        row["dense HD95"] = (summary["mean"]["HD95"]["mean"], summary["mean"]["HD95"]["std"])
        row["per class"] = {c: summary["per_class"][c]["Dice"]["mean"] for c in fg}
    chosen = {row["chosen by"]: row["post-processing"] for row in rows}
    on_dense = chosen["nnU-Net on dense labels"]
    default = f"scribbles + background beyond {beyond_mm:g} mm, estimated Dice, "
    result = {"model": str(model), "folds": folds, "cases": len(cases), "rows": rows, "dense_model": scribbles is None,
              "agree": None if scribbles is None else chosen["nnU-Net on scribbles"] == on_dense,
              "agree_beyond": None if scribbles is None else chosen[default + "nnU-Net's candidates"] == on_dense}
    if steps and scribbles is not None:
        result["beyond_mm"] = beyond_mm
        result["steps"] = step_by_step(model, merged, cases, scribbles, dense, work, beyond_mm)
    return result


def to_markdown(result: dict) -> str:
    classes = list(result["rows"][0]["per class"])
    shift = result.get("off_centre")
    lines = [f"{result['model']}, folds {' '.join(map(str, result['folds']))}: {result['cases']} cases"
             + (f", padded by {shift:g} x the width on one side (off-centre)" if shift else ""), "",
             "| post-processing | chosen by | nnU-Net Dice on its reference, before → after | dense Dice "
             "| dense HD95 (mm) " + "".join(f"| {c} Dice " for c in classes) + "|",
             "|---|---|---|---|---" + "|---" * len(classes) + "|"]
    for row in result["rows"]:
        before = row.get("nnU-Net Dice before")
        nn = f"{100 * before:.1f} → {100 * row['nnU-Net Dice after']:.1f}" if before is not None else ""
        mean, sd = row["dense Dice"]
        hd_mean, hd_sd = row["dense HD95"]
        lines.append(f"| {row['post-processing']} | {row['chosen by']} | {nn} | {100 * mean:.1f} ± {100 * sd:.1f} "
                     f"| {hd_mean:.1f} ± {hd_sd:.1f} "
                     + "".join(f"| {100 * row['per class'][c]:.1f} " for c in classes) + "|")
    verdict = {True: "agrees with", False: "differs from"}
    if result.get("dense_model"):
        lines += ["", "A densely trained model: nnU-Net's choice on the dense labels is its own "
                  "(nnUNetv2_find_best_configuration's)"]
    else:
        lines += ["", f"nnU-Net's choice on the scribbles {verdict[result['agree']]} its choice on the dense labels; "
                  f"with the background beyond the distance it {verdict[result['agree_beyond']]} it"]
    if result.get("steps"):
        lines += ["", f"Step by step (scribbles + background beyond {result['beyond_mm']:g} mm, + central component; "
                  "means over cases before → after the candidate, in %; voxels: sums over cases):", "",
                  "| candidate | after | kept | class | estimate | scribble recall | precision on known voxels "
                  "| dense Dice | class voxels removed | scribbled as the class | the class in the dense labels "
                  "| known not the class |", "|---" * 12 + "|"]

        def pair(values, digits: int = 1) -> str:
            return " → ".join("-" if v is None else f"{100 * v:.{digits}f}" for v in values)

        for r in result["steps"]:
            lines.append(f"| {r['candidate']} | {r['after']} | {'yes' if r['kept'] else 'no'} | {r['class']} "
                         f"| {pair(r['estimate'], 2)} | {pair(r['recall'])} | {pair(r['precision'])} "
                         f"| {pair(r['dense Dice'])} | {r['removed']:,} | {r['scribbled as the class']:,} "
                         f"| {r['the class in the dense labels']:,} | {r['known not the class']:,} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    args = parse_args(argv)
    model = Path(args.model)
    if not (model / "plans.json").is_file() or not (model / "dataset.json").is_file():
        raise SystemExit(f"{model} is not a trained model folder: expected plans.json and dataset.json in it")
    dataset = json.loads((model / "plans.json").read_text())["dataset_name"]
    if "ignore" not in json.loads((model / "dataset.json").read_text())["labels"]:
        given = [o for o, v in (("--scribbles", args.scribbles), ("--steps", args.steps),
                                ("--off_centre", args.off_centre)) if v]
        if given:
            raise SystemExit(f"{model / 'dataset.json'} declares no 'ignore' label: a densely trained model, scored "
                             f"against its dense labels only; {', '.join(given)} need a scribble-trained model")
        scribbles = None
        dense = Path(args.dense) if args.dense else _env_folder("nnUNet_raw", dataset, "labelsTr")
    else:
        scribbles = Path(args.scribbles) if args.scribbles else _env_folder("nnUNet_preprocessed", dataset,
                                                                            "gt_segmentations")
        dense = Path(args.dense) if args.dense else _env_folder("nnUNet_raw", dataset, "labelsTr_dense")
    with tempfile.TemporaryDirectory(prefix="pp_choice_") as tmp:
        work = Path(args.workdir) if args.workdir else Path(tmp)
        if args.workdir and work.exists() and any(work.iterdir()):
            raise SystemExit(f"--workdir {work} is not empty: give a new or empty folder")
        trained = model
        if args.off_centre:
            model, scribbles, dense = off_centre_copy(model, args.folds, scribbles, dense, work / "off_centre",
                                                      args.off_centre)
        result = compare(model, args.folds, scribbles, dense, work, args.np, args.beyond_mm, args.steps)
        result.update(model=str(trained), off_centre=args.off_centre)
    print_and_save(to_markdown(result), result, args.output)
    return result


if __name__ == "__main__":
    main()
