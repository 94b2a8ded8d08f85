"""benchmarks/postprocessing_choice.py: nnU-Net's post-processing choice on scribbles vs dense labels, by hand."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from nnunet_helpers import load_benchmark, tiny_plans

LABELS = {"background": 0, "A": 1, "B": 2, "ignore": 3}


def _write(arr: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(sitk.GetImageFromArray(arr[None].astype(np.uint8)), str(path))


def _model(tmp_path: Path, island_on_background_scribble: bool) -> tuple[Path, Path, Path]:
    """Two cases, fold 0 predicts c1, fold 1 predicts c2; c1 adds a 3-voxel A island to a 6-voxel organ.

    Dense reference: A at [1:3, 1:3], B at [1:3, 3]. Scribbles: one A voxel, one B voxel, a background stroke on row
    5 and, when ``island_on_background_scribble``, one background voxel under the island; everything else ignore.
    """
    ref = np.zeros((12, 12), np.uint8)
    ref[1:3, 1:3] = 1
    ref[1:3, 3] = 2
    scribble = np.full_like(ref, 3)
    scribble[1, 1], scribble[1, 3], scribble[5, 2:9] = 1, 2, 0
    if island_on_background_scribble:
        scribble[9, 3] = 0
    pred = ref.copy()
    pred[9, 2:5] = 1
    model = tmp_path / "Dataset999_Tiny" / "nnUNetTrainerScribble__nnUNetPlans__2d"
    model.mkdir(parents=True)
    (model / "plans.json").write_text(json.dumps(tiny_plans()))
    (model / "dataset.json").write_text(json.dumps({"labels": LABELS, "file_ending": ".nii.gz",
                                                    "channel_names": {"0": "MRI"}, "numTraining": 2}))
    _write(pred, model / "fold_0" / "validation" / "c1.nii.gz")
    _write(ref, model / "fold_1" / "validation" / "c2.nii.gz")
    for case in ("c1", "c2"):
        _write(scribble, tmp_path / "scribbles" / f"{case}.nii.gz")
        _write(ref, tmp_path / "dense" / f"{case}.nii.gz")
    return model, tmp_path / "scribbles", tmp_path / "dense"


@pytest.mark.parametrize("on_scribble", [False, True])
def test_the_scribble_choice_sees_an_island_only_where_a_background_scribble_lies(tmp_path, on_scribble):
    pc = load_benchmark("postprocessing_choice")
    model, scribbles, dense = _model(tmp_path, on_scribble)
    result = pc.compare(model, [0, 1], scribbles, dense, tmp_path / "work", beyond_mm=5.0)
    assert len(result["rows"]) == 7
    rows = {r["chosen by"]: r for r in result["rows"][:6]}
    # c1's organ (centroid (1.5, 2)) lies 5.3 voxels from the centre (5.5, 5.5), the island (9, 3) 4.3: the
    # central component is the island (3 voxels, half the organ's size): A 0 and B 0 in c1
    assert result["rows"][6]["post-processing"] == "central foreground component"
    assert result["rows"][6]["per class"] == pytest.approx({"A": 0.5, "B": 0.5})
    # as a further candidate it lowers the estimate: the largest component stays chosen
    extended = rows["scribbles + background beyond 5 mm, estimated Dice, + central component"]
    assert extended["post-processing"] == "largest foreground component"
    # dense: c1's A Dice 2*4/(7+4) = 8/11, B 1 -> case mean 19/22; c2 perfect
    none = rows["-"]
    assert none["dense Dice"] == pytest.approx(((19 / 22 + 1) / 2, (1 - 19 / 22) / 2))
    assert none["per class"] == pytest.approx({"A": (8 / 11 + 1) / 2, "B": 1.0})
    assert rows["always"]["dense Dice"] == pytest.approx((1.0, 0.0))
    on_dense = rows["nnU-Net on dense labels"]
    assert on_dense["post-processing"] == "largest foreground component"   # the per-class steps change nothing more
    assert on_dense["dense Dice"] == pytest.approx((1.0, 0.0))
    assert on_dense["nnU-Net Dice before"] == pytest.approx((19 / 22 + 1) / 2)
    on_scr = rows["nnU-Net on scribbles"]
    if on_scribble:
        # c1 on the scribbled voxels: A tp 1, fp 1 (the island voxel on the background stroke) -> 2/3; B 1
        assert on_scr["nnU-Net Dice before"] == pytest.approx(((2 / 3 + 1) / 2 + 1) / 2)
        assert on_scr["post-processing"] == "largest foreground component" and result["agree"]
        assert on_scr["dense Dice"] == pytest.approx((1.0, 0.0))
    else:
        # the island lies on ignored voxels only: the scribble Dice is 1 before and after, so nnU-Net keeps nothing
        assert on_scr["nnU-Net Dice before"] == on_scr["nnU-Net Dice after"] == pytest.approx(1.0)
        assert on_scr["post-processing"] == "none" and not result["agree"]
        assert on_scr["dense Dice"] == pytest.approx(none["dense Dice"])
    # the island lies 8 mm from the nearest foreground scribble: beyond 5 mm it is known background, so c1's A is
    # estimated at recall 1 (its scribble voxel is hit), precision 1 - 3/7 (three of seven A voxels are known wrong):
    # F1 8/11; B 1; c2 perfect
    beyond = rows["scribbles + background beyond 5 mm, estimated Dice, nnU-Net's candidates"]
    assert beyond["nnU-Net Dice before"] == pytest.approx(((8 / 11 + 1) / 2 + 1) / 2)
    assert beyond["nnU-Net Dice after"] == pytest.approx(1.0)
    assert beyond["post-processing"] == "largest foreground component" and result["agree_beyond"]
    assert beyond["dense Dice"] == pytest.approx((1.0, 0.0))
    # HD95 of c1's A (medpy: 95th percentile of the pooled surface distances): the 8 organ surface distances are 0,
    # the island's voxels (9, 2), (9, 3), (9, 4) lie 7, sqrt(50), sqrt(53) from the nearest A voxel; the 95th
    # percentile of these 11 values falls halfway between sqrt(50) and sqrt(53). B and c2: 0
    hd_a = (np.sqrt(50) + np.sqrt(53)) / 2
    assert none["dense HD95"] == pytest.approx((hd_a / 4, hd_a / 4))
    assert rows["always"]["dense HD95"] == pytest.approx((0.0, 0.0))
    table = pc.to_markdown(result)
    assert "| none | - |  | 93.2 ± 6.8 | 1.8 ± 1.8 | 86.4 | 100.0 |" in table
    assert "| dense Dice | dense HD95 (mm) | A Dice | B Dice |" in table
    assert table.rstrip().endswith("scribbles " + ("agrees with" if on_scribble else "differs from") + " its choice "
                                   "on the dense labels; with the background beyond the distance it agrees with it")
    assert not (model / "fold_0" / "validation" / "postprocessing.pkl").exists()   # the model folder is untouched


def test_steps_explain_each_candidate_class_by_class(tmp_path, monkeypatch, capsys):
    pc = load_benchmark("postprocessing_choice")
    model, scribbles, dense = _model(tmp_path, False)
    monkeypatch.setenv("nnUNet_raw", str(tmp_path))
    result = pc.main([str(model), "--folds", "0", "1", "--scribbles", str(scribbles), "--dense", str(dense),
                      "--beyond_mm", "5", "--steps"])
    rows = [(r["candidate"], r["after"], r["kept"], r["class"]) for r in result["steps"]]
    assert rows == [("largest foreground component", "none", True, "A"),
                    ("largest foreground component", "none", True, "B"),
                    ("central foreground component", "none", False, "A"),
                    ("central foreground component", "none", False, "B"),
                    ("largest A component", "largest foreground component", False, "A"),
                    ("largest B component", "largest foreground component", False, "B")]
    assert result["rows"][3]["post-processing"] == "largest foreground component"   # the same walk, the same choice
    largest_a, largest_b, central_a, central_b, class_a, _ = result["steps"]
    # c1's island (3 A voxels, 8 mm from the scribbles: known background) costs A's precision 3/7 in c1; c2 is perfect
    assert largest_a["estimate"] == pytest.approx(((8 / 11 + 1) / 2, 1.0))
    assert largest_a["recall"] == pytest.approx((1.0, 1.0))
    assert largest_a["precision"] == pytest.approx(((4 / 7 + 1) / 2, 1.0))
    assert largest_a["dense Dice"] == pytest.approx(((8 / 11 + 1) / 2, 1.0))
    assert [largest_a[k] for k in ("removed", "scribbled as the class", "the class in the dense labels",
                                   "known not the class")] == [3, 0, 0, 3]
    assert largest_b["estimate"] == pytest.approx((1.0, 1.0)) and largest_b["removed"] == 0
    # the central component is the island: c1 loses the organ (4 A voxels, 1 scribbled; 2 B voxels, 1 scribbled)
    assert central_a["estimate"] == pytest.approx(((8 / 11 + 1) / 2, 0.5))
    assert central_a["recall"] == pytest.approx((1.0, 0.5)) and central_a["precision"][1] == pytest.approx(0.5)
    assert central_a["dense Dice"][1] == pytest.approx(0.5)
    assert [central_a[k] for k in ("removed", "scribbled as the class", "the class in the dense labels",
                                   "known not the class")] == [4, 1, 4, 0]
    assert [central_b[k] for k in ("removed", "scribbled as the class", "the class in the dense labels",
                                   "known not the class")] == [2, 1, 2, 0]
    assert central_b["estimate"] == pytest.approx((1.0, 0.5))
    # after the largest foreground component A has one component: nothing removed, a tie, rejected
    assert class_a["estimate"] == pytest.approx((1.0, 1.0)) and class_a["removed"] == 0
    out = capsys.readouterr().out
    assert "| largest foreground component | none | yes | A | 86.36 → 100.00 | 100.0 → 100.0 | 78.6 → 100.0 " \
           "| 86.4 → 100.0 | 3 | 0 | 0 | 3 |" in out
    assert "Step by step (scribbles + background beyond 5 mm, + central component;" in out


def test_describe_names_the_steps():
    pc = load_benchmark("postprocessing_choice")

    def remove_all_but_largest_component_from_segmentation():
        pass

    fn = remove_all_but_largest_component_from_segmentation
    assert pc.describe([], [], LABELS) == "none"
    assert pc.describe([fn, fn], [{"labels_or_regions": [1, 2]}, {"labels_or_regions": 2}], LABELS) == \
        "largest foreground component + largest B component"
    from nnunet_scribble.evaluation.postprocessing import keep_central_component

    assert pc.describe([keep_central_component, fn], [{"labels": [1, 2]}, {"labels_or_regions": 1}],
                       LABELS) == "central foreground component + largest A component"


def test_merge_errors_name_the_fold_and_the_case(tmp_path):
    pc = load_benchmark("postprocessing_choice")
    model, _, _ = _model(tmp_path, False)
    from nnunet_scribble.evaluation.postprocessing import merge_validation

    with pytest.raises(FileNotFoundError, match="fold_2/validation not found: fold 2 is not trained"):
        merge_validation(model, [0, 2], tmp_path / "m1", ".nii.gz")
    _write(np.zeros((12, 12)), model / "fold_1" / "validation" / "c1.nii.gz")
    with pytest.raises(ValueError, match="c1.nii.gz is predicted by fold 1 and by an earlier fold"):
        merge_validation(model, [0, 1], tmp_path / "m2", ".nii.gz")
    with pytest.raises(SystemExit, match="is not a trained model folder"):
        pc.main([str(tmp_path)])


def test_off_centre_pads_one_side_and_moves_the_centre_onto_the_organ(tmp_path, monkeypatch, capsys):
    pc = load_benchmark("postprocessing_choice")
    model, scribbles, dense = _model(tmp_path, False)
    padded, pad_scr, pad_dense = pc.off_centre_copy(model, [0, 1], scribbles, dense, tmp_path / "pad", 1.0)
    assert (padded / "plans.json").is_file() and (padded / "dataset.json").is_file()
    pred = sitk.GetArrayFromImage(sitk.ReadImage(str(padded / "fold_0" / "validation" / "c1.nii.gz")))[0]
    scr = sitk.GetArrayFromImage(sitk.ReadImage(str(pad_scr / "c1.nii.gz")))[0]
    ref = sitk.GetArrayFromImage(sitk.ReadImage(str(pad_dense / "c2.nii.gz")))[0]
    assert pred.shape == scr.shape == ref.shape == (12, 24)
    assert (pred[:, :12] == 0).all() and pred[1, 13] == 1 and pred[9, 14] == 1   # organ and island moved 12 right
    assert (scr[:, :12] == 3).all() and scr[1, 13] == 1 and (ref[:, :12] == 0).all() and ref[1, 15] == 2
    # the centre (5.5, 11.5) is now 4.7 voxels from the organ's centroid (1.5, 14) and 5.0 from the island's (9, 15):
    # keeping the central component in every case is now perfect (unpadded: A 0.5, B 0.5, see above)
    monkeypatch.setenv("nnUNet_raw", str(tmp_path))
    result = pc.main([str(model), "--folds", "0", "1", "--scribbles", str(scribbles), "--dense", str(dense),
                      "--beyond_mm", "5", "--off_centre", "1"])
    assert result["rows"][6]["post-processing"] == "central foreground component"
    assert result["rows"][6]["per class"] == pytest.approx({"A": 1.0, "B": 1.0})
    assert result["rows"][3]["post-processing"] == "largest foreground component"   # equal: the first one stays
    assert result["model"] == str(model) and result["off_centre"] == 1.0
    assert "padded by 1 x the width on one side (off-centre)" in capsys.readouterr().out
    with pytest.raises(ValueError, match="--off_centre must be positive, got -1"):
        pc.off_centre_copy(model, [0], scribbles, dense, tmp_path / "pad2", -1)
    (scribbles / "c2.nii.gz").unlink()
    with pytest.raises(FileNotFoundError, match="scribbles/c2.nii.gz not found: expected the reference of c2"):
        pc.off_centre_copy(model, [1], scribbles, dense, tmp_path / "pad3", 0.5)


def test_a_densely_trained_model_gets_nnunets_own_choice_on_its_training_labels(tmp_path, monkeypatch, capsys):
    pc = load_benchmark("postprocessing_choice")
    model, scribbles, dense = _model(tmp_path, False)
    # the upper bound: the same predictions, a dataset.json without the ignore label, dense labels in its labelsTr
    labels = {k: v for k, v in LABELS.items() if k != "ignore"}
    (model / "dataset.json").write_text(json.dumps({"labels": labels, "file_ending": ".nii.gz",
                                                    "channel_names": {"0": "MRI"}, "numTraining": 2}))
    dense.rename(tmp_path / "Dataset999_Tiny" / "labelsTr")
    monkeypatch.setenv("nnUNet_raw", str(tmp_path))
    result = pc.main([str(model), "--folds", "0", "1"])
    assert [r["chosen by"] for r in result["rows"]] == ["-", "nnU-Net on dense labels", "always", "always"]
    assert result["dense_model"] and result["agree"] is None and "steps" not in result
    none, own, _, central = result["rows"]
    assert none["dense Dice"] == pytest.approx(((19 / 22 + 1) / 2, (1 - 19 / 22) / 2))
    assert own["post-processing"] == "largest foreground component" and own["dense Dice"] == pytest.approx((1, 0))
    assert central["per class"] == pytest.approx({"A": 0.5, "B": 0.5})   # the island is the central component
    assert "A densely trained model: nnU-Net's choice on the dense labels is its own" in capsys.readouterr().out
    for extra, named in ((["--scribbles", str(scribbles)], "--scribbles"), (["--steps"], "--steps"),
                         (["--off_centre", "1"], "--off_centre")):
        with pytest.raises(SystemExit, match=f"declares no 'ignore' label: a densely trained model.*{named} need"):
            pc.main([str(model), "--folds", "0", "1", *extra])


def test_the_summary_reads_what_this_script_writes(tmp_path, monkeypatch):
    """The row names are a contract between the two scripts (the summary cannot import this one)."""
    pc, ps = load_benchmark("postprocessing_choice"), load_benchmark("postprocessing_summary")
    model, scribbles, dense = _model(tmp_path, False)
    monkeypatch.setenv("nnUNet_raw", str(tmp_path))
    pc.main([str(model), "--folds", "0", "1", "--scribbles", str(scribbles), "--dense", str(dense),
             "--beyond_mm", "5", "-o", str(tmp_path / "res")])
    result = ps.load(tmp_path / "res.json")
    entry = ps.summarise([("res.json", result)])["trainers"]["nnUNetTrainerScribble"]
    assert set(entry["rows"]) == {"none", "on scribbles", "on dense labels", "after"} and not entry["dense_model"]
    # "after" is the default of nnunet_scribble_determine_postprocessing: the largest component here (see above)
    assert entry["rows"]["after"]["post-processing"] == ["largest foreground component"]
    assert entry["rows"]["after"]["Dice"] == pytest.approx((1.0, 0.0))
    assert entry["rows"]["none"]["Dice"] == pytest.approx(((19 / 22 + 1) / 2, (1 - 19 / 22) / 2))
