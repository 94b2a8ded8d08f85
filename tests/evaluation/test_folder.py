"""evaluate_folder on NIfTI and PNG folders, its outputs and its errors."""
from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
from PIL import Image

from nnunet_scribble.evaluation import compute_case_metrics, evaluate_folder, format_table, summary_to_markdown
from nnunet_scribble.evaluation.cli import evaluate_main

LABELS = {"background": 0, "a": 1, "b": 2, "ignore": 3}
SITK_SPACING = (0.8, 0.7, 2.5)  # x, y, z as SimpleITK writes it; nnU-Net reports (z, y, x)
NNUNET_SPACING = (2.5, 0.7, 0.8)


def _assert_metrics_close(actual: dict, expected: dict) -> None:
    assert actual.keys() == expected.keys()
    for name in expected:
        assert actual[name] == pytest.approx(expected[name]), name


def _write_nifti(arr: np.ndarray, path) -> None:
    img = sitk.GetImageFromArray(arr.astype(np.uint8))
    img.SetSpacing(SITK_SPACING)
    sitk.WriteImage(img, str(path))


def _label_map(rng, shape=(6, 20, 24)) -> np.ndarray:
    seg = np.zeros(shape, dtype=np.uint8)
    z, y, x = rng.integers(0, 2), rng.integers(1, 6), rng.integers(1, 6)
    seg[z:z + 4, y:y + 8, x:x + 9] = 1
    seg[1:3, 12:17, 14:20] = 2
    return seg


@pytest.fixture()
def nifti_dataset(tmp_path):
    """Raw dataset with dataset.json and 3 dense references; predictions for 2 of them (case_002 missing)."""
    rng = np.random.default_rng(0)
    raw, pred_dir = tmp_path / "Dataset001_Test", tmp_path / "pred"
    (raw / "labelsTs").mkdir(parents=True)
    pred_dir.mkdir()
    (raw / "dataset.json").write_text(json.dumps({"labels": LABELS, "file_ending": ".nii.gz"}))
    arrays = {}
    for i in range(3):
        ref, pred = _label_map(rng), _label_map(rng)
        if i == 1:
            pred[pred == 2] = 0  # class b missed entirely -> Dice 0, HD95 = diagonal
        _write_nifti(ref, raw / "labelsTs" / f"case_{i:03d}.nii.gz")
        if i < 2:
            _write_nifti(pred, pred_dir / f"case_{i:03d}.nii.gz")
        arrays[f"case_{i:03d}"] = (pred, ref)
    return raw / "labelsTs", pred_dir, arrays


