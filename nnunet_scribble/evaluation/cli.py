"""Command line entry point ``nnunet_scribble_evaluate`` (modelled on ``nnUNetv2_evaluate_simple``)."""
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


if __name__ == "__main__":
    evaluate_main()
