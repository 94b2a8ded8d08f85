"""ACDC with the manual scribbles of Valvano et al. (IEEE TMI 2021) as an nnU-Net v2 raw dataset.

Two source layouts are read:

- ``official``: the ACDC challenge layout ``<root>/training/patientNNN/patientNNN_frameFF[_gt].nii.gz`` plus a
  folder of scribble files ``patientNNN_frameFF_scribble.nii.gz`` (0 background, 1 RV, 2 MYO, 3 LV,
  4 unannotated). Image, dense label and scribble must share one grid; the image is rewritten with SimpleITK
  (same voxels, spacing, origin and direction, but a clean header without the "unexpected scales in sform"
  warning).
- ``wsl4mis``: the HDF5 layout of WSL4MIS/PCLMix (``ACDC_training_volumes/patientNNN_frameFF.h5`` with ``image``,
  ``label`` and ``scribble`` arrays, Z,H,W). The files carry no geometry: it is taken from the scribble NIfTI of
  the same frame when ``--scribbles`` is given, else from ``--spacing`` (origin 0, identity direction). The
  images there are already clipped at the 99th percentile and min-max scaled to [0, 1]; they are kept as they
  are (nnU-Net's z-scoring follows). The per-slice files of ``ACDC_training_slices`` are not used.

One case per frame (``patientNNN_frameFF``); both frames of a patient always fall on the same side of a split.
Splits: ``5fold`` (default; DMPLS, PCLMix: fold k validates patients 20(k-1)+1..20k) or ``70-15-15`` (MaCo,
ScribFormer: random patient split with ``--seed``; test patients go to imagesTs/labelsTs with dense labels,
``--num_train_patients`` of the training pool form fold 0's training set, MaCo uses 35; the remaining pool
patients stay in imagesTr but are in no split).
"""
from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import SimpleITK as sitk

from nnunet_scribble.dataset_conversion import cli, splits as splitlib
from nnunet_scribble.dataset_conversion.common import (
    IMAGES_TR, IMAGES_TS, LABELS_TR, LABELS_TR_DENSE, LABELS_TS, staged_dataset_folder, write_dataset_json,
    write_splits)
from nnunet_scribble.dataset_conversion.image_io import (
    agreement, check_label_grid, check_label_values, check_scribble, read_image, write_case)

LABELS = {"background": 0, "RV": 1, "MYO": 2, "LV": 3}
IGNORE = 4
DEFAULT_ID = 27
DEFAULT_NAME = "ACDCScribble"
_FRAME = re.compile(r"^patient(\d{3})_frame(\d{2})$")


@dataclass(frozen=True)
class AcdcCase:
    """One ACDC frame: its case id, patient number and source files (``source`` is a NIfTI image or an .h5)."""

    case_id: str
    patient: int
    source: Path
    scribble: Path | None = None
    dense: Path | None = None


def find_official_cases(root: Path, scribble_dir: Path, patients: Sequence[int] | None = None) -> list[AcdcCase]:
    """List the frames of ``root/training/patientNNN/`` (or ``root/patientNNN/``) with their gt and scribble.

    Raises:
        FileNotFoundError: if no frame is found, or a frame's ``_gt`` or scribble file is missing.
    """
    base = root / "training" if (root / "training").is_dir() else root
    cases = []
    for image in sorted(base.glob("patient[0-9][0-9][0-9]/patient*_frame[0-9][0-9].nii.gz")):
        case_id = image.name[: -len(".nii.gz")]
        match = _FRAME.match(case_id)
        if not match or (patients and int(match.group(1)) not in patients):
            continue
        dense = image.with_name(f"{case_id}_gt.nii.gz")
        scribble = scribble_dir / f"{case_id}_scribble.nii.gz"
        for path, what in ((dense, "dense label"), (scribble, "scribble")):
            if not path.is_file():
                raise FileNotFoundError(f"{path}: {what} of {image} not found")
        cases.append(AcdcCase(case_id, int(match.group(1)), image, scribble, dense))
    if not cases:
        raise FileNotFoundError(f"{base}: no ACDC frames patientNNN/patientNNN_frameFF.nii.gz found"
                                + (f" for patients {list(patients)}" if patients else ""))
    return cases


