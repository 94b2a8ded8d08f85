"""benchmarks/reproduce.py: the steps of each target, skipping finished steps, clear errors, failing commands."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from nnunet_helpers import load_benchmark


def _module():
    return load_benchmark("reproduce")


@pytest.fixture()
def folders(tmp_path, monkeypatch):
    for n in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        monkeypatch.setenv(n, str(tmp_path / n))
    return tmp_path


def _commands(rp, argv):
    args = rp.parse_args(argv)
    return [s.cmd for s in rp.steps_for(args, rp.nnunet_folders(args))]


def test_acdc_target_runs_the_documented_command(folders):
    rp = _module()
    convert, plan, quality = _commands(rp, ["acdc", "--data", str(folders / "data"), "--dry_run"])
    assert convert[1].endswith("Dataset027_ACDCScribble.py")
    assert convert[-2:] == ["-s", str(folders / "data" / "ACDC" / "scribbles_valvano")]
    assert Path(plan[0]).name == "nnUNetv2_plan_and_preprocess" and plan[1:5] == ["-d", "27", "-c", "2d"]
    assert quality[1].endswith("run_quality.py")
    tr = quality[quality.index("-tr") + 1:]
    assert tr == rp.ACDC_TRAINERS and len(tr) == 8
    assert {"--reuse", "--repeats"} <= set(quality) and quality[quality.index("--repeats") + 1] == "2"
    assert quality[quality.index("--preset") + 1] == "cpu"


def test_mscmr_target_plans_half_resolution_and_scores_the_scribble_trainers(folders):
    rp = _module()
    cmds = _commands(rp, ["mscmr", "--dry_run", "-tr", "nnUNetTrainerScribble", "nnUNetTrainerMedCL"])
    plan_exp = next(c for c in cmds if Path(c[0]).name == "nnUNetv2_plan_experiment")
    i = plan_exp.index("-overwrite_target_spacing")
    assert [float(v) for v in plan_exp[i + 1:i + 4]] == pytest.approx([5.0, 1.4581333, 1.4581333])
    quality = cmds[-1]
    assert quality[quality.index("-p") + 1] == "nnUNetPlans_1p46mm"
    assert quality[quality.index("--repeats") + 1] == "1"  # one run unless asked
    assert quality[quality.index("-tr") + 1:] == ["nnUNetTrainerScribble", "nnUNetTrainerMedCL"]


def test_mscmr_zero_border_target_converts_its_own_dataset(folders):
    rp = _module()
    cmds = _commands(rp, ["mscmr_zero_border", "--dry_run", "-tr", "nnUNetTrainerScribble", "--repeats", "2"])
    convert, quality = cmds[0], cmds[-1]
    assert convert[1].endswith("Dataset028_MSCMRScribble.py")
    assert convert[-5:] == ["-d", "528", "-n", "MSCMRScribbleZeroBorder", "--zero_border_background"]
    assert all(c[c.index("-d") + 1] == "528" for c in cmds[1:])   # fingerprint, plan, preprocess, train: 528
    assert quality[quality.index("--repeats") + 1] == "2"
    assert json.loads(quality[quality.index("--schedule") + 1]) == {"outside_image_background": True}
    assert Path(quality[quality.index("--output") + 1]).name == "mscmr_zero_border_2d_cpu"
    plain = _commands(rp, ["mscmr", "--dry_run"])
    assert "--schedule" not in plain[-1]
    assert plain[0][-1] == "--no-zero_border_background" and Path(plain[-1][plain[-1].index("--output") + 1]).name == \
        "mscmr_2d_cpu"


def test_mscmr_target_refuses_a_zero_border_dataset028(folders):
    """A Dataset028 converted with the converter's default (zero border labelled) is not reused by ``mscmr``."""
    rp = _module()
    raw = folders / "nnUNet_raw" / "Dataset028_MSCMRScribble"
    raw.mkdir(parents=True)
    (raw / "dataset.json").write_text(json.dumps({"labels": {}, "outside_image_background": True}))
    with pytest.raises(SystemExit, match=r"Dataset028_MSCMRScribble/dataset.json declares outside_image_background"):
        _commands(rp, ["mscmr", "--dry_run"])
    assert _commands(rp, ["mscmr_zero_border", "--dry_run"])[0][-1] == "--zero_border_background"
    (raw / "dataset.json").write_text(json.dumps({"labels": {}}))   # the papers' scribbles: reused
    assert _commands(rp, ["mscmr", "--dry_run"])[0][-1] == "--no-zero_border_background"


