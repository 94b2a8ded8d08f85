"""nnunet_scribble.evaluation.postprocessing: the far-background reference and nnU-Net's choice against it."""
from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from nnunet_helpers import tiny_plans

from nnunet_scribble.evaluation.postprocessing import background_beyond, determine_postprocessing, scribble_dice

IGNORE = 3


def test_background_beyond_2d_counts_millimetres_along_each_axis():
    scribble = np.full((2, 6), IGNORE, np.uint8)
    scribble[0, 0] = 1            # foreground scribble
    scribble[1, 5] = 0            # background scribble: stays
    scribble[1, 0] = 2            # another class: stays, and is a foreground scribble too
    out = background_beyond(scribble, spacing=(1.0, 2.0), beyond_mm=5.0, ignore_label=IGNORE)
    # distance to the nearest foreground voxel is 2 mm per column: columns 0-2 (<= 4 mm) stay ignore, 3-5 (>= 6 mm)
    # become background
    expected = np.array([[1, 3, 3, 0, 0, 0],
                         [2, 3, 3, 0, 0, 0]], np.uint8)
    np.testing.assert_array_equal(out, expected)
    assert out.dtype == scribble.dtype and scribble[0, 3] == IGNORE   # the input is not modified


def test_background_beyond_3d_anisotropic_spacing():
    scribble = np.full((3, 3, 3), IGNORE, np.uint8)
    scribble[1, 1, 1] = 1
    out = background_beyond(scribble, spacing=(10.0, 1.0, 1.0), beyond_mm=5.0, ignore_label=IGNORE)
    assert (out[[0, 2]] == 0).all()                       # 10 mm away: background
    assert (out[1] == np.where(np.arange(9).reshape(3, 3) == 4, 1, IGNORE)).all()   # <= 1.5 mm: unchanged


def test_background_beyond_leaves_images_without_foreground_scribbles_and_checks_its_arguments():
    scribble = np.full((4, 4), IGNORE, np.uint8)
    scribble[0, 0] = 0
    np.testing.assert_array_equal(background_beyond(scribble, (1, 1), 1.0, IGNORE), scribble)
    with pytest.raises(ValueError, match=r"spacing \(1.0,\) does not give one positive value per axis of a 2D"):
        background_beyond(scribble, (1,), 1.0, IGNORE)
    with pytest.raises(ValueError, match="beyond_mm must be positive, got 0"):
        background_beyond(scribble, (1, 1), 0, IGNORE)


def test_scribble_dice_is_the_f1_of_scribble_recall_and_known_negative_precision():
    ref = np.full((4, 6), IGNORE, np.uint8)
    ref[0, 0:2] = 1               # two A scribble voxels
    ref[3, :] = 0                 # known background row
    ref[0, 5] = 2                 # one B scribble voxel
    pred = np.zeros_like(ref)
    pred[0, 0] = 1                # hits one of the two A scribble voxels: recall 1/2
    pred[1, 0:3] = 1              # unannotated: counted right
    pred[3, 0:2] = 1              # on known background: wrong -> precision 1 - 2/6
    pred[0, 5] = 1                # on the B scribble: wrong for A, and B is missed
    got = scribble_dice(pred, ref, [1, 2], IGNORE)
    recall, precision = 1 / 2, 1 - 3 / 7  # 7 A voxels, 3 on known non-A voxels (2 background, 1 B)
    assert got[1] == pytest.approx(2 * recall * precision / (recall + precision))
    assert got[2] == 0.0
    assert 4 not in scribble_dice(pred, ref, [1, 2, 4], IGNORE)   # a class without scribbles is left out
    dense = np.random.default_rng(0).integers(0, 3, (5, 7, 9))
    guess = np.random.default_rng(1).integers(0, 3, (5, 7, 9))
    for c in (1, 2):  # with a dense reference (no ignore voxel) the estimate is the Dice
        a, b = guess == c, dense == c
        assert scribble_dice(guess, dense, [c], IGNORE)[c] == pytest.approx(2 * (a & b).sum() / (a.sum() + b.sum()))


