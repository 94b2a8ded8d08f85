"""CSPNet stage 1: a class-activation-map (CAM) network on the planned encoder and CAM -> pseudo-label functions.

CSPNet (Zhang et al., CSPNet.txt §III-B) trains a "scribble-promoted" classifier (ToCo, a ViT) with image-level
labels and scribbles, and thresholds its CAMs (eq. 10) into one pseudo-label map per training image. The authors
never released that stage. Here it is rebuilt inside nnU-Net:

- :class:`CAMNetwork`: the planned encoder (fresh weights) up to stage ``cam_stage``, a bias-free 1x1 classifier
  over the foreground classes whose spatial mean is the image-level logit (global average pooling and a linear layer
  commute, so the classifier's pre-activation map *is* the CAM of eq. 10 up to the ReLU), and a shallow
  segmentation head (two convolutions, the "shallow FOV" of the paper) trained on the scribbles;
- :func:`stage1_loss`: eq. 9, ``λ_cls·soft-margin + λ_segs·pCE`` (optionally class-balanced pCE, not in the paper);
- :func:`normalise_cams`, :func:`cams_to_pseudo_label`, :func:`threshold_scores`: CAMs of the classes present in the
  image (from its scribbles) divided by their maximum, thresholded and merged into one label map (argmax over the
  classes whose CAM passes the threshold, background elsewhere), scribble voxels overriding the result.

Deviations from the paper (all documented in the trainer too): a CNN encoder instead of ToCo's ViT and none of
ToCo's auxiliary losses; no pixel-adaptive refinement (PAR) — the refinement is the scribble override; the threshold
is chosen per dataset on the scribbles (``threshold_scores``) unless fixed by the user.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class CAMNetwork(nn.Module):
    """Encoder stages ``0..cam_stage`` + CAM classifier + shallow segmentation head (stage 1 of CSPNet).

    Args:
        encoder: a planned nnU-Net encoder (``PlainConvEncoder``/``ResidualEncoder``: ``stem``, ``stages``,
            ``output_channels``, ``conv_op``, ``norm_op``...). Stages after ``cam_stage`` are dropped.
        cam_stage: encoder stage whose output feeds the classifier and the segmentation head.
        num_classes: classes including background; the classifier has ``num_classes - 1`` outputs.

    ``forward(x)`` returns ``(class_logits (B, K-1), cam_logits (B, K-1, *grid), seg_logits (B, K, *spatial))``;
    ``seg_logits`` are upsampled to the input size.
    """

    def __init__(self, encoder: nn.Module, cam_stage: int, num_classes: int):
        super().__init__()
        if not 0 <= cam_stage < len(encoder.stages):
            raise ValueError(f"cam_stage must index one of the encoder's {len(encoder.stages)} stages, got {cam_stage}")
        if num_classes < 2:
            raise ValueError(f"CAMs need at least one foreground class, got num_classes={num_classes}")
        self.stem = getattr(encoder, "stem", None)
        self.stages = nn.Sequential(*list(encoder.stages)[:cam_stage + 1])
        channels = encoder.output_channels[cam_stage]
        conv = encoder.conv_op
        self.classifier = conv(channels, num_classes - 1, 1, bias=False)
        norm = encoder.norm_op(channels, **(encoder.norm_op_kwargs or {})) if encoder.norm_op else nn.Identity()
        nonlin = encoder.nonlin(**(encoder.nonlin_kwargs or {})) if encoder.nonlin else nn.LeakyReLU(inplace=True)
        self.seg_head = nn.Sequential(conv(channels, channels, 3, padding=1), norm, nonlin,
                                      conv(channels, num_classes, 1))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        if self.stem is not None:
            x = self.stem(x)
        return self.stages(x)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        f = self.features(x)
        cam_logits = self.classifier(f)
        class_logits = cam_logits.flatten(2).mean(2)
        seg = self.seg_head(f)
        mode = "bilinear" if x.ndim == 4 else "trilinear"
        seg = F.interpolate(seg, size=x.shape[2:], mode=mode, align_corners=False)
        return class_logits, cam_logits, seg


def image_level_labels(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Multi-hot ``(B, K-1)`` float: foreground class ``k`` is annotated somewhere in sample ``b``'s label map.

    ``labels``: ``(B, *spatial)`` or ``(B, 1, *spatial)``; values outside ``1..K-1`` (background, ignore, -1) do
    not count.
    """
    if labels.ndim >= 3 and labels.shape[1] == 1:
        labels = labels[:, 0]
    flat = labels.reshape(labels.shape[0], -1)
    return torch.stack([(flat == k).any(1) for k in range(1, num_classes)], 1).float()


