"""CSPNet through nnU-Net's commands: stage 1 when pseudo labels are missing, reuse, resume, user labels, errors."""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from nnunet_scribble import pipeline
from nnunet_scribble.cspnet import stage1
from nnunet_scribble.data.synthetic import generate_synthetic_dataset

PRESET = pipeline.Preset("csp", max_stages=4, base_features=8, max_features=32, max_patch_2d=48, max_batch_size=2,
                         schedule={"num_epochs": 1, "num_iterations_per_epoch": 5, "num_val_iterations_per_epoch": 1,
                                   "stage1_fraction": 0.4, "test_time_mirroring": False})
TRAINER = "nnUNetTrainerCSPNet"
DATASET_ID = 953


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("cspnet")
    raw, pre, res = (root / n for n in ("raw", "preprocessed", "results"))
    for d in (raw, pre, res):
        d.mkdir()
    env = pipeline.nnunet_env(raw, pre, res)
    ds = generate_synthetic_dataset(raw, dataset_id=DATASET_ID, dim=2, num_train=6, num_test=2, seed=3,
                                    progress=False)
    pipeline.plan_and_preprocess(DATASET_ID, ["2d"], env)
    plans_id = pipeline.write_preset_plans(pre / ds.name, PRESET)
    return {"root": root, "raw": ds, "pre": pre / ds.name, "res": res, "env": env, "plans": plans_id}


def _train(dataset, extra_args=(), schedule=None, fold=0):
    log = dataset["root"] / f"train_{len(list(dataset['root'].glob('train_*.log')))}.log"
    pipeline.train(DATASET_ID, "2d", fold, TRAINER, dataset["plans"], dataset["env"],
                   {**PRESET.schedule, **(schedule or {})}, extra_args=extra_args, log_file=log)
    return log.read_text()


def _folder(dataset, fold=0, suffix="") -> Path:
    return dataset["pre"] / "cspnet_pseudo_labels" / f"{dataset['plans']}__2d__fold_{fold}{suffix}"


def _tr_keys(dataset, fold=0):
    return json.loads((dataset["pre"] / "splits_final.json").read_text())[fold]["train"]


@pytest.mark.slow
def test_stage1_writes_pseudo_labels_then_stage2_trains_predicts_and_reuses_them(dataset, tmp_path):
    log = _train(dataset)
    folder = _folder(dataset)
    manifest = json.loads((folder / stage1.MANIFEST).read_text())
    keys = _tr_keys(dataset)
    assert manifest["source"] == "stage1" and sorted(manifest["cases"]) == sorted(keys)
    assert manifest["pseudo_label_source"] == "segmentation" and "dice_vs_dense" in manifest
    assert "CSPNet stage 1: iteration 2/2" in log and f"pseudo labels (segmentation) of {len(keys)} cases" in log
    assert "loss terms: segs" in log and "lorm" in log and "CSPNet pseudo labels against dense labels" in log
    # one int8 map per training case on the preprocessed grid, classes 0..3 (and the ignore label 4 where there is
    # none, also outside the crop mask, where the scribble map holds -1)
    from nnunetv2.training.dataloading.nnunet_dataset import nnUNetDatasetBlosc2
    data = nnUNetDatasetBlosc2(str(dataset["pre"] / "nnUNetPlans_2d"), keys)  # the preset plans reuse these data
    for key in keys:
        label = stage1.load_label(str(folder / key), nnUNetDatasetBlosc2)
        seg = np.asarray(data.load_case(key)[1][:])
        assert label.shape == seg.shape[1:] and set(np.unique(label)) <= {0, 1, 2, 3, 4}
        assert (label[seg[0] < 0] == 4).all() and manifest["outside_crop"] == "ignore"
        annotated = (seg[0] >= 0) & (seg[0] < 4)
        assert (label[annotated] == seg[0][annotated]).all()  # scribbles override the CAM labels
    fold = dataset["res"] / dataset["raw"].name / f"{TRAINER}__{dataset['plans']}__2d" / "fold_0"
    assert (fold / "checkpoint_final.pth").is_file() and (fold / "cspnet_stage1" / "checkpoint_stage1.pth").is_file()

    pipeline.predict(dataset["raw"] / "imagesTs", tmp_path / "pred", DATASET_ID, "2d", 0, TRAINER,
                     dataset["plans"], dataset["env"])
    assert len(list((tmp_path / "pred").glob("*.nii.gz"))) == 2

    # benchmarks/term_gradients.py draws stage-2 batches (pseudo labels as the loader's second channel) without
    # on_train_start: prepare_training_data reuses the fold's pseudo labels, so every stage-2 term is measured
    script = Path(__file__).resolve().parents[2] / "benchmarks" / "term_gradients.py"
    logs = sorted(fold.glob("training_log_*.txt"))
    pipeline.run_command([sys.executable, script, "-d", DATASET_ID, "-c", "2d", "-f", "0", "-tr", TRAINER,
                          "-p", dataset["plans"], "--batches", "1"], dataset["env"], log_file=tmp_path / "tg.log")
    rows = [line.split(" | ")[0] for line in (tmp_path / "tg.log").read_text().splitlines() if " | " in line]
    assert {"segs", "segc", "lorm", "ds", "dc", "total"} <= set(rows)
    assert sorted(fold.glob("training_log_*.txt")) == logs  # the model folder keeps its training's logs only

    stamp = (folder / stage1.MANIFEST).stat().st_mtime
    log = _train(dataset)  # a new training of the same fold reuses them
    assert "reusing pseudo labels" in log and "CSPNet stage 1: training" not in log
    assert (folder / stage1.MANIFEST).stat().st_mtime == stamp


