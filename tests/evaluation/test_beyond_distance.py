"""benchmarks/beyond_distance.py: reach of the dense foreground from the scribbles, and auto's samples, by hand."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from nnunet_helpers import load_benchmark

bd = load_benchmark("beyond_distance")
IGNORE = 2


def _write(arr: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(sitk.GetImageFromArray(arr[None].astype(np.uint8)), str(path))


def _dataset(tmp_path: Path, dense: bool = True) -> Path:
    """One row of 40 voxels (1 mm) per case; the A scribble at column 0.

    a: dense A on columns 0-6 (reach 6 mm), a background scribble at column 39; b: dense A on 0-3 (reach 3 mm);
    c: no foreground scribble (skipped); d: no dense labels (not measured); e: dense labels in labelsTr (skipped).
    """
    root = tmp_path / "Dataset999_Tiny"
    (root / "labelsTr").mkdir(parents=True)
    (root / "dataset.json").write_text(json.dumps({"labels": {"background": 0, "A": 1, "ignore": IGNORE},
                                                   "channel_names": {"0": "MRI"}, "file_ending": ".nii.gz",
                                                   "numTraining": 4}))
    for case, reach in (("a", 6), ("b", 3), ("c", 3), ("d", 3), ("e", 3)):
        s, d = np.full((1, 40), IGNORE, np.uint8), np.zeros((1, 40), np.uint8)
        s[0, 0], d[0, :reach + 1] = (IGNORE if case == "c" else 1), 1
        if case == "a":
            s[0, 39] = 0
        if case == "e":     # densely labelled in labelsTr (MSCMRseg's val cases): skipped
            s = d.copy()
        _write(s, root / "labelsTr" / f"{case}.nii.gz")
        if dense and case != "d":
            _write(d, root / "labelsTr_dense" / f"{case}.nii.gz")
    return root


def test_reach_distances_and_samples_by_hand(tmp_path):
    r = bd.measure(str(_dataset(tmp_path)), sizes=[1, 2], draws=50, margin=1.25, seed=0)
    assert r["cases"] == 2 and r["skipped"] == ["c", "e"] and r["farthest_cases"] == ["a", "b"]
    assert r["reach_max_mm"] == pytest.approx(6.0) and r["reach_median_mm"] == pytest.approx(4.5)
    assert r["suggested_mm"] == 10.0                       # 6 x 1.25 = 7.5 -> 10
    rows = {row["beyond_mm"]: row for row in r["distances"]}
    assert sorted(rows) == [10, 20, 25, 30, 35, 40, 50, 60]
    # unannotated: a columns 1-38 (38 voxels), b columns 1-39 (39); farther than 10 mm: 28 + 29, than 20 mm: 18 + 19
    assert rows[10]["known_background"] == pytest.approx(57 / 77)
    assert rows[20]["known_background"] == pytest.approx(37 / 77)
    assert rows[60]["known_background"] == 0.0
    assert all(row["foreground_made_background"] == 0 and row["cases_with_foreground_made_background"] == 0
               for row in rows.values())
    one, two = r["samples"]
    # one case: a -> 10 mm, b -> 3.75 -> 5 mm, where a's column 6 (6 mm) becomes background: 1 of 11 dense voxels
    assert (one["suggested_min"], one["suggested_max"]) == (5.0, 10.0) and 0 < one["below_full_reach"] < 1
    assert one["foreground_made_background_max"] == pytest.approx(1 / 11)
    assert one["foreground_made_background_mean"] == pytest.approx(one["below_full_reach"] / 11)
    assert (two["suggested_min"], two["suggested_max"], two["below_full_reach"]) == (10.0, 10.0, 0.0)
    table = bd.to_markdown(r)
    assert "max 6.0 mm (a, b), p90 5.7, median 4.5; --beyond_mm auto on all of them: 10 mm" in table
    assert "| 20 | 48.1 % | 0.000 % | 0 |" in table
    assert "| 2 | 10 / 10 / 10 | 0 % | 0.000 % / 0.000 % |" in table


def test_binning_counts_a_voxel_at_the_distance_as_not_beyond():
    scribble = np.full((1, 12), IGNORE, np.uint8)
    scribble[0, 0] = 1
    dense = np.zeros_like(scribble)
    dense[0, :3] = 1
    reach, unannotated, fg = bd.case_histograms(scribble, dense, (1.0, 1.0), IGNORE, n_bins=200)
    assert reach == 2.0
    assert bd.beyond(unannotated, 10.0) == 1             # column 11 only: column 10 lies at exactly 10 mm
    assert bd.beyond(fg, 2.0) == 0 and bd.beyond(fg, 1.9) == 1


def test_errors_name_the_folder(tmp_path):
    root = _dataset(tmp_path, dense=False)
    with pytest.raises(SystemExit, match="labelsTr_dense not found: the dataset has no dense labels"):
        bd.measure(str(root), sizes=[1], draws=1, margin=1.25, seed=0)
    root = _dataset(tmp_path / "x")
    with pytest.raises(SystemExit, match=r"--sizes 3: expected 1 to 2 \(the measurable cases\)"):
        bd.measure(str(root), sizes=[3], draws=1, margin=1.25, seed=0)
