"""MSCMRseg converter: CycleMix layout, 25/5/15-style groups, header repair, errors, real data."""
from __future__ import annotations

import json

import pytest
import SimpleITK as sitk

from nnunet_scribble.dataset_conversion import mscmr
from nnunet_scribble.dataset_conversion.image_io import ConversionWarning


def _run(argv):
    mscmr.convert(mscmr.build_parser().parse_args([str(a) for a in argv]))


def test_layout_groups_and_header_repair(mscmr_layout, nnunet_env, verify):
    source = mscmr_layout()
    with pytest.warns(ConversionWarning, match=r"subject4_DE_scribble.*using the image's geometry"):
        _run([source])
    out = nnunet_env[0] / "Dataset028_MSCMRScribble"
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["numTraining"] == 5 and meta["labels"]["ignore"] == 4
    assert meta["test_groups"] == {"val": ["subject01", "subject08"], "test": ["subject03"]}
    splits = json.loads((nnunet_env[1] / out.name / "splits_final.json").read_text())
    assert splits == [{"train": ["subject02", "subject04", "subject06"], "val": ["subject01", "subject08"]}]
    assert sorted(p.name for p in (out / "labelsTs").iterdir()) == \
        ["subject01.nii.gz", "subject03.nii.gz", "subject08.nii.gz"]
    img = sitk.ReadImage(str(out / "imagesTr/subject04_0000.nii.gz"))
    lbl = sitk.ReadImage(str(out / "labelsTr/subject04.nii.gz"))
    assert (lbl.GetOrigin(), lbl.GetDirection()) == (img.GetOrigin(), img.GetDirection())
    verify(out)


def test_missing_label_and_missing_testset(mscmr_layout, nnunet_env):
    source = mscmr_layout(test=())
    with pytest.warns(ConversionWarning, match="TestSet: no subjects"):
        _run([source, "-d", 3])
    (source / "MSCMR_dataset/val/labels/subject8_DE_manual.nii.gz").unlink()
    with pytest.raises(FileNotFoundError, match="subject8_DE_manual.nii.gz: label of"):
        _run([source, "-d", 4])


def test_real_mscmr_subset(real_data, nnunet_env, verify):
    _run([real_data / "MSCMR", "--subjects", 13, 14, 8])
    out = nnunet_env[0] / "Dataset028_MSCMRScribble"
    assert sorted(p.name for p in (out / "labelsTr").iterdir()) == \
        ["subject08.nii.gz", "subject13.nii.gz", "subject14.nii.gz"]
    verify(out)
