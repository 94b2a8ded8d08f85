#!/usr/bin/env python
"""Predicted / reference volume per class, and whether nnU-Net's largest-component post-processing keeps the organ.

A model that scores a low Dice either segments the organ wrongly or paints islands apart from it; the two need
different fixes, and only the islands can be removed by post-processing. For one dense reference folder and
several prediction folders this prints, per folder, three tables of the predicted / reference volume of each class
(median over cases, with the range), and the mean Dice of the classes:

    as predicted            the prediction as it is
    largest component       after nnU-Net's "keep the largest foreground component" post-processing
                            (``nnunet_scribble.evaluation.metrics.keep_largest_foreground_component``, what
                            ``nnUNetv2_find_best_configuration`` tries and ``nnUNetv2_apply_postprocessing`` applies)
    on the reference        only the predicted foreground components that touch the reference foreground: an oracle
                            that removes every island and nothing else (it needs the reference, so no model can
                            apply it; it bounds what island removal can give)

and the cases whose largest component has no voxel on the reference foreground while a smaller one has ("organ
deleted": the post-processing keeps an island and deletes the organ). Components are connected in the full
neighbourhood (8 in 2D, 26 in 3D), as in nnU-Net's post-processing; all foreground classes form one mask.
Example (the ACDC fold-1 baseline of ``benchmarks/README.md``; ``--split frame01`` reports ACDC's end-diastolic
frames apart from the others):

    python benchmarks/volumes.py $nnUNet_raw/Dataset027_ACDCScribble/labelsTr_dense --split frame01 \\
        Scribble=$nnUNet_results/Dataset027_ACDCScribble/nnUNetTrainerScribble__nnUNetPlans_cpu__2d/fold_1/validation

A folder given as ``NAME=PATH`` is shown as NAME. Only the cases present in a prediction folder are read. A class
absent from a case's reference is left out of that case's volume ratios (its Dice follows ``metrics.dice``).
"""
from __future__ import annotations

import argparse
import re
from pathlib import Path

import numpy as np
from scipy import ndimage

from nnunet_scribble.benchmarking import label_files, reference_and_labels
from nnunet_scribble.evaluation.metrics import dice, foreground_labels, keep_largest_foreground_component

VARIANTS = ("as predicted", "largest component", "on the reference")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("reference", help="folder of dense reference label maps (labelsTs or labelsTr_dense)")
    p.add_argument("predictions", nargs="+", help="prediction folders, optionally NAME=PATH")
    p.add_argument("--labels", default=None,
                   help="dataset.json with the labels (default: the reference folder's parent's dataset.json)")
    p.add_argument("--split", default=None, metavar="REGEX",
                   help="also report the cases whose name matches REGEX apart from the others (e.g. frame01)")
    return p.parse_args(argv)


def _mask(label_map: np.ndarray, value) -> np.ndarray:
    return np.isin(label_map, np.atleast_1d(value))


