"""Choosing nnU-Net's post-processing for a scribble-trained model.

``nnUNetv2_find_best_configuration`` keeps "only the largest foreground component" (then, class by class, "only the
largest component of class c") where that raises the cross-validation Dice against ``gt_segmentations`` and lowers
no class's Dice. On a scribble dataset that reference is the scribbles, scored on the annotated voxels only, and
background scribbles rarely lie where a model paints islands: removing the islands then changes nothing nnU-Net can
see, and it keeps them (ACDC fold 3 of the benchmarks: the largest component would raise the dense Dice from 51 to
76, nnU-Net on the scribbles keeps nothing).

:func:`background_beyond` adds what scribbles imply but do not draw: a voxel farther than ``beyond_mm`` from every
foreground scribble of its image is background (on ACDC's 160 scribbled volumes no dense foreground voxel lies
farther than 29.9 mm from a foreground scribble). :func:`scribble_dice` estimates each class's Dice from such a
reference as the F1 score of the recall on the class's scribbles and the precision against every voxel known not to
be the class; scoring the Dice on the reference itself would let the few foreground scribble voxels weigh far less
than the large known background, and favour deleting the organ with its islands (ACDC fold 1, DMPLS: 46.5 instead of
57.7). :func:`determine_postprocessing` applies nnU-Net's candidates in nnU-Net's order with nnU-Net's rule to the
merged cross-validation predictions, scored by :func:`scribble_dice`, and writes nnU-Net's ``postprocessing.pkl``,
which ``nnUNetv2_apply_postprocessing`` applies unchanged. Deviation from nnU-Net's ``determine_postprocessing``:
only the score differs (estimated from scribbles, not the Dice against ``gt_segmentations``).
"""
from __future__ import annotations

import os
import pickle
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


def scribble_dice(prediction: np.ndarray, reference: np.ndarray, labels: Sequence[int],
                  ignore_label: int) -> dict[int, float]:
    """Each class's Dice estimated from a sparse reference: F1 of scribble recall and known-negative precision.

    recall = |prediction == c on the voxels of ``reference`` == c| / |``reference`` == c|; precision = 1 - |prediction
    == c on the voxels annotated with another value| / |prediction == c| (an upper bound: unannotated voxels count as
    right); estimate = 2 recall precision / (recall + precision), 0 where the class is not predicted. With a dense
    reference this is the Dice. Works for 2D and 3D maps.

    Returns:
        ``{c: estimate}`` for every ``c`` in ``labels`` that ``reference`` annotates (others are left out).
    """
    annotated = reference != ignore_label
    out = {}
    for c in labels:
        ref_c = reference == c
        n_ref = int(ref_c.sum())
        if n_ref == 0:
            continue
        pred_c = prediction == c
        n_pred = int(pred_c.sum())
        recall = int((pred_c & ref_c).sum()) / n_ref
        precision = 1.0 - int((pred_c & annotated & ~ref_c).sum()) / n_pred if n_pred else 0.0
        out[c] = 0.0 if recall + precision == 0 else 2 * recall * precision / (recall + precision)
    return out


def _scores(predictions: Path, references: Path, cases: Sequence[str], ending: str, rw, steps: list,
            labels: Sequence[int], ignore_label: int) -> dict[int, float]:
    """Mean over cases of :func:`scribble_dice` per class after applying the post-processing ``steps``.

    Reads every case from disk for each candidate (one pass per candidate, at most 2 + number of classes) rather than
    holding all cases in memory, which a large 3D cross-validation would not fit.
    """
    from nnunetv2.postprocessing.remove_connected_components import apply_postprocessing

    per_class: dict[int, list[float]] = {c: [] for c in labels}
    for case in cases:
        seg = rw.read_seg(str(predictions / f"{case}{ending}"))[0][0]
        ref = rw.read_seg(str(references / f"{case}{ending}"))[0][0]
        seg = apply_postprocessing(seg, [f for f, _ in steps], [k for _, k in steps])
        for c, v in scribble_dice(seg, ref, labels, ignore_label).items():
            per_class[c].append(v)
    return {c: float(np.mean(v)) for c, v in per_class.items() if v}


