#!/usr/bin/env python
"""How far structures reach from their scribbles, and how many dense cases ``--beyond_mm auto`` needs.

``nnunet_scribble_determine_postprocessing`` counts every unannotated voxel farther than ``--beyond_mm`` from all
foreground scribbles of its image as known background. Too small a distance calls real foreground background (the
estimate then favours deleting it); too large a distance leaves islands unseen. ``--beyond_mm auto`` takes 1.25
times the largest reach over the cases with dense labels, rounded up to 5 mm. On a scribble dataset with
``labelsTr_dense`` (all converters write it where dense labels exist) this script measures, over every case with
foreground scribbles and dense foreground:

- the reach per case (farthest dense foreground voxel from the nearest foreground scribble): max, p90, median;
- for a range of distances: the share of unannotated voxels made known background, the share of dense foreground
  voxels wrongly made background and the cases that have any;
- for samples of ``--sizes`` cases (``--draws`` random samples each, the dense cases a user might label): the
  distance ``auto`` suggests (min / median / max over the draws), how often it falls below the whole set's reach,
  and the foreground wrongly made background then (mean and worst over the draws).

Example (ACDC, converted by ``reproduce.py``):

    python benchmarks/beyond_distance.py $nnUNet_raw/Dataset027_ACDCScribble --sizes 3 5 10 20 -o OUT/beyond

A voxel is beyond a distance when it lies farther than it, as in ``background_beyond``; distances are binned in
0.1 mm steps, so the distances of the table are exact and a reach is rounded up to the next 0.1 mm.
"""
from __future__ import annotations

import argparse

import numpy as np

from nnunet_scribble.benchmarking import print_and_save
from nnunet_scribble.dataset_conversion.common import LABELS_TR, LABELS_TR_DENSE
from nnunet_scribble.dataset_conversion.raw_dataset import open_raw_dataset
from nnunet_scribble.evaluation.postprocessing import (DEFAULT_BEYOND_MM, beyond_from_reach,
                                                       distance_to_foreground_scribbles)

BIN_MM = 0.1
DISTANCES_MM = (20.0, 25.0, 30.0, 35.0, 40.0, 50.0, 60.0)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dataset", help="raw scribble dataset folder, or its ID / name in $nnUNet_raw")
    p.add_argument("--sizes", nargs="+", type=int, default=[3, 5, 10, 20],
                   help="numbers of densely labelled cases to sample (default: %(default)s)")
    p.add_argument("--draws", type=int, default=200, help="random samples per size (default: %(default)s)")
    p.add_argument("--margin", type=float, default=1.25, help="auto's factor on the largest reach (default 1.25)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-o", "--output", default=None, help="also write the tables (.md) and the numbers (.json) here")
    return p.parse_args(argv)


def case_histograms(scribble: np.ndarray, dense: np.ndarray, spacing, ignore_label: int, n_bins: int):
    """Reach and histograms (``BIN_MM`` bins) of the distances of unannotated and dense foreground voxels.

    Returns:
        ``(reach_mm, unannotated_hist, foreground_hist)``, or None without foreground scribbles or dense foreground.
    """
    distance = distance_to_foreground_scribbles(scribble, spacing, ignore_label)
    fg = dense != 0
    if distance is None or not fg.any():
        return None

    def hist(values):   # bin k holds the distances in (k, k + 1] x BIN_MM (0 in bin 0)
        k = np.ceil(np.round(values / BIN_MM, 6)).astype(np.int64) - 1
        return np.bincount(np.clip(k, 0, n_bins - 1), minlength=n_bins)

    return float(distance[fg].max()), hist(distance[scribble == ignore_label]), hist(distance[fg])


def beyond(hist: np.ndarray, mm: float) -> np.ndarray:
    """Counts farther than ``mm`` (a multiple of ``BIN_MM``) along the last axis of binned histograms."""
    return hist[..., int(round(mm / BIN_MM)):].sum(axis=-1)


def suggestion(reach: np.ndarray, margin: float) -> float:
    """What ``--beyond_mm auto`` suggests from the cases whose reaches are ``reach``."""
    return beyond_from_reach(float(reach.max()), margin)