def test_other_targets_end_with_their_script(folders):
    rp = _module()
    ends = {"robustness": "run_robustness.py", "cost": "bench_train_step.py", "cpl_targets": "cpl_targets.py",
            "coverage": "patch_coverage.py"}
    for target, name in ends.items():
        cmds = _commands(rp, [target, "--dry_run"])
        assert cmds[-1][1].endswith(name), target
        assert cmds[0][1].endswith("Dataset027_ACDCScribble.py"), target  # every ACDC target converts first
    cost = _commands(rp, ["cost", "--dry_run", "-device", "cuda"])[-1]
    assert cost[cost.index("--device") + 1] == "cuda" and cost[cost.index("-p") + 1] == "nnUNetPlans_cpu"
    assert int(cost[cost.index("--warmup") + 1]) >= 10  # torch.compile compiles during the warm-up


def test_term_gradients_target_measures_the_zero_border_models(folders):
    rp = _module()
    cmds = _commands(rp, ["term_gradients", "--dry_run"])
    quality = next(c for c in cmds if c[1].endswith("run_quality.py"))
    assert quality[quality.index("-d") + 1] == "528" and quality[quality.index("-tr") + 1:] == rp.GRADIENT_TRAINERS
    assert Path(quality[quality.index("--output") + 1]).name == "mscmr_zero_border_2d_cpu"  # the same models
    grads = [c for c in cmds if c[1].endswith("term_gradients.py")]
    runs = [(c[c.index("-tr") + 1], c[c.index("--checkpoint") + 1]) for c in grads]
    assert runs == [("nnUNetTrainerMedCL", "none"), ("nnUNetTrainerMedCL", "final"), ("nnUNetTrainerPCLMix", "final"),
                    ("nnUNetTrainerScribble", "final")]
    assert all(c[c.index("-p") + 1] == "nnUNetPlans_1p46mm_cpu" and c[c.index("-d") + 1] == "528" for c in grads)
    paper = _commands(rp, ["term_gradients", "--dry_run", "--preset", "paper", "-tr", "nnUNetTrainerMaCo"])
    assert paper[-1][paper[-1].index("-p") + 1] == "nnUNetPlans_1p46mm" and paper[-1][-1] == "cpu"
    assert paper[-1][paper[-1].index("-tr") + 1] == "nnUNetTrainerMaCo"


def test_missing_folders_and_data_are_named(tmp_path, monkeypatch, capsys):
    rp = _module()
    for n in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        monkeypatch.delenv(n, raising=False)
    with pytest.raises(SystemExit, match="nnUNet_raw, nnUNet_preprocessed, nnUNet_results not set"):
        rp.main(["acdc"])
    with pytest.raises(SystemExit, match=f"{tmp_path / 'nodata' / 'ACDC' / 'training'} not found"):
        rp.main(["acdc", "--workdir", str(tmp_path / "w"), "--data", str(tmp_path / "nodata")])
    assert not (tmp_path / "w").exists()  # nothing written before the data is found


def test_finished_steps_are_skipped_and_a_failing_command_stops(tmp_path, capsys):
    rp = _module()
    log = tmp_path / "log.txt"
    steps = [rp.Step("already there", [sys.executable, "-c", "raise SystemExit(5)"], done=lambda: True),
             rp.Step("prints", [sys.executable, "-c", "print('hello from step 2')"], done=lambda: False),
             rp.Step("fails", [sys.executable, "-c", "raise SystemExit(3)"])]
    with pytest.raises(SystemExit, match=r"step 3 \(fails\) failed with exit code 3"):
        rp.run(steps, {}, dry_run=False, log=log)
    out = capsys.readouterr().out
    assert "[1/3] already there  -- done already, skipped" in out and "hello from step 2" in out
    text = log.read_text()
    assert "hello from step 2" in text and "[exit 0," in text and "[exit 3," in text
    assert "SystemExit(5)" not in text  # the skipped step never ran


