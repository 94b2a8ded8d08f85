"""Write a degraded copy of a scribble dataset for robustness studies: scribble shrink or scribble drop.

``shrink`` (MaCo, §V-A): in every 2D slice (along ``--axis``; the whole image for 2D data) and for every class,
``round(ratio * n)`` of the class's n scribble pixels are removed. The class's scribble pieces (8-connected)
are visited in random order; a piece that fits into the remaining budget is removed entirely, otherwise the
remaining budget is removed as a contiguous run starting at one end of the piece (geodesic order from an end
found by a double sweep; which end is random). With a single piece this is MaCo's "mask pixels from one
endpoint"; with several it is "remove whole scribbles first".

``drop``: an *object* is one class in one slice (all of its scribble pixels); ``round(ratio * N)`` of the N
objects of a case, drawn at random, lose all their scribbles. Background objects count like any other. At
least one object per case is kept, so that no case ends up without annotation (deviation only for ratios
close to 1).

Images, ``labelsTr_dense``, ``imagesTs``/``labelsTs`` and the splits are copied unchanged; ``dataset.json``
records mode, ratio and seed under ``"scribble_degradation"``. Each case uses a generator seeded with
(seed, case id).
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

import numpy as np

from nnunet_scribble.dataset_conversion import cli
from nnunet_scribble.dataset_conversion.common import LABELS_TR, staged_dataset_folder, write_dataset_json, \
    write_splits
from nnunet_scribble.dataset_conversion.image_io import check_scribble
from nnunet_scribble.dataset_conversion.raw_dataset import (
    RawDataset, copy_folders, copy_images, open_raw_dataset, source_splits)
from nnunet_scribble.dataset_conversion.scribble_geometry import components, endpoint_order
from nnunet_scribble.dataset_conversion.simulate_dataset import case_rng

MODES = ("shrink", "drop")


def shrink_slice(scribble: np.ndarray, ignore: int, ratio: float, rng: np.random.Generator) -> np.ndarray:
    """Remove ``round(ratio * n)`` scribble pixels per class from a 2D scribble map (see module docstring)."""
    out = scribble.copy()
    for c in np.unique(scribble):
        if c == ignore:
            continue
        labels, n = components(scribble == c)
        budget = int(round(ratio * (labels > 0).sum()))
        for i in rng.permutation(n) + 1:
            if budget <= 0:
                break
            piece = labels == i
            size = int(piece.sum())
            if size <= budget:
                out[piece] = ignore
            else:
                removed = endpoint_order(piece, rng)[:budget]
                out[tuple(removed.T)] = ignore
            budget -= min(size, budget)
    return out


def drop_objects(scribble: np.ndarray, ignore: int, ratio: float, rng: np.random.Generator, axis: int = 0
                 ) -> np.ndarray:
    """Remove all scribbles of ``round(ratio * N)`` random (slice, class) objects, keeping at least one."""
    moved = np.moveaxis(scribble.copy(), axis, 0)
    objects = [(z, c) for z in range(moved.shape[0]) for c in np.unique(moved[z]) if c != ignore]
    n_drop = min(int(round(ratio * len(objects))), len(objects) - 1)
    for k in rng.choice(len(objects), size=n_drop, replace=False):
        z, c = objects[k]
        moved[z][moved[z] == c] = ignore
    return np.moveaxis(moved, 0, axis)


def degrade(scribble: np.ndarray, ignore: int, mode: str, ratio: float, rng: np.random.Generator, axis: int = 0
            ) -> np.ndarray:
    """Apply ``mode`` ("shrink" or "drop") at ``ratio`` in [0, 1) to a (z, y, x) scribble array."""
    if not 0 <= ratio < 1:
        raise ValueError(f"degradation ratio must lie in [0, 1), got {ratio}")
    if mode == "drop":
        return drop_objects(scribble, ignore, ratio, rng, axis)
    if mode != "shrink":
        raise ValueError(f"unknown degradation mode {mode!r}; expected one of {MODES}")
    moved = np.moveaxis(scribble, axis, 0)
    return np.moveaxis(np.stack([shrink_slice(s, ignore, ratio, rng) for s in moved]), 0, axis)


def degrade_case(src: RawDataset, out: Path, case: str, mode: str, ratio: float, seed: int, axis: int) -> None:
    """Degrade and write the scribbles of one case; copy its images."""
    reader = src.reader()
    path = src.folder / LABELS_TR / f"{case}{src.file_ending}"
    scribble, props = src.read_label(path, reader)
    check_scribble(scribble, path, src.ignore_label, slice_axis=None)
    # 2D images are read as (1, y, x): slicing along axis 0 gives the whole image as the one slice
    result = degrade(scribble, src.ignore_label, mode, ratio, case_rng(seed, case), axis if scribble.shape[0] > 1
                     else 0)
    copy_images(src, out, case)
    (out / LABELS_TR).mkdir(exist_ok=True)
    reader.write_seg(result.astype(np.uint8), str(out / LABELS_TR / path.name), props)


def convert(args: argparse.Namespace) -> None:
    """Run the degradation described by parsed command-line ``args`` (see :func:`main`)."""
    src = open_raw_dataset(args.input)
    if src.ignore_label is None:
        raise ValueError(f"{src.folder / 'dataset.json'}: no ignore label declared; expected a scribble dataset")
    if not 0 <= args.ratio < 1:
        raise ValueError(f"--ratio must lie in [0, 1), got {args.ratio}")
    final = cli.output_dataset_dir(args)
    cases = src.cases()
    with staged_dataset_folder(final, args.overwrite) as out:
        for case in cli.progress(cases, args.mode):
            degrade_case(src, out, case, args.mode, args.ratio, args.seed, args.axis)
        copy_folders(src, out)
        write_dataset_json(out, src.meta["channel_names"], src.labels, len(cases), src.file_ending,
                           dataset_name=final.name, description=f"{src.folder.name}, {args.mode} {args.ratio}",
                           **{**src.extra_meta(), "scribble_degradation": {
                               "source": src.folder.name, "mode": args.mode, "ratio": args.ratio,
                               "seed": args.seed}})
        splits = source_splits(src, args.preprocessed_root)
        if splits:
            write_splits(out, splits)
    cli.finish(final, args, f"{len(cases)} training cases, {args.mode} at ratio {args.ratio} (seed {args.seed})")


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of :func:`main`."""
    parser = cli.make_parser(__doc__.split("\n")[0], None, None,
                             epilog="No default ID or name: pass -d and -n. Splits: those of the source dataset.")
    parser.add_argument("-i", "--input", required=True, help="scribble dataset: folder, ID or name in $nnUNet_raw")
    parser.add_argument("--mode", choices=MODES, required=True, help="shrink (MaCo) or drop")
    parser.add_argument("--ratio", type=float, required=True, help="fraction in [0, 1), e.g. 0.3")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--axis", type=int, default=0, help="array axis to slice volumes along (default: 0)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit code (2 for input errors)."""
    args = build_parser().parse_args(argv)
    return cli.run_main(lambda: convert(args))


if __name__ == "__main__":
    raise SystemExit(main())
