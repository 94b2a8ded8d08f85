"""Presets (reduced plans) and the benchmark harness' table writing."""
from __future__ import annotations

import json

import pytest
from nnunet_helpers import tiny_plans

from nnunet_scribble import benchmarking as bm
from nnunet_scribble import pipeline


def _acdc_like_2d() -> dict:
    config = tiny_plans(2)["configurations"]["2d"]
    kw = config["architecture"]["arch_kwargs"]
    kw.update(n_stages=6, features_per_stage=[32, 64, 128, 256, 512, 512], kernel_sizes=[[3, 3]] * 6,
              strides=[[1, 1]] + [[2, 2]] * 5, n_conv_per_stage=[2] * 6, n_conv_per_stage_decoder=[2] * 5)
    config.update(patch_size=[256, 224], batch_size=56)
    return config


def test_cpu_preset_reduces_acdc_2d_plan():
    out = pipeline.reduce_configuration(_acdc_like_2d(), pipeline.PRESETS["cpu"], is_3d=False)
    kw = out["architecture"]["arch_kwargs"]
    assert kw["n_stages"] == 5 and kw["features_per_stage"] == [16, 32, 64, 128, 256]
    assert len(kw["strides"]) == len(kw["kernel_sizes"]) == len(kw["n_conv_per_stage"]) == 5
    assert len(kw["n_conv_per_stage_decoder"]) == 4
    assert out["patch_size"] == [256, 224]  # the planned 2D patch is kept: it covers the slice
    assert out["batch_size"] == 2


def test_demo_preset_caps_the_2d_patch():
    out = pipeline.reduce_configuration(_acdc_like_2d(), pipeline.PRESETS["demo"], is_3d=False)
    assert out["architecture"]["arch_kwargs"]["n_stages"] == 4
    assert out["patch_size"] == [96, 96]  # capped, divisible by 2**3


def test_3d_patch_respects_anisotropic_pooling():
    config = tiny_plans(3)["configurations"]["3d_fullres"]
    config["patch_size"] = [20, 256, 224]
    out = pipeline.reduce_configuration(config, pipeline.PRESETS["cpu"], is_3d=True)
    # strides [1,1,1],[1,2,2],[2,2,2]: z divisible by 2, in-plane by 4
    assert out["patch_size"] == [16, 64, 64]


def test_write_preset_plans_keeps_data_identifier(tmp_path):
    plans = tiny_plans(2)
    (tmp_path / "nnUNetPlans.json").write_text(json.dumps(plans))
    ident = pipeline.write_preset_plans(tmp_path, pipeline.PRESETS["demo"])
    written = json.loads((tmp_path / f"{ident}.json").read_text())
    assert ident == "nnUNetPlans_demo" == written["plans_name"]
    assert written["configurations"]["2d"]["data_identifier"] == "nnUNetPlans_2d"
    assert pipeline.write_preset_plans(tmp_path, pipeline.PRESETS["paper"]) == "nnUNetPlans"
    (tmp_path / "nnUNetPlans_1p5mm.json").write_text(json.dumps({**plans, "plans_name": "nnUNetPlans_1p5mm"}))
    name = pipeline.write_preset_plans(tmp_path, pipeline.PRESETS["cpu"], "nnUNetPlans_1p5mm")
    assert name == "nnUNetPlans_1p5mm_cpu"
    assert json.loads((tmp_path / "nnUNetPlans_1p5mm_cpu.json").read_text())["plans_name"] == "nnUNetPlans_1p5mm_cpu"
    with pytest.raises(FileNotFoundError, match="plan_and_preprocess"):
        pipeline.write_preset_plans(tmp_path / "missing", pipeline.PRESETS["cpu"])


def _summary(dice: float) -> dict:
    per = {"Dice": {"mean": dice, "std": 0.1}, "HD95": {"mean": 5.0, "std": 1.0}}
    return {"per_class": {"RV": per, "LV": per}, "mean": per,
            "cases": [{"mean": {"Dice": dice, "HD95": 5.0}}] * 3}


def test_results_table_reports_fraction_of_upper_bound(tmp_path):
    results = [bm.TrainerResult("nnUNetTrainerScribble", _summary(0.8), 100.0, 5.0, "D"),
               bm.TrainerResult("nnUNetTrainerFullySupervised", _summary(0.9), 90.0, 5.0, "D")]
    rows = bm.results_rows(results, "nnUNetTrainerFullySupervised")
    assert rows[0]["Dice mean"] == "80.0 ± 10.0" and rows[0]["% of full sup."] == "88.9"
    assert rows[1]["% of full sup."] == "100.0"
    csv_file, md = bm.write_tables(rows, tmp_path, "# header")
    assert "| nnUNetTrainerScribble |" in md.read_text() and csv_file.read_text().count("\n") == 3
    assert bm.plot_results(results, tmp_path / "r.png").stat().st_size > 1000


