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
which ``nnUNetv2_apply_postprocessing`` applies unchanged. Deviations from nnU-Net's ``determine_postprocessing``:
the score (estimated from scribbles, not the Dice against ``gt_segmentations``) and one more candidate,
:func:`keep_central_component`, which keeps a centred organ where an island larger than it would make the largest
component delete the organ (ACDC fold 1, MedCL: in 4 of 40 volumes; the central component in none).
"""
from __future__ import annotations

import os
import pickle
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from scipy import ndimage

#: default distance (mm) beyond which unannotated voxels count as background: ACDC's farthest dense foreground
#: voxel lies 29.9 mm from a foreground scribble (median over volumes 16.8 mm), so 40 mm leaves a margin
DEFAULT_BEYOND_MM = 40.0


def distance_to_foreground_scribbles(scribble: np.ndarray, spacing: Sequence[float], ignore_label: int,
                                     background_label: int = 0) -> np.ndarray | None:
    """Euclidean distance (mm) of every voxel to the nearest foreground scribble voxel (any class) of the image.

    Works for 2D and 3D maps.

    Returns:
        A float array of the shape of ``scribble`` (0 on the foreground scribbles), or None where the image has no
        foreground scribble.

    Raises:
        ValueError: if ``spacing`` does not have one positive value per axis.
    """
    spacing = np.asarray(spacing, dtype=float)
    if spacing.shape != (scribble.ndim,) or np.any(spacing <= 0):
        raise ValueError(f"spacing {tuple(spacing.tolist())} does not give one positive value per axis of a "
                         f"{scribble.ndim}D label map")
    foreground = (scribble != background_label) & (scribble != ignore_label)
    if not foreground.any():
        return None
    return ndimage.distance_transform_edt(~foreground, sampling=spacing)


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
    if not beyond_mm > 0:
        raise ValueError(f"beyond_mm must be positive, got {beyond_mm}")
    out = scribble.copy()
    distance = distance_to_foreground_scribbles(scribble, spacing, ignore_label, background_label)
    if distance is not None:
        out[(distance > beyond_mm) & (scribble == ignore_label)] = background_label
    return out


def foreground_reach(scribble: np.ndarray, dense: np.ndarray, spacing: Sequence[float], ignore_label: int,
                     background_label: int = 0) -> float | None:
    """How far (mm) the dense foreground of an image reaches from its foreground scribbles.

    The largest Euclidean distance from a foreground voxel of ``dense`` to the nearest foreground scribble voxel
    (any class) of ``scribble``: :func:`background_beyond` with a ``beyond_mm`` at least this large sets no
    foreground voxel of this image to background. Works for 2D and 3D maps.

    Args:
        scribble: scribble map of one image: class labels on the scribbles, ``ignore_label`` elsewhere.
        dense: the dense label map of the same image (same shape).
        spacing: voxel spacing (mm) per axis.
        ignore_label: the value of unannotated voxels in ``scribble``.
        background_label: the background value.

    Returns:
        The distance, or None where ``scribble`` has no foreground scribble or ``dense`` no foreground.

    Raises:
        ValueError: if the shapes differ or ``spacing`` does not give one positive value per axis.
    """
    if scribble.shape != dense.shape:
        raise ValueError(f"scribble shape {scribble.shape} differs from dense shape {dense.shape}")
    distance = distance_to_foreground_scribbles(scribble, spacing, ignore_label, background_label)
    fg_dense = dense != background_label
    if distance is None or not fg_dense.any():
        return None
    return float(distance[fg_dense].max())


def beyond_from_reach(reach_mm: float, margin: float = 1.25, step_mm: float = 5.0) -> float:
    """``--beyond_mm auto``'s rule: the largest reach times ``margin``, rounded up to a multiple of ``step_mm``
    (at least ``step_mm``)."""
    return max(step_mm, float(np.ceil(reach_mm * margin / step_mm) * step_mm))


def suggest_beyond_mm(scribble_folder: str | os.PathLike, dense_folder: str | os.PathLike, reader_writer,
                      file_ending: str, ignore_label: int, margin: float = 1.25, step_mm: float = 5.0) -> dict:
    """A ``beyond_mm`` for :func:`background_beyond` from the cases that have both scribbles and dense labels.

    The distance must exceed how far a structure reaches from its scribbles, which depends on the scribble protocol
    (strokes along the centre line of each structure, one per slice, ...). This measures :func:`foreground_reach` on
    every case that ``dense_folder`` and ``scribble_folder`` both hold and suggests the largest, times ``margin``,
    rounded up to a multiple of ``step_mm`` (at least ``step_mm``; ACDC's 160 scribbled volumes: largest 29.9 mm ->
    40 mm, the default). Cases that ``scribble_folder`` holds densely labelled (no unannotated voxel) are skipped.
    A few densely labelled cases suffice when they are typical; the margin covers cases farther than the sample.

    Returns:
        ``{"beyond_mm", "cases" (used), "max_mm", "median_mm", "p90_mm", "farthest_case", "skipped"
        (cases without foreground scribbles, without unannotated voxels or without dense foreground),
        "known_background"}``, where ``known_background`` is the fraction of unannotated voxels the suggested
        distance turns into background.

    Raises:
        FileNotFoundError: if a folder is missing or they share no case.
        ValueError: naming a case whose scribble and dense maps differ in shape, or if no shared case has
            scribbles (unannotated voxels and foreground scribbles) and dense foreground; if ``margin`` < 1 or
            ``step_mm`` <= 0.
    """
    if margin < 1 or not step_mm > 0:
        raise ValueError(f"margin must be >= 1 and step_mm positive, got {margin} and {step_mm}")
    scribble_folder, dense_folder = Path(scribble_folder), Path(dense_folder)
    for folder in (scribble_folder, dense_folder):
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder} not found")
    cases = sorted(f.name[:-len(file_ending)] for f in dense_folder.glob(f"*{file_ending}")
                   if (scribble_folder / f.name).is_file())
    if not cases:
        raise FileNotFoundError(f"no {file_ending} case is in both {dense_folder} and {scribble_folder}")
    reach, skipped = {}, []
    for case in cases:
        seg, props = reader_writer.read_seg(str(scribble_folder / f"{case}{file_ending}"))
        dense = reader_writer.read_seg(str(dense_folder / f"{case}{file_ending}"))[0]
        spacing = props["spacing"][-seg[0].ndim:]
        try:
            r = foreground_reach(seg[0], dense[0], spacing, ignore_label)
        except ValueError as e:
            raise ValueError(f"{case}{file_ending}: {e} ({scribble_folder} vs {dense_folder})") from None
        if r is None or not (seg[0] == ignore_label).any():   # densely labelled in labelsTr (MSCMRseg's val cases)
            skipped.append(case)
        else:
            reach[case] = r
    if not reach:
        raise ValueError(f"none of the {len(cases)} cases in {dense_folder} has scribbles (unannotated voxels and "
                         f"foreground scribbles) and dense foreground")
    values = np.array(list(reach.values()))
    beyond = beyond_from_reach(float(values.max()), margin, step_mm)
    unannotated = known = 0
    for case in reach:      # read again rather than held: a large 3D set would not fit in memory
        seg, props = reader_writer.read_seg(str(scribble_folder / f"{case}{file_ending}"))
        unannotated += int((seg[0] == ignore_label).sum())
        known += int((background_beyond(seg[0], props["spacing"][-seg[0].ndim:], beyond, ignore_label)
                      != seg[0]).sum())
    return {"beyond_mm": beyond, "cases": len(reach), "max_mm": float(values.max()),
            "median_mm": float(np.median(values)), "p90_mm": float(np.percentile(values, 90)),
            "farthest_case": max(reach, key=reach.get), "skipped": skipped,
            "known_background": known / unannotated if unannotated else 0.0}


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


def scribble_recall_precision(prediction: np.ndarray, reference: np.ndarray, label: int,
                              ignore_label: int) -> tuple[float, float] | None:
    """The two parts of :func:`scribble_dice` for one class: scribble recall and known-negative precision.

    Returns:
        ``(recall, precision)``, precision 0 where the class is not predicted; None where ``reference`` does not
        annotate ``label``.
    """
    ref_c = reference == label
    n_ref = int(ref_c.sum())
    if n_ref == 0:
        return None
    pred_c = prediction == label
    n_pred = int(pred_c.sum())
    recall = int((pred_c & ref_c).sum()) / n_ref
    precision = 1.0 - int((pred_c & (reference != ignore_label) & ~ref_c).sum()) / n_pred if n_pred else 0.0
    return recall, precision


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
    out = {}
    for c in labels:
        parts = scribble_recall_precision(prediction, reference, c, ignore_label)
        if parts is not None:
            recall, precision = parts
            out[c] = 0.0 if recall + precision == 0 else 2 * recall * precision / (recall + precision)
    return out


def keep_central_component(segmentation: np.ndarray, labels: Sequence[int], min_fraction: float = 0.1,
                           background_label: int = 0) -> np.ndarray:
    """Keep only the foreground component closest to the image centre; the rest becomes background.

    A candidate beside nnU-Net's "largest foreground component" for images centred on the target, as cardiac
    short-axis MR is on the heart: where a model paints an island larger than the organ, the largest component keeps
    the island and deletes the organ. Only components of at least ``min_fraction`` times the largest one's size
    compete, so a speck at the centre does not win. The distance is from each component's centroid to the centre of
    the array, in voxels along every axis (``nnUNetv2_apply_postprocessing`` passes no spacing; in-plane spacing is
    usually isotropic). Components are connected with full connectivity, as in nnU-Net's
    ``remove_all_but_largest_component``. Works for 2D and 3D maps; a module-level function, so the pickled choice
    is applied by ``nnUNetv2_apply_postprocessing``. Not in nnU-Net or the papers: ``determine_postprocessing``
    tries it and keeps it only where the estimated Dice says it helps.

    Args:
        segmentation: label map of one image.
        labels: the foreground classes whose union forms the components.
        min_fraction: a component competes if its size is at least this fraction of the largest component's.
        background_label: the value removed voxels get.

    Returns:
        A new array; a copy of ``segmentation`` when it has at most one component.
    """
    mask = np.isin(segmentation, np.asarray(labels))
    components, n = ndimage.label(mask, structure=ndimage.generate_binary_structure(segmentation.ndim,
                                                                                   segmentation.ndim))
    out = segmentation.copy()
    if n <= 1:
        return out
    index = np.arange(1, n + 1)
    sizes = np.bincount(components[mask], minlength=n + 1)[1:]
    centroids = np.array(ndimage.center_of_mass(mask, components, index))
    distance = np.linalg.norm(centroids - (np.array(segmentation.shape) - 1) / 2, axis=1)
    distance[sizes < min_fraction * sizes.max()] = np.inf
    out[mask & (components != index[np.argmin(distance)])] = background_label
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


def choose_steps(score: Callable[[list], dict[int, float]], labels: Sequence[int],
                 central: bool = True) -> tuple[list, dict, dict, list[dict]]:
    """Try nnU-Net's post-processing candidates in nnU-Net's order and keep each by nnU-Net's rule.

    As ``determine_postprocessing`` in nnunetv2/postprocessing/remove_connected_components.py: first "keep only the
    largest foreground component", kept if it raises the mean over classes and lowers no class; then, for each class
    in turn and after the steps kept so far, "keep only the largest component of the class", kept if it raises that
    class's score (a tie is rejected). With ``central`` (deviation from nnU-Net), :func:`keep_central_component`
    competes with the largest foreground component under the same rule, and the one with the higher mean is kept
    where both qualify.

    Args:
        score: maps a list of ``(function, kwargs)`` steps to each class's score after applying them; called once
            with no steps, then once per candidate with the steps kept so far plus the candidate, in that order.
        labels: the foreground classes.
        central: also try :func:`keep_central_component`.

    Returns:
        The kept steps, the scores before and after them, and one record per candidate in the order tried
        (``{"step": [name], "scores": scores after it, "kept": bool}``, and ``"label"`` for a per-class candidate;
        ``postprocessing.json`` lists them).
    """
    from nnunetv2.postprocessing.remove_connected_components import remove_all_but_largest_component_from_segmentation

    steps: list = []
    before = best = score(steps)
    fg_steps = [("largest foreground component",
                 (remove_all_but_largest_component_from_segmentation, {"labels_or_regions": list(labels)}))]
    if central:
        fg_steps.append(("central foreground component", (keep_central_component, {"labels": list(labels)})))
    candidates = []
    for name, fg_step in fg_steps:
        trial = score([fg_step])
        candidates.append({"step": [name], "scores": trial})
        if np.mean(list(trial.values())) > np.mean(list(best.values())) and all(trial[c] >= before[c] for c in before):
            steps, best = [fg_step], trial
    for record, (_, fg_step) in zip(candidates, fg_steps):
        record["kept"] = bool(steps) and steps[0] is fg_step
    if len(labels) > 1:
        for c in labels:
            step = (remove_all_but_largest_component_from_segmentation, {"labels_or_regions": c})
            trial = score(steps + [step])
            kept = c in trial and trial[c] > best.get(c, -1.0)
            candidates.append({"step": [f"largest component of {c}"], "label": c, "scores": trial, "kept": kept})
            if kept:
                steps, best = steps + [step], trial
    return steps, before, best, candidates


def determine_postprocessing(model: str | os.PathLike, folds: Sequence[int], scribble_folder: str | os.PathLike,
                             out_folder: str | os.PathLike, beyond_mm: float = DEFAULT_BEYOND_MM,
                             central: bool = True) -> tuple[list, list]:
    """nnU-Net's post-processing choice on the merged validation predictions, scored by :func:`scribble_dice`.

    Candidates, order and rule are nnU-Net's: keep only the largest foreground component if that raises the mean
    over classes and lowers no class; then, for each class in turn, keep only its largest component if that raises
    the class's score. With ``central`` (deviation from nnU-Net), :func:`keep_central_component` competes with the
    largest foreground component under the same rule, and the one with the higher mean is kept where both
    qualify. The reference is :func:`background_beyond` of each case's scribbles. ``out_folder`` receives
    the merged predictions, nnU-Net's ``postprocessing.pkl`` (for ``nnUNetv2_apply_postprocessing``), a
    ``postprocessing.json`` with the scores of every candidate, ``plans.json`` and ``dataset.json``; it is built in
    a temporary folder beside it and moved into place at the end (an existing ``out_folder`` is replaced only then).

    Returns:
        The chosen post-processing functions and their keyword arguments (empty lists: none).

    Raises:
        ValueError: if the dataset declares no ignore label (a dense dataset: use nnU-Net's own choice).
    """
    from batchgenerators.utilities.file_and_folder_operations import load_json, save_json
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

            steps, before, best, candidates = choose_steps(score, labels, central)
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
