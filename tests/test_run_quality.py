"""benchmarks/run_quality.py --reuse: a reused model keeps the training time measured when it was trained."""
from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "run_quality.py"


def _module():
    spec = importlib.util.spec_from_file_location("run_quality", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_previous_train_seconds_same_model_only(tmp_path):
    rq = _module()
    fold = tmp_path / "res" / "T__P__2d" / "fold_0"
    summary = tmp_path / "summary_T.json"
    assert math.isnan(rq._previous_train_seconds(summary, fold))  # nothing recorded yet
    summary.write_text(json.dumps({"train_seconds": 620.5, "model_folder": str(fold)}))
    assert rq._previous_train_seconds(summary, fold) == 620.5
    # older summaries without model_folder: the validation folder inside the model's fold folder identifies it
    summary.write_text(json.dumps({"train_seconds": 99.0, "prediction_folder": str(fold / "validation")}))
    assert rq._previous_train_seconds(summary, fold) == 99.0
    # a summary written for another model (e.g. another nnUNet_results) does not lend its time
    summary.write_text(json.dumps({"train_seconds": 99.0, "model_folder": str(tmp_path / "other" / "fold_0")}))
    assert math.isnan(rq._previous_train_seconds(summary, fold))
    summary.write_text("{not json")
    assert math.isnan(rq._previous_train_seconds(summary, fold))
