"""Preprocess a dataset derived from another one (same images, other labels) with the source's plans.

A derived dataset (a degraded or simulated scribble version, a dense twin) must be preprocessed with *identical*
plans to its source, or a comparison between them would also compare planning decisions (spacing, patch size,
network) that nnU-Net makes from each dataset's fingerprint. So nnU-Net's planner is not run on it: the source's
``nnUNetPlans.json`` is copied with ``dataset_name`` changed, then ``nnUNetv2_extract_fingerprint`` and
``nnUNetv2_preprocess -plans_name nnUNetPlans`` run with one process each.

:func:`copy_plans` is the plans copy of :func:`nnunet_scribble.benchmarking.make_dense_twin`;
:func:`preprocess_like_source` adds the commands and checks used by ``benchmarks/run_robustness.py``.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Sequence

from nnunet_scribble import pipeline


def copy_plans(source_preprocessed: str | os.PathLike, target_preprocessed: str | os.PathLike, target_name: str,
               plans_name: str = "nnUNetPlans") -> Path:
    """Write the source's ``<plans_name>.json`` into ``target_preprocessed`` with ``dataset_name`` = ``target_name``.

    Args:
        source_preprocessed: ``nnUNet_preprocessed/<source>``.
        target_preprocessed: ``nnUNet_preprocessed/<target>`` (created if missing).
        target_name: the target's folder name ``DatasetXXX_Name``.
        plans_name: plans identifier.

    Returns:
        The written plans file.

    Raises:
        FileNotFoundError: if the source has no such plans file.
    """
    src = Path(source_preprocessed) / f"{plans_name}.json"
    if not src.is_file():
        raise FileNotFoundError(f"{src} not found: plan and preprocess the source dataset first")
    plans = json.loads(src.read_text())
    plans["dataset_name"] = target_name
    dst = Path(target_preprocessed) / f"{plans_name}.json"
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_text(json.dumps(plans, indent=2))
    return dst


def same_plans(a: dict, b: dict) -> bool:
    """True if two plans are equal apart from ``dataset_name``."""
    return {k: v for k, v in a.items() if k != "dataset_name"} == {k: v for k, v in b.items() if k != "dataset_name"}


def is_preprocessed(data_folder: str | os.PathLike, cases: Sequence[str]) -> bool:
    """True if ``data_folder`` (``nnUNet_preprocessed/<dataset>/<data_identifier>``) holds every case.

    nnU-Net writes a case's ``<case>.pkl`` after its data, so a complete ``.pkl`` set means a finished run.
    """
    folder = Path(data_folder)
    return folder.is_dir() and all((folder / f"{c}.pkl").is_file() for c in cases)


def preprocess_like_source(source_preprocessed: str | os.PathLike, target_raw: str | os.PathLike, target_id: int,
                           preprocessed_root: str | os.PathLike, env: dict, configuration: str, cases: Sequence[str],
                           log_file: str | os.PathLike | None = None, plans_name: str = "nnUNetPlans") -> Path:
    """Preprocess ``target_raw`` with the source's plans (once); return ``nnUNet_preprocessed/<target>``.

    Copies the plans (:func:`copy_plans`) and ``dataset.json`` (normally written by nnU-Net's planner), then runs
    ``nnUNetv2_extract_fingerprint -d ID -np 1`` and ``nnUNetv2_preprocess -d ID -plans_name P -c C -np 1`` unless
    every case of ``cases`` is already preprocessed. ``splits_final.json`` is not touched.

    Args:
        source_preprocessed: ``nnUNet_preprocessed/<source>`` with the plans to copy.
        target_raw: raw folder ``DatasetXXX_Name`` of the derived dataset.
        target_id: its ID.
        preprocessed_root: ``nnUNet_preprocessed``.
        env: environment of the commands (nnU-Net folders set).
        configuration: the configuration to preprocess, e.g. ``2d``.
        cases: the training case identifiers that must end up preprocessed.
        log_file: where the commands' output is appended.
        plans_name: plans identifier.

    Raises:
        ValueError: if the target already has plans that differ from the source's (other than ``dataset_name``):
            its preprocessed data would not be comparable; the message names both files.
        RuntimeError: if a command fails.
    """
    target_raw = Path(target_raw)
    target_pre = Path(preprocessed_root) / target_raw.name
    src_plans_file = Path(source_preprocessed) / f"{plans_name}.json"
    dst_plans_file = target_pre / f"{plans_name}.json"
    if dst_plans_file.is_file():
        if not same_plans(json.loads(dst_plans_file.read_text()), json.loads(src_plans_file.read_text())):
            raise ValueError(f"{dst_plans_file} differs from {src_plans_file} (apart from dataset_name); expected "
                             f"identical plans. Delete {target_pre} to preprocess it again with the source's plans")
    else:
        copy_plans(source_preprocessed, target_pre, target_raw.name, plans_name)
    shutil.copyfile(target_raw / "dataset.json", target_pre / "dataset.json")
    config = json.loads(dst_plans_file.read_text())["configurations"].get(configuration)
    if config is None:
        raise ValueError(f"{dst_plans_file} has no configuration {configuration!r}")
    data_id = config.get("data_identifier", f"{plans_name}_{configuration}")
    if not is_preprocessed(target_pre / data_id, cases):
        pipeline.run_command([pipeline.console_script("nnUNetv2_extract_fingerprint"), "-d", str(target_id),
                              "-np", "1"], env, log_file)
        pipeline.run_command([pipeline.console_script("nnUNetv2_preprocess"), "-d", str(target_id), "-plans_name",
                              plans_name, "-c", configuration, "-np", "1"], env, log_file)
    if not is_preprocessed(target_pre / data_id, cases):
        raise RuntimeError(f"{target_pre / data_id} lacks preprocessed cases after nnUNetv2_preprocess; expected "
                           f"one .pkl per training case of {target_raw}")
    return target_pre
