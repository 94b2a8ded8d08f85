"""CSPNet stage 1 inside nnU-Net: train the CAM network, write one pseudo-label map per training case, reuse it.

Storage ("next to the preprocessed data"): ``$nnUNet_preprocessed/<dataset>/cspnet_pseudo_labels/<key>/`` with one
file per training case in the preprocessed grid, in the format of the preprocessed dataset (``<case>.b2nd`` for
nnU-Net's default blosc2 datasets, ``<case>.npy`` for numpy datasets), int8 labels ``0..K-1`` (the ignore label where
there is none, also outside the non-zero crop; folders written before 2026-12-05 hold -1 there), shaped like the
case's ``seg`` without its channel axis — the layout of nnU-Net's cascade inputs, so nnU-Net's own data loader
crops and augments it together with the scribbles. A ``pseudo_labels.json`` manifest records where the labels came
from (stage 1 with its threshold, or a user folder), the cases, and their Dice against dense labels when the raw
dataset has ``labelsTr_dense``. ``<key>`` is ``<plans>__<configuration>__fold_<f>`` for stage 1 (each fold's stage 1
sees only its training cases) and ``user_<hash>__<plans>__<configuration>`` for a user folder.

Every folder is written to ``<key>.tmp-<pid>`` and renamed at the end (atomic): a folder that exists is complete.
Stage 1 checkpoints itself to ``fold_<f>/cspnet_stage1/checkpoint_stage1.pth`` (atomic) every
``num_iterations_per_epoch`` iterations; an interrupted stage 1 resumes from there.
"""
from __future__ import annotations

import glob
import hashlib
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import numpy as np
import torch
from batchgenerators.utilities.file_and_folder_operations import load_json, save_json
from nnunetv2.inference.sliding_window_prediction import compute_steps_for_sliding_window

from nnunet_scribble.atomic import atomic_save_json, atomic_torch_save
from nnunet_scribble.cspnet.cam import (CANDIDATE_THRESHOLDS, CAMNetwork, cams_to_pseudo_label, choose_threshold,
                                        gate_by_scribble_distance, normalise_cams, stage1_loss, threshold_scores)

if TYPE_CHECKING:
    from nnunet_scribble.trainers.nnUNetTrainerCSPNet import nnUNetTrainerCSPNet

MANIFEST = "pseudo_labels.json"
STAGE1_FOLDER = "cspnet_stage1"


# ---------------------------------------------------------------------------------------------- storage
def pseudo_label_root(preprocessed_dataset_folder_base: str) -> str:
    return os.path.join(preprocessed_dataset_folder_base, "cspnet_pseudo_labels")


def file_ending(dataset_class: type) -> str:
    """``.b2nd`` for nnU-Net's blosc2 datasets, ``.npy`` otherwise (what the cascade loader of that class reads)."""
    return ".b2nd" if "Blosc2" in dataset_class.__name__ else ".npy"


def save_label(path_without_ending: str, label: np.ndarray, dataset_class: type) -> None:
    label = np.ascontiguousarray(label.astype(np.int8))
    if file_ending(dataset_class) == ".b2nd":
        import blosc2
        blosc2.asarray(label, urlpath=path_without_ending + ".b2nd", mode="w")
    else:
        np.save(path_without_ending + ".npy", label)


def load_label(path_without_ending: str, dataset_class: type) -> np.ndarray:
    if file_ending(dataset_class) == ".b2nd":
        import blosc2
        return np.asarray(blosc2.open(urlpath=path_without_ending + ".b2nd", mode="r")[:])
    return np.load(path_without_ending + ".npy")


def label_shape(path_without_ending: str, dataset_class: type) -> tuple[int, ...]:
    """Shape of a stored label map from its header only (no decompression)."""
    if file_ending(dataset_class) == ".b2nd":
        import blosc2
        return tuple(blosc2.open(urlpath=path_without_ending + ".b2nd", mode="r").shape)
    return tuple(np.load(path_without_ending + ".npy", mmap_mode="r").shape)


