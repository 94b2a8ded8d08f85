"""benchmarks/postprocessing_summary.py: postprocessing_choice.py results pooled over folds, by hand."""
from __future__ import annotations

import json
import math

import pytest
from nnunet_helpers import load_benchmark

DEFAULT = "scribbles + background beyond 40 mm, estimated Dice, + central component"


def _result(trainer: str, folds: list[int], none: tuple, after: tuple, dense: bool = False, **extra) -> dict:
    """A postprocessing_choice.py result with 2 cases per fold; ``after`` is the default (or, dense, its own) choice."""
    def row(chosen_by: str, dice: tuple, hd: float) -> dict:
        return {"post-processing": "x", "chosen by": chosen_by, "dense Dice": list(dice), "dense HD95": [hd, 0.0],
                "per class": {"A": dice[0], "B": dice[0] / 2}}

    dataset = "Dataset127_TinyDense" if dense else "Dataset027_Tiny"
    rows = [row("-", none, 100.0)]
    if not dense:
        rows += [row("nnU-Net on scribbles", none, 100.0),
                 row("scribbles + background beyond 40 mm, estimated Dice, nnU-Net's candidates", none, 100.0),
                 row(DEFAULT, after, 10.0)]
    rows += [row("nnU-Net on dense labels", after, 10.0), row("always", after, 10.0), row("always", none, 10.0)]
    return {"model": f"/r/{dataset}/{trainer}__nnUNetPlans__2d", "folds": folds, "cases": 2 * len(folds),
            "rows": rows, **extra}


def _summary(tmp_path, results: list[dict], **kwargs) -> dict:
    ps = load_benchmark("postprocessing_summary")
    files = []
    for i, r in enumerate(results):
        files.append(tmp_path / f"r{i}.json")
        files[-1].write_text(json.dumps(r))
    return ps.main([*map(str, files), *sum(([f"--{k}", v] for k, v in kwargs.items()), [])])


def test_pool_is_the_mean_and_std_over_all_cases():
    ps = load_benchmark("postprocessing_summary")
    # {0.5, 0.7} (mean 0.6, std 0.1) and {0.8, 0.8}: together mean 0.7, variance (0.04 + 0 + 0.01 + 0.01) / 4
    assert ps.pool([(0.6, 0.1, 2), (0.8, 0.0, 2)]) == pytest.approx((0.7, math.sqrt(0.015)))
    assert ps.pool([(0.3, 0.2, 5)]) == pytest.approx((0.3, 0.2))


def test_trainers_pooled_over_folds_against_the_baseline_and_the_upper_bound(tmp_path, capsys):
    summary = _summary(tmp_path, [
        _result("nnUNetTrainerScribble", [0], (0.6, 0.1), (0.8, 0.0)),
        _result("nnUNetTrainerScribble", [1], (0.8, 0.0), (0.9, 0.1)),
        _result("nnUNetTrainerMaCo", [0, 1], (0.7, 0.0), (0.8, 0.0)),
        _result("nnUNetTrainerFullySupervised", [0, 1], (0.875, 0.0), (1.0, 0.0), dense=True),
        _result("nnUNetTrainerDMPLS", [0], (0.9, 0.0), (0.9, 0.0)),
        _result("nnUNetTrainerMaCo", [0, 1], (0.5, 0.0), (0.7, 0.0), off_centre=1.0)])
    assert summary["upper_bound"] == "nnUNetTrainerFullySupervised" and summary["baseline"] == "nnUNetTrainerScribble"
    t = summary["trainers"]
    base = t["nnUNetTrainerScribble"]
    assert base["folds"] == [0, 1] and base["cases"] == 4 and not base["dense_model"]
    assert base["rows"]["none"]["Dice"] == pytest.approx((0.7, math.sqrt(0.015)))
    # after: {0.8, 0.8} and {0.8, 1.0}: mean 0.85, variance (3 x 0.05^2 + 0.15^2) / 4
    assert base["rows"]["after"]["Dice"] == pytest.approx((0.85, math.sqrt(0.0075)))
    assert base["rows"]["after"]["per class"] == pytest.approx({"A": 0.85, "B": 0.425})
    assert base["rows"]["none"]["HD95"] == pytest.approx((100.0, 0.0))
    assert base["vs baseline"] is None
    assert base["% of upper bound"] == pytest.approx({"none": 80.0, "after": 85.0})   # 70 / 87.5, 85 / 100
    assert t["nnUNetTrainerMaCo"]["vs baseline"] == pytest.approx({"none": 0.0, "after": -5.0})
    # the upper bound's "after" is its own nnU-Net choice; it has no rows chosen on scribbles
    upper = t["nnUNetTrainerFullySupervised"]
    assert upper["dense_model"] and set(upper["rows"]) == {"none", "on dense labels", "after"}
    assert upper["% of upper bound"] is None and upper["vs baseline"] == pytest.approx({"none": 17.5, "after": 15.0})
    # other folds, or padded off the centre: nothing to compare with
    assert t["nnUNetTrainerDMPLS"]["vs baseline"] is None and t["nnUNetTrainerDMPLS"]["% of upper bound"] is None
    padded = t["nnUNetTrainerMaCo (off-centre 1)"]
    assert padded["vs baseline"] is None and padded["% of upper bound"] is None
    lines = capsys.readouterr().out.splitlines()
    rows = [line for line in lines if line.startswith("| nnUNet")]
    assert [r.split(" | ")[0] for r in rows] == ["| nnUNetTrainerFullySupervised (upper bound, own choice)",
                                                "| nnUNetTrainerScribble", "| nnUNetTrainerDMPLS",
                                                "| nnUNetTrainerMaCo", "| nnUNetTrainerMaCo (off-centre 1)"]
    assert rows[1] == ("| nnUNetTrainerScribble | 0 1 | 4 | 70.0 ± 12.2 | 70.0 | 85.0 | **85.0 ± 8.7** | 85.0 | 42.5 "
                       "| 100.0 → 10.0 | - | 80.0 → 85.0 |")
    assert rows[3].endswith("| +0.0 → -5.0 | 80.0 → 80.0 |")   # 70 / 87.5 and 80 / 100


def test_errors_name_the_files(tmp_path):
    with pytest.raises(ValueError, match=r"nnUNetTrainerMaCo fold 1 is given twice: .*r0.json and .*r1.json"):
        _summary(tmp_path, [_result("nnUNetTrainerMaCo", [0, 1], (0.7, 0), (0.8, 0)),
                            _result("nnUNetTrainerMaCo", [1], (0.7, 0), (0.8, 0))])
    with pytest.raises(ValueError, match="several densely trained models"):
        _summary(tmp_path, [_result("nnUNetTrainerFullySupervised", [0], (0.7, 0), (0.8, 0), dense=True),
                            _result("nnUNetTrainerOther", [0], (0.7, 0), (0.8, 0), dense=True)])
    (tmp_path / "bad.json").write_text(json.dumps({"model": "m"}))
    ps = load_benchmark("postprocessing_summary")
    with pytest.raises(SystemExit, match=r"bad.json: not a postprocessing_choice.py result \(no folds, cases, rows\)"):
        ps.main([str(tmp_path / "bad.json")])
    with pytest.raises(SystemExit, match="missing.json: cannot read"):
        ps.main([str(tmp_path / "missing.json")])
