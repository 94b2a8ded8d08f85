#!/usr/bin/env python
"""What MaCo's L_con teaches on unannotated voxels, against the dense labels of a scribble dataset.

L_con (MaCo eq. 6) is a weighted cross-entropy ``-sum_c w_c,p log y'_c,p`` per voxel; a voxel's loss is smallest
for ``y'_p`` proportional to ``w_p``, so the class L_con pulls a voxel towards is ``argmax_c w_c,p``. With the
continuous pseudo labels (eq. 3-5) ``w_c = cpl^c / N`` where the normaliser ``N`` is either per class
(``N_c = ||cpl^c||_0``; the background's ``tau`` floor makes ``N_bg`` every voxel) or one count for all classes.
This script computes, on each training slice (2D) or volume (3D) with scribbles, the per-class distance maps and
continuous pseudo labels with the package's own functions (the same as the trainer; distances in voxels of the
target spacing), and scores the argmax of ``w`` on the unannotated voxels against the dense labels: Dice,
precision and the area it labels per class divided by the true area. ``nearest`` (the nearest scribble's class,
MaCo's hard-label ablation) is the reference.

    python benchmarks/cpl_targets.py -d 27            # ACDC as converted by Dataset027_ACDCScribble.py

Needs ``$nnUNet_raw/DatasetXXX/labelsTr`` (scribbles with the ignore label) and ``labelsTr_dense``. The target
spacing is read from ``$nnUNet_preprocessed/DatasetXXX/<plans>.json`` when it exists (``--spacing`` otherwise). Whole
slices are used, not training patches; ``N`` is counted per slice (the trainer counts it per batch of patches).
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

from nnunet_scribble.benchmarking import find_dataset_folder
from nnunet_scribble.transforms.distance_maps import continuous_pseudo_labels, scribble_distance_maps

RULES = ("per-class N (eq. 6, 'class')", "one N ('voxel')", "nearest scribble (hard labels)")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-d", "--dataset_id", type=int, required=True, help="raw dataset ID ($nnUNet_raw)")
    p.add_argument("-c", "--configuration", default="2d", help="2d: per slice; 3d_fullres: per volume")
    p.add_argument("-p", "--plans", default="nnUNetPlans", help="plans for the target spacing (default: %(default)s)")
    p.add_argument("--spacing", type=float, nargs="+", help="target spacing (z, y, x) if there are no plans")
    p.add_argument("--every", type=int, default=1, help="use every n-th training case (default: %(default)s)")
    p.add_argument("--alpha", type=float, default=0.1)
    p.add_argument("--tau", type=float, default=0.05)
    return p.parse_args(argv)


def weight_argmax(seg: np.ndarray, num_classes: int, ignore_label: int, sampling, alpha: float,
                  tau: float) -> dict[str, np.ndarray]:
    """Class L_con pulls each voxel towards, per rule: ``(*spatial)`` int maps, -1 where no class has a weight.

    Args:
        seg: scribble label map (classes and ``ignore_label``) of one slice or volume.
        num_classes: classes including background.
        ignore_label: the dataset's ignore label.
        sampling: voxel spacing per axis (relative units are enough).
        alpha, tau: CPL parameters (eq. 5).
    """
    dist = scribble_distance_maps(seg, num_classes, ignore_label, sampling, None)
    cpl = continuous_pseudo_labels(torch.from_numpy(dist)[None], alpha, tau, background_class=0)[0].numpy()
    count = (cpl != 0).reshape(num_classes, -1).sum(1).clip(min=1).reshape(-1, *([1] * seg.ndim))
    out = {}
    for rule, w in zip(RULES, (cpl / count, cpl, -dist)):
        lab = w.argmax(0)
        lab[~np.isfinite(w).any(0) if rule == RULES[2] else (w.max(0) <= 0)] = -1
        out[rule] = lab
    return out


def score(counts: dict[str, np.ndarray], labels: dict[str, np.ndarray], dense: np.ndarray,
          unannotated: np.ndarray, num_classes: int) -> None:
    """Add true positives, false positives and false negatives per class (on ``unannotated``) to ``counts``."""
    for rule, lab in labels.items():
        acc = counts.setdefault(rule, np.zeros((num_classes, 3)))
        for c in range(1, acc.shape[0]):
            pred, true = (lab == c) & unannotated, (dense == c) & unannotated
            acc[c] += [(pred & true).sum(), (pred & ~true).sum(), (~pred & true).sum()]


def main(argv=None) -> int:
    args = parse_args(argv)
    if "nnUNet_raw" not in os.environ:
        raise SystemExit("nnUNet_raw is not set: export it (the folder holding DatasetXXX_<name>/labelsTr)")
    raw = find_dataset_folder(os.environ["nnUNet_raw"], args.dataset_id)
    pre_root = Path(os.environ.get("nnUNet_preprocessed", "/nonexistent"))
    info = json.loads((raw / "dataset.json").read_text())
    classes = {v: k for k, v in info["labels"].items() if k != "ignore"}
    ignore, ending = info["labels"]["ignore"], info["file_ending"]
    plans = pre_root / raw.name / f"{args.plans}.json"
    if args.spacing:
        target = args.spacing
    elif plans.is_file():
        target = json.loads(plans.read_text())["configurations"][args.configuration]["spacing"]
    else:
        raise SystemExit(f"{plans} not found: give --spacing")
    cases = sorted((raw / "labelsTr").glob(f"*{ending}"))[::args.every]
    counts: dict[str, np.ndarray] = {}
    num_classes = len(classes)
    for f in cases:
        img = sitk.ReadImage(str(f))
        seg = sitk.GetArrayFromImage(img)
        dense_file = raw / "labelsTr_dense" / f.name
        if not dense_file.is_file():
            raise SystemExit(f"{dense_file} missing: this benchmark needs the dense label of every training case")
        dense = sitk.GetArrayFromImage(sitk.ReadImage(str(dense_file)))
        spacing = np.array(img.GetSpacing()[::-1])  # (z, y, x) like the array
        if args.configuration == "2d":
            rel = spacing[1:] / np.array(target[-2:])
            pieces = [(seg[z], dense[z], rel) for z in range(seg.shape[0])]
        else:
            pieces = [(seg, dense, spacing / np.array(target))]
        for s, d, rel in pieces:
            if (s != ignore).any():
                score(counts, weight_argmax(s, num_classes, ignore, rel, args.alpha, args.tau), d, s == ignore,
                      num_classes)
    print(f"{raw.name}, {len(cases)} training cases ({args.configuration}), alpha {args.alpha}, tau {args.tau}, "
          f"target spacing {target}; unannotated voxels: the class L_con's optimum gives them vs labelsTr_dense")
    names = [classes[c] for c in range(1, num_classes)]
    print(f"| rule | {' | '.join(f'Dice {n}' for n in names)} | {' | '.join(f'precision {n}' for n in names)} | "
          f"{' | '.join(f'area {n} / true' for n in names)} |")
    print("|---" * (1 + 3 * len(names)) + "|")
    for rule, acc in counts.items():
        tp, fp, fn = acc[1:, 0], acc[1:, 1], acc[1:, 2]
        dice, prec, area = 200 * tp / (2 * tp + fp + fn), 100 * tp / (tp + fp), (tp + fp) / (tp + fn)
        print(f"| {rule} | " + " | ".join(f"{v:.1f}" for v in (*dice, *prec)) + " | "
              + " | ".join(f"{v:.2f}" for v in area) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
