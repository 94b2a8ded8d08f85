"""MSCMRseg converter: CycleMix layout, 25/5/15-style groups, header repair, errors, real data."""
from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
from conversion_helpers import heart, image_like, scribble_from, write_nifti

from nnunet_scribble.dataset_conversion import mscmr
from nnunet_scribble.dataset_conversion.image_io import ConversionWarning, zero_border_mask


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


def test_zero_border_mask_by_hand():
    image = np.ones((2, 5, 5), int)
    image[0, :, 0] = 0      # left column of slice 0: touches the border
    image[0, 2, 1:3] = 0    # joined to it in plane
    image[1, 2, 1:3] = 0    # below that, but not touching slice 1's in-plane border
    image[1, 0, 4] = 0      # corner of slice 1
    in_plane = np.zeros((2, 5, 5), bool)
    in_plane[0, :, 0] = in_plane[0, 2, 1:3] = in_plane[1, 0, 4] = True
    assert np.array_equal(zero_border_mask(image, axes=(-2, -1)), in_plane)
    # With every axis connecting, slice 1 is itself a border (first/last index of axis 0): all its zeros count.
    everything = in_plane.copy()
    everything[1, 2, 1:3] = True
    assert np.array_equal(zero_border_mask(image), everything)
    assert not zero_border_mask(np.ones((4, 4))).any() and zero_border_mask(np.zeros((4, 4))).all()


def test_zero_border_background(mscmr_layout, nnunet_env):
    source = mscmr_layout(test=(), broken=None)
    dense = heart(seed=2)
    image = image_like(dense, 2) + 1
    image[:, 21:] = 0       # a zero band along the bottom border, outside the heart (rows 6-18)
    image[:, 4, 10] = 0     # an isolated dark voxel inside the image: not border-connected
    write_nifti(image, source / "MSCMR_dataset/train/images/subject2_DE.nii.gz")
    _run([source, "-d", 5])   # the default
    out = nnunet_env[0] / "Dataset005_MSCMRScribble"
    expected = scribble_from(dense)
    expected[:, 21:] = 0
    label = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "labelsTr/subject02.nii.gz")))
    assert np.array_equal(label, expected) and label[0, 4, 10] == 4
    val = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "labelsTr/subject01.nii.gz")))
    assert np.array_equal(val, heart(seed=1))   # dense labels untouched
    declared = json.loads((out / "dataset.json").read_text())
    assert "zero-intensity" in declared["description"] and declared["outside_image_background"] is True
    _run([source, "-d", 6, "--no-zero_border_background"])   # the papers' scribbles, unchanged
    assert "outside_image_background" not in json.loads(
        (nnunet_env[0] / "Dataset006_MSCMRScribble/dataset.json").read_text())
    plain = nnunet_env[0] / "Dataset006_MSCMRScribble/labelsTr/subject02.nii.gz"
    plain = sitk.GetArrayFromImage(sitk.ReadImage(str(plain)))
    assert np.array_equal(plain, scribble_from(dense))


def test_real_mscmr_zero_border_holds_no_heart(real_data, nnunet_env):
    """On the released LGE images the border-connected zeros (a third of a slice) never overlap the dense heart."""
    _run([real_data / "MSCMR", "--subjects", 13, 8, "--zero_border_background"])   # explicit: same as default
    out = nnunet_env[0] / "Dataset028_MSCMRScribble"
    image = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "imagesTs/subject08_0000.nii.gz")))
    dense = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "labelsTs/subject08.nii.gz")))
    mask = zero_border_mask(image, axes=(-2, -1))
    assert mask.mean() > 0.2 and not (mask & (dense > 0)).any()
    label = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "labelsTr/subject13.nii.gz")))
    assert (label != 4).mean() > 0.2    # the scribbles alone label about 4 % of a slice
