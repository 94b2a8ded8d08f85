"""Quality benchmark harness: train trainers on one dataset/split, predict held-out cases, score on dense labels.

Used by ``benchmarks/run_quality.py``. For a scribble dataset ``DatasetXXX_Name`` and a list of trainers it runs,
through nnU-Net's real commands and under one :class:`~nnunet_scribble.pipeline.Preset`:

1. ``nnUNetv2_plan_and_preprocess`` if the configuration is not preprocessed yet, and the preset's reduced plans;
2. per trainer: ``nnUNetv2_train`` (fold given), ``nnUNetv2_predict`` on the held-out cases (``imagesTs`` with dense
   ``labelsTs``; without them, the fold's validation cases scored against ``labelsTr_dense``), and the dense
   evaluation;
3. one results table (Markdown + CSV) and a plot (grouped per-class Dice bars, box plot of per-case mean Dice).

Trainers that are not scribble trainers (e.g. ``nnUNetTrainerFullySupervised``, the upper bound) are trained on a
*dense twin* of the dataset: the same images and split with ``labelsTr_dense`` as labels and no ignore label,
preprocessed with a copy of the scribble dataset's plans so that preprocessing, network and patch are identical.
"""
from __future__ import annotations

import csv
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from nnunet_scribble import pipeline
from nnunet_scribble.derived_preprocessing import copy_plans


#: ``train_seconds_source`` of a summary whose training time is the span of the epochs logged in the checkpoint
#: (a reused model without an earlier measurement): a lower bound of the wall time, shown as ``>=N`` in the tables
TRAIN_TIME_FROM_CHECKPOINT = "checkpoint epochs"


def reused_models_note(entries: Sequence[str], other_code: Sequence[str] = ()) -> str:
    """The lines that ``run_quality.py`` and ``run_robustness.py`` put next to their tables when ``--reuse`` picked up
    models trained with other hyperparameters than the current code (``entries``: one ``"<model>: <differences>"``
    each) or by package code that may differ from this checkout's (``other_code``: one ``"<model>: <code>"`` each,
    see :func:`nnunet_scribble.provenance.differs`); empty when there are none."""
    note = ""
    if entries:
        note += ("\n\n**Reused models trained with other hyperparameters than the current code** (checkpoint -> now): "
                 + "; ".join(entries) + ".")
    if other_code:
        note += ("\n\nReused models whose training code is not shown to equal this checkout's package (`git diff` "
                 "since the recorded commit is not empty, or no code was recorded): " + "; ".join(other_code) + ".")
    return note


@dataclass
class TrainerResult:
    """Outcome of one trainer: the dense-evaluation summary and wall times in seconds."""

    trainer: str
    summary: dict
    train_seconds: float
    predict_seconds: float
    dataset: str
    notes: list[str] = field(default_factory=list)
    run: int = 0  #: repeat index (``run_quality.py --repeats``); runs of one name are pooled in the tables
    label: str | None = None  #: name in the tables (default: the trainer), e.g. the trainer plus changed hparams

    @property
    def name(self) -> str:
        """The row this result belongs to in the tables."""
        return self.label or self.trainer


def benchmark_env() -> dict:
    """The environment of the benchmark commands: nnU-Net's folders required, one preprocessing process by default.

    ``nnUNet_n_proc_DA`` is removed: the pipeline sets it for training only (0 crashes nnU-Net's planner).

    Raises:
        SystemExit: naming the first of ``nnUNet_raw``, ``nnUNet_preprocessed``, ``nnUNet_results`` that is unset.
    """
    env = dict(os.environ, nnUNet_def_n_proc=os.environ.get("nnUNet_def_n_proc", "1"))
    for var in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        if not env.get(var):
            raise SystemExit(f"{var} is not set: export the nnU-Net folders first")
    env.pop("nnUNet_n_proc_DA", None)
    return env


def find_dataset_folder(root: str | os.PathLike, dataset_id: int) -> Path:
    """``root/DatasetXXX_*`` for ``dataset_id``; raises FileNotFoundError naming ``root`` if absent."""
    hits = sorted(Path(root).glob(f"Dataset{dataset_id:03d}_*"))
    if not hits:
        raise FileNotFoundError(f"no Dataset{dataset_id:03d}_* folder in {root}")
    return hits[0]