def stage1_loss(class_logits: torch.Tensor, seg_logits: torch.Tensor, labels: torch.Tensor, ignore_label: int,
                lambda_cls: float, lambda_segs: float,
                class_balanced: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 9: the two terms ``(L_cls, L_segs)``; the total is ``lambda_cls * L_cls + lambda_segs * L_segs``.

    ``L_cls`` is PyTorch's multi-label soft-margin loss against :func:`image_level_labels` of the (augmented) patch;
    ``L_segs`` the partial CE of eq. 7 over annotated voxels (0, finite and graph-connected when there is none).
    The weights are returned to the caller's sum, not applied here.

    Args:
        class_balanced: ``L_segs`` is the mean over the classes annotated in the batch of each class's mean CE
            instead of the mean over annotated voxels (equal when every class has the same number of voxels).
            Not in the paper: for label maps whose background dominates the annotation (a labelled region outside
            the image, ``outside_image_background``), where the plain mean is minimised by predicting background
            everywhere (benchmarks/README.md, MSCMRseg).
    """
    if labels.ndim == seg_logits.ndim:
        labels = labels[:, 0]
    num_classes = seg_logits.shape[1]
    targets = image_level_labels(labels, num_classes)
    l_cls = F.multilabel_soft_margin_loss(class_logits.float(), targets)
    annotated = (labels >= 0) & (labels < num_classes) & (labels != ignore_label)
    if not annotated.any():
        return l_cls, seg_logits.sum() * 0.0
    target = torch.where(annotated, labels, 0).long()
    ce = F.cross_entropy(seg_logits.float(), target, reduction="none")
    if not class_balanced:
        return l_cls, (ce * annotated).sum() / annotated.sum()
    one_hot = F.one_hot(target, num_classes) * annotated.unsqueeze(-1)  # (B, *spatial, K)
    counts = one_hot.flatten(0, -2).sum(0)
    per_class = (ce.unsqueeze(-1) * one_hot).flatten(0, -2).sum(0) / counts.clamp_min(1)
    present = counts > 0
    return l_cls, per_class[present].mean()


def normalise_cams(cams: torch.Tensor, present: torch.Tensor | Sequence[bool], eps: float = 1e-5) -> torch.Tensor:
    """ReLU'd CAMs of one image divided by their maximum; zero for classes not present in the image.

    Args:
        cams: ``(K-1, *spatial)`` CAM logits (eq. 10 before the ReLU) of one image.
        present: ``(K-1,)`` bool, the foreground classes annotated in the image (the image-level label).
        eps: added to each maximum.

    Returns:
        ``(K-1, *spatial)`` float in ``[0, 1)``.
    """
    cams = torch.relu(cams.float())
    present = torch.as_tensor(present, dtype=torch.bool, device=cams.device)
    if present.shape != cams.shape[:1]:
        raise ValueError(f"present must have one entry per CAM channel ({cams.shape[0]}), got {tuple(present.shape)}")
    peak = cams.flatten(1).amax(1).view(-1, *(1,) * (cams.ndim - 1))
    return torch.where(present.view(-1, *(1,) * (cams.ndim - 1)), cams / (peak + eps), torch.zeros_like(cams))


def cams_to_pseudo_label(cams: torch.Tensor, threshold: float, scribble: torch.Tensor | None = None,
                         num_classes: int | None = None) -> torch.Tensor:
    """Merge normalised CAMs into one label map: ``argmax + 1`` where the best CAM is ``>= threshold``, else 0.

    Args:
        cams: ``(K-1, *spatial)`` normalised CAMs (:func:`normalise_cams`).
        threshold: in ``[0, 1]``.
        scribble: optional ``(*spatial)`` label map; its voxels with a class in ``[0, num_classes)`` overwrite the
            result (the scribble is ground truth where it exists).
        num_classes: ``K``, needed with ``scribble`` (default ``cams.shape[0] + 1``).

    Returns:
        ``(*spatial)`` int64 labels in ``[0, K)``.
    """
    best, idx = cams.max(0)
    label = torch.where(best >= threshold, idx + 1, torch.zeros_like(idx))
    if scribble is not None:
        k = num_classes if num_classes is not None else cams.shape[0] + 1
        annotated = (scribble >= 0) & (scribble < k)
        label = torch.where(annotated, scribble.long(), label)
    return label


#: Thresholds tried when the threshold is chosen on the scribbles.
CANDIDATE_THRESHOLDS = tuple(np.round(np.arange(0.05, 0.951, 0.05), 2))


def threshold_scores(cams: torch.Tensor, scribble: torch.Tensor, num_classes: int,
                     thresholds: Sequence[float] = CANDIDATE_THRESHOLDS) -> np.ndarray:
    """Per-threshold, per-class counts of scribble voxels that the thresholded CAMs label correctly.

    Args:
        cams: ``(K-1, *spatial)`` normalised CAMs of one image.
        scribble: ``(*spatial)`` label map of the same image (values outside ``[0, K)`` are unannotated).
        num_classes: ``K``.
        thresholds: candidate thresholds.

    Returns:
        ``(len(thresholds), 2, K)`` int64: ``[t, 0, k]`` correctly labelled scribble voxels of class ``k`` at
        threshold ``t``, ``[t, 1, k]`` all scribble voxels of class ``k``. Sum over images, then pick the threshold
        with the best mean per-class recall (:func:`choose_threshold`).
    """
    annotated = (scribble >= 0) & (scribble < num_classes)
    truth = scribble[annotated].long()
    on = cams[:, annotated]  # (K-1, n)
    best, idx = on.max(0) if on.shape[1] else (on.new_zeros(0), on.new_zeros(0, dtype=torch.long))
    total = torch.bincount(truth, minlength=num_classes).cpu()
    out = np.zeros((len(thresholds), 2, num_classes), dtype=np.int64)
    for i, t in enumerate(thresholds):
        pred = torch.where(best >= t, idx + 1, torch.zeros_like(idx))
        out[i, 0] = torch.bincount(truth[pred == truth], minlength=num_classes).cpu().numpy()
        out[i, 1] = total.numpy()
    return out


def choose_threshold(scores: np.ndarray, thresholds: Sequence[float] = CANDIDATE_THRESHOLDS) -> tuple[float, float]:
    """The threshold with the highest mean per-class recall on the scribbles (classes with scribbles only).

    Args:
        scores: summed :func:`threshold_scores`, ``(T, 2, K)``.

    Returns:
        ``(threshold, mean recall at that threshold)``; ties go to the lower threshold.
    """
    correct, total = scores[:, 0].astype(float), scores[:, 1].astype(float)
    has = total[0] > 0
    if not has.any():
        raise ValueError("no scribble voxel to choose a CAM threshold on")
    recall = (correct[:, has] / total[:, has]).mean(1)
    best = int(np.argmax(recall))
    return float(thresholds[best]), float(recall[best])


def gate_by_scribble_distance(label: np.ndarray, scribble: np.ndarray, num_classes: int, max_distance: float,
                              spacing: Sequence[float] | None = None) -> np.ndarray:
    """Set foreground pseudo labels farther than ``max_distance`` from every scribble of their class to background.

    Scribbles are drawn inside each structure, and a structure rarely extends far beyond its strokes, whereas CAMs and
    shallow heads fire on look-alike tissue anywhere in the image. This gate is the refinement used here instead of
    ToCo's pixel-adaptive refinement (which the paper uses and whose code was not released): it removes the far-field
    false positives that dominate the pseudo labels' HD95. Dimension-agnostic; distances are in units of the finest
    axis of ``spacing`` (voxels when ``None``), as the other distance maps of this package.

    Args:
        label: ``(*spatial)`` pseudo label, classes ``0..K-1``.
        scribble: ``(*spatial)`` scribble labels of the same image (values outside ``1..K-1`` are not foreground
            scribbles).
        num_classes: ``K``.
        max_distance: cut-off; ``inf`` disables the gate.
        spacing: voxel spacing per axis.

    Returns:
        The gated label (a copy).
    """
    from scipy.ndimage import distance_transform_edt

    from nnunet_scribble.transforms.distance_maps import relative_spacing

    out = np.array(label, copy=True)
    if not np.isfinite(max_distance):
        return out
    sampling = relative_spacing(spacing, out.ndim)
    for c in range(1, num_classes):
        on = out == c
        if not on.any():
            continue
        seeds = scribble == c
        if not seeds.any():
            out[on] = 0
            continue
        far = distance_transform_edt(~seeds, sampling=sampling) > max_distance
        out[on & far] = 0
    return out