def check_folder(folder: str, identifiers: list[str], dataset_class: type,
                 preprocessed_folder: str | None = None) -> dict:
    """The manifest of a complete pseudo-label folder; a clear error when cases are missing or unreadable.

    With ``preprocessed_folder``, every pseudo label's header is read and its shape compared with the case's
    preprocessed scribbles (``<case>_seg``, whose leading channel axis the cascade-style pseudo labels do not have,
    as in nnU-Net's previous-stage segmentations): a truncated/corrupt file or one made for other plans is named here,
    before training, instead of failing inside a data-augmentation worker hours later.
    """
    manifest_file = os.path.join(folder, MANIFEST)
    if not os.path.isfile(manifest_file):
        raise RuntimeError(f"{folder} has no {MANIFEST}: not a complete pseudo-label folder. Delete it to let "
                           f"nnUNetTrainerCSPNet regenerate it.")
    ending = file_ending(dataset_class)
    missing = [i for i in identifiers if not os.path.isfile(os.path.join(folder, i + ending))]
    if missing:
        raise RuntimeError(f"{folder} lacks pseudo labels ({ending}) for {len(missing)} training case(s), e.g. "
                           f"{missing[:5]}. It was made for another split or dataset version; delete the folder to "
                           f"regenerate it.")
    try:
        manifest = load_json(manifest_file)
    except ValueError as e:
        raise RuntimeError(f"{manifest_file} is not valid JSON ({e}); delete {folder} to regenerate it") from e
    if preprocessed_folder is not None:
        for i in identifiers:
            try:
                shape = label_shape(os.path.join(folder, i), dataset_class)
                expected = label_shape(os.path.join(preprocessed_folder, i + "_seg"), dataset_class)[1:]  # no channel
            except Exception as e:  # blosc2/numpy raise various types for damaged files
                raise RuntimeError(f"cannot read the pseudo label {os.path.join(folder, i + ending)} or its case's "
                                   f"scribbles ({type(e).__name__}: {e}); delete {folder} to regenerate it") from e
            if shape != expected:
                raise RuntimeError(f"{os.path.join(folder, i + ending)} has shape {shape}, expected {expected} (the "
                                   f"preprocessed scribbles of {i}): made for other plans or data; delete {folder} "
                                   f"to regenerate it")
    return manifest


