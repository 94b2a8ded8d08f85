"""nnunet_scribble.evaluation.postprocessing: the far-background reference and nnU-Net's choice against it."""
from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from nnunet_helpers import tiny_plans

from nnunet_scribble.evaluation.postprocessing import (background_beyond, determine_postprocessing, foreground_reach,
                                                       keep_central_component, scribble_dice,
                                                       suggest_beyond_mm)

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
    assert f"-dataset_json {pkl.parent / 'dataset.json'}" in printed and (pkl.parent / "dataset.json").is_file()
    assert "Chosen post-processing: remove_all_but_largest_component_from_segmentation({'labels_or_regions': [1]})" \
        in printed
    # A before: recall 1, precision 4/7 -> 8/11; the largest component removes the island; the central one (the
    # island, centroid 4.3 voxels from the centre, the organ's 5.7) loses the scribble
    assert "before post-processing: A 0.7273 (mean 0.7273)\n  largest foreground component: A 1.0000 (mean 1.0000): " \
        "kept\n  central foreground component: A 0.0000 (mean 0.0000): rejected\n" in printed
    with pytest.raises(SystemExit) as e:
        determine_postprocessing_main(["Dataset999_Tiny", "-c", "2d", "-tr", "nnUNetTrainerScribble", "-f", "0", "1"])
    assert e.value.code == 2
    assert "fold_1/validation not found: fold 1 is not trained" in capsys.readouterr().err


def test_foreground_reach_is_the_farthest_dense_foreground_voxel_from_the_foreground_scribbles():
    scribble = np.full((2, 6), IGNORE, np.uint8)
    scribble[0, 0], scribble[0, 5] = 1, 0           # a foreground and a background scribble voxel
    dense = np.zeros((2, 6), np.uint8)
    dense[0, 0:2], dense[1, 3] = 1, 2                # (1, 3): 1 mm down, 6 mm across -> sqrt(37) mm
    assert foreground_reach(scribble, dense, (1.0, 2.0), IGNORE) == pytest.approx(np.sqrt(37))
    dense[1, 3] = 0
    assert foreground_reach(scribble, dense, (1.0, 2.0), IGNORE) == pytest.approx(2.0)
    assert foreground_reach(scribble, np.zeros_like(dense), (1.0, 2.0), IGNORE) is None   # no dense foreground
    scribble[0, 0] = IGNORE
    assert foreground_reach(scribble, dense, (1.0, 2.0), IGNORE) is None                  # no foreground scribble
    with pytest.raises(ValueError, match=r"scribble shape \(2, 6\) differs from dense shape \(2, 5\)"):
        foreground_reach(scribble, dense[:, :5], (1.0, 2.0), IGNORE)
    with pytest.raises(ValueError, match="does not give one positive value per axis"):
        foreground_reach(scribble, dense, (1.0, 0.0), IGNORE)


def _reader():
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO
    return SimpleITKIO()