def is_scribble_trainer(name: str) -> bool:
    """True if nnU-Net's lookup resolves ``name`` to a subclass of our scribble base trainer."""
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

    from nnunet_scribble.trainers import nnUNetTrainerScribble
    return issubclass(recursive_find_trainer_class_by_name(name), nnUNetTrainerScribble)


def default_twin_id(dataset_id: int) -> int:
    """ID of the dense twin: ``dataset_id + 100``, or ``- 100`` when that would exceed nnU-Net's 999."""
    return dataset_id + 100 if dataset_id + 100 <= 999 else dataset_id - 100


def make_dense_twin(raw_dir: Path, twin_id: int, preprocessed_root: Path, env: dict, configuration: str,
                    log_file=None, plans_name: str = "nnUNetPlans") -> Path:
    """Create (once) and preprocess the dense twin of a scribble dataset with its ``plans_name``; return its raw folder.

    Raises:
        FileNotFoundError: if the scribble dataset has no ``labelsTr_dense``.
    """
    dense = raw_dir / "labelsTr_dense"
    if not dense.is_dir():
        raise FileNotFoundError(f"{dense} not found: the fully supervised upper bound needs dense training labels")
    twin = raw_dir.parent / f"Dataset{twin_id:03d}_{raw_dir.name.split('_', 1)[1]}Dense"
    if not twin.exists():
        tmp = twin.with_name(f".{twin.name}.partial")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        (tmp / "imagesTr").symlink_to((raw_dir / "imagesTr").resolve(), target_is_directory=True)
        shutil.copytree(dense, tmp / "labelsTr")
        ds = json.loads((raw_dir / "dataset.json").read_text())
        ds["labels"] = {k: v for k, v in ds["labels"].items() if k != "ignore"}
        ds["description"] = f"dense twin of {raw_dir.name} (labelsTr = its labelsTr_dense)"
        (tmp / "dataset.json").write_text(json.dumps(ds, indent=2))
        os.replace(tmp, twin)
    pre_src = preprocessed_root / raw_dir.name
    pre_twin = preprocessed_root / twin.name
    if not (pre_twin / f"{plans_name}.json").is_file():
        copy_plans(pre_src, pre_twin, twin.name, plans_name)
    shutil.copyfile(twin / "dataset.json", pre_twin / "dataset.json")  # normally written by nnU-Net's planner
    if (pre_src / "splits_final.json").is_file():
        shutil.copyfile(pre_src / "splits_final.json", pre_twin / "splits_final.json")
    data_id = json.loads((pre_twin / f"{plans_name}.json").read_text())["configurations"][configuration].get(
        "data_identifier", f"{plans_name}_{configuration}")
    if not (pre_twin / data_id).is_dir():
        pipeline.run_command([pipeline.console_script("nnUNetv2_extract_fingerprint"), "-d", str(twin_id),
                              "-np", "1"], env, log_file)
        pipeline.run_command([pipeline.console_script("nnUNetv2_preprocess"), "-d", str(twin_id), "-plans_name",
                              plans_name, "-c", configuration, "-np", "1"], env, log_file)
    return twin


def held_out_set(raw_dir: Path, preprocessed_dir: Path, fold: int | str, work: Path) -> tuple[Path, Path, str]:
    """(input image folder, dense reference folder, description) of the cases to score.

    ``imagesTs`` + ``labelsTs`` when present; otherwise the fold's validation cases (images linked into
    ``work/val_images``) with ``labelsTr_dense``.
    """
    if (raw_dir / "imagesTs").is_dir() and (raw_dir / "labelsTs").is_dir():
        return raw_dir / "imagesTs", raw_dir / "labelsTs", "imagesTs/labelsTs"
    splits = json.loads((preprocessed_dir / "splits_final.json").read_text())
    val = splits[int(fold)]["val"]
    images = work / f"val_images_fold{fold}"
    shutil.rmtree(images, ignore_errors=True)
    images.mkdir(parents=True)
    for f in sorted((raw_dir / "imagesTr").iterdir()):
        if any(f.name.startswith(c + "_") for c in val):
            (images / f.name).symlink_to(f.resolve())
    return images, raw_dir / "labelsTr_dense", f"fold {fold} validation cases vs labelsTr_dense"


def case_ids(images: Path) -> list[str]:
    """Case identifiers of an nnU-Net image folder (``<case>_0000.<ending>`` files)."""
    return sorted({f.name.rsplit("_", 1)[0] for f in images.iterdir() if "_" in f.name})


