"""Robustness benchmark: conditions and naming, ID refusal, the robustness table, and one end-to-end run."""
from __future__ import annotations

import csv
import json
import shutil
import math
import subprocess
import sys
from pathlib import Path

import pytest
from nnunet_helpers import load_benchmark

from nnunet_scribble import pipeline
from nnunet_scribble import robustness as rb
from nnunet_scribble.derived_preprocessing import copy_plans, is_preprocessed, same_plans

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "run_robustness.py"
BY_NAME = {c.name: c for c in rb.CONDITIONS}


def _summary(dice: float, cases=("a", "b")) -> dict:
    per = {"Dice": {"mean": dice, "std": 0.1}, "HD95": {"mean": 5.0, "std": 1.0}}
    return {"per_class": {"RV": per, "LV": per}, "mean": per,
            "cases": [{"case": c, "mean": {"Dice": dice, "HD95": 5.0}} for c in cases]}


def _script():
    return load_benchmark("run_robustness")


# ---------------------------------------------------------------- conditions and names

def test_parse_conditions_orders_dedups_and_adds_full():
    assert [c.name for c in rb.parse_conditions(["S1,drop50", "shrink30", "s1"])] == ["full", "shrink30", "drop50",
                                                                                       "s1"]
    assert [c.name for c in rb.parse_conditions(["all"])] == list(rb.CONDITION_NAMES) == [
        "full", "shrink30", "shrink50", "drop30", "drop50", "s1", "s2", "s3"]
    assert [c.name for c in rb.parse_conditions(["full"])] == ["full"]
    with pytest.raises(ValueError, match="unknown condition.*shrink40.*expected names from full, shrink30"):
        rb.parse_conditions(["shrink40"])
    with pytest.raises(ValueError, match="no condition given"):
        rb.parse_conditions([" , "])


def test_derived_names_ids_and_tool_arguments():
    src = "Dataset027_ACDCScribble"
    names = [rb.derived_dataset_name(src, c, 500) for c in rb.CONDITIONS[1:]]
    assert names == ["Dataset501_ACDCScribbleShrink30", "Dataset502_ACDCScribbleShrink50",
                     "Dataset503_ACDCScribbleDrop30", "Dataset504_ACDCScribbleDrop50", "Dataset505_ACDCScribbleSimS1",
                     "Dataset506_ACDCScribbleSimS2", "Dataset507_ACDCScribbleSimS3"]
    assert rb.derived_dataset_name("Dataset901_Synthetic_2D", BY_NAME["drop30"], 40) == "Dataset043_Synthetic_2DDrop30"
    assert BY_NAME["shrink30"].tool_args() == ["--mode", "shrink", "--ratio", "0.3", "--seed", "0"]
    assert BY_NAME["drop50"].tool_args(seed=4) == ["--mode", "drop", "--ratio", "0.5", "--seed", "4"]
    assert BY_NAME["s3"].tool_args(style="scribblebench") == ["--annotator", "s3", "--style", "scribblebench"]
    with pytest.raises(ValueError, match="nnU-Net IDs must lie in 1..999, so --id_base must lie in 0..992"):
        rb.derived_dataset_id(BY_NAME["s3"], 995)
    with pytest.raises(ValueError, match="source dataset itself"):
        rb.derived_dataset_id(BY_NAME["full"], 500)
    with pytest.raises(ValueError, match="expected DatasetXXX_Name"):
        rb.derived_dataset_name("ACDC", BY_NAME["s1"], 500)


def test_script_rejects_bad_options():
    script = _script()
    with pytest.raises(SystemExit):
        script.parse_args(["-d", "27", "--conditions", "shrink99"])
    with pytest.raises(SystemExit):
        script.parse_args(["-d", "27", "--id_base", "995"])
    with pytest.raises(SystemExit):
        script.parse_args(["-d", "27", "--schedule", "{num_epochs: 1}"])
    with pytest.raises(SystemExit):
        script.parse_args(["-d", "27", "--repeats", "0"])
    args = script.parse_args(["-d", "27", "--conditions", "drop30", "s2"])
    assert [c.name for c in args.condition_list] == ["full", "drop30", "s2"]