def find_h5_cases(root: Path, scribble_dir: Path | None, patients: Sequence[int] | None = None) -> list[AcdcCase]:
    """List ``root/ACDC_training_volumes/patientNNN_frameFF.h5`` (or ``root/*.h5``) with optional scribble NIfTIs.

    Raises:
        FileNotFoundError: if no volume file is found or a requested scribble NIfTI is missing.
    """
    base = root / "ACDC_training_volumes" if (root / "ACDC_training_volumes").is_dir() else root
    cases = []
    for h5 in sorted(base.glob("patient[0-9][0-9][0-9]_frame[0-9][0-9].h5")):
        patient = int(h5.name[7:10])
        if patients and patient not in patients:
            continue
        scribble = None if scribble_dir is None else scribble_dir / f"{h5.stem}_scribble.nii.gz"
        if scribble is not None and not scribble.is_file():
            raise FileNotFoundError(f"{scribble}: scribble NIfTI of {h5} not found (needed for its geometry)")
        cases.append(AcdcCase(h5.stem, patient, h5, scribble))
    if not cases:
        raise FileNotFoundError(f"{base}: no WSL4MIS volumes patientNNN_frameFF.h5 found"
                                + (f" for patients {list(patients)}" if patients else ""))
    return cases


def load_official(case: AcdcCase) -> tuple[sitk.Image, np.ndarray, np.ndarray]:
    """Read image, scribble and dense label of an official-layout frame and check grid and values."""
    image = read_image(case.source)
    arrays = []
    for path, allowed, what in ((case.scribble, IGNORE + 1, "scribble"), (case.dense, IGNORE, "dense label")):
        label = read_image(path)
        check_label_grid(image, label, path)
        array = sitk.GetArrayFromImage(label)
        check_label_values(array, range(allowed), path, what)
        arrays.append(array)
    return image, arrays[0], arrays[1]


def load_h5(case: AcdcCase, spacing: Sequence[float] | None) -> tuple[sitk.Image, np.ndarray, np.ndarray]:
    """Read image, scribble and dense label of a WSL4MIS volume and attach the geometry (see module doc)."""
    import h5py

    with h5py.File(case.source, "r") as f:
        missing = [k for k in ("image", "label", "scribble") if k not in f]
        if missing:
            raise ValueError(f"{case.source}: missing HDF5 datasets {missing}; expected image, label, scribble")
        image_array, dense, scribble = (f[k][()] for k in ("image", "label", "scribble"))
    if image_array.ndim != 3 or dense.shape != image_array.shape or scribble.shape != image_array.shape:
        raise ValueError(f"{case.source}: image/label/scribble shapes {image_array.shape}, {dense.shape}, "
                         f"{scribble.shape}; expected three equal Z,H,W shapes")
    image = sitk.GetImageFromArray(image_array.astype(np.float32))
    if case.scribble is not None:
        reference = read_image(case.scribble)
        if reference.GetSize() != image.GetSize():
            raise ValueError(f"{case.scribble}: size {reference.GetSize()} differs from the size "
                             f"{image.GetSize()} of {case.source}")
        image.CopyInformation(reference)
    else:
        image.SetSpacing([float(s) for s in spacing])
    check_label_values(dense, range(IGNORE), case.source, "dense label")
    return image, scribble.astype(np.uint8), dense.astype(np.uint8)


def _detect_layout(source: Path) -> str:
    return "wsl4mis" if (source / "ACDC_training_volumes").is_dir() or any(source.glob("*.h5")) else "official"


def build_splits(cases: Sequence[AcdcCase], split: str, num_train: int | None, seed: int
                 ) -> tuple[list[dict], list[int]]:
    """Return (nnU-Net folds over case ids, test patients) for ``split`` in {"5fold", "70-15-15"}."""
    cases_of: dict[int, list[str]] = {}
    for c in cases:
        cases_of.setdefault(c.patient, []).append(c.case_id)
    patients = sorted(cases_of)
    if split == "5fold":
        return [splitlib.expand(f, cases_of) for f in splitlib.block_kfold(patients)], []
    parts = splitlib.random_patient_split(patients, num_train=num_train, seed=seed)
    return [splitlib.expand(parts, cases_of)], parts["test"]