@pytest.mark.slow
def test_interrupted_stage1_resumes_from_its_checkpoint_cam_labels(dataset):
    folder = _folder(dataset, fold=1, suffix="__cam")
    cam = {"pseudo_label_source": "cam"}
    log = _train(dataset, fold=1, schedule=cam)
    manifest = json.loads((folder / stage1.MANIFEST).read_text())
    assert manifest["pseudo_label_source"] == "cam" and 0 < manifest["threshold"] < 1
    assert "CAM threshold" in log
    # a kill after stage 1's last checkpoint but before the folder was committed: only the tmp folder is left
    shutil.move(str(folder), str(folder) + ".tmp-12345")
    log = _train(dataset, extra_args=["--c"], fold=1, schedule=cam)
    assert "resuming from" in log and "at iteration 2/2" in log
    assert (folder / stage1.MANIFEST).is_file() and not Path(str(folder) + ".tmp-12345").exists()
    # other stage-1 settings: their own folder, and the finished checkpoint of the plain loss is not resumed
    balanced = {**cam, "stage1_class_balanced": True}
    log = _train(dataset, fold=1, schedule=balanced)
    assert "training stage 1 afresh" in log and "resuming from" not in log and "class-balanced pCE True" in log
    manifest = json.loads((_folder(dataset, fold=1, suffix="__cam__balanced") / stage1.MANIFEST).read_text())
    assert manifest["stage1_class_balanced"] is True


@pytest.mark.slow
def test_user_pseudo_labels_are_preprocessed_onto_the_scribble_grid(dataset):
    user = dataset["raw"] / "labelsTr_dense"
    log = _train(dataset, schedule={"pseudo_labels_raw": str(user)}, fold=2)
    key = f"{stage1.user_folder_key(str(user))}__{dataset['plans']}__2d"
    folder = dataset["pre"] / "cspnet_pseudo_labels" / key
    manifest = json.loads((folder / stage1.MANIFEST).read_text())
    assert manifest["source"] == f"user:{user}" and "imported" in log and "CSPNet stage 1: training" not in log
    from nnunetv2.training.dataloading.nnunet_dataset import nnUNetDatasetBlosc2
    keys = _tr_keys(dataset, 2)
    data = nnUNetDatasetBlosc2(str(dataset["pre"] / "nnUNetPlans_2d"), keys)
    for k in keys:
        seg = np.asarray(data.load_case(k)[1][:])[0]
        label = stage1.load_label(str(folder / k), nnUNetDatasetBlosc2)
        annotated = (seg >= 0) & (seg < 4)
        assert (label[annotated] == seg[annotated]).mean() > 0.99  # dense labels agree with their scribbles
        assert label.min() >= 0 and (label[seg < 0] == 4).all()  # nnU-Net's -1 outside the crop becomes ignore
    assert manifest["outside_crop"] == "ignore"


