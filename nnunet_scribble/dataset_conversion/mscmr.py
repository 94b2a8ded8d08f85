"""MSCMRseg (LGE cardiac MRI) with the CycleMix scribbles as an nnU-Net v2 raw dataset.

Source: the CycleMix layout ``MSCMR_dataset/{train,val,TestSet}/{images,labels}/``, images
``subjectN_DE.nii.gz``, training labels ``subjectN_DE_scribble.nii.gz`` (0 bg, 1 RV, 2 MYO, 3 LV, 4 unannotated;
no dense ground truth exists for them) and validation/test labels ``subjectN_DE_manual.nii.gz`` (dense).

Output (the 25/5/15 split of CycleMix, ShapePU and MedCL):

- the 25 ``train/`` subjects go to ``imagesTr/labelsTr`` with their scribbles;
- the 5 ``val/`` subjects go to ``imagesTs/labelsTs`` *and* to ``imagesTr/labelsTr`` (and ``labelsTr_dense``)
  with their dense labels, because nnU-Net can only validate on cases of ``imagesTr``: fold 0 of
  ``splits_final.json`` trains on the 25 scribble subjects and validates on these 5, so nnU-Net's final
  validation is a dense Dice. No fold ever trains on them;
- the 15 ``TestSet/`` subjects go to ``imagesTs/labelsTs`` (skipped with a warning when absent).

``dataset.json`` records the groups under ``"test_groups"`` (``val`` and ``test`` case ids). One label file of
the released set has an affine holding only the spacing: whenever a label's geometry disagrees with its image's
(same size), the image's geometry is used and a warning names the file.

By default (``--zero_border_background``; ``--no-zero_border_background`` turns it off) the converter also labels
background, in the training scribbles, every unannotated voxel of the exact-zero region that touches its slice's
border (:func:`.image_io.zero_border_mask`): the released LGE images are zero outside the body, about a third of
every slice, where the CycleMix scribbles hardly reach (0.55 % of the scribbled voxels), so a partial loss leaves
that region unsupervised and a network may paint it with heart classes. For dense labels nnU-Net's
``crop_to_nonzero`` makes that region background itself; an ignore label there blocks it. nnU-Net's preprocessing
writes -1 into these background labels (they lie outside its non-zero mask), and the scribble trainers ignore -1 by
default; the converter therefore writes ``"outside_image_background": true`` into ``dataset.json``, which the
scribble trainers read (their hyperparameter of that name; CSPNet applies it to its stage-2 pseudo labels only) so
that -1 counts as background.

Deviation from the papers' labels, made the default on benchmark evidence (benchmarks/README.md, MSCMRseg, 2-CPU VM,
``cpu`` preset): with the scribbles alone four runs of the partial-loss baseline scored 66.5, 46.8, 39.4 and 58.8
mean Dice (the spread is foreground painted on that region), with the region labelled 73.1 and 78.0, and no trainer
painted it. The papers never see most of that region (they crop 212 or 256 pixels around the centre).
``--no-zero_border_background`` writes the CycleMix scribbles unchanged, as the papers use them.
"""
from __future__ import annotations

import argparse
import warnings
from pathlib import Path
from typing import Sequence

import SimpleITK as sitk

from nnunet_scribble.dataset_conversion import cli
from nnunet_scribble.dataset_conversion.common import (
    IMAGES_TR, IMAGES_TS, LABELS_TR, LABELS_TR_DENSE, LABELS_TS, staged_dataset_folder, write_dataset_json,
    write_splits)
from nnunet_scribble.dataset_conversion.image_io import (
    ConversionWarning, check_scribble, load_case, write_case, zero_border_mask)

LABELS = {"background": 0, "RV": 1, "MYO": 2, "LV": 3}
IGNORE = 4
DEFAULT_ID = 28
DEFAULT_NAME = "MSCMRScribble"
GROUPS = (("train", "_scribble"), ("val", "_manual"), ("TestSet", "_manual"))


def find_subjects(root: Path, group: str, suffix: str, subjects: Sequence[int] | None = None
                  ) -> list[tuple[str, Path, Path]]:
    """Return ``(case_id, image, label)`` for ``root/<group>/images/subjectN_DE.nii.gz``; [] if the group is absent.

    Raises:
        FileNotFoundError: if an image's label file is missing.
    """
    folder = root / group / "images"
    found = []
    for image in sorted(folder.glob("subject*_DE.nii.gz"), key=lambda p: int(p.name[7:-10] or 0)):
        number = image.name[7:-len("_DE.nii.gz")]
        if not number.isdigit() or (subjects and int(number) not in subjects):
            continue
        label = root / group / "labels" / f"subject{number}_DE{suffix}.nii.gz"
        if not label.is_file():
            raise FileNotFoundError(f"{label}: label of {image} not found")
        found.append((f"subject{int(number):02d}", image, label))
    return found


