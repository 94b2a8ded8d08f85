"""Scribble datasets distributed as folders of image and scribble NIfTI files (NCI-ISBI prostate, MyoPS, ...).

A case is found from the first channel pattern (``{case}`` is the case id), e.g. ``{case}_C0.nii.gz``; each
further channel and the scribble file are found by their own pattern in their folder. All channels and the
scribble must share the first channel's grid. Scribble values are remapped: ``--unannotated`` (0, 4 and 255 all
occur in released sets) becomes the ignore label (one more than the highest class); when ``--unannotated`` is
0, background scribbles carry another value, given by ``--background_value``, which becomes 0.

Presets: ``prostate`` (NCI-ISBI 2013: one T2 channel; central gland 1, peripheral zone 2; ID 029) and
``myops`` (MyoPS 2020: channels C0, LGE, T2; scar 1, edema 2; ID 030). ``--labels`` overrides the classes.
No split is written: nnU-Net makes its own 5 random folds.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

import numpy as np
import SimpleITK as sitk

from nnunet_scribble.dataset_conversion import cli
from nnunet_scribble.dataset_conversion.common import (
    IMAGES_TR, LABELS_TR, LABELS_TR_DENSE, staged_dataset_folder, write_dataset_json)
from nnunet_scribble.dataset_conversion.image_io import (
    check_label_grid, check_label_values, check_scribble, load_case, read_image, write_case)

PRESETS = {
    "prostate": dict(dataset_id=29, name="ProstateScribble", channels={"0": "T2"},
                     labels={"background": 0, "central_gland": 1, "peripheral_zone": 2},
                     images=["{case}.nii.gz"]),
    "myops": dict(dataset_id=30, name="MyoPSScribble", channels={"0": "C0", "1": "LGE", "2": "T2"},
                  labels={"background": 0, "scar": 1, "edema": 2},
                  images=["{case}_C0.nii.gz", "{case}_DE.nii.gz", "{case}_T2.nii.gz"]),
}


def find_cases(image_dir: Path, patterns: Sequence[str], scribble_dir: Path, scribble_pattern: str
               ) -> list[tuple[str, list[Path], Path]]:
    """Return ``(case, channel files, scribble file)`` for every file matching the first channel pattern.

    Raises:
        FileNotFoundError: if no case is found, or a channel or scribble file of a case is missing.
    """
    prefix, suffix = patterns[0].split("{case}")
    cases = []
    for first in sorted(image_dir.glob(patterns[0].replace("{case}", "*"))):
        case = first.name[len(prefix): len(first.name) - len(suffix)]
        if case.endswith(("_scribble", "_gt")):  # scribble or dense files kept next to the images
            continue
        files = [image_dir / p.format(case=case) for p in patterns] + [scribble_dir / scribble_pattern.format(
            case=case)]
        for f in files:
            if not f.is_file():
                raise FileNotFoundError(f"{f}: file of case {case} not found")
        cases.append((case, files[:-1], files[-1]))
    if not cases:
        raise FileNotFoundError(f"{image_dir}: no images matching {patterns[0]!r}")
    return cases


def remap_scribble(array: np.ndarray, path: Path, num_classes: int, unannotated: int, background_value: int
                   ) -> np.ndarray:
    """Map ``unannotated`` to the ignore label (``num_classes``) and ``background_value`` to 0; check values."""
    allowed = set(range(num_classes)) - {0} | {unannotated, background_value}
    check_label_values(array, allowed, path, "scribble")
    out = array.astype(np.int32).copy()
    out[array == unannotated] = num_classes
    out[array == background_value] = 0
    return out


def convert(args: argparse.Namespace, preset: dict) -> None:
    """Run the conversion described by parsed command-line ``args`` (see :func:`main`)."""
    final = cli.output_dataset_dir(args)
    labels = dict(preset["labels"]) if not args.labels else \
        {"background": 0, **{name: i + 1 for i, name in enumerate(args.labels)}}
    patterns = args.image_patterns or preset["images"]
    if len(patterns) != len(preset["channels"]):
        raise ValueError(f"{len(patterns)} image patterns given, expected {len(preset['channels'])} channels")
    scribble_dir = Path(args.scribbles or args.images)
    cases = find_cases(Path(args.images), patterns, scribble_dir, args.scribble_pattern)
    with staged_dataset_folder(final, args.overwrite) as out:
        for case, channels, scribble_path in cli.progress(cases, preset["name"]):
            images, raw = load_case(channels, scribble_path, 1 << 16, "scribble")
            scribble = remap_scribble(raw, scribble_path, len(labels), args.unannotated, args.background_value)
            check_scribble(scribble, scribble_path, len(labels))
            dense = _dense(args, case, images[0], len(labels))
            write_case(out, case, images, scribble, IMAGES_TR, LABELS_TR, dense, LABELS_TR_DENSE)
        write_dataset_json(out, preset["channels"], labels, len(cases), dataset_name=final.name,
                           unannotated_value_in_source=args.unannotated)
    cli.finish(final, args, f"{len(cases)} training cases")


def _dense(args: argparse.Namespace, case: str, image: sitk.Image, num_classes: int) -> np.ndarray | None:
    """The dense label of ``case`` from ``--dense`` (None when not given), checked against the image grid."""
    if not args.dense:
        return None
    path = Path(args.dense) / args.dense_pattern.format(case=case)
    label = read_image(path)
    check_label_grid(image, label, path)
    dense = sitk.GetArrayFromImage(label)
    check_label_values(dense, range(num_classes), path, "dense label")
    return dense


def build_parser(preset_name: str) -> argparse.ArgumentParser:
    """The argparse parser of :func:`main` for one preset."""
    preset = PRESETS[preset_name]
    parser = cli.make_parser(
        __doc__.split("\n")[0], preset["dataset_id"], preset["name"],
        epilog=f"Preset {preset_name}: default ID {preset['dataset_id']:03d}, channels {preset['channels']}, "
               f"labels {preset['labels']}, image patterns {preset['images']}. No splits_final.json is written: "
               f"nnU-Net's default 5 random folds are used.")
    parser.add_argument("images", help="folder of the image files")
    parser.add_argument("-s", "--scribbles", help="folder of the scribble files (default: the image folder)")
    parser.add_argument("--scribble_pattern", default="{case}_scribble.nii.gz",
                        help="scribble file name pattern (default: {case}_scribble.nii.gz)")
    parser.add_argument("--image_patterns", nargs="+", help=f"one pattern per channel (default: {preset['images']})")
    parser.add_argument("--unannotated", type=int, default=255,
                        help="value of unannotated voxels in the scribble files (0, 4, 255...; default: 255)")
    parser.add_argument("--background_value", type=int, default=0,
                        help="value of background scribbles (default: 0; needed when --unannotated is 0)")
    parser.add_argument("--labels", nargs="+", help="foreground class names in value order (default: preset)")
    parser.add_argument("--dense", help="optional folder of dense labels, written to labelsTr_dense")
    parser.add_argument("--dense_pattern", default="{case}_gt.nii.gz", help="dense label pattern")
    return parser


def main(argv: Sequence[str] | None = None, preset: str | None = None) -> int:
    """Command-line entry point; without ``preset`` the first argument names it (prostate or myops)."""
    argv = list(argv) if argv is not None else __import__("sys").argv[1:]
    if preset is None:
        if not argv or argv[0] not in PRESETS:
            print(f"usage: python -m {__name__} {{{','.join(PRESETS)}}} ...", file=__import__("sys").stderr)
            return 2
        preset, argv = argv[0], argv[1:]
    args = build_parser(preset).parse_args(argv)
    if args.unannotated == 0 and args.background_value == 0:
        args.background_value = -1  # no background scribbles in the source
    return cli.run_main(lambda: convert(args, PRESETS[preset]))


if __name__ == "__main__":
    raise SystemExit(main())