# ---------------------------------------------------------------- refusing occupied IDs

def _roots(tmp_path: Path) -> list[Path]:
    roots = [tmp_path / n for n in ("raw", "pre", "res")]
    for r in roots:
        r.mkdir()
    return roots


def test_find_existing_refuses_an_unrelated_dataset(tmp_path):
    roots = _roots(tmp_path)
    assert rb.find_existing(501, "Dataset501_XShrink30", roots) is None
    (roots[0] / "Dataset501_XShrink30").mkdir()
    assert rb.find_existing(501, "Dataset501_XShrink30", roots) == roots[0] / "Dataset501_XShrink30"
    (roots[2] / "Dataset502_SomethingElse").mkdir()  # nnU-Net resolves IDs through results too
    with pytest.raises(rb.DatasetIdConflict, match="ID 502 is taken by .*Dataset502_SomethingElse, expected "
                                                   "Dataset502_XShrink50"):
        rb.find_existing(502, "Dataset502_XShrink50", roots)
    (roots[1] / "Dataset503_XDrop30").mkdir()  # preprocessed data left over, raw dataset deleted
    with pytest.raises(rb.DatasetIdConflict, match="left over from a deleted dataset"):
        rb.find_existing(503, "Dataset503_XDrop30", roots)


def test_check_provenance(tmp_path):
    key, expected = rb.expected_provenance(BY_NAME["shrink30"], "Dataset027_A", "Dataset127_ADense")
    assert (key, expected) == ("scribble_degradation", {"source": "Dataset027_A", "mode": "shrink", "ratio": 0.3,
                                                        "seed": 0})
    meta = {key: {"source": "Dataset027_A", "mode": "shrink", "ratio": 0.30000000001, "seed": 0}}
    rb.check_provenance(meta, "d.json", key, expected)  # same derivation: reused
    with pytest.raises(rb.DatasetIdConflict, match=r"d.json: scribble_degradation.ratio is 0.5, expected 0.3"):
        rb.check_provenance({key: {**meta[key], "ratio": 0.5}}, "d.json", key, expected)
    with pytest.raises(rb.DatasetIdConflict, match="has no 'scribble_degradation' entry"):
        rb.check_provenance({"labels": {}}, "d.json", key, expected)
    key, expected = rb.expected_provenance(BY_NAME["s2"], "Dataset027_A", "Dataset127_ADense", style="cspnet")
    assert (key, expected) == ("scribble_simulation", {"source": "Dataset127_ADense", "style": "cspnet", "seed": 2})


def _scribble_source(raw: Path) -> Path:
    src = raw / "Dataset027_ACDCScribble"
    src.mkdir()
    (src / "dataset.json").write_text(json.dumps({"labels": {"background": 0, "RV": 1, "ignore": 2},
                                                  "channel_names": {"0": "MRI"}, "file_ending": ".nii.gz"}))
    return src


def test_script_refuses_occupied_id_before_any_work(tmp_path, monkeypatch, capsys):
    roots = _roots(tmp_path)
    for var, root in zip(("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"), roots):
        monkeypatch.setenv(var, str(root))
    _scribble_source(roots[0])
    unrelated = roots[0] / "Dataset505_Unrelated"
    unrelated.mkdir()
    out = tmp_path / "out"
    with pytest.raises(SystemExit, match=r"error: dataset ID 505 is taken by .*Dataset505_Unrelated, expected "
                                         r"Dataset505_ACDCScribbleSimS1.*choose another --id_base"):
        _script().main(["-d", "27", "--conditions", "shrink30", "s1", "--output", str(out)])
    assert not out.exists() and sorted(p.name for p in roots[0].iterdir()) == ["Dataset027_ACDCScribble",
                                                                               "Dataset505_Unrelated"]
    # a derived ID equal to the source's (or the dense twin's) is refused too
    with pytest.raises(SystemExit, match="gives condition shrink30 the ID 27 of the source dataset"):
        _script().main(["-d", "27", "--conditions", "shrink30", "--id_base", "26", "--output", str(out)])
    with pytest.raises(SystemExit, match="gives condition drop30 the ID 127 of the dense twin"):
        _script().main(["-d", "27", "--conditions", "drop30", "--id_base", "124", "--output", str(out)])