def _dataset_root(source: Path) -> Path:
    return source / "MSCMR_dataset" if (source / "MSCMR_dataset").is_dir() else source


def convert_subject(out: Path, case_id: str, image_path: Path, label_path: Path, group: str,
                    zero_border_background: bool = False) -> int:
    """Write one subject into the folders of its group (see the module docstring).

    Returns:
        The number of voxels labelled background by ``zero_border_background`` (0 for the dense groups).
    """
    scribble = group == "train"
    images, label = load_case([image_path], label_path, IGNORE + 1 if scribble else IGNORE,
                              "scribble" if scribble else "dense label", repair_geometry=True)
    if scribble:
        check_scribble(label, label_path, IGNORE)
        added = 0
        if zero_border_background:
            extra = (label == IGNORE) & zero_border_mask(sitk.GetArrayFromImage(images[0]), axes=(-2, -1))
            label[extra] = LABELS["background"]
            added = int(extra.sum())
        write_case(out, case_id, images, label, IMAGES_TR, LABELS_TR)
        return added
    write_case(out, case_id, images, label, IMAGES_TS, LABELS_TS)
    if group == "val":
        write_case(out, case_id, images, label, IMAGES_TR, LABELS_TR, label, LABELS_TR_DENSE)
    return 0


def convert(args: argparse.Namespace) -> None:
    """Run the conversion described by parsed command-line ``args`` (see :func:`main`)."""
    final = cli.output_dataset_dir(args)
    root = _dataset_root(Path(args.source))
    groups = {g: find_subjects(root, g, suffix, args.subjects) for g, suffix in GROUPS}
    if not groups["train"]:
        raise FileNotFoundError(f"{root / 'train' / 'images'}: no subjectN_DE.nii.gz training images found")
    for g in ("val", "TestSet"):
        if not groups[g]:
            warnings.warn(f"{root / g}: no subjects found; no {g} cases are written", ConversionWarning)
    jobs = [(g, *item) for g, items in groups.items() for item in items]
    ids = {g: [c for c, _, _ in items] for g, items in groups.items()}
    with staged_dataset_folder(final, args.overwrite) as out:
        added = sum(convert_subject(out, case_id, image, label, group, args.zero_border_background)
                    for group, case_id, image, label in cli.progress(jobs, "MSCMR"))
        n_train = len(ids["train"]) + len(ids["val"])
        description = "MSCMRseg LGE with CycleMix scribbles; val subjects densely labelled"
        if args.zero_border_background:
            description += "; zero-intensity region at the slice borders labelled background in the scribbles"
        write_dataset_json(out, {0: "LGE"}, LABELS, n_train, dataset_name=final.name, description=description,
                           reference="Zhuang, MS-CMRSeg 2019; scribbles: Zhang & Zhuang, CVPR 2022 (CycleMix)",
                           test_groups={"val": ids["val"], "test": ids["TestSet"]},
                           **({"outside_image_background": True} if args.zero_border_background else {}))
        if ids["val"]:
            write_splits(out, [{"train": ids["train"], "val": ids["val"]}])
    cli.finish(final, args, f"{len(ids['train'])} scribble subjects, {len(ids['val'])} val subjects (imagesTr "
                            f"and imagesTs), {len(ids['TestSet'])} test subjects"
                            + (f"; {added} zero-border voxels labelled background (dataset.json declares "
                               f"outside_image_background, so the scribble trainers count nnU-Net's -1 there as "
                               f"background)" if args.zero_border_background else ""))


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of :func:`main`."""
    parser = cli.make_parser(
        __doc__.split("\n")[0], DEFAULT_ID, DEFAULT_NAME,
        epilog="Default: dataset 028 (Dataset028_MSCMRScribble), the 25/5/15 split of CycleMix: fold 0 trains on "
               "the 25 train/ scribble subjects and validates on the 5 val/ subjects (dense); val/ and TestSet/ "
               "also go to imagesTs/labelsTs.")
    parser.add_argument("source", help="folder holding MSCMR_dataset/ (or MSCMR_dataset itself)")
    parser.add_argument("--subjects", type=int, nargs="+", help="convert only these subject numbers")
    parser.add_argument("--zero_border_background", action=argparse.BooleanOptionalAction, default=True,
                        help="label the unannotated voxels of the exact-zero region touching each slice's border "
                             "(outside the body) background in the training scribbles and declare "
                             "outside_image_background in dataset.json (the scribble trainers follow it). "
                             "Default: on; --no-zero_border_background keeps the papers' scribbles unchanged")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit code (2 for input errors)."""
    args = build_parser().parse_args(argv)
    return cli.run_main(lambda: convert(args))


if __name__ == "__main__":
    raise SystemExit(main())