def test_log_is_written_while_a_step_runs(tmp_path):
    """A run killed midway keeps its log: each line reaches the file while the step still runs."""
    rp = _module()
    log = tmp_path / "log.txt"
    child = ("import pathlib, sys, time\n"
             "print('first line', flush=True)\n"
             "for _ in range(100):\n"
             f"    if 'first line' in pathlib.Path({str(log)!r}).read_text(): sys.exit(0)\n"
             "    time.sleep(0.05)\n"
             "sys.exit(7)\n")
    rp.run([rp.Step("checks its own log", [sys.executable, "-c", child])], {}, dry_run=False, log=log)
    assert "[exit 0," in log.read_text()


def test_skip_uses_the_nnunet_folders(folders):
    rp = _module()
    args = rp.parse_args(["cpl_targets"])
    env = rp.nnunet_folders(args)
    (folders / "nnUNet_raw" / "Dataset027_ACDCScribble").mkdir(parents=True)
    (folders / "nnUNet_raw" / "Dataset027_ACDCScribble" / "dataset.json").write_text("{}")
    (folders / "nnUNet_preprocessed" / "Dataset027_ACDCScribble").mkdir(parents=True)
    (folders / "nnUNet_preprocessed" / "Dataset027_ACDCScribble" / "nnUNetPlans.json").write_text("{}")
    convert, plan, last = rp.steps_for(args, env)  # data folder not checked: the dataset is converted already
    assert convert.done() and plan.done() and last.done is None


def test_repeats_reach_the_robustness_benchmark(folders):
    rp = _module()
    robust = _commands(rp, ["robustness", "--dry_run"])[-1]
    assert robust[1].endswith("run_robustness.py") and robust[robust.index("--repeats") + 1] == "1"
    robust = _commands(rp, ["robustness", "--dry_run", "--repeats", "3"])[-1]
    assert robust[robust.index("--repeats") + 1] == "3" and "--reuse" in robust
    with pytest.raises(SystemExit):
        rp.parse_args(["acdc", "--repeats", "0"])


def test_folds_give_one_quality_step_and_results_folder_per_fold(folders, capsys):
    rp = _module()
    *steps, pool = _commands(rp, ["acdc", "--folds", "3", "1", "--dry_run"])[2:]
    assert [s[s.index("-f") + 1] for s in steps] == ["1", "3"]
    assert [Path(s[s.index("--output") + 1]).name for s in steps] == ["acdc_2d_fold1_cpu", "acdc_2d_fold3_cpu"]
    assert pool[1].endswith("cross_validation.py") and pool[2:4] == [s[s.index("--output") + 1] for s in steps]
    assert Path(pool[-1]).name == "acdc_2d_folds13_cpu"
    assert len(_commands(rp, ["acdc", "--dry_run"])) == 3  # one fold: no pooling step
    robust = _commands(rp, ["robustness", "--folds", "all", "0", "--dry_run"])[2:]
    assert [s[s.index("-f") + 1] for s in robust] == ["0", "1", "2", "3", "4"]
    default = _commands(rp, ["acdc", "--dry_run"])[2]
    assert default[default.index("--output") + 1] == str(rp.REPO / "benchmarks" / "results" / "acdc_2d_fold0_cpu")
    for argv, named in ((["acdc", "--folds", "5"], "'5'"), (["mscmr", "--folds", "1"], "mscmr")):
        with pytest.raises(SystemExit):
            rp.parse_args(argv)
        assert named in capsys.readouterr().err