def test_suggest_beyond_mm_takes_the_farthest_case_times_the_margin_rounded_up(tmp_path):
    scrib, dense = tmp_path / "scribbles", tmp_path / "dense"
    for case, reach in (("a", 6), ("b", 3)):
        s, d = np.full((1, 20), IGNORE, np.uint8), np.zeros((1, 20), np.uint8)
        s[0, 0], d[0, :reach + 1] = 1, 1              # foreground reaches `reach` voxels (1 mm) from the scribble
        _write(s, scrib / f"{case}.nii.gz")
        _write(d, dense / f"{case}.nii.gz")
    _write(np.full((1, 20), IGNORE, np.uint8), scrib / "c.nii.gz")     # no foreground scribble: skipped
    _write(np.ones((1, 20), np.uint8), dense / "c.nii.gz")
    _write(np.ones((1, 20), np.uint8), dense / "only_dense.nii.gz")    # no scribble file: not a shared case
    for folder in (scrib, dense):     # densely labelled in labelsTr too (MSCMRseg's val cases): skipped
        _write(np.ones((1, 20), np.uint8), folder / "e.nii.gz")
    got = suggest_beyond_mm(scrib, dense, _reader(), ".nii.gz", IGNORE)
    # 6 mm x 1.25 = 7.5 -> 10 mm; per case 19 unannotated voxels, those farther than 10 mm (columns 11-19): 9
    assert got["beyond_mm"] == 10.0 and got["max_mm"] == pytest.approx(6.0) and got["farthest_case"] == "a"
    assert got["cases"] == 2 and got["skipped"] == ["c", "e"] and got["median_mm"] == pytest.approx(4.5)
    assert got["known_background"] == pytest.approx(18 / 38)
    assert suggest_beyond_mm(scrib, dense, _reader(), ".nii.gz", IGNORE, margin=1.0, step_mm=1.0)["beyond_mm"] == 6.0
    with pytest.raises(FileNotFoundError, match="no .png case is in both"):
        suggest_beyond_mm(scrib, dense, _reader(), ".png", IGNORE)
    only_dense = tmp_path / "only_dense"
    _write(np.ones((1, 20), np.uint8), only_dense / "e.nii.gz")
    with pytest.raises(ValueError, match="none of the 1 cases in .* has scribbles"):
        suggest_beyond_mm(only_dense, dense, _reader(), ".nii.gz", IGNORE)
    _write(np.ones((1, 19), np.uint8), dense / "b.nii.gz")
    with pytest.raises(ValueError, match=r"b\.nii\.gz: scribble shape \(1, 1, 20\) differs from dense shape "
                                         r"\(1, 1, 19\)"):
        suggest_beyond_mm(scrib, dense, _reader(), ".nii.gz", IGNORE)
    with pytest.raises(ValueError, match="margin must be >= 1"):
        suggest_beyond_mm(scrib, dense, _reader(), ".nii.gz", IGNORE, margin=0.5)


def test_cli_beyond_mm_auto_measures_the_reach_on_the_dense_training_labels(tmp_path, monkeypatch, capsys):
    import nnunetv2.paths
    import nnunetv2.utilities.file_path_utilities as fpu

    from nnunet_scribble.evaluation.cli import determine_postprocessing_main

    model, _ = _model(tmp_path, {"background": 0, "A": 1, "ignore": 2})
    monkeypatch.setattr(fpu, "nnUNet_results", str(tmp_path / "nnUNet_results"))
    monkeypatch.setattr(nnunetv2.paths, "nnUNet_preprocessed", str(tmp_path / "nnUNet_preprocessed"))
    monkeypatch.setattr(nnunetv2.paths, "nnUNet_raw", str(tmp_path / "nnUNet_raw"))
    args = ["Dataset999_Tiny", "-c", "2d", "-tr", "nnUNetTrainerScribble", "-f", "0", "--beyond_mm", "auto"]
    with pytest.raises(SystemExit) as e:
        determine_postprocessing_main(args)
    assert e.value.code == 2 and "nnUNet_raw/Dataset999_Tiny/labelsTr_dense not found" in capsys.readouterr().err
    dense = np.zeros((12, 12), np.uint8)
    dense[1:3, 1:3] = 1                              # the organ: reaches sqrt(2) mm from its scribble at (1, 1)
    _write(dense, tmp_path / "nnUNet_raw" / "Dataset999_Tiny" / "labelsTr_dense" / "c1.nii.gz")
    determine_postprocessing_main(args)
    printed = capsys.readouterr().out
    # 1.41 x 1.25 -> 5 mm; of the 142 unannotated voxels, those farther than 5 mm from (1, 1) become background
    far = sum(1 for i in range(12) for j in range(12) if (i - 1) ** 2 + (j - 1) ** 2 > 25 and (i, j) != (5, 5))
    assert f"reaches at most 1.4 mm from the foreground scribbles (c1; median 1.4, p90 1.4) -> 5 mm, which makes " \
           f"{100 * far / 142:.0f} % of their unannotated voxels background" in printed
    assert (model / "crossval_results_folds_0_beyond5mm" / "postprocessing.pkl").is_file()
    with pytest.raises(SystemExit) as e:
        determine_postprocessing_main(args[:-1] + ["-3"])
    assert e.value.code == 2 and "expected a positive distance in mm or 'auto', got '-3'" in capsys.readouterr().err