def determine_postprocessing(model: str | os.PathLike, folds: Sequence[int], scribble_folder: str | os.PathLike,
                             out_folder: str | os.PathLike, beyond_mm: float = DEFAULT_BEYOND_MM) -> tuple[list, list]:
    """nnU-Net's post-processing choice on the merged validation predictions, scored by :func:`scribble_dice`.

    Candidates, order and rule are nnU-Net's: keep only the largest foreground component if that raises the mean
    over classes and lowers no class; then, for each class in turn, keep only its largest component if that raises
    the class's score. The reference is :func:`background_beyond` of each case's scribbles. ``out_folder`` receives
    the merged predictions, nnU-Net's ``postprocessing.pkl`` (for ``nnUNetv2_apply_postprocessing``), a
    ``postprocessing.json`` with the scores of every candidate, ``plans.json`` and ``dataset.json``; it is built in
    a temporary folder beside it and moved into place at the end (an existing ``out_folder`` is replaced only then).

    Returns:
        The chosen post-processing functions and their keyword arguments (empty lists: none).

    Raises:
        ValueError: if the dataset declares no ignore label (a dense dataset: use nnU-Net's own choice).
    """
    from batchgenerators.utilities.file_and_folder_operations import load_json, save_json
    from nnunetv2.postprocessing.remove_connected_components import remove_all_but_largest_component_from_segmentation
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    model, out = Path(model), Path(out_folder)
    plans, dataset_json = load_json(str(model / "plans.json")), load_json(str(model / "dataset.json"))
    plans_manager = PlansManager(plans)
    label_manager = plans_manager.get_label_manager(dataset_json)
    if label_manager.ignore_label is None:
        raise ValueError(f"{model / 'dataset.json'} declares no 'ignore' label: the dataset is densely labelled, use "
                         f"nnUNetv2_find_best_configuration")
    if label_manager.has_regions:
        raise ValueError(f"{model / 'dataset.json'} uses regions: only label-based datasets are supported")
    ending, ignore = dataset_json["file_ending"], label_manager.ignore_label
    labels = [int(c) for c in label_manager.foreground_labels]
    rw = plans_manager.image_reader_writer_class()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        cases = merge_validation(model, folds, tmp, ending)
        shutil.copy(model / "plans.json", tmp / "plans.json")
        shutil.copy(model / "dataset.json", tmp / "dataset.json")
        with tempfile.TemporaryDirectory(prefix="background_beyond_") as ref_dir:
            ref = write_background_beyond(scribble_folder, ref_dir, cases, rw, ending, beyond_mm, ignore)

            def score(candidate):
                return _scores(tmp, ref, cases, ending, rw, candidate, labels, ignore)

            steps: list = []
            before = best = score(steps)
            fg_step = (remove_all_but_largest_component_from_segmentation, {"labels_or_regions": labels})
            trial = score([fg_step])
            candidates = [{"step": ["largest foreground component"], "scores": trial}]
            if np.mean(list(trial.values())) > np.mean(list(best.values())) and \
                    all(trial[c] >= best[c] for c in best):
                steps, best = [fg_step], trial
            if len(labels) > 1:
                for c in labels:
                    step = (remove_all_but_largest_component_from_segmentation, {"labels_or_regions": c})
                    trial = score(steps + [step])
                    candidates.append({"step": [f"largest component of {c}"], "scores": trial})
                    if c in trial and trial[c] > best.get(c, -1.0):
                        steps, best = steps + [step], trial
        fns, kwargs = [f for f, _ in steps], [k for _, k in steps]
        with open(tmp / "postprocessing.pkl", "wb") as f:
            pickle.dump((fns, kwargs), f)
        save_json({"beyond_mm": beyond_mm, "folds": list(folds), "cases": len(cases),
                   "postprocessing_fns": [f.__name__ for f in fns], "postprocessing_kwargs": kwargs,
                   "scores_before": before, "scores_after": best, "candidates": candidates},
                  str(tmp / "postprocessing.json"), sort_keys=False)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return fns, kwargs
