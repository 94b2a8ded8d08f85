"""Image + scribble NIfTI folder converter (NCI-ISBI prostate, MyoPS presets)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
from conversion_helpers import heart, image_like, write_nifti

from nnunet_scribble.dataset_conversion import nifti_folders


def _make(folder, cases, channels, unannotated, background=0):
    for i, case in enumerate(cases):
        dense = np.minimum(heart(seed=i), 2)
        for ch in channels:
            write_nifti(image_like(dense, i), folder / ch.format(case=case))
        scribble = np.full_like(dense, unannotated)
        line = dense[:, 12, 2:-2]
        scribble[:, 12, 2:-2] = np.where(line == 0, background, line)
        write_nifti(scribble, folder / f"{case}_scribble.nii.gz")
        write_nifti(dense, folder / f"{case}_gt.nii.gz")


def test_myops_three_channels(tmp_path, nnunet_env, verify):
    _make(tmp_path / "myops", ["myops_training_101", "myops_training_102"],
          ["{case}_C0.nii.gz", "{case}_DE.nii.gz", "{case}_T2.nii.gz"], 255)
    assert nifti_folders.main([str(tmp_path / "myops"), "--dense", str(tmp_path / "myops")], preset="myops") == 0
    out = nnunet_env[0] / "Dataset030_MyoPSScribble"
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["channel_names"] == {"0": "C0", "1": "LGE", "2": "T2"} and meta["labels"]["ignore"] == 3
    assert len(list((out / "imagesTr").iterdir())) == 6
    lbl = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "labelsTr/myops_training_101.nii.gz")))
    assert set(np.unique(lbl)) == {0, 1, 2, 3}
    verify(out)


def test_prostate_unannotated_zero(tmp_path, nnunet_env):
    _make(tmp_path / "p", ["Prostate01", "Prostate02"], ["{case}.nii.gz"], 0, background=3)
    args = [str(tmp_path / "p"), "--unannotated", "0", "--background_value", "3"]
    assert nifti_folders.main(args, preset="prostate") == 0
    out = nnunet_env[0] / "Dataset029_ProstateScribble"
    lbl = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "labelsTr/Prostate01.nii.gz")))
    assert set(np.unique(lbl)) == {0, 1, 2, 3} and (lbl == 3).mean() > 0.5


def test_wrong_unannotated_value_is_reported(tmp_path, nnunet_env, capsys):
    _make(tmp_path / "p", ["Prostate01"], ["{case}.nii.gz"], 255)
    assert nifti_folders.main([str(tmp_path / "p"), "--unannotated", "4"], preset="prostate") == 2
    err = capsys.readouterr().err
    assert "Prostate01_scribble.nii.gz: scribble values [255] are outside" in err
    with pytest.raises(FileNotFoundError, match="Prostate01_C0.nii.gz: file of case"):
        args = nifti_folders.build_parser("prostate").parse_args(
            [str(tmp_path / "p"), "--image_patterns", "{case}.nii.gz"])
        args.image_patterns = ["{case}.nii.gz"]
        nifti_folders.find_cases(tmp_path / "p", ["{case}.nii.gz", "{case}_C0.nii.gz"], tmp_path / "p",
                                 "{case}_scribble.nii.gz")