def has_predictions(folder: Path, images: Path) -> bool:
    """True if ``folder`` holds a prediction for every case of ``images``."""
    if not folder.is_dir():
        return False
    names = {f.name.split(".")[0] for f in folder.iterdir()}
    return all(c in names for c in case_ids(images))


#: file endings of label maps that the folder-comparison benchmarks (``error_breakdown.py``, ``volumes.py``) read
LABEL_EXTENSIONS = (".nii.gz", ".nrrd", ".mha", ".nii")


def reference_and_labels(reference: str | os.PathLike, labels: str | os.PathLike | None) -> tuple[Path, dict]:
    """The dense reference folder and its ``{name: value}`` labels, for the folder-comparison benchmarks.

    Args:
        reference: folder of dense reference label maps (``labelsTs`` or ``labelsTr_dense``).
        labels: a ``dataset.json`` holding the labels; None: the reference folder's parent's ``dataset.json``.

    Raises:
        SystemExit: naming the folder that is not one, or the missing ``dataset.json``.
    """
    reference = Path(reference)
    if not reference.is_dir():
        raise SystemExit(f"{reference} is not a folder: expected the dense reference labels")
    labels_file = Path(labels) if labels else reference.parent / "dataset.json"
    if not labels_file.is_file():
        raise SystemExit(f"{labels_file} not found: pass --labels path/to/dataset.json")
    return reference, json.loads(labels_file.read_text())["labels"]


def label_files(predictions: Path) -> list[tuple[str, Path]]:
    """``(case, file)`` of every label map in a prediction folder, sorted.

    Raises:
        FileNotFoundError: naming a folder that holds no label maps.
    """
    files = sorted(p for p in predictions.iterdir() if p.name.endswith(LABEL_EXTENSIONS))
    if not files:
        raise FileNotFoundError(f"{predictions} holds no label maps ({', '.join(LABEL_EXTENSIONS)})")
    return [(next(f.name[:-len(e)] for e in LABEL_EXTENSIONS if f.name.endswith(e)), f) for f in files]


def summary_file_name(trainer: str, run: int = 0) -> str:
    """``summary_<trainer>.json`` for the first run, ``summary_<trainer>_repeat<k>.json`` for repeat ``k``."""
    return f"summary_{trainer}.json" if run == 0 else f"summary_{trainer}_repeat{run}.json"


def load_results(folder: str | os.PathLike, label_suffix: str = "") -> list[TrainerResult]:
    """The :class:`TrainerResult` of every ``summary_*.json`` that ``run_quality.py`` wrote into ``folder``.

    Args:
        folder: a ``run_quality.py --output`` folder.
        label_suffix: appended to each trainer's name in the tables (e.g. ``" (λ_segc 1.0)"`` for a run made with
            changed hyperparameters); runs with the same resulting name are pooled as repeats.

    Raises:
        FileNotFoundError: if ``folder`` holds no summary.
    """
    out = []
    for f in sorted(Path(folder).glob("summary_*.json")):
        stem = f.stem[len("summary_"):]
        trainer, run = stem, 0
        if "_repeat" in stem and stem.rsplit("_repeat", 1)[1].isdigit():
            trainer, run = stem.rsplit("_repeat", 1)[0], int(stem.rsplit("_repeat", 1)[1])
        s = json.loads(f.read_text())
        out.append(TrainerResult(trainer, s, float(s.get("train_seconds", float("nan"))),
                                 float(s.get("predict_seconds", float("nan"))), s.get("dataset", ""), run=run,
                                 label=(s.get("label") or trainer) + label_suffix
                                 if label_suffix or s.get("label") else None))
    if not out:
        raise FileNotFoundError(f"no summary_*.json in {folder}: not a run_quality.py results folder")
    return out


def group_runs(results: Sequence[TrainerResult]) -> dict[str, list[TrainerResult]]:
    """Results by table name, in order of first appearance."""
    groups: dict[str, list[TrainerResult]] = {}
    for r in results:
        groups.setdefault(r.name, []).append(r)
    return groups


