"""ACDC converter: official and WSL4MIS layouts, splits, errors, real data."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import SimpleITK as sitk

from nnunet_scribble.dataset_conversion import acdc
from nnunet_scribble.dataset_conversion.image_io import ConversionWarning, read_image


def _run(argv):
    acdc.convert(acdc.build_parser().parse_args([str(a) for a in argv]))


def test_official_layout(acdc_official, nnunet_env, verify):
    root, scribbles = acdc_official()
    raw, pre = nnunet_env
    with pytest.warns(ConversionWarning, match="folds 3"):
        _run([root, "-s", scribbles])
    out = raw / "Dataset027_ACDCScribble"
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["labels"] == {"background": 0, "RV": 1, "MYO": 2, "LV": 3, "ignore": 4}
    assert meta["numTraining"] == 8
    assert len(os.listdir(out / "imagesTr")) == len(os.listdir(out / "labelsTr_dense")) == 8
    splits = json.loads((pre / out.name / "splits_final.json").read_text())
    assert [len(s["val"]) for s in splits] == [4, 4]
    assert splits[0]["val"] == ["patient001_frame01", "patient001_frame12", "patient002_frame01",
                                "patient002_frame12"]
    src = read_image(root / "training/patient001/patient001_frame01.nii.gz")
    for sub in ("imagesTr/patient001_frame01_0000", "labelsTr/patient001_frame01"):
        img = sitk.ReadImage(str(out / f"{sub}.nii.gz"))
        assert (img.GetSpacing(), img.GetOrigin(), img.GetDirection()) == \
            (src.GetSpacing(), src.GetOrigin(), src.GetDirection())
    verify(out)


def test_h5_layout_geometry_from_scribbles(acdc_official, acdc_h5, nnunet_env, verify):
    _, scribbles = acdc_official(patients=(1, 2, 21))
    h5root = acdc_h5()
    _run([h5root, "-s", scribbles, "-d", 5])
    out = nnunet_env[0] / "Dataset005_ACDCScribble"
    img = sitk.ReadImage(str(out / "imagesTr/patient021_frame01_0000.nii.gz"))
    ref = sitk.ReadImage(str(scribbles / "patient021_frame01_scribble.nii.gz"))
    assert np.allclose(img.GetSpacing(), ref.GetSpacing()) and np.allclose(img.GetDirection(), ref.GetDirection())
    verify(out)


def test_h5_layout_needs_spacing(acdc_h5, nnunet_env):
    h5root = acdc_h5()
    with pytest.raises(ValueError, match="--spacing"):
        _run([h5root])
    _run([h5root, "--spacing", 1.5, 1.5, 10])
    img = sitk.ReadImage(str(nnunet_env[0] / "Dataset027_ACDCScribble/imagesTr/patient001_frame01_0000.nii.gz"))
    assert img.GetSpacing() == (1.5, 1.5, 10.0)


def test_70_15_15_split(acdc_official, nnunet_env):
    root, scribbles = acdc_official(patients=range(1, 21))
    _run([root, "-s", scribbles, "--split", "70-15-15", "--num_train_patients", 5, "--patients", *range(1, 21)])
    out = nnunet_env[0] / "Dataset027_ACDCScribble"
    meta = json.loads((out / "dataset.json").read_text())
    splits = json.loads((out / "splits_final.json").read_text())
    assert len(meta["test_patients"]) == 3 and meta["numTraining"] == 34
    assert len(splits) == 1 and len(splits[0]["train"]) == 10 and len(splits[0]["val"]) == 6
    assert len(os.listdir(out / "imagesTs")) == len(os.listdir(out / "labelsTs")) == 6
    test_ids = {f"patient{p:03d}" for p in meta["test_patients"]}
    assert not test_ids & {c[:10] for c in splits[0]["train"] + splits[0]["val"]}


@pytest.mark.parametrize("damage, message", [
    ("missing", "scribble of .* not found"),
    ("shape", "size .* differs"),
    ("values", r"scribble values \[7\] are outside"),
    ("empty", "no annotated voxel"),
    ("origin", "origin .* differs"),
])
def test_bad_input_errors(acdc_official, nnunet_env, damage, message):
    root, scribbles = acdc_official(patients=(1, 2))
    path = scribbles / "patient002_frame12_scribble.nii.gz"
    array = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
    from conversion_helpers import write_nifti
    if damage == "missing":
        path.unlink()
    elif damage == "shape":
        write_nifti(array[:, :-1], path)
    elif damage == "values":
        array[0, 0, 0] = 7
        write_nifti(array, path)
    elif damage == "empty":
        write_nifti(np.full_like(array, 4), path)
    else:
        write_nifti(array, path, origin=(50.0, 0.0, 0.0))
    with pytest.raises((ValueError, FileNotFoundError), match=message) as info:
        _run([root, "-s", scribbles])
    assert "patient002_frame12" in str(info.value)
    assert not nnunet_env[0].exists() or not any(nnunet_env[0].iterdir())  # nothing half-written


def test_existing_output_and_overwrite(acdc_official, nnunet_env, capsys):
    root, scribbles = acdc_official(patients=(1, 2))
    assert acdc.main([str(root), "-s", str(scribbles)]) == 0
    assert acdc.main([str(root), "-s", str(scribbles)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert acdc.main([str(root), "-s", str(scribbles), "--overwrite"]) == 0


def test_output_root_required(acdc_official, monkeypatch):
    root, scribbles = acdc_official(patients=(1,))
    monkeypatch.delenv("nnUNet_raw", raising=False)
    with pytest.raises(ValueError, match="nnUNet_raw"):
        _run([root, "-s", scribbles])


def test_real_acdc_subset(real_data, nnunet_env, verify):
    """Real data: geometry identical to the source, >= 99.9% agreement with dense labels, integrity check."""
    source = real_data / "ACDC"
    _run([source, "-s", source / "scribbles_valvano", "--patients", 1, 21, 45])
    out = nnunet_env[0] / "Dataset027_ACDCScribble"
    agree = annotated = 0
    for label in sorted((out / "labelsTr").iterdir()):
        case = label.name[: -len(".nii.gz")]
        src = read_image(source / "training" / case[:10] / f"{case}.nii.gz")
        for path in (out / "imagesTr" / f"{case}_0000.nii.gz", label):
            img = sitk.ReadImage(str(path))
            assert (img.GetSpacing(), img.GetOrigin(), img.GetDirection()) == \
                (src.GetSpacing(), src.GetOrigin(), src.GetDirection())
        scribble = sitk.GetArrayFromImage(sitk.ReadImage(str(label)))
        dense = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "labelsTr_dense" / label.name)))
        agree += int((scribble == dense)[scribble != 4].sum())
        annotated += int((scribble != 4).sum())
    assert agree / annotated >= 0.999
    verify(out)


def test_real_h5_sample(real_data, nnunet_env):
    source = real_data / "ACDC"
    _run([source / "wsl4mis_h5_sample", "-s", source / "scribbles_valvano"])
    out = nnunet_env[0] / "Dataset027_ACDCScribble"
    img = sitk.ReadImage(str(out / "imagesTr/patient001_frame01_0000.nii.gz"))
    assert np.allclose(img.GetSpacing(), (1.5625, 1.5625, 10.0))
