"""The cost table of benchmarks/bench_train_step.py: ratios and the data-pipeline columns, on hand-made numbers."""
from __future__ import annotations

import math

from nnunet_helpers import load_benchmark


def _module():
    return load_benchmark("bench_train_step")


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


def test_stand_in_pseudo_labels_spread_each_scribble_to_its_nearest_voxels(tmp_path):
    """CSPNet's data pipeline is timed without stage 1: every voxel takes its nearest scribble's label."""
    import types

    import numpy as np

    from nnunet_scribble.cspnet import stage1

    cases = {"a": np.array([[[[1, 4, 4, 2, 2, 4]]]], dtype=np.int16),  # ignore label 4
             "b": np.full((1, 1, 1, 3), 4, dtype=np.int16),  # nothing annotated: background
             "c": np.array([[[[0, 4, 3]]]], dtype=np.int16)}  # not a training case: no file

    class NumpyDataset:  # the loader's interface: load_case(key) -> (data, seg, seg_prev, properties)
        def __init__(self, folder):
            self.folder = folder

        def load_case(self, key):
            return None, cases[key], None, {}

    trainer = types.SimpleNamespace(dataset_class=NumpyDataset, preprocessed_dataset_folder=str(tmp_path),
                                    label_manager=types.SimpleNamespace(ignore_label=4),
                                    do_split=lambda: (["a", "b"], ["c"]))
    folder = tmp_path / "pseudo"
    _module().write_stand_in_pseudo_labels(trainer, str(folder))
    assert sorted(p.name for p in folder.iterdir()) == ["a.npy", "b.npy"]
    a = stage1.load_label(str(folder / "a"), NumpyDataset)
    assert a.shape == (1, 1, 6) and a.dtype == np.int8  # no channel axis, int8: as stage 1 writes them
    assert a.ravel().tolist() == [1, 1, 2, 2, 2, 2]
    assert stage1.load_label(str(folder / "b"), NumpyDataset).ravel().tolist() == [0, 0, 0]


def test_profile_excess_over_the_flop_ratio_by_hand():
    bench = _module()
    ref = {"ops_ms": {"conv": 10.0, "add": 1.0}, "kernels_ms": {"k1": 8.0}, "busy_ms": 8.0}
    own = {"ops_ms": {"conv": 20.0, "add": 5.0, "softmax": 2.0}, "kernels_ms": {"k1": 20.0}, "busy_ms": 20.0}
    rows = bench.excess_over_flops(own, ref, 2.0, "ops_ms")
    assert rows == [("add", 1.0, 5.0, 3.0), ("softmax", 0.0, 2.0, 2.0), ("conv", 10.0, 20.0, 0.0)]
    results = {"nnUNetTrainer": [{"profile": ref}], "X": [{"profile": own}]}
    summary = {"nnUNetTrainer": {"gflops": 1.0}, "X": {"gflops": 2.0}}
    text = bench.format_profile(results, summary, cuda=True)
    assert "X: GPU busy 20.0 ms per step against 8.0 (2.50 ×), +4.0 ms beyond its FLOP ratio 2.00:" in text
    assert "| add | 1.00 | 5.00 | +3.00 |" in text and "| k1 | 8.00 | 20.00 | +4.00 |" in text
    summary["X"]["gflops"] = summary["nnUNetTrainer"]["gflops"] = float("nan")  # --no_flops: against the reference
    assert "+12.0 ms beyond the reference:" in bench.format_profile(results, summary, cuda=True)


def test_profile_of_real_steps_on_cpu(make_trainer):
    import torch

    from nnunet_scribble.trainers.nnUNetTrainerScribble import nnUNetTrainerScribble

    bench = _module()
    trainer = make_trainer(nnUNetTrainerScribble)
    batch = bench.synthetic_batch(trainer, 0.2)
    prof = bench.profile_steps(trainer, batch, 2, torch.device("cpu"))
    assert prof["kernels_ms"] == {} and prof["busy_ms"] == sum(prof["ops_ms"].values()) > 0
    assert any("conv" in name for name in prof["ops_ms"])  # the network's convolutions are in the table