def run_spread(groups: dict[str, list[TrainerResult]]) -> dict[str, tuple[float, float, bool]]:
    """Per name: (mean Dice over runs, run-to-run standard deviation, whether that deviation is measured).

    The run-to-run standard deviation (ddof 1) of the per-run mean foreground Dice needs two runs; a name with one run
    gets the largest deviation measured on any other name (flagged as not measured), or NaN if no name was
    repeated.
    """
    means = {n: [r.summary["mean"]["Dice"]["mean"] for r in rs] for n, rs in groups.items()}
    measured = {n: float(np.std(m, ddof=1)) for n, m in means.items() if len(m) > 1}
    fallback = max(measured.values()) if measured else float("nan")
    return {n: (float(np.mean(m)), measured.get(n, fallback), n in measured) for n, m in means.items()}


def ranking_notes(groups: dict[str, list[TrainerResult]]) -> dict[str, str]:
    """Per name: its rank by mean Dice and the names whose mean lies within the sum of both run-to-run deviations.

    Two rows whose means differ by less than ``sd_a + sd_b`` could swap places in another set of runs; the note says
    so, with ``*`` when a deviation was not measured on that row (one run: the largest measured one is assumed).
    """
    return swap_notes(run_spread(groups))


def swap_notes(spread: dict[str, tuple[float, float, bool]]) -> dict[str, str]:
    """:func:`ranking_notes` for any values: per name (mean, run-to-run sd, whether that sd was measured).

    Ranks by mean (1 = highest); a name whose mean lies within ``sd_a + sd_b`` of another's "may swap" with it, marked
    ``*`` when that other's sd was not measured. A NaN sd makes no pair close.
    """
    order = sorted(spread, key=lambda n: -spread[n][0])
    notes = {}
    for rank, n in enumerate(order, 1):
        m, sd, ok = spread[n]
        close = [o.replace("nnUNetTrainer", "") + ("" if spread[o][2] else "*") for o in order
                 if o != n and abs(spread[o][0] - m) < sd + spread[o][1]]
        notes[n] = f"{rank}" + (f"; may swap with {', '.join(close)}" if close else "")
    return notes


def _pooled(runs: Sequence[TrainerResult], get) -> tuple[float, float]:
    """Mean over runs of (value mean, across-case std) read by ``get(summary) -> {'mean', 'std'}``."""
    return (float(np.mean([get(r.summary)["mean"] for r in runs])),
            float(np.mean([get(r.summary)["std"] for r in runs])))


def results_rows(results: Sequence[TrainerResult], upper_bound: str | None) -> list[dict]:
    """One flat row per table name for the CSV/Markdown tables (Dice in %, HD95 in mm).

    Several runs of one name (repeats) are pooled: values are the mean over runs of each run's mean (± the mean
    across-case standard deviation); the columns ``runs``, ``run-to-run sd`` (of mean Dice, percentage points) and
    ``rank`` (see :func:`ranking_notes`) appear as soon as any name has more than one run. Summaries evaluated with
    ``extra_metrics`` add ``far fg %`` (share of the predicted foreground farther than 15 mm from the reference
    foreground, mean over cases) and ``Dice mean, largest component`` (after nnU-Net's largest-foreground-component
    post-processing); rows without them leave those cells empty. ``train s`` reads ``>=N`` when a run's time is the
    span of its checkpoint's epochs (:data:`TRAIN_TIME_FROM_CHECKPOINT`) rather than the measured wall time.
    """
    groups = group_runs(results)
    ub = groups.get(upper_bound) if upper_bound else None
    ub_dice = _pooled(ub, lambda s: s["mean"]["Dice"])[0] if ub else None
    repeated = any(len(rs) > 1 for rs in groups.values())
    spread, notes = (run_spread(groups), ranking_notes(groups)) if repeated else ({}, {})
    rows = []
    for name, runs in groups.items():
        row = {"trainer": name, "cases": len(runs[0].summary["cases"])}
        for cls in runs[0].summary["per_class"]:
            d = _pooled(runs, lambda s: s["per_class"][cls]["Dice"])
            h = _pooled(runs, lambda s: s["per_class"][cls]["HD95"])
            row[f"Dice {cls}"] = f"{100 * d[0]:.1f} ± {100 * d[1]:.1f}"
            row[f"HD95 {cls}"] = f"{h[0]:.1f} ± {h[1]:.1f}"
        d, h = _pooled(runs, lambda s: s["mean"]["Dice"]), _pooled(runs, lambda s: s["mean"]["HD95"])
        row["Dice mean"] = f"{100 * d[0]:.1f} ± {100 * d[1]:.1f}"
        row["HD95 mean"] = f"{h[0]:.1f} ± {h[1]:.1f}"
        if all("extra" in r.summary for r in runs):
            far = _pooled(runs, lambda s: s["extra"]["far_foreground"])
            lcc = _pooled(runs, lambda s: s["extra"]["Dice_largest_component"])
            row["far fg %"] = f"{100 * far[0]:.0f}"
            row["Dice mean, largest component"] = f"{100 * lcc[0]:.1f} ± {100 * lcc[1]:.1f}"
        if repeated:
            sd, measured = spread[name][1], spread[name][2]
            row["runs"] = len(runs)
            row["run-to-run sd"] = f"{100 * sd:.1f}" if measured else "-"
            row["rank"] = notes[name]
        row["% of full sup."] = f"{100 * d[0] / ub_dice:.1f}" if ub_dice else "-"
        lower_bound = any(r.summary.get("train_seconds_source") == TRAIN_TIME_FROM_CHECKPOINT for r in runs)
        row["train s"] = (">=" if lower_bound else "") + f"{np.nanmean([r.train_seconds for r in runs]):.0f}" \
            if not all(np.isnan(r.train_seconds) for r in runs) else "nan"
        row["predict s"] = f"{np.nanmean([r.predict_seconds for r in runs]):.1f}" \
            if not all(np.isnan(r.predict_seconds) for r in runs) else "nan"
        rows.append(row)
    return rows


