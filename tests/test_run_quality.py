"""benchmarks/run_quality.py --reuse (a reused model keeps the training time measured when it was trained) and the
shared table writer of nnunet_scribble.benchmarking."""
from __future__ import annotations

import json
import math

import torch
from nnunet_helpers import load_benchmark

from nnunet_scribble import benchmarking as bm


def _module():
    return load_benchmark("run_quality")


def test_previous_train_seconds_same_model_only(tmp_path):
    rq = _module()
    fold = tmp_path / "res" / "T__P__2d" / "fold_0"
    summary = tmp_path / "summary_T.json"
    assert math.isnan(rq._previous_train_seconds(summary, fold)[0])  # nothing recorded yet
    summary.write_text(json.dumps({"train_seconds": 620.5, "model_folder": str(fold)}))
    assert rq._previous_train_seconds(summary, fold) == (620.5, "previous summary")
    # older summaries without model_folder: the validation folder inside the model's fold folder identifies it
    summary.write_text(json.dumps({"train_seconds": 99.0, "prediction_folder": str(fold / "validation")}))
    assert rq._previous_train_seconds(summary, fold)[0] == 99.0
    # a time that was itself read from the checkpoint stays marked as such
    summary.write_text(json.dumps({"train_seconds": 80.0, "model_folder": str(fold),
                                   "train_seconds_source": bm.TRAIN_TIME_FROM_CHECKPOINT}))
    assert rq._previous_train_seconds(summary, fold) == (80.0, bm.TRAIN_TIME_FROM_CHECKPOINT)
    # a summary written for another model (e.g. another nnUNet_results) does not lend its time
    summary.write_text(json.dumps({"train_seconds": 99.0, "model_folder": str(tmp_path / "other" / "fold_0")}))
    assert math.isnan(rq._previous_train_seconds(summary, fold)[0])
    summary.write_text("{not json")
    assert math.isnan(rq._previous_train_seconds(summary, fold)[0])


def test_checkpoint_train_seconds_is_the_span_of_the_logged_epochs(tmp_path):
    """A reused model without an earlier summary: first epoch start to last epoch end of checkpoint_final.pth."""
    rq = _module()
    fold = tmp_path / "fold_0"
    assert rq._read_checkpoint(fold) is None  # no checkpoint
    assert math.isnan(rq._checkpoint_train_seconds(None))
    fold.mkdir()
    torch.save({"logging": {"epoch_start_timestamps": [100.0, 112.5, 130.0],
                            "epoch_end_timestamps": [112.0, 129.0, 141.25]}}, fold / "checkpoint_final.pth")
    assert rq._checkpoint_train_seconds(rq._read_checkpoint(fold)) == 41.25  # 141.25 - 100.0, gaps included
    assert math.isnan(rq._checkpoint_train_seconds({"network_weights": {}}))  # no logger state
    (fold / "checkpoint_final.pth").write_bytes(b"truncated")
    assert rq._read_checkpoint(fold) is None


def test_checkpoint_time_is_marked_as_a_lower_bound_in_the_table():
    def result(seconds, source):
        cls = {"Dice": {"mean": 0.8, "std": 0.1}, "HD95": {"mean": 5.0, "std": 1.0}}
        summary = {"cases": ["a"], "per_class": {"LV": cls}, "mean": cls, "train_seconds_source": source}
        return bm.TrainerResult("T", summary, seconds, float("nan"), "D")

    assert bm.results_rows([result(620.4, "measured")], None)[0]["train s"] == "620"
    assert bm.results_rows([result(821.2, bm.TRAIN_TIME_FROM_CHECKPOINT)], None)[0]["train s"] == ">=821"
    assert bm.results_rows([result(float("nan"), "previous summary")], None)[0]["train s"] == "nan"


def test_reused_model_trained_before_a_default_changed_is_reported(tmp_path):
    """A MaCo checkpoint from before ``con_normalisation`` existed, reused under the cpu preset's schedule."""
    from nnunet_scribble.trainers import hparams as hp
    from nnunet_scribble.trainers import nnUNetTrainerMaCo
    from nnunet_scribble.trainers.common import CHECKPOINT_KEY

    rq = _module()
    fold = tmp_path / "fold_0"
    fold.mkdir()
    schedule = {"num_epochs": 50, "test_time_mirroring": False}
    recorded = {**hp.class_hyperparameters(nnUNetTrainerMaCo), **schedule}
    torch.save({CHECKPOINT_KEY: {"hyperparameters": recorded}}, fold / "checkpoint_final.pth")
    assert rq._reused_model_differences(rq._read_checkpoint(fold), "nnUNetTrainerMaCo", schedule) == {}
    del recorded["con_normalisation"]
    checkpoint = {CHECKPOINT_KEY: {"hyperparameters": recorded}}
    assert rq._reused_model_differences(checkpoint, "nnUNetTrainerMaCo", schedule) == {
        "con_normalisation": (hp.NOT_RECORDED, "voxel")}
    assert hp.format_differences({"con_normalisation": (hp.NOT_RECORDED, "voxel")}) == \
        hp.format_differences({"con_normalisation": {"checkpoint": hp.NOT_RECORDED, "now": "voxel"}}) == \
        "con_normalisation '<not recorded>' -> 'voxel'"
    # not one of this package's trainers, or no readable checkpoint
    assert rq._reused_model_differences({"network_weights": {}}, "nnUNetTrainerMaCo", schedule) == {}
    assert rq._reused_model_differences(None, "nnUNetTrainerMaCo", schedule) == {}


def test_print_and_save_appends_the_suffixes_to_a_dotted_name(tmp_path, capsys):
    from nnunet_scribble.benchmarking import print_and_save

    print_and_save("| a |\n", {"x": 1}, tmp_path / "off1.0_MedCL")
    print_and_save("| b |\n", {"x": 2}, tmp_path / "off0.5_MedCL")
    print_and_save("| c |\n", {"x": 3}, tmp_path / "sub" / "plain.md")
    assert capsys.readouterr().out == "| a |\n| b |\n| c |\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["off0.5_MedCL.json", "off0.5_MedCL.md", "off1.0_MedCL.json",
                                                          "off1.0_MedCL.md", "sub"]
    assert (tmp_path / "off1.0_MedCL.md").read_text() == "| a |\n"
    assert json.loads((tmp_path / "off0.5_MedCL.json").read_text()) == {"x": 2}
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["plain.json", "plain.md"]