def test_script_refuses_differently_derived_dataset(tmp_path, monkeypatch):
    roots = _roots(tmp_path)
    for var, root in zip(("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"), roots):
        monkeypatch.setenv(var, str(root))
    _scribble_source(roots[0])
    other = roots[0] / "Dataset502_ACDCScribbleShrink50"  # right name, but shrunk with another seed
    other.mkdir()
    (other / "dataset.json").write_text(json.dumps({"scribble_degradation": {
        "source": "Dataset027_ACDCScribble", "mode": "shrink", "ratio": 0.5, "seed": 7}}))
    with pytest.raises(SystemExit, match="scribble_degradation.seed is 7, expected 0"):
        _script().main(["-d", "27", "--conditions", "shrink50", "--output", str(tmp_path / "out")])


def _full_summary(folder: Path, trainer: str, run: int = 0, dataset="Dataset027_ACDCScribble", fold=0,
                  plans="nnUNetPlans_cpu", **extra) -> Path:
    """A run_quality.py summary of the ``full`` cell as it would write it (``extra`` overrides/adds keys)."""
    model = f"/results/{'repeat_%d/' % run if run else ''}{dataset}/{trainer}__{plans}__2d/fold_{fold}"
    s = {**_summary(0.7), "dataset": dataset, "model_folder": model, "run": run, "hparams": {}, "preset": "cpu",
         "schedule": pipeline.PRESETS["cpu"].schedule, "model_code": {"version": "0.1.0", "commit": "abc1234"},
         **extra}
    f = folder / (f"summary_{trainer}.json" if run == 0 else f"summary_{trainer}_repeat{run}.json")
    f.write_text(json.dumps(s))
    return f