def test_postprocessing_target_reuses_the_acdc_models_and_compares_per_trainer(folders):
    rp = _module()
    argv = ["postprocessing", "--folds", "1", "2", "-tr", "nnUNetTrainerScribble", "nnUNetTrainerMaCo", "--dry_run",
            "--output", str(folders / "res")]
    _, _, reach, train1, train2, *choices, summary = _commands(rp, argv)
    base = folders / "res" / "postprocessing_acdc_2d_folds12_cpu"
    assert reach[1].endswith("beyond_distance.py") and reach[-2:] == ["-o", str(base / "beyond_distance")]
    assert reach[2] == str(folders / "nnUNet_raw" / "Dataset027_ACDCScribble")
    assert [t[t.index("-f") + 1] for t in (train1, train2)] == ["1", "2"]
    assert train1[train1.index("--output") + 1] == str(base / "fold1")   # not the acdc table's folder
    assert "--reuse" in train1 and train1[train1.index("--repeats") + 1] == "1"
    assert len(choices) == 4 and all(c[1].endswith("postprocessing_choice.py") for c in choices)
    model = folders / "nnUNet_results" / "Dataset027_ACDCScribble" / "nnUNetTrainerMaCo__nnUNetPlans_cpu__2d"
    assert choices[2][2:] == [str(model), "--folds", "1", "2", "-o", str(base / "nnUNetTrainerMaCo")]
    assert choices[3][2:] == [str(model), "--folds", "1", "2", "--off_centre", "1", "-o",
                              str(base / "nnUNetTrainerMaCo_off_centre")]
    # the pooled table reads the results as trained (not the padded ones)
    assert summary[1].endswith("postprocessing_summary.py")
    assert summary[2:] == [str(base / "nnUNetTrainerScribble.json"), str(base / "nnUNetTrainerMaCo.json"), "-o",
                           str(base / "summary")]
    base.mkdir(parents=True)
    (base / "nnUNetTrainerMaCo.md").write_text("done")
    steps = rp.steps_for(rp.parse_args(argv), rp.nnunet_folders(rp.parse_args(argv)))
    # a finished comparison is skipped; the pooled table is always made again
    assert [s.done() if s.done else None for s in steps[-4:]] == [False, True, False, None]


def test_postprocessing_target_scores_the_upper_bound_on_the_dense_twin(folders):
    rp = _module()
    _, _, _, train, *choices, upper, summary = _commands(rp, ["postprocessing", "--folds", "0", "--dry_run"])
    assert train[train.index("-tr") + 1:] == [*rp.SCRIBBLE_TRAINERS, "nnUNetTrainerFullySupervised"]
    model = (folders / "nnUNet_results" / "Dataset127_ACDCScribbleDense"
             / "nnUNetTrainerFullySupervised__nnUNetPlans_cpu__2d")
    assert upper[2:5] == [str(model), "--folds", "0"] and "--off_centre" not in upper   # its own choice only
    assert len(choices) == 12 and ["--off_centre" in c for c in choices] == [False, True] * 6
    assert choices[-2][2].endswith("nnUNetTrainerPCLMix__nnUNetPlans_cpu__2d")
    results = summary[2:summary.index("-o")]
    assert len(results) == 7 and results[-1].endswith("nnUNetTrainerFullySupervised.json")


def test_postprocessing_target_scores_every_run_and_pools_them(folders):
    rp = _module()
    argv = ["postprocessing", "--folds", "3", "--repeats", "2", "-tr", "nnUNetTrainerScribble",
            "nnUNetTrainerFullySupervised", "--dry_run", "--output", str(folders / "res")]
    _, _, _, train, *choices, summary = _commands(rp, argv)
    assert train[train.index("--repeats") + 1] == "2" and "--reuse" in train
    base = folders / "res" / "postprocessing_acdc_2d_folds3_cpu"
    models = [Path(c[2]) for c in choices]
    results = folders / "nnUNet_results"
    scribble, dense = "nnUNetTrainerScribble__nnUNetPlans_cpu__2d", "nnUNetTrainerFullySupervised__nnUNetPlans_cpu__2d"
    # run k > 0 where run_quality.py --repeats trains it; only run 0 padded off the centre
    assert models == [results / "Dataset027_ACDCScribble" / scribble] * 2 + [
        results / "repeat_1" / "Dataset027_ACDCScribble" / scribble,
        results / "Dataset127_ACDCScribbleDense" / dense, results / "repeat_1" / "Dataset127_ACDCScribbleDense" / dense]
    assert ["--off_centre" in c for c in choices] == [False, True, False, False, False]
    assert summary[2:] == [str(base / f"{n}.json") for n in ("nnUNetTrainerScribble", "nnUNetTrainerScribble_repeat1",
                                                             "nnUNetTrainerFullySupervised",
                                                             "nnUNetTrainerFullySupervised_repeat1")] + [
        "-o", str(base / "summary")]