@contextmanager
def staged_folder(folder: str) -> Iterator[str]:
    """Yield a fresh ``<folder>.tmp-<pid>`` and move it to ``folder`` when the block succeeds (atomic rename).

    Leftovers of killed runs (``<folder>.tmp-*``) are removed first; on an exception the temporary folder is removed
    and ``folder`` stays absent, so a folder that exists is always complete.
    """
    for stale in glob.glob(glob.escape(folder) + ".tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = f"{folder}.tmp-{os.getpid()}"
    os.makedirs(tmp)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if os.path.isdir(folder):  # another process finished first: keep theirs
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        os.replace(tmp, folder)


def record_dense_summary(folder: str, manifest: dict, summary: dict) -> dict:
    """Add the pseudo labels' Dice against dense labels to the manifest of a committed folder, written atomically."""
    manifest = dict(manifest, dice_vs_dense={
        "mean": summary["mean"]["Dice"]["mean"], "cases": len(summary["cases"]),
        "per_class": {n: m["Dice"]["mean"] for n, m in summary["per_class"].items()}})
    atomic_save_json(manifest, os.path.join(folder, MANIFEST))
    return manifest


def wait_for_folder(folder: str, poll_s: float = 10.0) -> None:
    """Non-zero DDP ranks wait (without a collective, so no timeout) until rank 0 has committed ``folder``."""
    while not os.path.isfile(os.path.join(folder, MANIFEST)):
        time.sleep(poll_s)


# ---------------------------------------------------------------------------------------------- stage 1 training
def stage1_iterations(trainer: nnUNetTrainerCSPNet) -> int:
    return max(1, int(round(trainer.stage1_fraction * trainer.num_epochs * trainer.num_iterations_per_epoch)))


def stage1_settings(trainer: nnUNetTrainerCSPNet) -> dict:
    """What makes one stage-1 network differ from another; a checkpoint made with other settings is not resumed."""
    return {"iterations": stage1_iterations(trainer), "cam_stage": trainer.cam_stage(),
            "lambda_cls": float(trainer.lambda_cls), "lambda_segs": float(trainer.lambda_segs_stage1),
            "class_balanced": bool(trainer.stage1_class_balanced)}


def build_cam_network(trainer: nnUNetTrainerCSPNet) -> CAMNetwork:
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    base = nnUNetTrainer.build_network_architecture(
        trainer.plans_manager, trainer.configuration_manager, trainer.num_input_channels,
        trainer.label_manager.num_segmentation_heads, False)
    return CAMNetwork(base.encoder, trainer.cam_stage(), trainer.label_manager.num_segmentation_heads)


def train_stage1(trainer: nnUNetTrainerCSPNet, dataloader) -> CAMNetwork:
    """Train the CAM network for :func:`stage1_iterations` batches of ``dataloader`` (nnU-Net's training loader).

    SGD with nnU-Net's settings (momentum 0.99, Nesterov, weight decay, initial lr) and a poly schedule over the
    stage-1 iterations; AMP on CUDA; gradient clipping as nnU-Net. Resumes from the stage-1 checkpoint when present.
    """
    from nnunetv2.utilities.helpers import dummy_context

    device = trainer.device
    model = build_cam_network(trainer).to(device)
    optimizer = torch.optim.SGD(model.parameters(), trainer.initial_lr, weight_decay=trainer.weight_decay,
                                momentum=0.99, nesterov=True)
    scaler = torch.amp.GradScaler("cuda") if device.type == "cuda" else None
    total = stage1_iterations(trainer)
    ckpt_dir = os.path.join(trainer.output_folder, STAGE1_FOLDER)
    ckpt_file = os.path.join(ckpt_dir, "checkpoint_stage1.pth")
    os.makedirs(ckpt_dir, exist_ok=True)
    settings = stage1_settings(trainer)
    start = 0
    ckpt = torch.load(ckpt_file, map_location=device, weights_only=False) if os.path.isfile(ckpt_file) else None
    # checkpoints written before the settings were recorded used the plain pCE; other fields then count as equal
    recorded = {**settings, "class_balanced": False, **ckpt.get("settings", {})} if ckpt is not None else None
    if ckpt is not None and recorded != settings:
        trainer.print_to_log_file(f"CSPNet stage 1: {ckpt_file} was trained with {recorded}, not {settings}; "
                                  f"training stage 1 afresh", also_print_to_console=True)
        ckpt = None
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        if scaler is not None and ckpt.get("grad_scaler") is not None:
            scaler.load_state_dict(ckpt["grad_scaler"])
        start = int(ckpt["iteration"])
        trainer.print_to_log_file(f"CSPNet stage 1: resuming from {ckpt_file} at iteration {start}/{total}")
    trainer.print_to_log_file(f"CSPNet stage 1: training the CAM network (encoder stage {trainer.cam_stage()}) for "
                              f"{total} iterations (lambda_cls {trainer.lambda_cls}, lambda_segs "
                              f"{trainer.lambda_segs_stage1}, class-balanced pCE {trainer.stage1_class_balanced})")
    ignore = trainer.label_manager.ignore_label
    every = max(1, trainer.num_iterations_per_epoch)
    model.train()
    sums, t0 = np.zeros(2), time.time()
    for it in range(start, total):
        lr = trainer.initial_lr * (1 - it / total) ** 0.9
        for group in optimizer.param_groups:
            group["lr"] = lr
        batch = next(dataloader)
        data = batch["data"].to(device, non_blocking=True)
        target = batch["target"][0] if isinstance(batch["target"], list) else batch["target"]
        labels = target[:, 0].to(device, non_blocking=True).long()
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, enabled=True) if device.type == "cuda" else dummy_context():
            class_logits, _, seg_logits = model(data)
            l_cls, l_seg = stage1_loss(class_logits, seg_logits, labels, ignore, trainer.lambda_cls,
                                       trainer.lambda_segs_stage1, trainer.stage1_class_balanced)
            loss = trainer.lambda_cls * l_cls + trainer.lambda_segs_stage1 * l_seg
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), trainer.grad_clip_norm)
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), trainer.grad_clip_norm)
            optimizer.step()
        sums += (float(l_cls.detach()), float(l_seg.detach()))
        if (it + 1) % every == 0 or it + 1 == total:
            n = (it + 1 - start) % every or every
            trainer.print_to_log_file(f"CSPNet stage 1: iteration {it + 1}/{total}, cls {sums[0] / n:.4f}, "
                                      f"segs {sums[1] / n:.4f}, lr {lr:.5f}, {time.time() - t0:.1f} s")
            sums, t0 = np.zeros(2), time.time()
            state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "iteration": it + 1,
                     "settings": settings,
                     "grad_scaler": scaler.state_dict() if scaler is not None else None}
            atomic_torch_save(state, ckpt_file)
    return model


