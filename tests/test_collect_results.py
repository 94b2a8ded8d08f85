"""benchmarks/collect_results.py: merging results folders, pooling runs of one name, --rename."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from nnunet_helpers import load_benchmark

from nnunet_scribble.evaluation import evaluate_folder

LABELS = {"background": 0, "A": 1, "ignore": 2}


def _module():
    return load_benchmark("collect_results")


def _write(folder: Path, name: str, arr: np.ndarray):
    folder.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(sitk.GetImageFromArray(arr), str(folder / name))


def _results_folder(root: Path, name: str, runs: dict[str, int], label: str | None = None) -> Path:
    """A run_quality.py-like folder: one summary per (trainer, run), A predicted with ``tp`` of 4 true voxels."""
    ref_dir = root / "ref"
    ref = np.zeros((1, 8, 8), np.uint8)
    ref[0, 2:4, 2:4] = 1
    _write(ref_dir, "c1.nii.gz", ref)
    (root / "dataset.json").write_text(json.dumps({"labels": LABELS, "file_ending": ".nii.gz"}))
    out = root / name
    out.mkdir()
    for stem, tp in runs.items():
        pred = np.zeros_like(ref)
        pred[0, 2:4, 2:4].flat[:tp] = 1
        _write(root / f"pred_{name}_{stem}", "c1.nii.gz", pred)
        s = evaluate_folder(ref_dir, root / f"pred_{name}_{stem}", labels=LABELS, extra_metrics=True)
        s.update(train_seconds=10.0, predict_seconds=1.0, dataset="DatasetX", label=label)
        (out / f"summary_{stem}.json").write_text(json.dumps(s))
    return out


def test_rename_swaps_names_and_pools_runs(tmp_path, capsys):
    cr = _module()
    # folder a: the old default (per-class) as nnUNetTrainerMaCo, 2 runs; folder b: the variant, labelled by hparams
    a = _results_folder(tmp_path, "a", {"nnUNetTrainerMaCo": 2, "nnUNetTrainerMaCo_repeat1": 2,
                                        "nnUNetTrainerScribble": 1})
    b = _results_folder(tmp_path, "b", {"nnUNetTrainerMaCo": 4}, label='nnUNetTrainerMaCo {"n": "voxel"}')
    cr.main([str(a), str(b), "--output", str(tmp_path / "m"), "--upper_bound", "none",
             "--rename", "nnUNetTrainerMaCo=nnUNetTrainerMaCoPerClassN",
             'nnUNetTrainerMaCo {"n": "voxel"}=nnUNetTrainerMaCo'])
    md = (tmp_path / "m" / "results.md").read_text()
    rows = {line.split(" | ")[0].strip("| "): line for line in md.splitlines() if line.startswith("| nnUNet")}
    assert set(rows) == {"nnUNetTrainerScribble", "nnUNetTrainerMaCoPerClassN", "nnUNetTrainerMaCo"}
    # Dice of A: 2 of 4 voxels -> 2*2/(2+4) = 66.7; 4 of 4 -> 100.0; 1 of 4 -> 40.0
    assert "66.7" in rows["nnUNetTrainerMaCoPerClassN"] and "100.0" in rows["nnUNetTrainerMaCo"]
    assert "40.0" in rows["nnUNetTrainerScribble"]
    assert "voxel" not in md.split("Merged")[1].split("\n\n", 1)[1]  # only the sources list names the old label


def test_rename_of_an_absent_name_and_bad_spec_are_refused(tmp_path):
    cr = _module()
    a = _results_folder(tmp_path, "a", {"nnUNetTrainerScribble": 1})
    with pytest.raises(SystemExit, match="no results named \\['nnUNetTrainerMaCo'\\]"):
        cr.main([str(a), "--output", str(tmp_path / "m"), "--rename", "nnUNetTrainerMaCo=X"])
    with pytest.raises(SystemExit, match="expected OLD=NEW"):
        cr.main([str(a), "--output", str(tmp_path / "m"), "--rename", "nnUNetTrainerMaCo"])