def test_keep_central_component_keeps_the_centred_organ_over_a_larger_island():
    seg = np.zeros((9, 9), np.uint8)
    seg[3:6, 3:5], seg[3:6, 5] = 1, 2         # organ at the centre (4, 4): 9 voxels
    seg[0:2, 0:8] = 1                         # island: 16 voxels, the largest component
    organ = np.where(np.arange(9)[:, None] >= 3, seg, 0)
    np.testing.assert_array_equal(keep_central_component(seg, [1, 2]), organ)
    assert seg[0, 0] == 1                     # the input is not modified
    speck = np.where(organ > 0, 0, seg)
    speck[4, 4] = 2                           # 1 voxel < 0.1 x 16: does not compete, the island stays
    np.testing.assert_array_equal(keep_central_component(speck, [1, 2]), np.where(speck == 2, 0, speck))
    np.testing.assert_array_equal(keep_central_component(speck, [2]), speck)          # one component of class 2
    vol = np.zeros((5, 5, 5), np.uint8)       # 3D: the centre is (2, 2, 2)
    vol[2, 2, 2], vol[0, 0, :] = 1, 1
    np.testing.assert_array_equal(keep_central_component(vol, [1]), (np.arange(125) == 62).reshape(5, 5, 5))
    np.testing.assert_array_equal(keep_central_component(vol, [1], min_fraction=0.5), np.where(vol, 1, 0) *
                                  (np.arange(125) < 5).reshape(5, 5, 5))


def test_determine_postprocessing_keeps_the_centred_organ_where_an_island_is_larger(tmp_path):
    pred = np.zeros((20, 20), np.uint8)
    pred[9:11, 9:11], pred[9:11, 11] = 1, 2   # organ near the centre (9.5, 9.5): A and B, 6 voxels
    pred[0:2, 0:9] = 1                        # island: A, 18 voxels, more than 8 mm from the scribbles
    scribble = np.full_like(pred, 3)
    scribble[9, 9], scribble[9, 11] = 1, 2
    model = tmp_path / "model"
    model.mkdir()
    (model / "plans.json").write_text(json.dumps(tiny_plans()))
    (model / "dataset.json").write_text(json.dumps({"labels": {"background": 0, "A": 1, "B": 2, "ignore": 3},
                                                    "file_ending": ".nii.gz", "channel_names": {"0": "MRI"},
                                                    "numTraining": 1}))
    _write(pred, model / "fold_0" / "validation" / "c1.nii.gz")
    _write(scribble, tmp_path / "gt" / "c1.nii.gz")
    fns, kwargs = determine_postprocessing(model, [0], tmp_path / "gt", tmp_path / "out", beyond_mm=5.0)
    assert fns == [keep_central_component] and kwargs == [{"labels": [1, 2]}]
    info = json.loads((tmp_path / "out" / "postprocessing.json").read_text())
    # before: A recall 1, precision 4/22 -> F1 8/26; B 1. Largest component: the island -> A 0, B 0
    assert info["scores_before"] == pytest.approx({"1": 8 / 26, "2": 1.0})
    assert info["candidates"][0]["scores"] == pytest.approx({"1": 0.0, "2": 0.0})
    # the largest rejected, the central kept; after it each class's largest component changes nothing: a tie, rejected
    assert [(c["step"], c["kept"]) for c in info["candidates"]] == [
        (["largest foreground component"], False), (["central foreground component"], True),
        (["largest component of 1"], False), (["largest component of 2"], False)]
    assert info["scores_after"] == pytest.approx({"1": 1.0, "2": 1.0})
    with open(tmp_path / "out" / "postprocessing.pkl", "rb") as f:
        loaded_fns, loaded_kwargs = pickle.load(f)
    organ_only = np.where(np.arange(20)[:, None] >= 5, pred, 0)
    np.testing.assert_array_equal(loaded_fns[0](pred, **loaded_kwargs[0]), organ_only)
    # nnU-Net's candidates alone: the largest component (the island) and the largest A component both lower A
    assert determine_postprocessing(model, [0], tmp_path / "gt", tmp_path / "out2", 5.0, central=False) == ([], [])