def write_tables(rows: list[dict], out_dir: Path, header: str) -> tuple[Path, Path]:
    """Write ``results.csv`` and ``results.md`` (``header`` above the Markdown table)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    keys = list(dict.fromkeys(k for row in rows for k in row))
    with open(out_dir / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)
    lines = [header, "", "| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(str(row.get(k, "")) for k in keys) + " |" for row in rows]
    (out_dir / "results.md").write_text("\n".join(lines) + "\n")
    return out_dir / "results.csv", out_dir / "results.md"


def saved_table(output: str | os.PathLike) -> Path:
    """The Markdown file :func:`print_and_save` writes for ``output`` (its JSON twin: ``.with_suffix(".json")``).

    The suffix is appended to the whole name (``off1.0_MedCL`` -> ``off1.0_MedCL.md``), not put in place of a
    dotted part of it; a given ``.md`` or ``.json`` ending is dropped first.
    """
    out = Path(output)
    stem = out.name[:-len(out.suffix)] if out.suffix in (".md", ".json") else out.name
    return out.parent / f"{stem}.md"


def print_and_save(table: str, result: dict, output: str | os.PathLike | None) -> None:
    """Print a benchmark's Markdown ``table``; with ``output``, also write it and ``result`` (JSON) to
    :func:`saved_table`'s ``<output>.md`` and ``<output>.json``."""
    print(table, end="")
    if output:
        md = saved_table(output)
        md.parent.mkdir(parents=True, exist_ok=True)
        md.write_text(table)
        md.with_suffix(".json").write_text(json.dumps(result, indent=1))


def plot_results(results: Sequence[TrainerResult], png: Path) -> Path:
    """Grouped per-class Dice bars (mean over runs ± across-case std) and a box plot of per-case mean Dice per row
    (cases of all runs of a row pooled)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    groups = group_runs(results)
    fig = Figure(figsize=(6 + 1.5 * len(groups), 5))
    FigureCanvasAgg(fig)
    ax_bar, ax_box = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    classes = list(results[0].summary["per_class"])
    width = 0.8 / len(groups)
    for i, (name, runs) in enumerate(groups.items()):
        stats = [_pooled(runs, lambda s: s["per_class"][c]["Dice"]) for c in classes]
        ax_bar.bar(np.arange(len(classes)) + i * width, [m for m, _ in stats], width, yerr=[sd for _, sd in stats],
                   label=name, capsize=2)
    ax_bar.set_xticks(np.arange(len(classes)) + 0.4 - width / 2, classes)
    ax_bar.set_ylabel("Dice")
    ax_bar.set_ylim(0, 1)
    ax_bar.legend(fontsize=6, ncol=2, loc="lower center", bbox_to_anchor=(0.5, 1.0))
    ax_box.boxplot([[c["mean"]["Dice"] for r in runs for c in r.summary["cases"]] for runs in groups.values()])
    ax_box.set_xticks(range(1, len(groups) + 1), [n.replace("nnUNetTrainer", "") or "nnUNetTrainer" for n in groups],
                      rotation=30, ha="right", fontsize=7)
    ax_box.set_ylabel("per-case mean Dice")
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    return png
