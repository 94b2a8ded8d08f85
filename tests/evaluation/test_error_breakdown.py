"""metrics.error_breakdown and benchmarks/error_breakdown.py, counted by hand on one row."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from nnunet_helpers import load_benchmark

from nnunet_scribble.evaluation.metrics import error_breakdown, far_foreground_fraction, far_mask

LABELS = {"background": 0, "A": 1, "B": 2, "ignore": 3}


def _row():
    ref = np.zeros((1, 40), np.uint8)
    ref[0, 5:10], ref[0, 10:12] = 1, 2          # A: x = 5..9, B: x = 10, 11
    pred = np.zeros_like(ref)
    pred[0, 6:11] = 1                           # A: 6..9 right, 10 is B's (near), 5 missed
    pred[0, 26] = 1                             # 15 mm from x = 11: still near (far means > 15)
    pred[0, 30] = 1                             # 19 mm: far
    pred[0, 11], pred[0, 20] = 2, 2             # B: 11 right, 20 near (9 mm), 10 missed
    return pred, ref


def test_counts_by_hand():
    pred, ref = _row()
    got = error_breakdown(pred, ref, LABELS, (1.0, 1.0), max_distance_mm=15.0)
    assert got == {"A": {"ref": 5, "tp": 4, "fp_near": 2, "fp_far": 1, "fn": 1},
                   "B": {"ref": 2, "tp": 1, "fp_near": 1, "fp_far": 0, "fn": 1}}
    # consistent with far_foreground_fraction: 1 far voxel of 9 predicted foreground voxels (A 7, B 2)
    assert far_foreground_fraction(pred, ref, (1.0, 1.0)) == pytest.approx(1 / 9)
    # spacing counts: at 2 mm per voxel x = 20 (9 voxels) is 18 mm away and becomes far
    wide = error_breakdown(pred, ref, LABELS, (1.0, 2.0))
    assert wide["B"]["fp_far"] == 1 and wide["A"]["fp_far"] == 2
    # a precomputed far mask gives the same counts; one of another shape is refused
    assert error_breakdown(pred, ref, LABELS, (1.0, 2.0), far=far_mask(ref, (1.0, 2.0), 15.0)) == wide
    with pytest.raises(ValueError, match="far mask shape"):
        error_breakdown(pred, ref, LABELS, (1.0, 1.0), far=np.zeros((1, 39), bool))


def test_no_reference_foreground_makes_every_false_positive_far():
    pred, _ = _row()
    got = error_breakdown(pred, np.zeros_like(pred), LABELS, (1.0, 1.0))
    assert got["A"] == {"ref": 0, "tp": 0, "fp_near": 0, "fp_far": 7, "fn": 0}
    with pytest.raises(ValueError, match="shape"):
        error_breakdown(pred, np.zeros((1, 39), np.uint8), LABELS, (1.0, 1.0))


def _module():
    return load_benchmark("error_breakdown")


def _write(folder: Path, name: str, arr: np.ndarray):
    folder.mkdir(parents=True, exist_ok=True)
    img = sitk.GetImageFromArray(arr[None])  # (1, 1, 40) -> z, y, x
    img.SetSpacing((1.0, 1.0, 5.0))
    sitk.WriteImage(img, str(folder / name))


def test_script_means_over_cases(tmp_path, capsys):
    eb = _module()
    pred, ref = _row()
    (tmp_path / "dataset.json").write_text(json.dumps({"labels": LABELS}))
    for case, p in (("c1.nii.gz", pred), ("c2.nii.gz", ref)):  # case 2 is perfect
        _write(tmp_path / "labelsTs", case, ref)
        _write(tmp_path / "pred", case, p)
    eb.main([str(tmp_path / "labelsTs"), f"M={tmp_path / 'pred'}"])
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("| M |"))
    values = [float(v) for v in row.strip("| \n").split(" | ")[1:]]
    # columns: area near A, B; precision near A, B; recall A, B; far FP A, B (mean of case 1 and the perfect case)
    expected = [(6 / 5 + 1) / 2, (2 / 2 + 1) / 2, (4 / 6 + 1) / 2, (1 / 2 + 1) / 2, (4 / 5 + 1) / 2, (1 / 2 + 1) / 2,
                (1 / 5) / 2, 0.0]
    assert values == pytest.approx(expected, abs=0.006)


def test_script_names_a_missing_reference(tmp_path):
    eb = _module()
    pred, ref = _row()
    (tmp_path / "dataset.json").write_text(json.dumps({"labels": LABELS}))
    _write(tmp_path / "labelsTs", "c1.nii.gz", ref)
    _write(tmp_path / "pred", "c9.nii.gz", pred)
    with pytest.raises(SystemExit, match=r"labelsTs/c9.nii.gz not found: the reference of prediction"):
        eb.main([str(tmp_path / "labelsTs"), str(tmp_path / "pred")])


def test_script_zero_border_table_pools_voxels(tmp_path, capsys):
    eb = _module()
    pred, ref = _row()
    (tmp_path / "dataset.json").write_text(json.dumps({"labels": LABELS}))
    image = np.full(ref.shape, 7, np.int16)
    image[0, 28:] = 0           # a zero band reaching the border: holds the far A voxel (x = 30)
    image[0, 20] = 0            # one row high, so every voxel touches the y border: B's near voxel counts too
    for case, p, im in (("c1", pred, image), ("c2", ref, np.ones_like(image))):  # case 2: perfect, no zeros
        _write(tmp_path / "labelsTs", f"{case}.nii.gz", ref)
        _write(tmp_path / "pred", f"{case}.nii.gz", p)
        _write(tmp_path / "imagesTs", f"{case}_0000.nii.gz", im)
    eb.main([str(tmp_path / "labelsTs"), f"M={tmp_path / 'pred'}", "--images", str(tmp_path / "imagesTs")])
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| M |")]
    # pooled: 9 + 7 predicted foreground voxels, 1 far (x = 30), 2 on the zero border (x = 20, 30), the far one too
    assert rows[1] == f"| M | {100 / 16:.0f} % | {200 / 16:.0f} % | 100 % |"
    (tmp_path / "imagesTs" / "c2_0000.nii.gz").unlink()
    with pytest.raises(SystemExit, match=r"imagesTs/c2_0000.nii.gz not found: the image of prediction"):
        eb.main([str(tmp_path / "labelsTs"), str(tmp_path / "pred"), "--images", str(tmp_path / "imagesTs")])
