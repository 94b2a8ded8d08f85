"""Write a scribble version of any dense nnU-Net raw dataset (simulated scribbles, dense labels kept aside).

Input: an nnU-Net raw dataset with dense ``labelsTr`` (any format nnU-Net reads: NIfTI, PNG, TIFF, ...).
Output: a new raw dataset with the same images, ``labelsTr`` = simulated scribbles (unannotated = ``ignore``, the
highest label), ``labelsTr_dense`` = the original dense labels, ``imagesTs``/``labelsTs`` copied, the source's
splits carried over, and ``dataset.json`` recording style, seed and axis under ``"scribble_simulation"``.

Scribbles are drawn per 2D image, or per slice along ``--axis`` of a volume (numpy axis of nnU-Net's (z, y, x)
arrays; 0 = the slice axis of typical NIfTI volumes). Styles (see
:mod:`nnunet_scribble.dataset_conversion.scribble_simulation`): ``cspnet`` (default), ``cspnet-shape``,
``scribblebench``. Each case uses its own random generator seeded with (seed, case id), so results do not
depend on order or on ``-np``; ``--annotator s1|s2|s3`` is shorthand for seeds 1, 2, 3.
"""
from __future__ import annotations

import argparse
import multiprocessing
import shutil
import zlib
from pathlib import Path
from typing import Sequence

import numpy as np

from nnunet_scribble.dataset_conversion import cli
from nnunet_scribble.dataset_conversion.common import (
    LABELS_TR, LABELS_TR_DENSE, staged_dataset_folder, write_dataset_json, write_splits)
from nnunet_scribble.dataset_conversion.image_io import check_label_values, check_scribble
from nnunet_scribble.dataset_conversion.raw_dataset import (
    RawDataset, copy_folders, copy_images, open_raw_dataset, source_splits)
from nnunet_scribble.dataset_conversion.scribble_simulation import STYLES, simulate

ANNOTATORS = {"s1": 1, "s2": 2, "s3": 3}


def case_rng(seed: int, case: str) -> np.random.Generator:
    """A generator that depends only on the seed and the case identifier."""
    return np.random.default_rng([seed, zlib.crc32(case.encode())])


def simulate_case(src: RawDataset, out: Path, case: str, style: str, seed: int, axis: int, options: dict) -> None:
    """Simulate, check and write the scribbles of one case; copy its images and dense label."""
    reader = src.reader()
    path = src.folder / LABELS_TR / f"{case}{src.file_ending}"
    dense, props = src.read_label(path, reader)
    labels = src.labels
    check_label_values(dense, labels.values(), path, "dense label")
    ignore = len(labels)
    classes = sorted(v for v in labels.values() if v != 0)
    scribble = simulate(dense, classes, ignore, style, case_rng(seed, case), axis=axis, **options)
    check_scribble(scribble, path, ignore, slice_axis=axis if dense.shape[0] > 1 else None)
    copy_images(src, out, case)
    (out / LABELS_TR).mkdir(exist_ok=True)
    (out / LABELS_TR_DENSE).mkdir(exist_ok=True)
    reader.write_seg(scribble.astype(np.uint8), str(out / LABELS_TR / path.name), props)
    shutil.copy2(path, out / LABELS_TR_DENSE / path.name)


def _job(job: tuple) -> None:
    simulate_case(*job)


def convert(args: argparse.Namespace) -> None:
    """Run the simulation described by parsed command-line ``args`` (see :func:`main`)."""
    src = open_raw_dataset(args.input)
    if src.ignore_label is not None:
        raise ValueError(f"{src.folder / 'dataset.json'}: the source already declares an ignore label; "
                         f"expected a dense dataset")
    cases = src.cases()
    if not cases:
        raise FileNotFoundError(f"{src.folder / LABELS_TR}: no label files *{src.file_ending} found")
    final = cli.output_dataset_dir(args)
    seed = ANNOTATORS[args.annotator] if args.annotator else args.seed
    options = {} if args.style == "scribblebench" else {"erosion": args.erosion}
    jobs = [(src, None, c, args.style, seed, args.axis, options) for c in cases]
    with staged_dataset_folder(final, args.overwrite) as out:
        jobs = [(j[0], out, *j[2:]) for j in jobs]
        if args.num_processes > 1:
            with multiprocessing.get_context("spawn").Pool(args.num_processes) as pool:
                list(cli.progress(pool.imap(_job, jobs), "simulate", total=len(jobs)))
        else:
            for job in cli.progress(jobs, "simulate"):
                _job(job)
        copy_folders(src, out, folders=("imagesTs", "labelsTs"))
        write_dataset_json(out, src.meta["channel_names"], src.labels, len(cases), src.file_ending,
                           dataset_name=final.name, description=f"simulated scribbles for {src.folder.name}",
                           **{**src.extra_meta(), "scribble_simulation": {
                               "source": src.folder.name, "style": args.style, "seed": seed, "axis": args.axis}})
        splits = source_splits(src, args.preprocessed_root)
        if splits:
            write_splits(out, splits)
    cli.finish(final, args, f"{len(cases)} training cases with {args.style} scribbles (seed {seed})")


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of :func:`main`."""
    parser = cli.make_parser(
        __doc__.split("\n")[0], None, None,
        epilog="No default ID or name: pass -d and -n for the new dataset. Splits: those of the source dataset "
               "(raw or preprocessed splits_final.json), else none (nnU-Net then makes its own 5 folds).")
    parser.add_argument("-i", "--input", required=True, help="source raw dataset: folder, ID or name in $nnUNet_raw")
    parser.add_argument("--style", choices=STYLES, default="cspnet", help="scribble style (default: cspnet)")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default: 1)")
    parser.add_argument("--annotator", choices=sorted(ANNOTATORS), help="s1/s2/s3 = seed 1/2/3")
    parser.add_argument("--axis", type=int, default=0, help="array axis to slice volumes along (default: 0)")
    parser.add_argument("--erosion", type=int, default=20, help="cspnet: erosion kernel size k (default: 20)")
    parser.add_argument("-np", "--num_processes", type=int, default=1, help="worker processes (default: 1)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit code (2 for input errors)."""
    args = build_parser().parse_args(argv)
    return cli.run_main(lambda: convert(args))


if __name__ == "__main__":
    raise SystemExit(main())
