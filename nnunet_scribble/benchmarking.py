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


@dataclass
class TrainerResult:
    """Outcome of one trainer: the dense-evaluation summary and wall times in seconds."""

    trainer: str
    summary: dict
    train_seconds: float
    predict_seconds: float
    dataset: str
    notes: list[str] = field(default_factory=list)


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
                    log_file=None) -> Path:
    """Create (once) and preprocess the dense twin of a scribble dataset; return its raw folder.

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
    if not (pre_twin / "nnUNetPlans.json").is_file():
        pre_twin.mkdir(parents=True, exist_ok=True)
        plans = json.loads((pre_src / "nnUNetPlans.json").read_text())
        plans["dataset_name"] = twin.name
        (pre_twin / "nnUNetPlans.json").write_text(json.dumps(plans, indent=2))
    shutil.copyfile(twin / "dataset.json", pre_twin / "dataset.json")  # normally written by nnU-Net's planner
    if (pre_src / "splits_final.json").is_file():
        shutil.copyfile(pre_src / "splits_final.json", pre_twin / "splits_final.json")
    data_id = json.loads((pre_twin / "nnUNetPlans.json").read_text())["configurations"][configuration].get(
        "data_identifier", f"nnUNetPlans_{configuration}")
    if not (pre_twin / data_id).is_dir():
        pipeline.run_command([pipeline.console_script("nnUNetv2_extract_fingerprint"), "-d", str(twin_id),
                              "-np", "1"], env, log_file)
        pipeline.run_command([pipeline.console_script("nnUNetv2_preprocess"), "-d", str(twin_id), "-plans_name",
                              "nnUNetPlans", "-c", configuration, "-np", "1"], env, log_file)
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


def results_rows(results: Sequence[TrainerResult], upper_bound: str | None) -> list[dict]:
    """One flat row per trainer for the CSV/Markdown tables (Dice in %, HD95 in mm)."""
    ub = next((r for r in results if r.trainer == upper_bound), None)
    ub_dice = ub.summary["mean"]["Dice"]["mean"] if ub else None
    rows = []
    for r in results:
        row = {"trainer": r.trainer, "cases": len(r.summary["cases"])}
        for name, m in r.summary["per_class"].items():
            row[f"Dice {name}"] = f"{100 * m['Dice']['mean']:.1f} ± {100 * m['Dice']['std']:.1f}"
            row[f"HD95 {name}"] = f"{m['HD95']['mean']:.1f} ± {m['HD95']['std']:.1f}"
        mean = r.summary["mean"]
        row["Dice mean"] = f"{100 * mean['Dice']['mean']:.1f} ± {100 * mean['Dice']['std']:.1f}"
        row["HD95 mean"] = f"{mean['HD95']['mean']:.1f} ± {mean['HD95']['std']:.1f}"
        row["% of full sup."] = f"{100 * mean['Dice']['mean'] / ub_dice:.1f}" if ub_dice else "-"
        row["train s"] = f"{r.train_seconds:.0f}"
        row["predict s"] = f"{r.predict_seconds:.1f}"
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


def plot_results(results: Sequence[TrainerResult], png: Path) -> Path:
    """Grouped per-class Dice bars (mean ± std) and a box plot of per-case mean Dice per trainer."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6 + 1.5 * len(results), 5))
    FigureCanvasAgg(fig)
    ax_bar, ax_box = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    classes = list(results[0].summary["per_class"])
    width = 0.8 / len(results)
    for i, r in enumerate(results):
        means = [r.summary["per_class"][c]["Dice"]["mean"] for c in classes]
        stds = [r.summary["per_class"][c]["Dice"]["std"] for c in classes]
        ax_bar.bar(np.arange(len(classes)) + i * width, means, width, yerr=stds, label=r.trainer, capsize=2)
    ax_bar.set_xticks(np.arange(len(classes)) + 0.4 - width / 2, classes)
    ax_bar.set_ylabel("Dice")
    ax_bar.set_ylim(0, 1)
    ax_bar.legend(fontsize=7)
    ax_box.boxplot([[c["mean"]["Dice"] for c in r.summary["cases"]] for r in results])
    ax_box.set_xticks(range(1, len(results) + 1), [r.trainer.replace("nnUNetTrainer", "") or "nnUNetTrainer"
                                                   for r in results], rotation=30)
    ax_box.set_ylabel("per-case mean Dice")
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    return png