# ---------------------------------------------------------------------------------------------- CAM inference
@torch.no_grad()
def sliding_window_outputs(model: CAMNetwork, image: torch.Tensor, patch_size: tuple[int, ...],
                           step: float = 0.5, batch_size: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """CAM logits (eq. 10 before the ReLU) and segmentation-head logits of one image ``(C_in, *spatial)``.

    Tiles of ``patch_size`` with overlap ``1 - step`` (nnU-Net's tiling); each tile's CAM is upsampled to the tile
    and the overlaps are averaged. Images smaller than the patch are zero-padded (nnU-Net's padding value in the
    normalised space) and cropped back.

    Returns:
        ``(K-1, *spatial)`` CAM logits and ``(K, *spatial)`` segmentation logits.
    """
    import torch.nn.functional as F

    spatial = tuple(image.shape[1:])
    padded = tuple(max(s, p) for s, p in zip(spatial, patch_size))
    if padded != spatial:
        pad = []
        for s, p in reversed(list(zip(spatial, padded))):
            pad += [0, p - s]
        image = F.pad(image, pad)
    steps = compute_steps_for_sliding_window(padded, tuple(patch_size), step)
    grids = np.meshgrid(*steps, indexing="ij")
    corners = list(zip(*(g.ravel() for g in grids)))
    k = model.classifier.out_channels
    acc = torch.zeros((2 * k + 1, *padded), device=image.device)
    count = torch.zeros((1, *padded), device=image.device)
    mode = "bilinear" if image.ndim == 3 else "trilinear"
    for i in range(0, len(corners), batch_size):
        chunk = corners[i:i + batch_size]
        slices = [tuple(slice(c, c + p) for c, p in zip(corner, patch_size)) for corner in chunk]
        tiles = torch.stack([image[(slice(None), *s)] for s in slices])
        _, cam, seg = model(tiles)
        cam = F.interpolate(cam.float(), size=tuple(patch_size), mode=mode, align_corners=False)
        both = torch.cat([cam, seg.float()], 1)
        for s, c in zip(slices, both):
            acc[(slice(None), *s)] += c
            count[(slice(None), *s)] += 1
    out = (acc / count)[(slice(None), *(slice(0, s) for s in spatial))]
    return out[:k], out[k:]


def case_outputs(model: CAMNetwork, data: np.ndarray, seg: np.ndarray, num_classes: int, patch_size: list[int],
                 device: torch.device, step: float = 0.5):
    """Stage-1 outputs of one preprocessed case, image by image (2D configuration: per slice, 3D: the volume).

    Yields ``(index, cams, seg_probs, scribble)``: ``index`` is the slice (2D) or ``None`` (3D); ``cams`` the
    normalised CAMs ``(K-1, *image)`` (:func:`~nnunet_scribble.cspnet.cam.normalise_cams`); ``seg_probs`` the
    segmentation head's softmax ``(K, *image)`` with the foreground classes absent from the image set to 0. A class
    is present in an image when the image's scribbles contain it.
    """
    two_d = len(patch_size) == 2
    images = [(z, data[:, z], seg[0, z]) for z in range(data.shape[1])] if two_d else [(None, data, seg[0])]
    for index, img, scribble in images:
        scribble_t = torch.from_numpy(np.asarray(scribble).astype(np.int64)).to(device)
        present = [bool((scribble_t == c).any()) for c in range(1, num_classes)]
        if not any(present):
            cams = torch.zeros((num_classes - 1, *scribble_t.shape), device=device)
            probs = torch.zeros((num_classes, *scribble_t.shape), device=device)
            probs[0] = 1
        else:
            cam_logits, seg_logits = sliding_window_outputs(
                model, torch.from_numpy(np.asarray(img, dtype=np.float32)).to(device), tuple(patch_size), step)
            cams = normalise_cams(cam_logits, present)
            keep = torch.tensor([True, *present], device=device).view(-1, *(1,) * (seg_logits.ndim - 1))
            probs = torch.softmax(seg_logits.masked_fill(~keep, float("-inf")), 0)
        yield index, cams, probs, scribble_t


def generate_pseudo_labels(trainer: nnUNetTrainerCSPNet, model: CAMNetwork, identifiers: list[str],
                           folder: str) -> dict:
    """Write the pseudo labels of ``identifiers`` into ``folder`` (atomically) and return the manifest.

    ``trainer.pseudo_label_source``: ``"cam"`` (the paper: thresholded CAMs of the classes in the image, eq. 10)
    or ``"segmentation"`` (the stage-1 segmentation head's argmax over background and the classes in the image).
    Scribble voxels override either, and foreground farther than ``trainer.pseudo_label_max_distance`` from every
    scribble of its class becomes background (:func:`~nnunet_scribble.cspnet.cam.gate_by_scribble_distance`).
    For CAMs with ``trainer.cam_threshold < 0`` a first pass over the cases picks the threshold with the best mean
    per-class recall on the scribbles (:func:`~nnunet_scribble.cspnet.cam.choose_threshold`); the second pass
    writes.
    """
    source = trainer.pseudo_label_source
    if source not in ("cam", "segmentation"):
        raise ValueError(f"pseudo_label_source must be 'cam' or 'segmentation', got {source!r}")
    model.eval()
    dataset = trainer.dataset_class(trainer.preprocessed_dataset_folder, identifiers)
    k = trainer.label_manager.num_segmentation_heads
    ignore = trainer.label_manager.ignore_label
    patch = trainer.configuration_manager.patch_size
    device = trainer.device
    threshold, recall = trainer.cam_threshold, None
    spacing = trainer.configuration_manager.spacing
    t0 = time.time()
    if source == "cam" and threshold < 0:
        scores = np.zeros((len(CANDIDATE_THRESHOLDS), 2, k), dtype=np.int64)
        for identifier in identifiers:
            data, seg, _, _ = dataset.load_case(identifier)
            for _, cams, _, scribble in case_outputs(model, data, seg, k, patch, device):
                scores += threshold_scores(cams, scribble, k)
        threshold, recall = choose_threshold(scores)
        trainer.print_to_log_file(f"CSPNet stage 1: CAM threshold {threshold} chosen on the scribbles (mean "
                                  f"per-class recall {recall:.3f}; {time.time() - t0:.1f} s)")
    manifest = {"source": "stage1", "pseudo_label_source": source, "max_distance": trainer.pseudo_label_max_distance,
                "threshold": threshold if source == "cam" else None, "scribble_recall": recall,
                "cam_stage": trainer.cam_stage(), "stage1_iterations": stage1_iterations(trainer),
                "stage1_class_balanced": bool(trainer.stage1_class_balanced), "outside_crop": "ignore",
                "cases": identifiers, "file_ending": file_ending(trainer.dataset_class),
                "created": time.strftime("%Y-%m-%d %H:%M:%S")}
    with staged_folder(folder) as tmp:
        for identifier in identifiers:
            data, seg, _, _ = dataset.load_case(identifier)
            seg = np.asarray(seg[:])
            out = np.full(seg.shape[1:], ignore, dtype=np.int8)
            for index, cams, probs, scribble in case_outputs(model, data, seg, k, patch, device):
                if source == "cam":
                    label = cams_to_pseudo_label(cams, threshold, scribble, k)
                else:
                    annotated = (scribble >= 0) & (scribble < k)
                    label = torch.where(annotated, scribble, probs.argmax(0))
                label = gate_by_scribble_distance(label.cpu().numpy(), scribble.cpu().numpy(), k,
                                                  trainer.pseudo_label_max_distance, spacing)
                if index is None:
                    out[...] = label
                else:
                    out[index] = label
            # outside nnU-Net's non-zero crop mask: no pseudo label (ignore, not -1, so that it stays unlabelled when
            # outside_image_background maps the loader's -1 to background; MSCMRseg evidence in the CSPNet trainer)
            out[seg[0] < 0] = ignore
            save_label(os.path.join(tmp, identifier), out, trainer.dataset_class)
        save_json(manifest, os.path.join(tmp, MANIFEST))
    trainer.print_to_log_file(f"CSPNet stage 1: pseudo labels ({source}) of {len(identifiers)} cases written to "
                              f"{folder} ({time.time() - t0:.1f} s)")
    return manifest


# ---------------------------------------------------------------------------------------------- user pseudo labels
def user_folder_key(raw_folder: str) -> str:
    return "user_" + hashlib.sha1(os.path.abspath(raw_folder).encode()).hexdigest()[:10]


def import_user_pseudo_labels(trainer: nnUNetTrainerCSPNet, raw_folder: str, identifiers: list[str],
                              folder: str) -> dict:
    """Preprocess a user's pseudo labels (raw label files named like ``labelsTr``) into ``folder``.

    Each file goes through nnU-Net's own preprocessing of the case (transpose, crop, resample with the segmentation
    resampling), so it lands on exactly the grid of the preprocessed scribbles. Raises a clear error naming the file
    for a missing case, a shape that does not match the image, or a value that is not a class.
    """
    from nnunetv2.paths import nnUNet_raw
    from nnunetv2.utilities.utils import get_filenames_of_train_images_and_targets

    if not os.path.isdir(raw_folder):
        raise FileNotFoundError(f"pseudo-label folder {raw_folder} (nnUNetTrainerCSPNet.pseudo_labels_raw) does "
                                f"not exist")
    ending = trainer.dataset_json["file_ending"]
    k = trainer.label_manager.num_segmentation_heads
    ignore = trainer.label_manager.ignore_label
    missing = [i for i in identifiers if not os.path.isfile(os.path.join(raw_folder, i + ending))]
    if missing:
        raise FileNotFoundError(f"{raw_folder} has no pseudo label for {len(missing)} training case(s), e.g. "
                                f"{missing[:3]} (expected files '<case>{ending}' named like labelsTr)")
    raw_dataset = os.path.join(nnUNet_raw.get(), trainer.plans_manager.dataset_name)
    files = get_filenames_of_train_images_and_targets(raw_dataset, trainer.dataset_json)
    preprocessor = trainer.configuration_manager.preprocessor_class(verbose=False)
    rw = trainer.plans_manager.image_reader_writer_class()
    manifest = {"source": f"user:{os.path.abspath(raw_folder)}", "cases": identifiers, "outside_crop": "ignore",
                "file_ending": file_ending(trainer.dataset_class), "created": time.strftime("%Y-%m-%d %H:%M:%S")}
    with staged_folder(folder) as tmp:
        for identifier in identifiers:
            label_file = os.path.join(raw_folder, identifier + ending)
            label, _ = rw.read_seg(label_file)
            image, _ = rw.read_images(files[identifier]["images"])
            if label.shape[1:] != image.shape[1:]:
                raise ValueError(f"{label_file}: shape {label.shape[1:]} does not match the image's "
                                 f"{image.shape[1:]}")
            bad = np.setdiff1d(np.unique(label), [*range(k), ignore])
            if bad.size:
                shown = [int(v) if float(v).is_integer() else float(v) for v in bad]
                raise ValueError(f"{label_file}: values {shown} are not classes 0..{k - 1} (or the ignore label "
                                 f"{ignore})")
            _, seg, _ = preprocessor.run_case(files[identifier]["images"], label_file, trainer.plans_manager,
                                              trainer.configuration_manager, trainer.dataset_json)
            label = seg[0]
            label[label < 0] = ignore  # outside nnU-Net's non-zero crop mask, as in generate_pseudo_labels
            save_label(os.path.join(tmp, identifier), label, trainer.dataset_class)
        save_json(manifest, os.path.join(tmp, MANIFEST))
    trainer.print_to_log_file(f"CSPNet: imported {len(identifiers)} pseudo labels from {raw_folder} into {folder}")
    return manifest


# ---------------------------------------------------------------------------------------------- quality report
def evaluate_against_dense(trainer: nnUNetTrainerCSPNet, folder: str, identifiers: list[str]) -> dict | None:
    """Dice/HD95 of the pseudo labels against ``nnUNet_raw/<dataset>/labelsTr_dense`` (when it exists), on the cases
    it has a label for (None when it has none of them).

    The pseudo labels are taken back to the raw image grid with nnU-Net's own export path (one-hot "logits" through
    ``convert_predicted_logits_to_segmentation_with_correct_shape``), written to ``<folder>/raw`` and scored with the
    package's evaluator; the summary goes into the manifest and the training log.
    """
    from nnunetv2.inference.export_prediction import convert_predicted_logits_to_segmentation_with_correct_shape
    from nnunetv2.paths import nnUNet_raw

    from nnunet_scribble.evaluation import cases_with_reference, evaluate_folder, format_table

    if not nnUNet_raw.is_set():
        return None
    dense = os.path.join(nnUNet_raw.get(), trainer.plans_manager.dataset_name, "labelsTr_dense")
    if not os.path.isdir(dense):
        return None
    k = trainer.label_manager.num_segmentation_heads
    ending = trainer.dataset_json["file_ending"]
    identifiers, undocumented = cases_with_reference(dense, identifiers, ending)
    if not identifiers:  # e.g. MSCMRseg: dense labels only for the held-out subjects
        trainer.print_to_log_file(f"CSPNet pseudo labels not scored: {dense} has no dense label of the "
                                  f"{len(undocumented)} stage-1 training cases")
        return None
    dataset = trainer.dataset_class(trainer.preprocessed_dataset_folder, identifiers)
    rw = trainer.plans_manager.image_reader_writer_class()
    out_dir = os.path.join(folder, "raw")
    os.makedirs(out_dir, exist_ok=True)
    for identifier in identifiers:
        _, _, _, properties = dataset.load_case(identifier)
        label = torch.from_numpy(load_label(os.path.join(folder, identifier), trainer.dataset_class).astype(np.int64))
        one_hot = torch.stack([(label == c) for c in range(k)]).float()
        seg = convert_predicted_logits_to_segmentation_with_correct_shape(
            one_hot, trainer.plans_manager, trainer.configuration_manager, trainer.label_manager, properties,
            num_threads_torch=1)
        rw.write_seg(seg, os.path.join(out_dir, identifier + ending), properties)
    labels = {n: v for n, v in trainer.dataset_json["labels"].items() if n != "ignore"}
    summary = evaluate_folder(dense, out_dir, labels=labels, file_ending=ending, cases=identifiers,
                              output_json=os.path.join(folder, "summary_dense.json"))
    scored = f"{len(identifiers)} of {len(identifiers) + len(undocumented)} cases, the others have no dense label" \
        if undocumented else f"{len(identifiers)} cases"
    trainer.print_to_log_file(f"CSPNet pseudo labels against dense labels (labelsTr_dense, {scored}):\n"
                              + format_table(summary))
    return summary
