"""Reading an existing nnU-Net raw dataset (any file format nnU-Net reads) to derive a new one from it.

Used by the scribble simulator and the degradation tool: both copy images, rewrite ``labelsTr`` and carry
``labelsTr_dense``, ``imagesTs``/``labelsTs`` and the splits over unchanged.
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nnunet_scribble.dataset_conversion.common import IMAGES_TR, IMAGES_TS, LABELS_TR, LABELS_TR_DENSE, LABELS_TS

#: dataset.json keys rewritten by derived datasets; all other keys are carried over.
_OWN_KEYS = ("channel_names", "labels", "numTraining", "file_ending", "name", "description")


@dataclass
class RawDataset:
    """An nnU-Net raw dataset folder with its parsed ``dataset.json``."""

    folder: Path
    meta: dict

    @property
    def file_ending(self) -> str:
        return self.meta["file_ending"]

    @property
    def labels(self) -> dict[str, int]:
        """Real labels (without ``ignore``); region-based labels are rejected."""
        labels = {k: v for k, v in self.meta["labels"].items() if k != "ignore"}
        if any(not isinstance(v, int) for v in labels.values()):
            raise ValueError(f"{self.folder / 'dataset.json'}: region-based labels {labels} are not supported")
        return labels

    @property
    def ignore_label(self) -> int | None:
        return self.meta["labels"].get("ignore")

    def cases(self) -> list[str]:
        """Case identifiers of ``labelsTr``."""
        ending = self.file_ending
        return sorted(p.name[: -len(ending)] for p in (self.folder / LABELS_TR).glob(f"*{ending}"))

    def images_of(self, case: str, folder: str = IMAGES_TR) -> list[Path]:
        """The channel files ``<case>_XXXX<ending>`` of a case.

        Raises:
            FileNotFoundError: naming the first missing channel file.
        """
        paths = [self.folder / folder / f"{case}_{int(c):04d}{self.file_ending}" for c in self.meta["channel_names"]]
        for p in paths:
            if not p.is_file():
                raise FileNotFoundError(f"{p}: image of case {case} not found")
        return paths

    def reader(self):
        """nnU-Net's reader/writer for this dataset (from ``dataset.json`` and an example label file)."""
        from nnunetv2.imageio.reader_writer_registry import determine_reader_writer_from_dataset_json

        example = self.folder / LABELS_TR / f"{self.cases()[0]}{self.file_ending}"
        return determine_reader_writer_from_dataset_json(self.meta, str(example), verbose=False)()

    def read_label(self, path: Path, reader) -> tuple[np.ndarray, dict]:
        """A label file as an integer array of shape (z, y, x) (2D images: (1, y, x)) and its properties."""
        seg, props = reader.read_seg(str(path))
        return np.asarray(seg[0]).astype(np.int32), props

    def extra_meta(self) -> dict:
        """``dataset.json`` entries that a derived dataset keeps unchanged."""
        return {k: v for k, v in self.meta.items() if k not in _OWN_KEYS}


def open_raw_dataset(spec: str) -> RawDataset:
    """Open a raw dataset given as a folder path or as a dataset ID / name inside ``$nnUNet_raw``.

    Raises:
        FileNotFoundError: if the folder or its dataset.json does not exist.
    """
    folder = Path(spec)
    if not folder.is_dir() and os.environ.get("nnUNet_raw"):
        root = Path(os.environ["nnUNet_raw"])
        prefix = f"Dataset{int(spec):03d}_" if spec.isdigit() else spec
        matches = sorted(p for p in root.glob(f"{prefix}*") if p.is_dir())
        folder = matches[0] if matches else folder
    meta_path = folder / "dataset.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"{meta_path}: no nnU-Net raw dataset (dataset.json) found for {spec!r}")
    return RawDataset(folder, json.loads(meta_path.read_text()))


def copy_images(src: RawDataset, out: Path, case: str) -> None:
    """Copy the training images of ``case`` unchanged."""
    (out / IMAGES_TR).mkdir(parents=True, exist_ok=True)
    for p in src.images_of(case):
        shutil.copy2(p, out / IMAGES_TR / p.name)


def copy_folders(src: RawDataset, out: Path, folders=(IMAGES_TS, LABELS_TS, LABELS_TR_DENSE)) -> None:
    """Copy whole sub-folders (those that exist) unchanged."""
    for name in folders:
        if (src.folder / name).is_dir():
            shutil.copytree(src.folder / name, out / name, dirs_exist_ok=True)


def source_splits(src: RawDataset, preprocessed_root: str | None) -> list | None:
    """The splits of the source dataset: its raw ``splits_final.json``, else the preprocessed one, else None."""
    root = preprocessed_root or os.environ.get("nnUNet_preprocessed")
    candidates = [src.folder / "splits_final.json"]
    if root:
        candidates.append(Path(root) / src.folder.name / "splits_final.json")
    for path in candidates:
        if path.is_file():
            return json.loads(path.read_text())
    return None
