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

With ``--images $nnUNet_raw/Dataset028_MSCMRScribble/imagesTs`` a second table says how much of the predicted
foreground, and of its far part, lies on the exact-zero region touching the slice borders (outside the body;
``nnunet_scribble.dataset_conversion.image_io.zero_border_mask`` of the case's first channel), voxels pooled over
the cases: where a partial loss gives no supervision at all unless the converter labels it
(``--zero_border_background``).

A folder given as ``NAME=PATH`` is shown as NAME. For a fold's validation predictions (ACDC) pass the model's
``fold_0/validation`` and ``labelsTr_dense``: only the cases present in the prediction folder are scored.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from nnunet_scribble.benchmarking import label_files, reference_and_labels
from nnunet_scribble.dataset_conversion.image_io import zero_border_mask
from nnunet_scribble.evaluation.metrics import error_breakdown, far_mask, foreground_labels

COLUMNS = ("area near / true", "precision near", "recall", "far FP / true")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("reference", help="folder of dense reference label maps (labelsTs or labelsTr_dense)")
    p.add_argument("predictions", nargs="+", help="prediction folders, optionally NAME=PATH")
    p.add_argument("--far_mm", type=float, default=15.0, help="near/far border in mm (default: %(default)s)")
    p.add_argument("--images", default=None,
                   help="the cases' image folder (imagesTs): adds the zero-border table (see above)")
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


def zero_border_counts(pred: np.ndarray, image: np.ndarray, far: np.ndarray) -> np.ndarray:
    """Voxel counts ``[predicted fg, far fg, fg on the zero border, far fg on the zero border]`` of one case.

    The zero border is :func:`zero_border_mask` of ``image`` along its last two (in-plane) axes.
    """
    fg = pred > 0
    zero = zero_border_mask(image, axes=(-2, -1))
    return np.array([fg.sum(), (fg & far).sum(), (fg & zero).sum(), (fg & far & zero).sum()], np.int64)


def breakdown_folder(reference: Path, predictions: Path, labels: dict, far_mm: float, images: Path | None = None
                     ) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """Mean over the prediction folder's cases of :func:`case_ratios`: ``{class: array of the 4 columns}``.

    With ``images`` also the :func:`zero_border_counts` summed over the cases (else None).

    Raises:
        FileNotFoundError: naming the reference file (or the image) of a prediction that has none.
    """
    import SimpleITK as sitk

    rows: dict[str, list] = {name: [] for name in foreground_labels(labels)}
    zero = np.zeros(4, np.int64) if images is not None else None
    for case, f in label_files(predictions):
        ref_file = reference / f.name
        if not ref_file.is_file():
            raise FileNotFoundError(f"{ref_file} not found: the reference of prediction {f}")
        ref_img = sitk.ReadImage(str(ref_file))
        ref = sitk.GetArrayFromImage(ref_img)
        pred = sitk.GetArrayFromImage(sitk.ReadImage(str(f)))
        spacing = list(reversed(ref_img.GetSpacing()))  # array axes are (z, y, x)
        far = far_mask(ref, spacing, far_mm)
        for name, values in case_ratios(error_breakdown(pred, ref, labels, spacing, far_mm, far=far)).items():
            rows[name].append(values)
        if zero is not None:
            image_file = images / f"{case}_0000{f.name[len(case):]}"
            if not image_file.is_file():
                raise FileNotFoundError(f"{image_file} not found: the image of prediction {f}")
            image = sitk.GetArrayFromImage(sitk.ReadImage(str(image_file)))
            zero += zero_border_counts(pred, image, far)
    return {name: np.nanmean(np.array(v, float), axis=0) for name, v in rows.items()}, zero


def markdown(results: dict[str, dict[str, np.ndarray]], far_mm: float) -> str:
    classes = list(next(iter(results.values())))
    head = ["predictions"] + [f"{c} {col}" for col in COLUMNS for c in classes]
    lines = [f"Near = within {far_mm:g} mm of the reference foreground; mean over cases.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, per_class in results.items():
        lines.append("| " + " | ".join([name] + [f"{per_class[c][i]:.2f}" for i in range(len(COLUMNS))
                                                 for c in classes]) + " |")
    return "\n".join(lines)


def zero_border_markdown(counts: dict[str, np.ndarray], far_mm: float) -> str:
    """The zero-border table: far share of the predicted foreground and the shares on the zero border (%)."""
    def pct(a, b):
        return f"{100 * a / b:.0f} %" if b else "-"
    lines = ["Zero border = exact-zero region touching the slice borders (outside the body); voxels pooled over "
             f"cases; far = farther than {far_mm:g} mm.", "",
             "| predictions | far fg / predicted fg | predicted fg on zero border | far fg on zero border |",
             "|---|---|---|---|"]
    for name, (fg, far, on_zero, far_on_zero) in counts.items():
        lines.append(f"| {name} | {pct(far, fg)} | {pct(on_zero, fg)} | {pct(far_on_zero, far)} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    reference, labels = reference_and_labels(args.reference, args.labels)
    images = Path(args.images) if args.images else None
    if images is not None and not images.is_dir():
        raise SystemExit(f"{images} is not a folder: expected the cases' images (imagesTs)")
    results, zero = {}, {}
    for spec in args.predictions:
        name, _, path = spec.rpartition("=") if "=" in spec else ("", "", spec)
        folder = Path(path)
        try:
            results[name or folder.name], zero[name or folder.name] = breakdown_folder(
                reference, folder, labels, args.far_mm, images)
        except FileNotFoundError as e:
            raise SystemExit(f"error: {e}")
    print(markdown(results, args.far_mm))
    if images is not None:
        print("\n" + zero_border_markdown(zero, args.far_mm))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
