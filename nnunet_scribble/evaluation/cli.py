"""Command line entry points ``nnunet_scribble_evaluate`` (modelled on ``nnUNetv2_evaluate_simple``) and
``nnunet_scribble_determine_postprocessing`` (nnU-Net's post-processing choice for scribble-trained models)."""
from __future__ import annotations

import argparse
import textwrap
from pathlib import Path
from typing import Sequence

from nnunet_scribble.evaluation.folder import evaluate_folder, format_table
from nnunet_scribble.evaluation.metrics import METRIC_CONVENTIONS

_DESCRIPTION = f"""\
Evaluate predicted segmentations against DENSE reference labels: Dice and HD95 (mm) per class and case.
nnU-Net's own validation on scribble datasets scores only the scribbled voxels; use this for the real numbers.
Any file format nnU-Net reads works (NIfTI, PNG, TIFF, MHA, NRRD...); the spacing comes from the reference files.

Every prediction file must have a reference file of the same name; reference cases without a prediction are
reported as missing. Writes a JSON summary, a Markdown report (.md) and a box plot (_boxplot.png) next to it, and
prints the per-class table.

{textwrap.fill('Conventions: ' + METRIC_CONVENTIONS, 110)}
"""


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nnunet_scribble_evaluate", description=_DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("ref_folder", help="folder with the dense reference segmentations (e.g. labelsTs)")
    parser.add_argument("pred_folder", help="folder with the predicted segmentations")
    parser.add_argument("-l", "--labels", type=int, nargs="+", default=None,
                        help="label values to evaluate (0 is skipped). Default: the 'labels' of dataset.json in "
                             "the parent of ref_folder, without background and 'ignore'")
    parser.add_argument("-o", "--output", default=None,
                        help="output JSON file. Default: <pred_folder>/summary_dense.json. The Markdown report "
                             "(<name>.md) and box plot (<name>_boxplot.png) are written next to it")
    parser.add_argument("-np", type=int, default=1, dest="num_processes",
                        help="number of worker processes. Default: 1")
    parser.add_argument("--file_ending", default=None,
                        help="file ending such as .nii.gz or .png. Default: from dataset.json, else inferred")
    return parser


def evaluate_main(argv: Sequence[str] | None = None) -> None:
    """Run the ``nnunet_scribble_evaluate`` command.

    Args:
        argv: command line arguments without the program name; default ``sys.argv[1:]``.

    Raises:
        SystemExit: with status 2 if the arguments are invalid, or a file, folder or label is missing or wrong.
    """
    parser = _build_parser()
    args = parser.parse_args(argv)
    output_json = Path(args.output) if args.output else Path(args.pred_folder) / "summary_dense.json"
    output_md = output_json.with_suffix(".md")
    output_png = output_json.with_name(f"{output_json.stem}_boxplot.png")
    try:
        summary = evaluate_folder(args.ref_folder, args.pred_folder, labels=args.labels,
                                  file_ending=args.file_ending, num_processes=args.num_processes,
                                  output_json=output_json, output_markdown=output_md, output_boxplot=output_png)
    except (FileNotFoundError, ValueError) as e:
        parser.exit(2, f"nnunet_scribble_evaluate: error: {e}\n")
    print(format_table(summary))
    missing = summary["missing_predictions"]
    if missing:
        print(f"\n{len(missing)} reference case(s) without prediction: {', '.join(missing)}")
    print(f"\nWrote {output_json}, {output_md} and {output_png}")


_PP_DESCRIPTION = """\
Choose nnU-Net's post-processing for a scribble-trained model: nnUNetv2_find_best_configuration's candidates, order
and rule (keep only the largest foreground component, then only the largest component of each class, where that
raises the cross-validation score and lowers no class's), plus one candidate of its own beside the largest
foreground component (--candidates all): the foreground component closest to the image centre, which keeps a
centred organ where an island is larger. Candidates are scored against the scribbles in $nnUNet_preprocessed/
<dataset>/gt_segmentations with every unannotated voxel farther than --beyond_mm from all foreground scribbles of
its image counted as background; the score estimates each class's Dice as the F1 of the recall on its scribbles and
the precision against the voxels known not to be it. nnUNetv2_find_best_configuration scores on the scribbles alone,
where islands that no background scribble touches are invisible, and keeps them. Writes nnU-Net's
postprocessing.pkl into the output folder (default: the model folder's crossval_results_folds_<folds>_beyond<mm>mm)
and prints the nnUNetv2_apply_postprocessing command. The distance must exceed how far the structures reach from
their scribbles in your protocol: with dense labels of a few training cases, --beyond_mm auto measures it.
"""