def _write(arr: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(sitk.GetImageFromArray(arr[None].astype(np.uint8)), str(path))


def _model(tmp_path: Path, labels: dict) -> tuple[Path, Path]:
    """One case: a 4-voxel A organ (scribbled once) and a 3-voxel A island 8 mm from it on unannotated voxels."""
    pred = np.zeros((12, 12), np.uint8)
    pred[1:3, 1:3] = 1
    scribble = np.full_like(pred, labels.get("ignore", 2))
    scribble[1, 1], scribble[5, 5] = 1, 0
    pred[9, 2:5] = 1
    model = tmp_path / "nnUNet_results" / "Dataset999_Tiny" / "nnUNetTrainerScribble__nnUNetPlans__2d"
    model.mkdir(parents=True)
    (model / "plans.json").write_text(json.dumps(tiny_plans()))
    (model / "dataset.json").write_text(json.dumps({"labels": labels, "file_ending": ".nii.gz",
                                                    "channel_names": {"0": "MRI"}, "numTraining": 1}))
    _write(pred, model / "fold_0" / "validation" / "c1.nii.gz")
    gt = tmp_path / "nnUNet_preprocessed" / "Dataset999_Tiny" / "gt_segmentations"
    _write(scribble, gt / "c1.nii.gz")
    return model, gt


def test_determine_postprocessing_removes_the_island_nnunet_cannot_see_on_scribbles(tmp_path):
    model, gt = _model(tmp_path, {"background": 0, "A": 1, "ignore": 2})
    out = model / "crossval_results_folds_0_beyond5mm"
    out.mkdir()
    (out / "stale.txt").write_text("replaced")
    fns, kwargs = determine_postprocessing(model, [0], gt, out, beyond_mm=5.0)
    assert [f.__name__ for f in fns] == ["remove_all_but_largest_component_from_segmentation"]
    assert kwargs == [{"labels_or_regions": [1]}]
    with open(out / "postprocessing.pkl", "rb") as f:
        assert [g.__name__ for g in pickle.load(f)[0]] == [f.__name__ for f in fns]
    info = json.loads((out / "postprocessing.json").read_text())
    # A: recall 1, precision 4/7 (the 3 island voxels lie on known background) -> 8/11; after: 1
    assert info["scores_before"]["1"] == pytest.approx(8 / 11) and info["scores_after"]["1"] == pytest.approx(1.0)
    assert (out / "c1.nii.gz").is_file() and (out / "plans.json").is_file() and not (out / "stale.txt").exists()
    assert [p.name for p in out.parent.iterdir() if p.name.startswith(".")] == []   # no temporary folder left
    # on the scribbles alone (a huge distance: nothing becomes background) the island is invisible: nothing chosen
    assert determine_postprocessing(model, [0], gt, tmp_path / "plain", beyond_mm=1000.0) == ([], [])


def test_determine_postprocessing_needs_the_ignore_label(tmp_path):
    model, gt = _model(tmp_path, {"background": 0, "A": 1})
    with pytest.raises(ValueError, match="declares no 'ignore' label: the dataset is densely labelled"):
        determine_postprocessing(model, [0], gt, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_cli_finds_the_model_and_the_scribbles_like_nnunet(tmp_path, monkeypatch, capsys):
    import nnunetv2.paths
    import nnunetv2.utilities.file_path_utilities as fpu

    from nnunet_scribble.evaluation.cli import determine_postprocessing_main

    model, _ = _model(tmp_path, {"background": 0, "A": 1, "ignore": 2})
    monkeypatch.setattr(fpu, "nnUNet_results", str(tmp_path / "nnUNet_results"))
    monkeypatch.setattr(nnunetv2.paths, "nnUNet_preprocessed", str(tmp_path / "nnUNet_preprocessed"))
    determine_postprocessing_main(["Dataset999_Tiny", "-c", "2d", "-tr", "nnUNetTrainerScribble", "-f", "0",
                                   "--beyond_mm", "5"])
    printed = capsys.readouterr().out
    pkl = model / "crossval_results_folds_0_beyond5mm" / "postprocessing.pkl"
    assert pkl.is_file() and f"-pp_pkl_file {pkl}" in printed
    assert "Chosen post-processing: remove_all_but_largest_component_from_segmentation({'labels_or_regions': [1]})" \
        in printed
    with pytest.raises(SystemExit) as e:
        determine_postprocessing_main(["Dataset999_Tiny", "-c", "2d", "-tr", "nnUNetTrainerScribble", "-f", "0", "1"])
    assert e.value.code == 2
    assert "fold_1/validation not found: fold 1 is not trained" in capsys.readouterr().err
