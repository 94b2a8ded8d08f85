"""benchmarks/volumes.py: volume ratios, largest component and the on-reference oracle, counted by hand."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from nnunet_helpers import load_benchmark

LABELS = {"background": 0, "A": 1, "B": 2, "ignore": 3}


def _module():
    return load_benchmark("volumes")


def _organ_and_island():
    """A 2x2 organ of A with 2 voxels of B beside it; the prediction adds a 7-voxel A island, larger than the organ."""
    ref = np.zeros((12, 12), np.uint8)
    ref[1:3, 1:3] = 1
    ref[1:3, 3] = 2
    pred = ref.copy()
    pred[9, 2:9] = 1             # island: 7 voxels, no voxel on the reference, not touching the organ (6 voxels)
    return pred, ref


def test_largest_component_keeps_the_island_and_the_oracle_keeps_the_organ():
    vol = _module()
    pred, ref = _organ_and_island()
    got = vol.case_volumes(pred, ref, LABELS)
    assert got["ratios"]["as predicted"] == pytest.approx({"A": 11 / 4, "B": 1.0})
    assert got["ratios"]["largest component"] == pytest.approx({"A": 7 / 4, "B": 0.0})
    assert got["ratios"]["on the reference"] == pytest.approx({"A": 1.0, "B": 1.0})
    assert got["dice"]["as predicted"] == pytest.approx((2 * 4 / (11 + 4) + 1.0) / 2)
    assert got["dice"]["largest component"] == 0.0
    assert got["dice"]["on the reference"] == 1.0
    assert got["organ_deleted"] is True


def test_smaller_island_is_removed_by_both_and_works_in_3d():
    vol = _module()
    pred, ref = _organ_and_island()
    pred[9, 6:9] = 0                                    # island of 4 voxels < organ of 6
    got = vol.case_volumes(pred[None], ref[None], LABELS)  # (1, H, W): 3D with 26-connectivity
    assert got["ratios"]["largest component"] == got["ratios"]["on the reference"] == pytest.approx(
        {"A": 1.0, "B": 1.0})
    assert got["organ_deleted"] is False
    diagonal = np.zeros((3, 3, 3), np.uint8)
    diagonal[0, 0, 0] = diagonal[1, 1, 1] = 1          # corner neighbours: one component in the full neighbourhood
    ref3 = np.zeros_like(diagonal)
    ref3[0, 0, 0] = 1
    assert vol.on_reference_components(diagonal, ref3).sum() == 2
    with pytest.raises(ValueError, match="shape"):
        vol.on_reference_components(diagonal, ref3[0])


def test_no_prediction_on_the_organ_is_not_counted_as_deleted():
    vol = _module()
    pred, ref = _organ_and_island()
    pred[ref > 0] = 0
    got = vol.case_volumes(pred, ref, LABELS)
    assert got["organ_deleted"] is False
    assert got["ratios"]["on the reference"] == pytest.approx({"A": 0.0, "B": 0.0})


def _write(folder: Path, name: str, arr: np.ndarray):
    folder.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(sitk.GetImageFromArray(arr[None]), str(folder / name))


def test_script_tables_split_and_errors(tmp_path, capsys):
    vol = _module()
    pred, ref = _organ_and_island()
    (tmp_path / "dataset.json").write_text(json.dumps({"labels": LABELS}))
    for case, p in (("p1_frame01.nii.gz", pred), ("p1_frame09.nii.gz", ref)):   # the second case is perfect
        _write(tmp_path / "labelsTr_dense", case, ref)
        _write(tmp_path / "pred", case, p)
    vol.main([str(tmp_path / "labelsTr_dense"), f"M={tmp_path / 'pred'}", "--split", "frame01"])
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "**M**: predicted / reference volume, median (range) over cases"
    row = next(line for line in out if line.startswith("| largest component |"))
    # A, B for frame01 (the island case), for the others (perfect), for all: median (range); then the mean Dice
    assert row == ("| largest component | 1.8x (1.8-1.8) | 0.0x (0.0-0.0) | 1.0x (1.0-1.0) | 1.0x (1.0-1.0) "
                   "| 1.4x (1.0-1.8) | 0.5x (0.0-1.0) | 50.0 |")
    assert out[-2] == "organ deleted by the largest component: 1 of 2 (p1_frame01)"
    _write(tmp_path / "pred", "p9_frame01.nii.gz", pred)
    with pytest.raises(SystemExit, match=r"labelsTr_dense/p9_frame01.nii.gz not found: the reference of prediction"):
        vol.main([str(tmp_path / "labelsTr_dense"), str(tmp_path / "pred")])
    (tmp_path / "pred" / "p9_frame01.nii.gz").unlink()
    _write(tmp_path / "pred", "p1_frame09.nii.gz", ref[:, :5])
    with pytest.raises(SystemExit, match=r"p1_frame09.nii.gz: shape \(1, 12, 5\), expected the reference's"):
        vol.main([str(tmp_path / "labelsTr_dense"), str(tmp_path / "pred")])
    with pytest.raises(SystemExit, match=r"--split '\(' is not a regular expression"):
        vol.main([str(tmp_path / "labelsTr_dense"), str(tmp_path / "pred"), "--split", "("])