def _distance(value: str) -> float | str:
    """``--beyond_mm``: a positive number of millimetres or ``auto``."""
    if value == "auto":
        return value
    try:
        mm = float(value)
    except ValueError:
        mm = float("nan")
    if not mm > 0:
        raise argparse.ArgumentTypeError(f"expected a positive distance in mm or 'auto', got {value!r}")
    return mm


def _build_pp_parser() -> argparse.ArgumentParser:
    from nnunet_scribble.evaluation.postprocessing import DEFAULT_BEYOND_MM

    parser = argparse.ArgumentParser(prog="nnunet_scribble_determine_postprocessing", description=_PP_DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset_name_or_id", help="dataset name or id, e.g. 027")
    parser.add_argument("-c", required=True, help="configuration, e.g. 2d or 3d_fullres")
    parser.add_argument("-tr", required=True, help="trainer, e.g. nnUNetTrainerMedCL")
    parser.add_argument("-p", default="nnUNetPlans", help="plans identifier. Default: %(default)s")
    parser.add_argument("-f", nargs="+", type=int, default=[0, 1, 2, 3, 4],
                        help="folds whose validation predictions are merged. Default: 0 1 2 3 4")
    parser.add_argument("--beyond_mm", type=_distance, default=DEFAULT_BEYOND_MM,
                        help="unannotated voxels farther than this (mm) from every foreground scribble of their "
                             "image count as background. 'auto': 1.25 x the farthest any dense foreground voxel "
                             "lies from the foreground scribbles of its image, over the cases of --dense, rounded "
                             "up to 5 mm. Default: %(default)s (ACDC: farthest 29.9 mm)")
    parser.add_argument("--dense", default=None,
                        help="dense labels of some training cases, for --beyond_mm auto. Default: "
                             "$nnUNet_raw/<dataset>/labelsTr_dense")
    parser.add_argument("--candidates", choices=("all", "nnunet"), default="all",
                        help="'nnunet': nnU-Net's candidates only; 'all' (default) also tries keeping the foreground "
                             "component closest to the image centre (among those of at least 10 %% of the largest's "
                             "size), which keeps a centred organ where an island is larger")
    parser.add_argument("-o", "--output", default=None, help="output folder (replaced if it exists)")
    return parser


def _auto_beyond_mm(model: Path, dataset: str, scribbles: Path, dense: str | None) -> float:
    """``--beyond_mm auto``: :func:`~nnunet_scribble.evaluation.postprocessing.suggest_beyond_mm`, printed."""
    from batchgenerators.utilities.file_and_folder_operations import load_json
    from nnunetv2.paths import nnUNet_raw
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    from nnunet_scribble.evaluation.postprocessing import suggest_beyond_mm

    if dense is None:
        if nnUNet_raw is None:
            raise FileNotFoundError("--beyond_mm auto needs dense labels: nnUNet_raw is not set; pass --dense FOLDER")
        dense = Path(nnUNet_raw, dataset, "labelsTr_dense")
        if not dense.is_dir():
            raise FileNotFoundError(f"--beyond_mm auto needs dense labels of some training cases: {dense} not found; "
                                    f"pass --dense FOLDER or a distance in mm")
    dataset_json = load_json(str(model / "dataset.json"))
    plans_manager = PlansManager(load_json(str(model / "plans.json")))
    ignore = plans_manager.get_label_manager(dataset_json).ignore_label
    if ignore is None:
        raise ValueError(f"{model / 'dataset.json'} declares no 'ignore' label: the dataset is densely labelled, use "
                         f"nnUNetv2_find_best_configuration")
    s = suggest_beyond_mm(scribbles, dense, plans_manager.image_reader_writer_class(), dataset_json["file_ending"],
                          ignore)
    print(f"--beyond_mm auto: over {s['cases']} cases of {dense} the dense foreground reaches at most "
          f"{s['max_mm']:.1f} mm from the foreground scribbles ({s['farthest_case']}; median {s['median_mm']:.1f}, "
          f"p90 {s['p90_mm']:.1f}) -> {s['beyond_mm']:g} mm, which makes {100 * s['known_background']:.0f} % of "
          f"their unannotated voxels background" + (f"; skipped (no scribbles or no foreground): "
                                                     f"{', '.join(s['skipped'])}"
                                                     if s["skipped"] else ""))
    return s["beyond_mm"]


def _candidate_report(out: Path) -> str:
    """Each candidate's estimated Dice per class and whether it was kept, from ``out/postprocessing.json``."""
    import json

    info = json.loads((out / "postprocessing.json").read_text())
    names = {str(v): k for k, v in json.loads((out / "dataset.json").read_text())["labels"].items()}

    def scores(values: dict) -> str:
        return ", ".join(f"{names.get(c, c)} {v:.4f}" for c, v in values.items()) + \
            f" (mean {sum(values.values()) / max(len(values), 1):.4f})"

    lines = [f"Estimated Dice (scribbles + background beyond {info['beyond_mm']:g} mm), "
             f"{info['cases']} case{'s' * (info['cases'] != 1)}, before post-processing: "
             f"{scores(info['scores_before'])}"]
    for candidate in info["candidates"]:
        step = candidate["step"][0]
        if "label" in candidate:
            step = f"largest {names.get(str(candidate['label']), step)} component"
        lines.append(f"  {step}: {scores(candidate['scores'])}: {'kept' if candidate['kept'] else 'rejected'}")
    return "\n".join(lines)


def determine_postprocessing_main(argv: Sequence[str] | None = None) -> None:
    """Run the ``nnunet_scribble_determine_postprocessing`` command.

    Raises:
        SystemExit: with status 2 if the arguments are invalid, or a model, fold, scribble file or the ignore label
            is missing.
    """
    from nnunet_scribble.evaluation.postprocessing import determine_postprocessing

    parser = _build_pp_parser()
    args = parser.parse_args(argv)
    try:
        from nnunetv2.paths import nnUNet_preprocessed
        from nnunetv2.utilities.file_path_utilities import get_output_folder, maybe_convert_to_dataset_name

        dataset = maybe_convert_to_dataset_name(args.dataset_name_or_id)
        model = Path(get_output_folder(dataset, args.tr, args.p, args.c))
        if not (model / "plans.json").is_file():
            raise FileNotFoundError(f"{model / 'plans.json'} not found: train {args.tr} ({args.p}, {args.c}) first")
        if nnUNet_preprocessed is None:
            raise FileNotFoundError("nnUNet_preprocessed is not set: it holds the scribbles (gt_segmentations)")
        scribbles = Path(nnUNet_preprocessed, dataset, "gt_segmentations")
        beyond_mm = args.beyond_mm
        if beyond_mm == "auto":
            beyond_mm = _auto_beyond_mm(model, dataset, scribbles, args.dense)
        suffix = "" if args.candidates == "all" else "_nnunet_candidates"
        out = Path(args.output) if args.output else \
            model / f"crossval_results_folds_{'_'.join(map(str, args.f))}_beyond{beyond_mm:g}mm{suffix}"
        fns, kwargs = determine_postprocessing(model, args.f, scribbles, out, beyond_mm,
                                               central=args.candidates == "all")
    except (FileNotFoundError, ValueError, RuntimeError) as e:
        parser.exit(2, f"nnunet_scribble_determine_postprocessing: error: {e}\n")
    print(_candidate_report(out))
    steps = ", ".join(f"{fn.__name__}({kw})" for fn, kw in zip(fns, kwargs)) or "none"
    print(f"\nChosen post-processing: {steps}\nWrote {out / 'postprocessing.pkl'}; apply it to predictions with\n"
          f"nnUNetv2_apply_postprocessing -i OUTPUT_FOLDER -o OUTPUT_FOLDER_PP -pp_pkl_file "
          f"{out / 'postprocessing.pkl'} -np 1 -plans_json {out / 'plans.json'} -dataset_json {out / 'dataset.json'}")


if __name__ == "__main__":
    evaluate_main()
