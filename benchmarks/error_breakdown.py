#!/usr/bin/env python
"""Where each model's errors lie: near the structure (boundaries, class confusion) or far from it.

For one dense reference folder and several prediction folders, prints per class the mean over cases of

    area near / true   predicted voxels within --far_mm of the reference foreground, divided by the true area
    precision near     true positives / predicted voxels near the structure
    recall             true positives / true area
    far FP / true      predicted voxels farther than --far_mm from all reference foreground, divided by the true area

(``nnunet_scribble.evaluation.metrics.error_breakdown``). Dice mixes the two kinds of error; this separates a model
that under-segments a class from one that paints look-alike anatomy elsewhere. Example (MSCMRseg, the folders
``run_quality.py`` wrote):

    python benchmarks/error_breakdown.py $nnUNet_raw/Dataset028_MSCMRScribble/labelsTs \\
        Scribble=benchmarks/results/mscmr_2d_cpu/pred_nnUNetTrainerScribble \\
        MaCo=benchmarks/results/mscmr_2d_cpu/pred_nnUNetTrainerMaCo

A folder given as ``NAME=PATH`` is shown as NAME. For a fold's validation predictions (ACDC) pass the model's
``fold_0/validation`` and ``labelsTr_dense``: only the cases present in the prediction folder are scored.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from nnunet_scribble.evaluation.metrics import error_breakdown, foreground_labels

COLUMNS = ("area near / true", "precision near", "recall", "far FP / true")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("reference", help="folder of dense reference label maps (labelsTs or labelsTr_dense)")
    p.add_argument("predictions", nargs="+", help="prediction folders, optionally NAME=PATH")
    p.add_argument("--far_mm", type=float, default=15.0, help="near/far border in mm (default: %(default)s)")
    p.add_argument("--labels", default=None,
                   help="dataset.json with the labels (default: the reference folder's parent's dataset.json)")
    return p.parse_args(argv)


def case_ratios(counts: dict[str, dict[str, int]]) -> dict[str, tuple[float, ...]]:
    """The four columns of one case from :func:`error_breakdown` counts (NaN where a denominator is 0)."""
    out = {}
    for name, c in counts.items():
        near = c["tp"] + c["fp_near"]
        ref = c["ref"]
        out[name] = (near / ref if ref else float("nan"), c["tp"] / near if near else float("nan"),
                     c["tp"] / ref if ref else float("nan"), c["fp_far"] / ref if ref else float("nan"))
    return out


def breakdown_folder(reference: Path, predictions: Path, labels: dict, far_mm: float) -> dict[str, np.ndarray]:
    """Mean over the prediction folder's cases of :func:`case_ratios`: ``{class: array of the 4 columns}``.

    Raises:
        FileNotFoundError: naming the reference file of a prediction that has none.
    """
    import SimpleITK as sitk

    files = sorted(p for p in predictions.iterdir() if p.name.endswith((".nii.gz", ".nrrd", ".mha", ".nii")))
    if not files:
        raise FileNotFoundError(f"{predictions} holds no label maps (.nii.gz, .nrrd, .mha)")
    rows: dict[str, list] = {name: [] for name in foreground_labels(labels)}
    for f in files:
        ref_file = reference / f.name
        if not ref_file.is_file():
            raise FileNotFoundError(f"{ref_file} not found: the reference of prediction {f}")
        ref_img = sitk.ReadImage(str(ref_file))
        ref = sitk.GetArrayFromImage(ref_img)
        pred = sitk.GetArrayFromImage(sitk.ReadImage(str(f)))
        spacing = list(reversed(ref_img.GetSpacing()))  # array axes are (z, y, x)
        for name, values in case_ratios(error_breakdown(pred, ref, labels, spacing, far_mm)).items():
            rows[name].append(values)
    return {name: np.nanmean(np.array(v, float), axis=0) for name, v in rows.items()}


def markdown(results: dict[str, dict[str, np.ndarray]], far_mm: float) -> str:
    classes = list(next(iter(results.values())))
    head = ["predictions"] + [f"{c} {col}" for col in COLUMNS for c in classes]
    lines = [f"Near = within {far_mm:g} mm of the reference foreground; mean over cases.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, per_class in results.items():
        lines.append("| " + " | ".join([name] + [f"{per_class[c][i]:.2f}" for i in range(len(COLUMNS))
                                                 for c in classes]) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    reference = Path(args.reference)
    if not reference.is_dir():
        raise SystemExit(f"{reference} is not a folder: expected the dense reference labels")
    labels_file = Path(args.labels) if args.labels else reference.parent / "dataset.json"
    if not labels_file.is_file():
        raise SystemExit(f"{labels_file} not found: pass --labels path/to/dataset.json")
    labels = json.loads(labels_file.read_text())["labels"]
    results = {}
    for spec in args.predictions:
        name, _, path = spec.rpartition("=") if "=" in spec else ("", "", spec)
        folder = Path(path)
        try:
            results[name or folder.name] = breakdown_folder(reference, folder, labels, args.far_mm)
        except FileNotFoundError as e:
            raise SystemExit(f"error: {e}")
    print(markdown(results, args.far_mm))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