def test_evaluate_nifti_folder(nifti_dataset, tmp_path):
    ref_dir, pred_dir, arrays = nifti_dataset
    out = tmp_path / "out"
    with pytest.warns(UserWarning, match="case_002"):
        summary = evaluate_folder(ref_dir, pred_dir, output_json=out / "s.json", output_markdown=out / "s.md",
                                  output_boxplot=out / "s.png")
    assert set(summary) == {"reference_folder", "prediction_folder", "labels", "metric_conventions", "cases",
                            "per_class", "mean", "missing_predictions"}
    assert summary["labels"] == {"a": 1, "b": 2}
    assert summary["missing_predictions"] == ["case_002"]
    assert [c["case"] for c in summary["cases"]] == ["case_000", "case_001"]
    for case in summary["cases"]:
        pred, ref = arrays[case["case"]]
        assert case["spacing"] == pytest.approx(NNUNET_SPACING)
        expected = compute_case_metrics(pred, ref, {"a": 1, "b": 2}, NNUNET_SPACING)
        _assert_metrics_close(case["metrics"], expected)
        assert case["mean"]["Dice"] == pytest.approx((expected["a"]["Dice"] + expected["b"]["Dice"]) / 2)
    assert summary["cases"][1]["metrics"]["b"]["Dice"] == 0.0
    dices = [c["metrics"]["a"]["Dice"] for c in summary["cases"]]
    assert summary["per_class"]["a"]["Dice"] == pytest.approx(
        {"mean": np.mean(dices), "std": np.std(dices), "median": np.median(dices), "n": 2})
    case_means = [c["mean"]["HD95"] for c in summary["cases"]]
    assert summary["mean"]["HD95"] == pytest.approx({"mean": np.mean(case_means), "std": np.std(case_means)})
    assert json.loads((out / "s.json").read_text()) == json.loads(json.dumps(summary))
    assert "| mean |" in (out / "s.md").read_text() and "case_001" in (out / "s.md").read_text()
    assert (out / "s.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temp files left
    table = format_table(summary)
    assert table.splitlines()[0].startswith("Class") and "mean" in table.splitlines()[-1]
    assert summary_to_markdown(summary).count("\n| ") >= 5


def test_labels_list_cases_and_processes(nifti_dataset):
    ref_dir, pred_dir, arrays = nifti_dataset
    summary = evaluate_folder(ref_dir, pred_dir, labels=[0, 2], cases=["case_001", "case_000"], num_processes=2)
    assert summary["labels"] == {"label_2": 2}
    assert summary["missing_predictions"] == []
    assert [c["case"] for c in summary["cases"]] == ["case_001", "case_000"]
    pred, ref = arrays["case_001"]
    _assert_metrics_close(summary["cases"][0]["metrics"],
                          compute_case_metrics(pred, ref, {"label_2": 2}, NNUNET_SPACING))


def test_missing_files_and_shape_mismatch(nifti_dataset):
    ref_dir, pred_dir, _ = nifti_dataset
    with pytest.raises(FileNotFoundError, match="case_002"):
        evaluate_folder(ref_dir, pred_dir, cases=["case_002"])
    _write_nifti(np.zeros((6, 20, 24)), pred_dir / "extra.nii.gz")
    with pytest.raises(FileNotFoundError, match=r"labelsTs/extra\.nii\.gz"):
        evaluate_folder(ref_dir, pred_dir)
    (pred_dir / "extra.nii.gz").unlink()
    _write_nifti(np.zeros((6, 20, 25)), pred_dir / "case_000.nii.gz")
    with pytest.raises(ValueError, match=r"case_000\.nii\.gz.*\(6, 20, 25\).*\(6, 20, 24\)"):
        evaluate_folder(ref_dir, pred_dir, cases=["case_000"])


def test_png_folder_without_dataset_json(tmp_path):
    ref_dir, pred_dir = tmp_path / "ref", tmp_path / "pred"
    ref_dir.mkdir()
    pred_dir.mkdir()
    ref, pred = np.zeros((30, 40), np.uint8), np.zeros((30, 40), np.uint8)
    ref[5:20, 10:30], pred[7:22, 12:33] = 1, 1
    ref[25:28, 2:6] = 2
    Image.fromarray(ref).save(ref_dir / "img1.png")
    Image.fromarray(pred).save(pred_dir / "img1.png")
    with pytest.raises(FileNotFoundError, match="dataset.json"):
        evaluate_folder(ref_dir, pred_dir)
    summary = evaluate_folder(ref_dir, pred_dir, labels={"background": 0, "fg": 1, "small": 2})
    expected = compute_case_metrics(pred, ref, {"fg": 1, "small": 2}, (1.0, 1.0))
    _assert_metrics_close(summary["cases"][0]["metrics"], expected)
    assert summary["cases"][0]["reference_file"].endswith("img1.png")


def test_cli(nifti_dataset, capsys):
    ref_dir, pred_dir, _ = nifti_dataset
    with pytest.warns(UserWarning):
        evaluate_main([str(ref_dir), str(pred_dir)])
    out = capsys.readouterr().out
    assert "Dice (mean ± std)" in out and "case_002" in out
    for name in ("summary_dense.json", "summary_dense.md", "summary_dense_boxplot.png"):
        assert (pred_dir / name).is_file()
    with pytest.raises(SystemExit) as exc:
        evaluate_main([str(ref_dir), str(pred_dir / "nope")])
    assert exc.value.code == 2


def test_extra_metrics_match_the_functions_on_each_case(nifti_dataset):
    from nnunet_scribble.evaluation.metrics import dice, far_foreground_fraction, keep_largest_foreground_component

    ref_dir, pred_dir, arrays = nifti_dataset
    plain = evaluate_folder(ref_dir, pred_dir, cases=["case_000", "case_001"])
    assert "extra" not in plain and "extra" not in plain["cases"][0]
    summary = evaluate_folder(ref_dir, pred_dir, cases=["case_000", "case_001"], extra_metrics=True)
    far, lcc = [], []
    for case in summary["cases"]:
        pred, ref = arrays[case["case"]]
        post = keep_largest_foreground_component(pred, LABELS)
        far.append(far_foreground_fraction(pred, ref, NNUNET_SPACING))
        lcc.append(np.mean([dice(post == v, ref == v) for v in (1, 2)]))
        assert case["extra"] == pytest.approx({"far_foreground": far[-1], "Dice_largest_component": lcc[-1]})
    assert summary["extra"]["far_foreground"] == pytest.approx({"mean": np.mean(far), "std": np.std(far)})
    assert summary["extra"]["Dice_largest_component"]["mean"] == pytest.approx(np.mean(lcc))
    # the two label boxes of a case are disjoint: post-processing drops the smaller one, so Dice can only fall here
    assert summary["extra"]["Dice_largest_component"]["mean"] <= summary["mean"]["Dice"]["mean"] + 1e-9


def test_cases_with_reference_splits_partial_dense_labels(nifti_dataset, tmp_path):
    from nnunet_scribble.evaluation import cases_with_reference

    ref_dir, _, _ = nifti_dataset
    assert cases_with_reference(ref_dir, ["case_002", "case_009", "case_000"], ".nii.gz") == \
        (["case_002", "case_000"], ["case_009"])  # order kept
    assert cases_with_reference(tmp_path / "missing", ["case_000"], ".nii.gz") == ([], ["case_000"])
