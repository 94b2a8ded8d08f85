"""Fixtures for the converter tests: tiny synthetic datasets in each source layout, and the real shared data."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from conversion_helpers import (DIRECTION, ORIGIN, SPACING, heart, image_like,  # noqa: F401
                                scribble_from, shared_data, write_nifti)


@pytest.fixture
def real_data() -> Path:
    """Path to the real shared data; skips the test when it is absent."""
    path = shared_data()
    if not (path / "ACDC").is_dir():
        pytest.skip(f"real data not found at {path}")
    return path


@pytest.fixture
def acdc_official(tmp_path: Path):
    """Factory: official ACDC layout + Valvano-style scribble folder for the given patients (2 frames each)."""
    def make(patients=(1, 2, 21, 22)) -> tuple[Path, Path]:
        root, scribbles = tmp_path / "ACDC", tmp_path / "scribbles"
        for p in patients:
            for frame in (1, 12):
                case = f"patient{p:03d}_frame{frame:02d}"
                dense = heart(seed=p)
                write_nifti(image_like(dense, p + frame), root / "training" / case[:10] / f"{case}.nii.gz")
                write_nifti(dense, root / "training" / case[:10] / f"{case}_gt.nii.gz")
                write_nifti(scribble_from(dense).astype(np.uint16), scribbles / f"{case}_scribble.nii.gz")
        return root, scribbles
    return make


@pytest.fixture
def acdc_h5(tmp_path: Path):
    """Factory: WSL4MIS ``ACDC_training_volumes`` folder for the given patients (frame01 only)."""
    import h5py

    def make(patients=(1, 2, 21)) -> Path:
        folder = tmp_path / "h5" / "ACDC_training_volumes"
        folder.mkdir(parents=True)
        for p in patients:
            dense = heart(seed=p)
            with h5py.File(folder / f"patient{p:03d}_frame01.h5", "w") as f:
                f["image"] = (image_like(dense, p) / 400).astype(np.float32)
                f["label"] = dense
                f["scribble"] = scribble_from(dense).astype(np.uint16)
        return folder.parent
    return make


@pytest.fixture
def nnunet_env(tmp_path: Path, monkeypatch) -> tuple[Path, Path]:
    """Point nnUNet_raw / nnUNet_preprocessed at temporary folders."""
    raw, pre = tmp_path / "nnUNet_raw", tmp_path / "nnUNet_preprocessed"
    monkeypatch.setenv("nnUNet_raw", str(raw))
    monkeypatch.setenv("nnUNet_preprocessed", str(pre))
    return raw, pre


@pytest.fixture
def verify():
    """nnU-Net's own integrity check as a function of the dataset folder (raises on problems)."""
    from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity

    return lambda dataset_dir: verify_dataset_integrity(str(dataset_dir), num_processes=1)


@pytest.fixture
def mscmr_layout(tmp_path: Path):
    """Factory: CycleMix MSCMR_dataset layout; the label of ``broken`` has an affine holding only the spacing."""
    def make(train=(2, 4, 6), val=(1, 8), test=(3,), broken=4) -> Path:
        root = tmp_path / "MSCMR" / "MSCMR_dataset"
        for group, subjects, suffix in (("train", train, "scribble"), ("val", val, "manual"),
                                        ("TestSet", test, "manual")):
            for s in subjects:
                dense = heart(seed=s)
                write_nifti(image_like(dense, s), root / group / "images" / f"subject{s}_DE.nii.gz")
                label = scribble_from(dense) if suffix == "scribble" else dense
                geometry = dict(origin=(0.0, 0.0, 0.0), direction=tuple(np.eye(3).ravel())) if s == broken else {}
                write_nifti(label, root / group / "labels" / f"subject{s}_DE_{suffix}.nii.gz", **geometry)
        return root.parent
    return make


@pytest.fixture
def dense_raw(tmp_path: Path):
    """Factory: a dense nnU-Net raw dataset, 3D NIfTI (``"nifti"``) or 2D grayscale PNG (``"png"``)."""
    import json

    from skimage import io

    def make(kind: str = "nifti", cases: int = 3) -> Path:
        folder = tmp_path / f"Dataset500_Dense{kind}"
        for i in range(cases):
            dense = heart(shape=(3, 40, 36), seed=i)
            if kind == "png":
                (folder / "imagesTr").mkdir(parents=True, exist_ok=True)
                (folder / "labelsTr").mkdir(parents=True, exist_ok=True)
                io.imsave(folder / f"imagesTr/case{i}_0000.png", (image_like(dense, i)[1] % 256).astype(np.uint8),
                          check_contrast=False)
                io.imsave(folder / f"labelsTr/case{i}.png", dense[1], check_contrast=False)
            else:
                write_nifti(image_like(dense, i), folder / f"imagesTr/case{i}_0000.nii.gz")
                write_nifti(dense, folder / f"labelsTr/case{i}.nii.gz")
        meta = {"channel_names": {"0": "MRI"}, "labels": {"background": 0, "RV": 1, "MYO": 2, "LV": 3},
                "numTraining": cases, "file_ending": ".png" if kind == "png" else ".nii.gz"}
        (folder / "dataset.json").write_text(json.dumps(meta))
        (folder / "splits_final.json").write_text(json.dumps([{"train": ["case0", "case1"], "val": ["case2"]}]))
        return folder
    return make