def convert_case(case: AcdcCase, out: Path, test: bool, spacing: Sequence[float] | None) -> tuple[int, int]:
    """Write one frame (training: image, scribble, dense; test: image, dense); return the agreement counts."""
    image, scribble, dense = load_h5(case, spacing) if case.source.suffix == ".h5" else load_official(case)
    if test:
        write_case(out, case.case_id, [image], dense, IMAGES_TS, LABELS_TS)
        return 0, 0
    check_scribble(scribble, case.scribble or case.source, IGNORE)
    write_case(out, case.case_id, [image], scribble, IMAGES_TR, LABELS_TR, dense, LABELS_TR_DENSE)
    return agreement(scribble, dense, IGNORE)


def convert(args: argparse.Namespace) -> None:
    """Run the conversion described by parsed command-line ``args`` (see :func:`main`)."""
    final = cli.output_dataset_dir(args)
    source, scribbles = Path(args.source), Path(args.scribbles) if args.scribbles else None
    layout = args.layout if args.layout != "auto" else _detect_layout(source)
    if layout == "official":
        if scribbles is None:
            raise ValueError("the official ACDC layout needs --scribbles <folder of *_scribble.nii.gz>")
        cases = find_official_cases(source, scribbles, args.patients)
    else:
        if scribbles is None and args.spacing is None:
            raise ValueError("the WSL4MIS h5 files carry no spacing: pass --scribbles (geometry from the "
                             "scribble NIfTIs) or --spacing X Y Z")
        cases = find_h5_cases(source, scribbles, args.patients)
    folds, test_patients = build_splits(cases, args.split, args.num_train_patients, args.seed)
    agree = annotated = 0
    with staged_dataset_folder(final, args.overwrite) as out:
        for case in cli.progress(cases, "ACDC"):
            a, n = convert_case(case, out, case.patient in test_patients, args.spacing)
            agree, annotated = agree + a, annotated + n
        n_train = sum(c.patient not in test_patients for c in cases)
        write_dataset_json(out, {0: "cineMRI"}, LABELS, n_train, dataset_name=final.name,
                           description=f"ACDC with Valvano et al. scribbles ({layout} layout), split {args.split}",
                           reference="Bernard et al. IEEE TMI 2018; scribbles: Valvano et al. IEEE TMI 2021",
                           split=args.split, test_patients=test_patients)
        if folds:
            write_splits(out, folds)
    cli.finish(final, args, f"{n_train} training cases, {len(cases) - n_train} test cases, {len(folds)} fold(s); "
                            f"scribble/dense agreement {100 * agree / max(annotated, 1):.3f}% of {annotated} "
                            f"annotated voxels")


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of :func:`main`."""
    parser = cli.make_parser(
        __doc__.split("\n")[0], DEFAULT_ID, DEFAULT_NAME,
        epilog="Default: dataset 027 (Dataset027_ACDCScribble), 5-fold patient split of DMPLS/PCLMix "
               "(fold k validates patients 20(k-1)+1..20k). Then e.g.: nnUNetv2_plan_and_preprocess -d 27 -c 2d; "
               "nnUNetv2_train 027 2d 0 -tr nnUNetTrainerMaCo")
    parser.add_argument("source", help="ACDC folder holding training/ (official) or ACDC_training_volumes/ (h5)")
    parser.add_argument("-s", "--scribbles", help="folder of patientNNN_frameFF_scribble.nii.gz (Valvano)")
    parser.add_argument("--layout", choices=("auto", "official", "wsl4mis"), default="auto",
                        help="source layout (default: auto, h5 files present -> wsl4mis)")
    parser.add_argument("--spacing", type=float, nargs=3, metavar=("X", "Y", "Z"),
                        help="voxel spacing in mm for h5 volumes without --scribbles (e.g. 1.5625 1.5625 10)")
    parser.add_argument("--split", choices=("5fold", "70-15-15"), default="5fold",
                        help="patient split (default: 5fold)")
    parser.add_argument("--num_train_patients", type=int, default=None,
                        help="70-15-15 only: training patients taken from the pool (MaCo: 35; default: all)")
    parser.add_argument("--seed", type=int, default=0, help="70-15-15 only: shuffling seed (default: 0)")
    parser.add_argument("--patients", type=int, nargs="+", help="convert only these patient numbers")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit code (2 for input errors)."""
    args = build_parser().parse_args(argv)
    return cli.run_main(lambda: convert(args))


if __name__ == "__main__":
    raise SystemExit(main())