def _in_process_trainer(dataset, monkeypatch, **hparams):
    from nnunet_scribble.trainers import nnUNetTrainerCSPNet

    monkeypatch.setenv("nnUNet_raw", str(dataset["raw"].parent))
    monkeypatch.setenv("nnUNet_preprocessed", str(dataset["pre"].parent))
    monkeypatch.setenv("nnUNet_results", str(dataset["res"]))
    monkeypatch.setenv("nnUNet_scribble_hparams", json.dumps(hparams))
    plans = json.loads((dataset["pre"] / f"{dataset['plans']}.json").read_text())
    plans["continue_training"] = False  # nnUNetv2_train adds this key (nnU-Net 2.8.1 pops it)
    dataset_json = json.loads((dataset["pre"] / "dataset.json").read_text())
    return nnUNetTrainerCSPNet(plans, "2d", 3, dataset_json, torch.device("cpu"))


@pytest.mark.slow
def test_bad_pseudo_label_folders_get_clear_errors(dataset, monkeypatch, tmp_path):
    user = tmp_path / "mine"
    user.mkdir()
    trainer = _in_process_trainer(dataset, monkeypatch, pseudo_labels_raw=str(user))
    with pytest.raises(FileNotFoundError, match="has no pseudo label for"):
        trainer.on_train_start()
    trainer = _in_process_trainer(dataset, monkeypatch, pseudo_labels_raw=str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        trainer.on_train_start()
    # a label with a value that is not a class
    ending = ".nii.gz"
    for f in (dataset["raw"] / "labelsTr_dense").glob("*" + ending):
        shutil.copy(f, user / f.name)
    import SimpleITK as sitk
    first = user / (_tr_keys(dataset, 3)[0] + ending)  # a training case of the fold
    img = sitk.ReadImage(str(first))
    arr = sitk.GetArrayFromImage(img)
    arr.flat[0] = 7
    out = sitk.GetImageFromArray(arr)
    out.CopyInformation(img)
    sitk.WriteImage(out, str(first))
    trainer = _in_process_trainer(dataset, monkeypatch, pseudo_labels_raw=str(user))
    with pytest.raises(ValueError, match=r"values \[7\] are not classes"):
        trainer.on_train_start()
    # nothing half-written: neither the folder nor its temporary twin exists
    assert not list((dataset["pre"] / "cspnet_pseudo_labels").glob(stage1.user_folder_key(str(user)) + "*"))
    # a folder without manifest (e.g. copied by hand) is refused, not silently used
    trainer = _in_process_trainer(dataset, monkeypatch)
    folder = _folder(dataset, fold=3)
    folder.mkdir(parents=True)
    with pytest.raises(RuntimeError, match="not a complete pseudo-label folder"):
        trainer.on_train_start()
    shutil.rmtree(folder)


@pytest.mark.slow
def test_pseudo_labels_are_scored_on_the_cases_with_dense_labels_only(dataset):
    """MSCMRseg's labelsTr_dense holds only the held-out subjects: stage 1 scores what it can instead of failing."""
    dense = dataset["raw"] / "labelsTr_dense"
    keys = _tr_keys(dataset, 4)
    aside = dataset["root"] / "dense_aside"
    aside.mkdir()
    try:
        for key in keys[1:]:
            shutil.move(str(dense / f"{key}.nii.gz"), str(aside / f"{key}.nii.gz"))
        log = _train(dataset, fold=4)
    finally:
        for f in aside.iterdir():
            shutil.move(str(f), str(dense / f.name))
    manifest = json.loads((_folder(dataset, fold=4) / stage1.MANIFEST).read_text())
    assert manifest["dice_vs_dense"]["cases"] == 1 and len(manifest["cases"]) == len(keys)
    assert f"labelsTr_dense, 1 of {len(keys)} cases, the others have no dense label" in log
