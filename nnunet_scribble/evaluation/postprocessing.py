"""Choosing nnU-Net's post-processing for a scribble-trained model.

``nnUNetv2_find_best_configuration`` keeps "only the largest foreground component" (then, class by class, "only the
largest component of class c") where that raises the cross-validation Dice against ``gt_segmentations`` and lowers
no class's Dice. On a scribble dataset that reference is the scribbles, scored on the annotated voxels only, and
background scribbles rarely lie where a model paints islands: removing the islands then changes nothing nnU-Net can
see, and it keeps them (ACDC fold 3 of the benchmarks: the largest component would raise the dense Dice from 51 to
76, nnU-Net on the scribbles keeps nothing).

:func:`background_beyond` adds what scribbles imply but do not draw: a voxel farther than ``beyond_mm`` from every
foreground scribble of its image is background (on ACDC's 160 scribbled volumes no dense foreground voxel lies
farther than 29.9 mm from a foreground scribble). :func:`determine_postprocessing` runs nnU-Net's own
``determine_postprocessing`` against that reference on the merged cross-validation predictions and writes nnU-Net's
``postprocessing.pkl``, which ``nnUNetv2_apply_postprocessing`` applies unchanged. Deviation from nnU-Net: only the
reference differs; the candidates and the decision rule are nnU-Net's.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy import ndimage

#: default distance (mm) beyond which unannotated voxels count as background: ACDC's farthest dense foreground
#: voxel lies 29.9 mm from a foreground scribble (median over volumes 16.8 mm), so 40 mm leaves a margin
DEFAULT_BEYOND_MM = 40.0


def background_beyond(scribble: np.ndarray, spacing: Sequence[float], beyond_mm: float, ignore_label: int,
                      background_label: int = 0) -> np.ndarray:
    """The scribble map with unannotated voxels far from every foreground scribble set to background.

    Works for 2D and 3D maps. An image without foreground scribbles is returned unchanged (nothing tells how far the
    foreground may reach).

    Args:
        scribble: label map of one image: class labels on the scribbles, ``ignore_label`` elsewhere.
        spacing: voxel spacing (mm) per axis of ``scribble``.
        beyond_mm: unannotated voxels whose Euclidean distance to the nearest foreground scribble voxel exceeds this
            become ``background_label``.
        ignore_label: the value of unannotated voxels.
        background_label: the background value.

    Returns:
        A new array of the same shape and dtype.

    Raises:
        ValueError: if ``spacing`` does not have one positive value per axis or ``beyond_mm`` is not positive.
    """
    spacing = np.asarray(spacing, dtype=float)
    if spacing.shape != (scribble.ndim,) or np.any(spacing <= 0):
        raise ValueError(f"spacing {tuple(spacing.tolist())} does not give one positive value per axis of a "
                         f"{scribble.ndim}D label map")
    if not beyond_mm > 0:
        raise ValueError(f"beyond_mm must be positive, got {beyond_mm}")
    out = scribble.copy()
    foreground = (scribble != background_label) & (scribble != ignore_label)
    if foreground.any():
        far = ndimage.distance_transform_edt(~foreground, sampling=spacing) > beyond_mm
        out[far & (scribble == ignore_label)] = background_label
    return out


def write_background_beyond(scribble_folder: str | os.PathLike, out_folder: str | os.PathLike,
                            cases: Sequence[str], reader_writer, file_ending: str, beyond_mm: float,
                            ignore_label: int) -> Path:
    """Write :func:`background_beyond` of each case's scribble file into ``out_folder`` (nnU-Net's reader/writer).

    Raises:
        FileNotFoundError: naming a case's missing scribble file.
    """
    out = Path(out_folder)
    out.mkdir(parents=True, exist_ok=True)
    for case in cases:
        src = Path(scribble_folder) / f"{case}{file_ending}"
        if not src.is_file():
            raise FileNotFoundError(f"{src} not found: every predicted case needs its scribble reference")
        seg, props = reader_writer.read_seg(str(src))
        spacing = props["spacing"][-seg[0].ndim:]
        reader_writer.write_seg(background_beyond(seg[0], spacing, beyond_mm, ignore_label),
                                str(out / f"{case}{file_ending}"), props)
    return out


def merge_validation(model: str | os.PathLike, folds: Sequence[int], out: str | os.PathLike,
                     file_ending: str) -> list[str]:
    """Copy every fold's ``validation`` predictions into ``out`` (as ``nnUNetv2_accumulate_crossval_results``).

    Returns:
        The merged case identifiers.

    Raises:
        FileNotFoundError: naming the missing ``fold_<f>/validation`` folder, or if no fold holds a prediction.
        ValueError: naming a case that two folds predict.
    """
    model, out = Path(model), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cases: list[str] = []
    for fold in folds:
        folder = model / f"fold_{fold}" / "validation"
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder} not found: fold {fold} is not trained (or its validation did not run)")
        for f in sorted(folder.glob(f"*{file_ending}")):
            if (out / f.name).exists():
                raise ValueError(f"{f.name} is predicted by fold {fold} and by an earlier fold of {list(folds)}")
            shutil.copy(f, out / f.name)
            cases.append(f.name[:-len(file_ending)])
    if not cases:
        raise FileNotFoundError(f"no {file_ending} predictions in the validation folders of {model}, folds {folds}")
    return cases


def determine_postprocessing(model: str | os.PathLike, folds: Sequence[int], scribble_folder: str | os.PathLike,
                             out_folder: str | os.PathLike, beyond_mm: float = DEFAULT_BEYOND_MM,
                             num_processes: int = 1) -> tuple[list, list]:
    """nnU-Net's post-processing choice on the merged validation predictions, against :func:`background_beyond`.

    ``out_folder`` receives the merged predictions, nnU-Net's ``postprocessing.pkl``/``.json``, ``plans.json``,
    ``dataset.json`` and ``postprocessed/``; it is built in a temporary folder beside it and moved into place at
    the end (an existing ``out_folder`` is replaced only then).

    Returns:
        nnU-Net's chosen post-processing functions and their keyword arguments (empty lists: none).
    """
    from nnunetv2.postprocessing.remove_connected_components import determine_postprocessing as nnunet_determine
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
    from batchgenerators.utilities.file_and_folder_operations import load_json

    model, out = Path(model), Path(out_folder)
    plans, dataset_json = load_json(str(model / "plans.json")), load_json(str(model / "dataset.json"))
    label_manager = PlansManager(plans).get_label_manager(dataset_json)
    if label_manager.ignore_label is None:
        raise ValueError(f"{model / 'dataset.json'} declares no 'ignore' label: the dataset is densely labelled, use "
                         f"nnUNetv2_find_best_configuration")
    ending = dataset_json["file_ending"]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        cases = merge_validation(model, folds, tmp, ending)
        shutil.copy(model / "plans.json", tmp / "plans.json")
        shutil.copy(model / "dataset.json", tmp / "dataset.json")
        rw = PlansManager(plans).image_reader_writer_class()
        with tempfile.TemporaryDirectory(prefix="background_beyond_") as ref:
            write_background_beyond(scribble_folder, ref, cases, rw, ending, beyond_mm, label_manager.ignore_label)
            result = nnunet_determine(str(tmp), ref, str(tmp / "plans.json"), str(tmp / "dataset.json"),
                                      num_processes=num_processes)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return result
