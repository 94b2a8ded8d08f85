"""Plain helpers of the trainer tests: a tiny plans dict, a dataset.json, synthetic batches."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import torch

DATASET_JSON = {"channel_names": {"0": "MRI"}, "labels": {"background": 0, "RV": 1, "MYO": 2, "LV": 3, "ignore": 4},
                "numTraining": 4, "file_ending": ".nii.gz"}


def tiny_plans(dim: int = 2, dataset_name: str = "Dataset999_Tiny") -> dict:
    """A plans dict with one small configuration ('2d' or '3d_fullres'), 3 stages, 8-32 features."""
    conv = "torch.nn.modules.conv.Conv2d" if dim == 2 else "torch.nn.modules.conv.Conv3d"
    norm = f"torch.nn.modules.instancenorm.InstanceNorm{dim}d"
    patch = [32, 32] if dim == 2 else [8, 32, 32]
    k = [3] * dim
    strides = [[1] * dim, [2] * dim, [2] * dim] if dim == 2 else [[1, 1, 1], [1, 2, 2], [2, 2, 2]]
    name = "2d" if dim == 2 else "3d_fullres"
    return {
        "dataset_name": dataset_name, "plans_name": "nnUNetPlans", "continue_training": False,
        "original_median_spacing_after_transp": [1.0, 1.0, 1.0], "original_median_shape_after_transp": [1, 32, 32],
        "image_reader_writer": "SimpleITKIO", "transpose_forward": [0, 1, 2], "transpose_backward": [0, 1, 2],
        "experiment_planner_used": "ExperimentPlanner", "label_manager": "LabelManager",
        "foreground_intensity_properties_per_channel": {"0": {"max": 1.0, "mean": 0.0, "median": 0.0, "min": 0.0,
                                                              "percentile_00_5": 0.0, "percentile_99_5": 1.0,
                                                              "std": 1.0}},
        "configurations": {name: {
            "data_identifier": f"nnUNetPlans_{name}", "preprocessor_name": "DefaultPreprocessor", "batch_size": 2,
            "patch_size": patch, "median_image_size_in_voxels": patch, "spacing": [1.0] * dim,
            "normalization_schemes": ["ZScoreNormalization"], "use_mask_for_norm": [False],
            "resampling_fn_data": "resample_data_or_seg_to_shape", "resampling_fn_seg": "resample_data_or_seg_to_shape",
            "resampling_fn_data_kwargs": {"is_seg": False, "order": 3, "order_z": 0, "force_separate_z": None},
            "resampling_fn_seg_kwargs": {"is_seg": True, "order": 1, "order_z": 0, "force_separate_z": None},
            "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
            "resampling_fn_probabilities_kwargs": {"is_seg": False, "order": 1, "order_z": 0,
                                                   "force_separate_z": None},
            "architecture": {
                "network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
                "arch_kwargs": {"n_stages": 3, "features_per_stage": [8, 16, 32], "conv_op": conv,
                                "kernel_sizes": [k] * 3, "strides": strides, "n_conv_per_stage": [1, 1, 1],
                                "n_conv_per_stage_decoder": [1, 1], "conv_bias": True, "norm_op": norm,
                                "norm_op_kwargs": {"eps": 1e-05, "affine": True}, "dropout_op": None,
                                "dropout_op_kwargs": None, "nonlin": "torch.nn.LeakyReLU",
                                "nonlin_kwargs": {"inplace": True}},
                "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"]},
            "batch_dice": True}},
    }


def synthetic_batch(trainer, annotated: float = 0.1, seed: int = 0) -> dict:
    """A batch shaped like nnU-Net's loader output: ``data`` and one target per deep-supervision scale."""
    g = torch.Generator().manual_seed(seed)
    bs = trainer.configuration_manager.batch_size
    patch = trainer.configuration_manager.patch_size
    data = torch.randn((bs, 1, *patch), generator=g)
    seg = torch.randint(0, 4, (bs, 1, *patch), generator=g)
    seg[torch.rand(seg.shape, generator=g) > annotated] = 4
    scales = trainer._get_deep_supervision_scales()
    targets = [torch.nn.functional.interpolate(seg.float(), scale_factor=s, mode="nearest-exact").long()
               for s in scales]
    return {"data": data, "target": targets}


def remove_label_transforms(transform) -> list:
    """Every ``RemoveLabelTransform`` inside a (nested) batchgeneratorsv2 transform pipeline."""
    from batchgeneratorsv2.transforms.utils.remove_label import RemoveLabelTransform

    found, stack = [], [transform]
    while stack:
        x = stack.pop()
        if isinstance(x, RemoveLabelTransform):
            found.append(x)
        stack.extend(getattr(x, "transforms", []) or [])
        if hasattr(x, "transform"):
            stack.append(x.transform)
    return found


def load_benchmark(name: str):
    """The module of ``benchmarks/<name>.py`` (the benchmark scripts are not a package)."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while a class is created
    spec.loader.exec_module(module)
    return module
