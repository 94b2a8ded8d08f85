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


def test_run_to_run_sd_of_a_mean_pooled_over_folds():
    ps = load_benchmark("postprocessing_summary")
    # one block: the sd (ddof 1) of its run means, as run_quality.py --repeats
    assert ps.run_to_run_sd([([0.8, 0.7, 0.6], 5)]) == pytest.approx((0.1, True))
    # two blocks of 2 and 6 cases: (2/8)^2 * 0.005 + (6/8)^2 * 0.02
    assert ps.run_to_run_sd([([0.8, 0.7], 2), ([0.5, 0.7], 6)]) == pytest.approx((math.sqrt(0.0115625), True))
    # a block with one run adds nothing and makes the value a lower bound; no block with two runs: not measured
    assert ps.run_to_run_sd([([0.8, 0.7], 2), ([0.9], 2)]) == pytest.approx((math.sqrt(0.00125), False))
    assert ps.run_to_run_sd([([0.9], 2), ([0.5], 2)]) is None


def test_repeat_runs_are_averaged_and_flag_rankings_within_their_spread(tmp_path, capsys):
    summary = _summary(tmp_path, [
        _result("nnUNetTrainerScribble", [0], (0.6, 0.0), (0.8, 0.0)),
        _result("nnUNetTrainerScribble", [0], (0.4, 0.0), (0.7, 0.0)),
        _result("nnUNetTrainerDMPLS", [0], (0.6, 0.0), (0.78, 0.0)),
        _result("nnUNetTrainerDMPLS", [0], (0.6, 0.0), (0.76, 0.0)),
        _result("nnUNetTrainerMaCo", [0], (0.6, 0.0), (0.6, 0.0)),
        _result("nnUNetTrainerMaCo", [0], (0.5, 0.0), (0.5, 0.0), off_centre=1.0)])
    assert summary["repeated"]
    t = summary["trainers"]
    base, dmpls, maco = t["nnUNetTrainerScribble"], t["nnUNetTrainerDMPLS"], t["nnUNetTrainerMaCo"]
    assert base["runs"] == {"0": 2} and base["cases"] == 2
    assert base["rows"]["after"]["Dice"] == pytest.approx((0.75, 0.05))   # the 4 values 0.8, 0.8, 0.7, 0.7
    assert base["run-to-run sd"]["after"] == pytest.approx((math.sqrt(0.005), True))
    assert base["run-to-run sd"]["none"] == pytest.approx((math.sqrt(0.02), True))
    assert dmpls["vs baseline"] == pytest.approx({"none": 10.0, "after": 2.0})
    assert maco["run-to-run sd"]["after"] is None
    # 0.77 - 0.75 < 0.0707 + 0.0141; MaCo (one run: the largest measured sd, 0.0707, assumed) 0.15 below the
    # baseline > 2 x 0.0707; the padded model is ranked only among padded models
    assert dmpls["rank"] == "1; may swap with Scribble" and base["rank"] == "2; may swap with DMPLS"
    assert maco["rank"] == "3" and t["nnUNetTrainerMaCo (off-centre 1)"]["rank"] == "1"
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| nnUNetTrainerDMPLS")]
    assert rows == ["| nnUNetTrainerDMPLS | 0 | 2 | 2 | 60.0 ± 0.0 | 60.0 | 77.0 | **77.0 ± 1.0** | 77.0 | 38.5 "
                    "| 100.0 → 10.0 | +10.0 → +2.0 | - | 0.0 → 1.4 | 1; may swap with Scribble |"]


def test_repeats_on_some_folds_weigh_each_fold_by_its_cases(tmp_path, capsys):
    summary = _summary(tmp_path, [
        _result("nnUNetTrainerScribble", [0], (0.6, 0.0), (0.8, 0.0)),
        _result("nnUNetTrainerScribble", [0], (0.6, 0.0), (0.7, 0.0)),
        _result("nnUNetTrainerScribble", [1], (0.6, 0.0), (0.9, 0.0)),
        _result("nnUNetTrainerMaCo", [0, 1], (0.6, 0.0), (0.8, 0.0))])
    base = summary["trainers"]["nnUNetTrainerScribble"]
    assert base["runs"] == {"0": 2, "1": 1} and base["folds"] == [0, 1] and base["cases"] == 4
    # fold 0: the mean of 0.8 and 0.7 over its 2 cases, fold 1: 0.9 over 2 cases
    assert base["rows"]["after"]["Dice"][0] == pytest.approx(0.825)
    assert base["rows"]["after"]["per class"]["A"] == pytest.approx(0.825)
    assert base["run-to-run sd"]["after"] == pytest.approx((math.sqrt(0.00125), False))
    assert summary["trainers"]["nnUNetTrainerMaCo"]["vs baseline"]["after"] == pytest.approx(-2.5)
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("| nnUNetTrainerScribble"))
    assert line.split(" | ")[3] == "2/1" and line.endswith("| ≥0.0 → ≥3.5 | 1; may swap with MaCo* |")


def test_errors_name_the_files(tmp_path):
    with pytest.raises(ValueError, match=r"nnUNetTrainerMaCo: .*r0.json \(folds 0 1\) and .*r1.json \(folds 1\) "
                                         "overlap"):
        _summary(tmp_path, [_result("nnUNetTrainerMaCo", [0, 1], (0.7, 0), (0.8, 0)),
                            _result("nnUNetTrainerMaCo", [1], (0.7, 0), (0.8, 0))])
    ps = load_benchmark("postprocessing_summary")
    with pytest.raises(ValueError, match=r"a.json given twice"):
        ps.summarise([("a.json", _result("nnUNetTrainerMaCo", [0], (0.7, 0), (0.8, 0)))] * 2)
    with pytest.raises(ValueError, match=r"nnUNetTrainerMaCo folds 0: the runs a.json, b.json scored different numbers "
                                         r"of cases \(2, 3\)"):
        ps.summarise([("a.json", _result("nnUNetTrainerMaCo", [0], (0.7, 0), (0.8, 0))),
                      ("b.json", {**_result("nnUNetTrainerMaCo", [0], (0.7, 0), (0.8, 0)), "cases": 3})])
    with pytest.raises(ValueError, match="several densely trained models"):
        _summary(tmp_path, [_result("nnUNetTrainerFullySupervised", [0], (0.7, 0), (0.8, 0), dense=True),
                            _result("nnUNetTrainerOther", [0], (0.7, 0), (0.8, 0), dense=True)])
    (tmp_path / "bad.json").write_text(json.dumps({"model": "m"}))
    with pytest.raises(SystemExit, match=r"bad.json: not a postprocessing_choice.py result \(no folds, cases, rows\)"):
        ps.main([str(tmp_path / "bad.json")])
    with pytest.raises(SystemExit, match="missing.json: cannot read"):
        ps.main([str(tmp_path / "missing.json")])
