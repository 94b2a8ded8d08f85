"""The cost table of benchmarks/bench_train_step.py: ratios and the data-pipeline columns, on hand-made numbers."""
from __future__ import annotations

import importlib.util
import math
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_train_step.py"


def _module():
    spec = importlib.util.spec_from_file_location("bench_train_step", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(step_s, data_s, peak=100.0, inference=1.0, flops=2e9):
    return {"step_s": step_s, "data_s": data_s, "peak_mib": peak, "inference_s": [inference], "flops": flops,
            "parameters": 10, "batch_size": 4}


def test_summary_and_table_ratios_and_data_procs():
    bench = _module()
    summary = bench.summarise({
        "nnUNetTrainer": [_run([0.10, 0.30, 0.20], [0.05]), _run([0.20], [0.07])],
        "X": [_run([0.50], [0.90, 0.90, 0.10], peak=150.0, inference=1.02, flops=3e9)],
    })
    assert summary["nnUNetTrainer"]["step_ms"] == 200.0  # median of all timed steps 0.1 0.3 0.2 0.2
    assert abs(summary["nnUNetTrainer"]["data_ms"] - 60.0) < 1e-9  # median of 0.05, 0.07
    table = bench.format_table(summary).splitlines()
    ref, x = (row.split("|")[1:-1] for row in table[2:])
    assert [c.strip() for c in ref[-3:]] == ["15.0", "0.30", "1"]  # 60 ms / 4 samples; 60/200; ceil(0.3) -> 1
    assert [c.strip() for c in x[3:6]] == ["1.50", "500.0", "2.50"]  # FLOPs and step-time ratios
    assert [c.strip() for c in x[-3:]] == ["225.0", "1.80", "2"]  # 900 ms / 4; 900/500; ceil(1.8) = 2 DA processes
    assert x[7].strip() == "1.50" and x[9].strip() == "1.020"  # memory and inference ratios


def test_table_without_data_measurement():
    bench = _module()
    summary = bench.summarise({"nnUNetTrainer": [_run([0.2], [])]})
    assert bench.format_table(summary).splitlines()[2].split("|")[-2].strip() == "-"


def test_synthetic_batch_carries_the_pipeline_channels_so_the_step_never_computes_maps(make_trainer, monkeypatch):
    """MaCo and CSPNet get their distance maps from the augmentation workers in training; the benchmark's batch must
    carry them too, or their CPU fallback inside ``train_step`` is timed as step time (seen on a GPU: 15x, 11x)."""
    from nnunet_scribble.trainers.nnUNetTrainerCSPNet import nnUNetTrainerCSPNet
    from nnunet_scribble.trainers.nnUNetTrainerMaCo import nnUNetTrainerMaCo
    from nnunet_scribble.trainers.nnUNetTrainerScribble import nnUNetTrainerScribble

    bench = _module()
    for cls, channels, fallback in ((nnUNetTrainerScribble, 1, None),
                                    (nnUNetTrainerMaCo, 1 + 4, "_distances_from_labels"),  # + one map per class
                                    (nnUNetTrainerCSPNet, 4, "_maps_from_labels")):  # scribble, pseudo, d_s, d_c
        trainer = make_trainer(cls)
        batch = bench.synthetic_batch(trainer, annotated=0.2)
        assert [t.shape[1] for t in batch["target"]] == [channels] * len(batch["target"]), cls.__name__
        full = batch["target"][0]
        assert tuple(full.shape[2:]) == tuple(trainer.configuration_manager.patch_size)
        if fallback is not None:
            def refuse(*args, **kwargs):
                raise AssertionError(f"{cls.__name__} computed its maps inside train_step")

            monkeypatch.setattr(cls, fallback, refuse)
        out = trainer.train_step(batch)
        assert math.isfinite(float(out["loss"]))
