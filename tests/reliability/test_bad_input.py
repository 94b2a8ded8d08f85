"""Bad input gets a clear error before expensive work (issue 9; the table is docs/reliability.md)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from nnunet_helpers import DATASET_JSON, tiny_plans
from nnunetv2.training.dataloading.nnunet_dataset import nnUNetDatasetBlosc2

import nnunet_scribble.trainers as trainers
from nnunet_scribble.cspnet import stage1

METHODS = ["nnUNetTrainerDMPLS", "nnUNetTrainerMaCo", "nnUNetTrainerPCLMix", "nnUNetTrainerMedCL",
           "nnUNetTrainerCSPNet"]
REGIONS = {"channel_names": {"0": "MRI"}, "file_ending": ".nii.gz", "numTraining": 4, "regions_class_order": [1, 2],
           "labels": {"background": 0, "whole": [1, 2], "core": 2, "ignore": 3}}


@pytest.mark.parametrize("name", METHODS)
def test_method_trainers_refuse_region_datasets_before_writing(nnunet_dirs, name):
    with pytest.raises(ValueError, match=r"declares regions .* needs mutually exclusive classes"):
        getattr(trainers, name)(tiny_plans(2), "2d", 0, dict(REGIONS), torch.device("cpu"))
    assert not any(nnunet_dirs["nnUNet_results"].iterdir())  # no output folder, no log


def test_baseline_accepts_region_datasets(make_trainer):
    trainer = make_trainer(trainers.nnUNetTrainerScribble, dataset_json=REGIONS, initialize=False)
    assert trainer.label_manager.has_regions


@pytest.fixture
def pseudo_folder(tmp_path):
    """A preprocessed folder with two cases' scribbles and a complete pseudo-label folder for them."""
    pre, folder = tmp_path / "nnUNetPlans_2d", tmp_path / "pseudo"
    pre.mkdir()
    folder.mkdir()
    for case in ("a", "b"):
        stage1.save_label(str(pre / f"{case}_seg"), np.zeros((1, 3, 16, 12)), nnUNetDatasetBlosc2)
        stage1.save_label(str(folder / case), np.ones((3, 16, 12)), nnUNetDatasetBlosc2)  # no channel axis
    (folder / stage1.MANIFEST).write_text(json.dumps({"source": "segmentation"}))
    return pre, folder


def test_complete_pseudo_label_folder_passes(pseudo_folder):
    pre, folder = pseudo_folder
    assert stage1.check_folder(str(folder), ["a", "b"], nnUNetDatasetBlosc2, str(pre))["source"] == "segmentation"


def test_pseudo_label_of_other_shape_is_named(pseudo_folder):
    pre, folder = pseudo_folder
    stage1.save_label(str(folder / "b"), np.ones((3, 16, 10)), nnUNetDatasetBlosc2)
    with pytest.raises(RuntimeError, match=r"b\.b2nd has shape \(3, 16, 10\), expected \(3, 16, 12\)"):
        stage1.check_folder(str(folder), ["a", "b"], nnUNetDatasetBlosc2, str(pre))


def test_truncated_pseudo_label_is_named(pseudo_folder):
    pre, folder = pseudo_folder
    data = (folder / "a.b2nd").read_bytes()
    (folder / "a.b2nd").write_bytes(data[: len(data) // 2])
    with pytest.raises(RuntimeError, match=r"cannot read the pseudo label .*a\.b2nd"):
        stage1.check_folder(str(folder), ["a", "b"], nnUNetDatasetBlosc2, str(pre))


def test_corrupt_manifest_is_named(pseudo_folder):
    pre, folder = pseudo_folder
    (folder / stage1.MANIFEST).write_text("{not json")
    with pytest.raises(RuntimeError, match=r"pseudo_labels\.json is not valid JSON"):
        stage1.check_folder(str(folder), ["a", "b"], nnUNetDatasetBlosc2, str(pre))


def test_missing_case_is_named(pseudo_folder):
    pre, folder = pseudo_folder
    with pytest.raises(RuntimeError, match=r"lacks pseudo labels \(\.b2nd\) for 1 training case\(s\), e.g. \['c'\]"):
        stage1.check_folder(str(folder), ["a", "b", "c"], nnUNetDatasetBlosc2, str(pre))


def test_dataset_without_ignore_label_names_the_file_and_the_fix(nnunet_dirs):
    dense = dict(DATASET_JSON, labels={"background": 0, "RV": 1, "MYO": 2, "LV": 3})
    with pytest.raises(ValueError, match=r"Dataset999_Tiny/dataset.json declares no ignore label.*\"ignore\": 4"):
        trainers.nnUNetTrainerMaCo(tiny_plans(2), "2d", 0, dense, torch.device("cpu"))