def test_held_out_set_falls_back_to_validation_cases(tmp_path):
    raw, pre = tmp_path / "raw", tmp_path / "pre"
    (raw / "imagesTr").mkdir(parents=True)
    pre.mkdir()
    for case in ("a", "b", "c"):
        (raw / "imagesTr" / f"{case}_0000.nii.gz").write_text("x")
    (pre / "splits_final.json").write_text(json.dumps([{"train": ["a", "b"], "val": ["c"]}]))
    images, ref, what = bm.held_out_set(raw, pre, 0, tmp_path / "work")
    assert [p.name for p in images.iterdir()] == ["c_0000.nii.gz"] and ref == raw / "labelsTr_dense"
    assert "validation" in what


def test_plan_and_preprocess_drops_zero_augmentation_workers(monkeypatch):
    # nnU-Net 2.8.1's planner calls torch.set_num_threads(nnUNet_n_proc_DA), which rejects 0
    seen = {}
    monkeypatch.setattr(pipeline, "run_command", lambda cmd, env, log_file=None: seen.update(cmd=cmd, env=env) or 0.0)
    pipeline.plan_and_preprocess(901, ["2d"], {"nnUNet_n_proc_DA": "0", "nnUNet_raw": "/r"})
    assert "nnUNet_n_proc_DA" not in seen["env"] and seen["env"]["nnUNet_raw"] == "/r"
    assert seen["cmd"][-4:] == ["-npfp", "1", "-np", "1"]
    pipeline.plan_and_preprocess(901, ["2d"], {"nnUNet_n_proc_DA": "4"})
    assert seen["env"]["nnUNet_n_proc_DA"] == "4"


def test_repeats_are_pooled_with_their_spread_and_ranking(tmp_path):
    """Two runs of A (0.70, 0.74), one of B (0.73), two of C (0.50, 0.52): hand-worked means, sd and ranking."""
    results = [bm.TrainerResult("A", _summary(0.70), 10.0, 1.0, "D"),
               bm.TrainerResult("B", _summary(0.73), 20.0, 1.0, "D"),
               bm.TrainerResult("C", _summary(0.50), 30.0, 1.0, "D"),
               bm.TrainerResult("A", _summary(0.74), 30.0, 1.0, "D", run=1),
               bm.TrainerResult("C", _summary(0.52), 50.0, 1.0, "D", run=1)]
    rows = {r["trainer"]: r for r in bm.results_rows(results, None)}
    assert list(rows) == ["A", "B", "C"]
    assert rows["A"]["Dice mean"] == "72.0 ± 10.0" and rows["A"]["runs"] == 2 and rows["A"]["train s"] == "20"
    assert rows["A"]["run-to-run sd"] == "2.8"  # std([0.70, 0.74], ddof=1) = 0.0283
    assert rows["C"]["run-to-run sd"] == "1.4" and rows["B"]["run-to-run sd"] == "-"
    # B (one run) is assumed to spread like the most spread measured row (A, 2.83): |0.73 - 0.72| < 2.83 + 2.83
    assert rows["B"]["rank"] == "1; may swap with A" and rows["A"]["rank"] == "2; may swap with B*"
    assert rows["C"]["rank"] == "3"  # 0.51 is 0.21 below A: far outside 2.83 + 1.41
    assert bm.plot_results(results, tmp_path / "r.png").stat().st_size > 1000


def test_load_results_reads_repeats_and_labels(tmp_path):
    for name, dice in (("summary_T.json", 0.6), ("summary_T_repeat1.json", 0.8)):
        (tmp_path / name).write_text(json.dumps({**_summary(dice), "train_seconds": 5.0, "dataset": "D"}))
    (tmp_path / "summary_U.json").write_text(json.dumps({**_summary(0.5), "label": 'U {"x": 1}'}))
    got = bm.load_results(tmp_path)
    assert [(r.name, r.run) for r in got] == [("T", 0), ("T", 1), ('U {"x": 1}', 0)]
    assert bm.results_rows(got, None)[0]["Dice mean"] == "70.0 ± 10.0"
    assert [r.name for r in bm.load_results(tmp_path, " (v2)")][0] == "T (v2)"
    with pytest.raises(FileNotFoundError, match="no summary"):
        bm.load_results(tmp_path / "missing")


def test_extra_metric_columns_when_every_run_has_them():
    with_extra = {**_summary(0.8), "extra": {"far_foreground": {"mean": 0.25, "std": 0.1},
                                             "Dice_largest_component": {"mean": 0.85, "std": 0.05}}}
    rows = bm.results_rows([bm.TrainerResult("A", with_extra, 1.0, 1.0, "D"),
                            bm.TrainerResult("B", _summary(0.7), 1.0, 1.0, "D")], None)
    assert rows[0]["far fg %"] == "25" and rows[0]["Dice mean, largest component"] == "85.0 ± 5.0"
    assert "far fg %" not in rows[1]
