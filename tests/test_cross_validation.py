"""Cross-validation pooling (nnunet_scribble.cross_validation, benchmarks/cross_validation.py): every case once."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from nnunet_helpers import load_benchmark

from nnunet_scribble.benchmarking import load_results
from nnunet_scribble.cross_validation import fold_label, pool_folds
from nnunet_scribble.evaluation import summarize_cases


def _case(case: str, dice: float, hd: float, far: float) -> dict:
    return {"case": case, "metrics": {"A": {"Dice": dice, "HD95": hd}}, "mean": {"Dice": dice, "HD95": hd},
            "extra": {"far_foreground": far, "Dice_largest_component": dice}}


def _summary(fold: int, cases: list[dict], train_s: float) -> dict:
    s = summarize_cases(cases, ["A"])
    s.update(model_folder=f"/r/Dataset001_X/T__P__2d/fold_{fold}", train_seconds=train_s, predict_seconds=1.0,
             dataset="Dataset001_X", label=None)
    return s


def _folder(root: Path, name: str, summaries: dict[str, dict]) -> Path:
    out = root / name
    out.mkdir()
    for stem, s in summaries.items():
        (out / f"summary_{stem}.json").write_text(json.dumps(s))
    return out


@pytest.fixture()
def two_folds(tmp_path):
    # fold 0: two cases, two runs of T (p1: 0.5 / 0.7, p2: 0.7 / 0.9) and one of the baseline B; fold 1: one case
    f0 = _folder(tmp_path, "f0", {
        "T": _summary(0, [_case("p1", 0.5, 2.0, 0.1), _case("p2", 0.7, 4.0, 0.3)], 100.0),
        "T_repeat1": _summary(0, [_case("p1", 0.7, 4.0, 0.3), _case("p2", 0.9, 6.0, 0.1)], 200.0),
        "B": _summary(0, [_case("p1", 0.4, 9.0, 0.5), _case("p2", 0.4, 9.0, 0.5)], 50.0),
        "OnlyHere": _summary(0, [_case("p1", 0.1, 1.0, 0.0), _case("p2", 0.1, 1.0, 0.0)], 1.0)})
    f1 = _folder(tmp_path, "f1", {"T": _summary(1, [_case("p3", 0.2, 9.0, 0.8)], 400.0),
                                  "B": _summary(1, [_case("p3", 0.1, 9.0, 0.5)], 50.0)})
    return f0, f1


def test_every_case_counts_once_and_runs_are_averaged_per_case(two_folds):
    f0, f1 = two_folds
    cv = pool_folds({"0": load_results(f0), "1": load_results(f1)})
    t = {r.name: r for r in cv.results}["T"]
    # per case over runs: p1 0.6, p2 0.8; p3 0.2 -> all cases 1.6 / 3 (the mean of the fold means would be 0.45)
    assert t.summary["mean"]["Dice"]["mean"] == pytest.approx(1.6 / 3)
    assert [c["case"] for c in t.summary["cases"]] == ["p1", "p2", "p3"]
    assert [c["fold"] for c in t.summary["cases"]] == ["0", "0", "1"]
    assert t.summary["per_class"]["A"]["HD95"]["mean"] == pytest.approx((3.0 + 5.0 + 9.0) / 3)
    assert t.summary["extra"]["far_foreground"]["mean"] == pytest.approx((0.2 + 0.2 + 0.8) / 3)
    assert cv.fold_dice["T"] == pytest.approx([0.7, 0.2]) and cv.runs["T"] == [2, 1]
    assert t.train_seconds == pytest.approx((150.0 + 400.0) / 2)  # mean per fold of the mean over its runs
    assert cv.incomplete == {"OnlyHere": ["0"]} and {r.name for r in cv.results} == {"T", "B"}


def test_a_case_in_two_folds_is_refused(two_folds):
    f0, _ = two_folds
    with pytest.raises(ValueError, match="case p1 is scored in fold 0 and fold 1"):
        pool_folds({"0": load_results(f0), "1": load_results(f0)})


def test_script_writes_the_table_with_fold_columns(two_folds, tmp_path):
    f0, f1 = two_folds
    cv_script = load_benchmark("cross_validation")
    assert fold_label(load_results(f1)[0]) == "1"
    cv_script.main([str(f1), str(f0), "--output", str(tmp_path / "cv"), "--upper_bound", "none"])
    md = (tmp_path / "cv" / "results.md").read_text()
    rows = {line.split(" | ")[0].strip("| "): line.split(" | ") for line in md.splitlines()
            if line.startswith("| T") or line.startswith("| B")}
    header = next(line for line in md.splitlines() if line.startswith("| trainer")).split(" | ")
    t = dict(zip(header, rows["T"]))
    assert t["Dice mean"] == "53.3 ± 24.9"  # population sd of 0.6, 0.8, 0.2: sqrt(0.56 / 9)
    assert t["Dice per fold"] == "70.0 / 20.0" and t["fold-to-fold sd"] == "35.4" and t["runs per fold"] == "2 / 1"
    assert "OnlyHere (folds 0)" in md and (tmp_path / "cv" / "results.png").is_file()
    with pytest.raises(SystemExit, match="one fold"):
        cv_script.main([str(f0), "--output", str(tmp_path / "x")])