def test_full_cell_from_earlier_summaries_is_checked(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("nnUNet_scribble_hparams", raising=False)
    script = _script()
    source = tmp_path / "Dataset027_ACDCScribble"
    folder = tmp_path / "earlier"
    folder.mkdir()
    trainers = ["nnUNetTrainerScribble", "nnUNetTrainerFullySupervised"]
    args = script.parse_args(["-d", "27", "-tr", *trainers, "--conditions", "shrink30", "--full_from", str(folder)])
    _full_summary(folder, trainers[0])
    with pytest.raises(FileNotFoundError, match=r"summary_nnUNetTrainerFullySupervised.json not found.*"
                                                r"Dataset127_ACDCScribbleDense"):
        script.load_full_cell(args, folder, source, trainers, {})
    # the fully supervised model learnt from the dense twin; the schedule is assumed when not recorded
    f = _full_summary(folder, trainers[1], dataset="Dataset127_ACDCScribbleDense")
    s = json.loads(f.read_text())
    del s["schedule"]
    f.write_text(json.dumps(s))
    cell = script.load_full_cell(args, folder, source, trainers, {})
    assert [len(cell[t]) for t in trainers] == [1, 1] and cell[trainers[0]][0]["dataset"] == source.name
    assert "records no schedule" in capsys.readouterr().out

    bad = [({"dataset": "Dataset027_Other"}, r"dataset is 'Dataset027_Other', expected 'Dataset027_ACDCScribble'"),
           ({"fold": 1}, r"model folder is 'nnUNetTrainerScribble__nnUNetPlans_cpu__2d/fold_1', expected "
                         r"'nnUNetTrainerScribble__nnUNetPlans_cpu__2d/fold_0'"),
           ({"plans": "nnUNetPlans"}, "model folder is 'nnUNetTrainerScribble__nnUNetPlans__2d/fold_0'"),
           ({"hparams": {"lambda_x": 2}}, r"hyperparameter overrides is \{'lambda_x': 2\}, expected \{\}"),
           ({"schedule": {"num_epochs": 1}}, r"schedule is \{'num_epochs': 1\}, expected \{'num_epochs': 50"),
           ({"reused_model_differs": {"num_epochs": {"checkpoint": 5, "now": 50}}},
            "its model was trained with other hyperparameters than nnUNetTrainerScribble uses now "
            "\\(num_epochs 5 -> 50\\)")]
    for change, message in bad:
        f = _full_summary(folder, trainers[0], **change)
        with pytest.raises(ValueError, match=f"{f.name}: {message}"):
            script.load_full_cell(args, folder, source, trainers, {})
    _full_summary(folder, trainers[0])

    # every repeat is needed; a schedule given on the command line is what the summaries must record
    args = script.parse_args(["-d", "27", "-tr", trainers[0], "--repeats", "2", "--full_from", str(folder)])
    with pytest.raises(FileNotFoundError, match="summary_nnUNetTrainerScribble_repeat1.json not found"):
        script.load_full_cell(args, folder, source, trainers[:1], {})
    _full_summary(folder, trainers[0], run=1)
    assert len(script.load_full_cell(args, folder, source, trainers[:1], {})[trainers[0]]) == 2
    args = script.parse_args(["-d", "27", "-tr", trainers[0], "--schedule", '{"num_epochs": 3}'])
    with pytest.raises(ValueError, match=r"schedule is .*'num_epochs': 50.*, expected .*'num_epochs': 3"):
        script.load_full_cell(args, folder, source, trainers[:1], {})


def test_script_checks_full_from_before_any_work(tmp_path, monkeypatch):
    roots = _roots(tmp_path)
    for var, root in zip(("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"), roots):
        monkeypatch.setenv(var, str(root))
    _scribble_source(roots[0])
    out = tmp_path / "out"
    with pytest.raises(SystemExit, match=r"error: --full_from: .*summary_nnUNetTrainerScribble.json not found"):
        _script().main(["-d", "27", "--conditions", "shrink30", "--output", str(out),
                        "--full_from", str(tmp_path / "nothing")])
    assert not out.exists() and [p.name for p in roots[0].iterdir()] == ["Dataset027_ACDCScribble"]


def test_source_split_installed_or_made_like_nnunet(tmp_path):
    from nnunetv2.utilities.crossval_split import generate_crossval_split

    raw, pre = _roots(tmp_path)[:2]
    src = _scribble_source(raw)
    (src / "labelsTr").mkdir()
    cases = [f"case{i:02d}" for i in range(10)]
    for c in cases:
        (src / "labelsTr" / f"{c}.nii.gz").touch()
    (pre / src.name).mkdir()
    written = json.loads(_script().ensure_source_splits(src, pre).read_text())  # what nnUNetv2_train would write
    assert written == generate_crossval_split(cases, seed=12345, n_splits=5) and len(written) == 5
    assert sorted(c for fold in written for c in fold["val"]) == cases
    own = [{"train": cases[2:], "val": cases[:2]}]
    (src / "splits_final.json").write_text(json.dumps(own))
    (pre / src.name / "splits_final.json").unlink()
    assert json.loads(_script().ensure_source_splits(src, pre).read_text()) == own  # the dataset's own split wins


# ---------------------------------------------------------------- the table

def test_robustness_rows_worked_by_hand(tmp_path):
    a = {"full": 0.80, "shrink30": 0.72, "shrink50": 0.60, "drop30": 0.76, "drop50": 0.64,
         "s1": 0.70, "s2": 0.74, "s3": 0.78}
    summaries = {c: {"nnUNetTrainerScribble": _summary(d)} for c, d in a.items()}
    summaries["full"]["nnUNetTrainerFullySupervised"] = _summary(0.90)
    dice = {t: {c: rb.mean_dice(per[t]) for c, per in summaries.items() if t in per}
            for t in ("nnUNetTrainerScribble", "nnUNetTrainerFullySupervised")}
    rows = rb.robustness_rows(dice, rb.CONDITIONS)
    r, fs = rows
    assert list(r) == ["trainer", "Dice full", "Dice shrink30", "Dice shrink50", "Dice drop30", "Dice drop50",
                       "Dice s1", "Dice s2", "Dice s3", "retained shrink30", "retained shrink50", "retained drop30",
                       "retained drop50", "simulated mean", "simulated std"]
    assert r["Dice full"] == pytest.approx(80.0) and r["Dice s3"] == pytest.approx(78.0)
    # retained = Dice_condition / Dice_full: 72/80, 60/80, 76/80, 64/80
    assert [r[f"retained {c}"] for c in ("shrink30", "shrink50", "drop30", "drop50")] == pytest.approx(
        [90.0, 75.0, 95.0, 80.0])
    # s1-s3: 70, 74, 78 -> mean 74; deviations -4, 0, 4 -> population std sqrt(32 / 3) = 3.266
    assert r["simulated mean"] == pytest.approx(74.0)
    assert r["simulated std"] == pytest.approx(math.sqrt(32 / 3)) and round(r["simulated std"], 2) == 3.27
    # the fully supervised row has only 'full'
    assert fs["Dice full"] == pytest.approx(90.0)
    assert all(fs[k] is None for k in fs if k not in ("trainer", "Dice full"))

    csv_file, md = rb.write_tables(rows, tmp_path, "# header", "Conditions: ...")
    text = md.read_text()
    assert text.startswith("# header\n") and text.rstrip().endswith("Conditions: ...")
    assert "| nnUNetTrainerScribble | 80.0 | 72.0 | 60.0 | 76.0 | 64.0 | 70.0 | 74.0 | 78.0 | 90.0 | 75.0 | 95.0 | " \
           "80.0 | 74.0 | 3.3 |" in text
    assert "| nnUNetTrainerFullySupervised | 90.0 | - | - |" in text
    table = list(csv.DictReader(csv_file.open()))
    assert table[0]["retained shrink50"] == "75.00" and table[0]["simulated std"] == "3.27"
    assert table[1]["Dice full"] == "90.00" and table[1]["Dice s1"] == ""


def test_robustness_rows_partial_conditions():
    conds = rb.parse_conditions(["drop50", "s2"])
    rows = rb.robustness_rows({"T": {"full": 0.5, "drop50": 0.55, "s2": 0.4}, "U": {"drop50": 0.3}}, conds)
    assert list(rows[0]) == ["trainer", "Dice full", "Dice drop50", "Dice s2", "retained drop50", "simulated mean",
                             "simulated std"]
    assert rows[0]["retained drop50"] == pytest.approx(110.0)  # better than full is reported as is
    assert rows[0]["simulated mean"] == pytest.approx(40.0) and rows[0]["simulated std"] is None  # one style: no std
    assert rows[1]["retained drop50"] is None and rows[1]["Dice full"] is None  # no full: nothing retained
    assert rb.held_out_cases(_summary(0.5, cases=("b", "a"))) == ["a", "b"]


def test_repeated_cells_are_averaged_before_every_derived_column():
    conds = rb.parse_conditions(["drop50", "s1", "s2"])
    dice = {"T": {"full": [0.60, 0.70], "drop50": [0.50, 0.55], "s1": [0.40, 0.50], "s2": 0.60}}
    row = rb.robustness_rows(dice, conds)[0]
    # cells: full 65, drop50 52.5, s1 45, s2 60 (one run); retained 52.5 / 65; simulated mean 52.5, std 7.5
    assert row["Dice full"] == pytest.approx(65.0) and row["Dice drop50"] == pytest.approx(52.5)
    assert row["retained drop50"] == pytest.approx(100 * 52.5 / 65)
    assert row["simulated mean"] == pytest.approx(52.5) and row["simulated std"] == pytest.approx(7.5)
    # a single float and a one-run list are the same cell; NaN runs are left out, an all-NaN cell is missing
    assert rb.robustness_rows({"T": {"full": [0.6]}}, conds)[0] == rb.robustness_rows({"T": {"full": 0.6}}, conds)[0]
    assert rb.cell_mean([0.5, float("nan")]) == pytest.approx(0.5) and rb.cell_mean([float("nan")]) is None

    runs = rb.runs_rows(dice | {"U": {"full": 0.3}}, conds)
    assert runs[0] == {"trainer": "T", "full": "60.0 / 70.0 (10.0)", "drop50": "50.0 / 55.0 (5.0)",
                       "s1": "40.0 / 50.0 (10.0)", "s2": "60.0"}
    assert runs[1] == {"trainer": "U", "full": "30.0", "drop50": None, "s1": None, "s2": None}


def test_copy_plans_changes_only_the_dataset_name(tmp_path):
    src, dst = tmp_path / "Dataset027_A", tmp_path / "Dataset501_AShrink30"
    src.mkdir()
    plans = {"dataset_name": "Dataset027_A", "configurations": {"2d": {"patch_size": [64, 64]}}}
    (src / "nnUNetPlans.json").write_text(json.dumps(plans))
    written = json.loads(copy_plans(src, dst, dst.name).read_text())
    assert written == {**plans, "dataset_name": "Dataset501_AShrink30"} and same_plans(written, plans)
    assert not same_plans(written, {**plans, "configurations": {"2d": {"patch_size": [32, 32]}}})
    (dst / "nnUNetPlans_2d").mkdir()
    (dst / "nnUNetPlans_2d" / "a.pkl").touch()
    assert is_preprocessed(dst / "nnUNetPlans_2d", ["a"]) and not is_preprocessed(dst / "nnUNetPlans_2d", ["a", "b"])
    with pytest.raises(FileNotFoundError, match="plan and preprocess the source"):
        copy_plans(tmp_path / "missing", dst, dst.name)


# ---------------------------------------------------------------- end to end

@pytest.mark.slow
def test_robustness_end_to_end_on_synthetic_data(tmp_path):
    from nnunet_scribble.data.synthetic import generate_synthetic_dataset

    raw, pre, res = (tmp_path / n for n in ("raw", "preprocessed", "results"))
    for d in (raw, pre, res):
        d.mkdir()
    env = pipeline.nnunet_env(raw, pre, res)
    env.pop("nnUNet_scribble_hparams", None)
    src = generate_synthetic_dataset(raw, dataset_id=951, dim=2, num_train=10, num_test=3, seed=1, progress=False)
    out = tmp_path / "out"
    cmd = [sys.executable, str(SCRIPT), "-d", "951", "-c", "2d", "-f", "0", "--preset", "demo", "--schedule",
           json.dumps({"num_epochs": 1, "num_iterations_per_epoch": 2, "num_val_iterations_per_epoch": 1}),
           "-tr", "nnUNetTrainerScribble", "--conditions", "shrink30", "s1", "--id_base", "960", "--output", str(out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    print(proc.stdout[-3000:], proc.stderr[-3000:])
    assert proc.returncode == 0

    rows = list(csv.DictReader((out / "robustness.csv").open()))
    assert [r["trainer"] for r in rows] == ["nnUNetTrainerScribble"]
    assert list(rows[0]) == ["trainer", "Dice full", "Dice shrink30", "Dice s1", "retained shrink30",
                             "simulated mean", "simulated std"]
    for key in ("Dice full", "Dice shrink30", "Dice s1", "simulated mean"):
        assert 0 <= float(rows[0][key]) <= 100
    assert float(rows[0]["retained shrink30"]) >= 0 and rows[0]["simulated std"] == ""  # one simulated annotator
    md = (out / "robustness.md").read_text()
    assert "Dataset961_SyntheticCardiac2DShrink30" in md and "Dataset965_SyntheticCardiac2DSimS1" in md
    assert "(3 cases, the same in every condition)" in md

    # derived datasets: the source's split and plans, dense labels and the held-out test set
    splits = json.loads((pre / src.name / "splits_final.json").read_text())
    plans = json.loads((pre / src.name / "nnUNetPlans.json").read_text())
    for condition, name in (("shrink30", "Dataset961_SyntheticCardiac2DShrink30"),
                            ("s1", "Dataset965_SyntheticCardiac2DSimS1")):
        assert rb.normalise_splits(json.loads((pre / name / "splits_final.json").read_text())) == \
            rb.normalise_splits(splits)
        derived_plans = json.loads((pre / name / "nnUNetPlans.json").read_text())
        assert derived_plans["dataset_name"] == name and same_plans(derived_plans, plans)
        assert sorted(p.name for p in (raw / name / "labelsTs").iterdir()) == \
            sorted(p.name for p in (src / "labelsTs").iterdir())
        assert len(list((raw / name / "labelsTr_dense").iterdir())) == 10
        summary = json.loads((out / condition / "summary_nnUNetTrainerScribble.json").read_text())
        assert summary["dataset"] == name and len(summary["cases"]) == 3

    # a second run per cell: the first runs' models are reused, repeat 1 trains into results/repeat_1
    proc = subprocess.run(cmd[:cmd.index("--conditions")] + ["--conditions", "shrink30", "--id_base", "960",
                                                            "--output", str(out), "--reuse", "--repeats", "2"],
                          env=env, capture_output=True, text=True)
    print(proc.stdout[-3000:], proc.stderr[-3000:])
    assert proc.returncode == 0
    assert (res / "repeat_1" / "Dataset961_SyntheticCardiac2DShrink30").is_dir()
    row = list(csv.DictReader((out / "robustness.csv").open()))[0]
    for condition in ("full", "shrink30"):
        runs = [rb.mean_dice(json.loads((out / condition / f).read_text())) for f in
                ("summary_nnUNetTrainerScribble.json", "summary_nnUNetTrainerScribble_repeat1.json")]
        assert float(row[f"Dice {condition}"]) == pytest.approx(100 * sum(runs) / 2, abs=0.006)
    md = (out / "robustness.md").read_text()
    assert "2 independent (unseeded) trainings per cell" in md and "Dice (%) of each run" in md
    # the reused models were trained by this very code: no hyperparameter or code note
    assert "Reused models" not in md
    summary = json.loads((out / "full" / "summary_nnUNetTrainerScribble.json").read_text())
    assert summary["model_code"]["version"] and "reused_model_code" not in summary
    assert summary["preset"] == "demo" and summary["schedule"]["num_epochs"] == 1

    # a condition added later, without the full models: --full_from takes the full cell from the earlier summaries
    shutil.rmtree(res / src.name)
    out2 = tmp_path / "out2"
    proc = subprocess.run(cmd[:cmd.index("--conditions")] + ["--conditions", "drop30", "--id_base", "960",
                                                            "--output", str(out2), "--full_from", str(out / "full")],
                          env=env, capture_output=True, text=True)
    print(proc.stdout[-3000:], proc.stderr[-3000:])
    assert proc.returncode == 0
    assert not (res / src.name).exists()  # full was not trained again
    assert (out2 / "full" / "summary_nnUNetTrainerScribble.json").read_text() == \
        (out / "full" / "summary_nnUNetTrainerScribble.json").read_text()
    row = list(csv.DictReader((out2 / "robustness.csv").open()))[0]
    assert float(row["Dice full"]) == pytest.approx(100 * rb.mean_dice(summary), abs=0.006)
    assert 0 <= float(row["Dice drop30"]) <= 100 and float(row["retained drop30"]) >= 0
    assert f"taken from {out / 'full'}" in (out2 / "robustness.md").read_text()