def on_reference_components(pred: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """``pred`` with every foreground component that has no voxel on the reference foreground set to background.

    Args:
        pred: predicted label map (0 is background), 2D or 3D.
        ref: reference label map of the same shape (0 is background).

    Returns:
        The copy of ``pred`` that keeps the components touching ``ref > 0``.
    """
    if pred.shape != ref.shape:
        raise ValueError(f"prediction shape {pred.shape} != reference shape {ref.shape}")
    components, _ = ndimage.label(pred > 0, np.ones((3,) * pred.ndim, bool))
    keep = np.unique(components[(ref > 0) & (components > 0)])
    return np.where(np.isin(components, keep), pred, 0).astype(pred.dtype)


def case_volumes(pred: np.ndarray, ref: np.ndarray, labels: dict) -> dict:
    """Volume ratios and mean Dice of one case under the three variants, and whether the organ is deleted.

    Args:
        pred: predicted label map.
        ref: reference label map of the same shape.
        labels: ``{name: value}`` as in ``dataset.json``; background and ``"ignore"`` are skipped.

    Returns:
        ``{"ratios": {variant: {class: predicted / reference voxels, or NaN where the reference has none}},
        "dice": {variant: mean Dice over the classes}, "organ_deleted": bool}``.
    """
    classes = foreground_labels(labels)
    largest = keep_largest_foreground_component(pred, labels)
    variants = {VARIANTS[0]: pred, VARIANTS[1]: largest, VARIANTS[2]: on_reference_components(pred, ref)}
    ref_fg = ref > 0
    deleted = bool((largest > 0).any() and not ((largest > 0) & ref_fg).any() and ((pred > 0) & ref_fg).any())
    ratios, dices = {}, {}
    for variant, p in variants.items():
        ratios[variant], per_class = {}, []
        for name, value in classes.items():
            r, q = _mask(ref, value), _mask(p, value)
            ratios[variant][name] = q.sum() / r.sum() if r.any() else float("nan")
            per_class.append(dice(q, r))
        dices[variant] = float(np.mean(per_class))
    return {"ratios": ratios, "dice": dices, "organ_deleted": deleted}


def read_folder(reference: Path, predictions: Path, labels: dict) -> dict[str, dict]:
    """:func:`case_volumes` of every case of ``predictions``: ``{case: result}``.

    Raises:
        FileNotFoundError: naming the reference of a prediction that has none, or an empty prediction folder.
        ValueError: naming the case whose prediction and reference shapes differ.
    """
    import SimpleITK as sitk

    out = {}
    for case, f in label_files(predictions):
        ref_file = reference / f.name
        if not ref_file.is_file():
            raise FileNotFoundError(f"{ref_file} not found: the reference of prediction {f}")
        ref = sitk.GetArrayFromImage(sitk.ReadImage(str(ref_file)))
        pred = sitk.GetArrayFromImage(sitk.ReadImage(str(f)))
        if pred.shape != ref.shape:
            raise ValueError(f"{f}: shape {pred.shape}, expected the reference's {ref.shape} ({ref_file})")
        out[case] = case_volumes(pred, ref, labels)
    return out


def _ratio(values: list[float]) -> str:
    v = np.array([x for x in values if not np.isnan(x)])
    return f"{np.median(v):.1f}x ({v.min():.1f}-{v.max():.1f})" if v.size else "-"


def markdown(name: str, cases: dict[str, dict], split: str | None = None) -> str:
    """The three volume tables of one prediction folder, with the organ-deleted cases."""
    groups = {"all cases": list(cases)}
    if split:
        pattern = re.compile(split)
        groups = {f"matching {split}": [c for c in cases if pattern.search(c)],
                  f"not matching {split}": [c for c in cases if not pattern.search(c)], "all cases": list(cases)}
    classes = list(next(iter(cases.values()))["ratios"][VARIANTS[0]])
    head = ["variant"] + [f"{c}, {g} (n={len(m)})" for g, m in groups.items() if m for c in classes] + ["mean Dice"]
    lines = [f"**{name}**: predicted / reference volume, median (range) over cases", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for variant in VARIANTS:
        cells = [_ratio([cases[k]["ratios"][variant][c] for k in members])
                 for members in groups.values() if members for c in classes]
        mean_dice = 100 * np.mean([cases[k]["dice"][variant] for k in cases])
        lines.append("| " + " | ".join([variant] + cells + [f"{mean_dice:.1f}"]) + " |")
    deleted = [k for k in cases if cases[k]["organ_deleted"]]
    lines += ["", f"organ deleted by the largest component: {len(deleted)} of {len(cases)}"
              + (f" ({', '.join(deleted)})" if deleted else "")]
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    reference, labels = reference_and_labels(args.reference, args.labels)
    if args.split:
        try:
            re.compile(args.split)
        except re.error as e:
            raise SystemExit(f"--split {args.split!r} is not a regular expression: {e}")
    for spec in args.predictions:
        name, _, path = spec.rpartition("=") if "=" in spec else ("", "", spec)
        folder = Path(path)
        if not folder.is_dir():
            raise SystemExit(f"{folder} is not a folder: expected predicted label maps")
        try:
            cases = read_folder(reference, folder, labels)
        except (FileNotFoundError, ValueError) as e:
            raise SystemExit(f"error: {e}")
        print(markdown(name or folder.name, cases, args.split) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