def measure(spec: str, sizes, draws: int, margin: float, seed: int) -> dict:
    ds = open_raw_dataset(spec)
    if ds.ignore_label is None:
        raise SystemExit(f"{ds.folder / 'dataset.json'} declares no 'ignore' label: not a scribble dataset")
    if not (ds.folder / LABELS_TR_DENSE).is_dir():
        raise SystemExit(f"{ds.folder / LABELS_TR_DENSE} not found: the dataset has no dense labels to measure with")
    reader = ds.reader()
    n_bins = int(1000 / BIN_MM)
    cases, reach, unannotated, foreground, skipped = [], [], [], [], []
    for case in ds.cases():
        dense_path = ds.folder / LABELS_TR_DENSE / f"{case}{ds.file_ending}"
        if not dense_path.is_file():
            continue
        scribble, props = ds.read_label(ds.folder / LABELS_TR / f"{case}{ds.file_ending}", reader)
        dense, _ = ds.read_label(dense_path, reader)
        if dense.shape != scribble.shape:
            raise SystemExit(f"{dense_path}: shape {dense.shape} differs from its scribbles' {scribble.shape}")
        got = case_histograms(scribble, dense, props["spacing"], ds.ignore_label, n_bins)   # 2D: (1, y, x)
        if got is None or not (scribble == ds.ignore_label).any():   # densely labelled in labelsTr (MSCMRseg's val)
            skipped.append(case)
            continue
        cases.append(case)
        reach.append(got[0])
        unannotated.append(got[1])
        foreground.append(got[2])
    if not cases:
        raise SystemExit(f"no case of {ds.folder} has scribbles (unannotated voxels and foreground scribbles) and "
                         f"dense foreground")
    reach, unannotated, foreground = np.array(reach), np.array(unannotated), np.array(foreground)
    total_un, total_fg = unannotated.sum(), foreground.sum()
    rows = []
    for mm in sorted({*DISTANCES_MM, DEFAULT_BEYOND_MM, suggestion(reach, margin)}):
        wrong_cases = int((beyond(foreground, mm) > 0).sum())
        rows.append({"beyond_mm": mm, "known_background": float(beyond(unannotated.sum(0), mm) / total_un),
                     "foreground_made_background": float(beyond(foreground.sum(0), mm) / total_fg),
                     "cases_with_foreground_made_background": wrong_cases})
    rng = np.random.default_rng(seed)
    samples = []
    for k in sizes:
        if not 1 <= k <= len(cases):
            raise SystemExit(f"--sizes {k}: expected 1 to {len(cases)} (the measurable cases)")
        got, wrong, below = [], [], 0
        for _ in range(draws):
            pick = rng.choice(len(cases), size=k, replace=False)
            mm = suggestion(reach[pick], margin)
            got.append(mm)
            wrong.append(float(beyond(foreground.sum(0), mm) / total_fg))
            below += bool(mm < reach.max())
        samples.append({"cases": k, "suggested_min": min(got), "suggested_median": float(np.median(got)),
                        "suggested_max": max(got), "below_full_reach": below / draws,
                        "foreground_made_background_mean": float(np.mean(wrong)),
                        "foreground_made_background_max": float(np.max(wrong))})
    order = np.argsort(reach)
    return {"dataset": ds.folder.name, "cases": len(cases), "skipped": skipped, "margin": margin, "draws": draws,
            "reach_max_mm": float(reach.max()), "reach_p90_mm": float(np.percentile(reach, 90)),
            "reach_median_mm": float(np.median(reach)), "farthest_cases": [cases[i] for i in order[::-1][:3]],
            "suggested_mm": suggestion(reach, margin), "distances": rows, "samples": samples}


def to_markdown(r: dict) -> str:
    lines = [f"{r['dataset']}: {r['cases']} cases with foreground scribbles and dense labels"
             + (f" (skipped: {', '.join(r['skipped'])})" if r["skipped"] else ""),
             f"reach (farthest dense foreground voxel from a foreground scribble): max {r['reach_max_mm']:.1f} mm "
             f"({', '.join(r['farthest_cases'])}), p90 {r['reach_p90_mm']:.1f}, median {r['reach_median_mm']:.1f}; "
             f"--beyond_mm auto on all of them: {r['suggested_mm']:g} mm", "",
             "| beyond (mm) | unannotated voxels made background | dense foreground made background | cases with "
             "some |", "|---|---|---|---|"]
    for row in r["distances"]:
        lines.append(f"| {row['beyond_mm']:g} | {100 * row['known_background']:.1f} % | "
                     f"{100 * row['foreground_made_background']:.3f} % | "
                     f"{row['cases_with_foreground_made_background']} |")
    lines += ["", f"--beyond_mm auto from a random sample of the cases ({r['draws']} draws each, margin "
              f"{r['margin']:g}):", "",
              "| dense cases | suggested mm: min / median / max | draws below the full set's reach | "
              "foreground made background: mean / worst |", "|---|---|---|---|"]
    for s in r["samples"]:
        lines.append(f"| {s['cases']} | {s['suggested_min']:g} / {s['suggested_median']:g} / "
                     f"{s['suggested_max']:g} | {100 * s['below_full_reach']:.0f} % | "
                     f"{100 * s['foreground_made_background_mean']:.3f} % / "
                     f"{100 * s['foreground_made_background_max']:.3f} % |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    args = parse_args(argv)
    result = measure(args.dataset, args.sizes, args.draws, args.margin, args.seed)
    print_and_save(to_markdown(result), result, args.output)
    return result


if __name__ == "__main__":
    main()
