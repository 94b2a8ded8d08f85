"""CSPNet: class-driven scribble promotion (Zhang et al., CSPNet.txt), stage 1 and stage 2 in one nnU-Net trainer."""
from __future__ import annotations

import os
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from batchgeneratorsv2.transforms.base.basic_transform import BasicTransform
from batchgeneratorsv2.transforms.utils.remove_label import RemoveLabelTransform
from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager, PlansManager
from torch import nn

from nnunet_scribble.cspnet import stage1
from nnunet_scribble.losses.schedules import sigmoid_rampup
from nnunet_scribble.losses.cspnet import distance_perception_loss, label_smoothed_ce, lorm_loss
from nnunet_scribble.networks import LoRMHead, MultiDecoderNetwork, MultiDecoderOutput
from nnunet_scribble.networks.heads import stage_closest_to_stride
from nnunet_scribble.networks.lorm import lorm_stage
from nnunet_scribble.trainers.common import LossTerms, unwrap_network
from nnunet_scribble.trainers.nnUNetTrainerScribble import OUTSIDE_IMAGE, nnUNetTrainerScribble
from nnunet_scribble.transforms.cspnet_maps import (CSPNetMapsTransform, PseudoLabelOutsideToBackgroundTransform,
                                                    boundary_distance_map, scribble_distance_map)


class nnUNetTrainerCSPNet(nnUNetTrainerScribble):
    """CSPNet on nnU-Net's planned network: stage 1 (CAM pseudo labels) once, then ``L_basic + L_lorm + L_dp``.

    Stage 1 (§III-B, :mod:`nnunet_scribble.cspnet`): when the fold has no pseudo labels yet, ``on_train_start``
    trains a CAM network on the planned encoder (fresh weights; classifier at the encoder stage closest to stride
    ``cam_stride``) with ``lambda_cls * soft-margin + lambda_segs_stage1 * pCE`` (eq. 9, Table A4 ACDC: 0.1/0.9) on
    nnU-Net's own augmented batches for ``stage1_fraction`` of stage 2's iterations, turns its segmentation head's
    prediction (default, ``pseudo_label_source``; or its thresholded CAMs, eq. 10, threshold chosen on the scribbles
    unless ``cam_threshold >= 0``) over the classes scribbled in the image into one map per training case (2D: per
    slice),
    lets scribble voxels override it, sets foreground farther than ``pseudo_label_max_distance`` from its class's
    scribbles to background (instead of ToCo's PAR, see :func:`~nnunet_scribble.cspnet.cam.gate_by_scribble_distance`)
    and writes it next to the preprocessed data. A user's own pseudo labels:
    ``pseudo_labels_raw`` = a folder of label files named like ``labelsTr`` (see :mod:`nnunet_scribble.cspnet.stage1`
    for storage, atomic writes and resuming). The scribble terms of both stages treat nnU-Net's -1 as unannotated
    and the stored pseudo labels hold the ignore label outside nnU-Net's non-zero crop; ``outside_image_background``
    makes that region background in stage 2's pseudo labels only (:meth:`outside_is_background`).

    Stage 2 (eq. 5-19): the pseudo labels are a second segmentation channel read by nnU-Net's loader (the cascade
    mechanism), so they go through exactly the scribbles' spatial augmentation; after it,
    :class:`~nnunet_scribble.transforms.cspnet_maps.CSPNetMapsTransform` appends ``d_s`` (eq. 17) and ``d_c``
    (eq. 15) computed on the augmented patch. Terms (logged as ``segs``, ``segc``, ``lorm``, ``ds``, ``dc``):

    - ``segs``: nnU-Net's partial Dice + CE with deep supervision (the shared baseline term, methods.md) instead of
      the paper's pCE (eq. 7);
    - ``segc`` (eq. 8, weight ``lambda_segc``): label-smoothed CE, ε = ``label_smoothing``, full resolution;
    - ``lorm`` (eq. 11-14, weight ``lambda_lorm``): 1x1 query/key projections of the encoder stage chosen by
      :func:`~nnunet_scribble.networks.lorm.lorm_stage` (stride >= 8, at most ``LORM_MAX_TOKENS`` tokens per sample:
      ACDC 2d 256x224 -> stride 8, 896 tokens), keys masked by the pseudo-label foreground (area-downsampled to the
      grid, > 0.5), learnable δ; the MSE runs over foreground positions only (deviation, see
      :func:`~nnunet_scribble.losses.cspnet.lorm_loss`);
    - ``ds``/``dc`` (eq. 16, 18, 19; weights ``weight_ds``/``weight_dc``, 1 in the paper): entropy of the prediction
      weighted by ``d_s``/``d_c`` and normalised by their non-zero count (entropy *reduction*, methods.md);
      ``dp_rampup_fraction`` > 0 ramps both weights up per epoch (deviation, off by default; ``...DPMRamp``: 0.3).

    Defaults are Table A5's ACDC row (λ_segc 0.1, λ_lorm 0.5, λ_s 1, λ_c 6); the network, optimiser, schedule and
    inference are nnU-Net's (the LoRM head is not run in eval mode). DDP: stage 1 runs on rank 0 while the other ranks
    wait for the committed folder; all stage-2 terms are per rank (batch means).
    """

    SUPPORTS_REGIONS: ClassVar[bool] = False

    # ---- stage 1 (Table A4, ScribbleACDC)
    lambda_cls: float = 0.1
    lambda_segs_stage1: float = 0.9
    stage1_fraction: float = 0.2  # stage-1 iterations as a fraction of num_epochs * num_iterations_per_epoch
    cam_stride: int = 8  # the CAM is read at the encoder stage closest to this stride
    cam_threshold: float = -1.0  # < 0: chosen on the scribbles
    #: Stage 1's pCE as the mean of per-class means (:func:`~nnunet_scribble.cspnet.cam.stage1_loss`; not in the
    #: paper), for scribbles whose background dominates. Off: on MSCMRseg its pseudo labels are about twice the true
    #: RV and myocardium volumes (benchmarks/README.md).
    stage1_class_balanced: bool = False
    #: "segmentation" (stage 1's segmentation head, restricted to the image's classes) or "cam" (eq. 10, the paper).
    #: Default changed on benchmark evidence: on ACDC, where nearly every slice holds every class, image-level labels
    #: carry almost no signal and the CAM pseudo labels score 7.4 % Dice (30.3 % gated) against 27.9 % (69.4 % gated)
    #: for the segmentation head of the same stage-1 network (issue-7 note).
    pseudo_label_source: str = "segmentation"
    #: Foreground pseudo labels farther than this from every scribble of their class become background (voxels of
    #: the finest axis; inf: off). Replaces ToCo's PAR refinement; ACDC evidence in the issue-7 note.
    pseudo_label_max_distance: float = 15.0
    pseudo_labels_raw: str = ""  # a user's pseudo labels (raw label files named like labelsTr) instead of stage 1
    # ---- stage 2 (eq. 5-19, Table A5 ScribbleACDC)
    lambda_segc: float = 0.1
    label_smoothing: float = 0.2
    lambda_lorm: float = 0.5
    lambda_s: float = 1.0
    lambda_c: float = 6.0
    weight_ds: float = 1.0
    weight_dc: float = 1.0
    #: Sigmoid ramp-up of ``weight_ds`` and ``weight_dc`` over this fraction of the epochs (``exp(-5 (1 - t)^2)``,
    #: Laine & Aila; 0: none, the paper). Not in the paper or the reference code; for the entropy terms' early pull
    #: against the scribble term (benchmarks/README.md, CSPNet's per-term gradients on MSCMRseg).
    dp_rampup_fraction: float = 0.0
    # ---- structure, read when the network is built (also by nnUNetv2_predict): upper case, so no environment
    # override can make the training network differ from the one inference builds; change them in a subclass
    #: LoRM token budget per sample.
    LORM_MAX_TOKENS: int = 1024
    #: Whether the network has the LoRM head (ablation subclasses switch it off).
    USE_LORM: bool = True

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        if self.configuration_manager.previous_stage_name is not None:
            raise ValueError(f"nnUNetTrainerCSPNet cannot train the cascaded configuration '{configuration}': its "
                             f"pseudo labels use the loader's previous-stage channel. Use 2d or 3d_fullres.")
        self._stage = 2
        self.pseudo_label_folder: str | None = None

    def outside_is_background(self) -> bool:
        """Always False: the scribble term (``segs``) and stage 1 keep nnU-Net's -1 unannotated.

        With ``outside_image_background`` (e.g. MSCMRseg's zero border labelled, declared in ``dataset.json``) the
        region outside nnU-Net's non-zero crop is background in the *pseudo labels* of stage 2 instead
        (:class:`~nnunet_scribble.transforms.cspnet_maps.PseudoLabelOutsideToBackgroundTransform`), so ``segc`` and
        the distance maps supervise it, not ``segs``. Not in the paper. Benchmark evidence (MSCMRseg with the zero
        border labelled, benchmarks/README.md, 2026-12-05): with that region background in ``segs`` (95 % of the
        scribble term's labelled voxels) the network was confidently background everywhere after one epoch, the
        entropy terms (``ds``, ``dc``) then locked that in and the run collapsed (mean Dice 25.4, RV 0); in stage 1
        the same imbalance left the pseudo labels with no foreground beyond the scribbles.
        """
        return False

    def get_training_transforms(self, patch_size, rotation_for_DA, deep_supervision_scales, mirror_axes,
                                do_dummy_2d_data_aug, use_mask_for_norm=None, is_cascaded=False,
                                foreground_labels=None, regions=None, ignore_label=None) -> BasicTransform:
        transforms = super().get_training_transforms(
            patch_size, rotation_for_DA, deep_supervision_scales, mirror_axes, do_dummy_2d_data_aug,
            use_mask_for_norm, is_cascaded, foreground_labels, regions, ignore_label)
        if self._stage == 2 and self.outside_image_background:
            steps = transforms.transforms
            at = [i for i, t in enumerate(steps)
                  if isinstance(t, RemoveLabelTransform) and t.label_value == OUTSIDE_IMAGE]
            if not at:
                raise RuntimeError("nnUNetTrainerCSPNet: nnU-Net's training transforms have no "
                                   "RemoveLabelTransform(-1, ...) to put the pseudo labels' outside region before")
            steps.insert(at[0], PseudoLabelOutsideToBackgroundTransform(OUTSIDE_IMAGE))
        return transforms

    # ------------------------------------------------------------------ network
    @classmethod
    def build_network_architecture(cls, plans_manager: PlansManager, configuration_manager: ConfigurationManager,
                                   num_input_channels: int, num_output_channels: int,
                                   enable_deep_supervision: bool = True) -> nn.Module:
        base = nnUNetTrainer.build_network_architecture(plans_manager, configuration_manager, num_input_channels,
                                                        num_output_channels, enable_deep_supervision)
        if not cls.USE_LORM:
            return MultiDecoderNetwork(base, num_aux=0)
        stage = lorm_stage(base.encoder.strides, configuration_manager.patch_size, cls.LORM_MAX_TOKENS)
        return MultiDecoderNetwork(base, num_aux=0, head=LoRMHead.for_encoder(base.encoder, stage), head_stage=stage)

    def cam_stage(self) -> int:
        """Encoder stage of stage 1's classifier (closest to ``cam_stride``)."""
        strides = self.configuration_manager.network_arch_init_kwargs["strides"]
        return stage_closest_to_stride(strides, self.cam_stride)

    # ------------------------------------------------------------------ stage 1 / pseudo labels
    def pseudo_label_key(self) -> str:
        base = f"{self.plans_manager.plans_name}__{self.configuration_name}"
        if self.pseudo_labels_raw:
            return f"{stage1.user_folder_key(self.pseudo_labels_raw)}__{base}"
        source = "" if self.pseudo_label_source == "segmentation" else f"__{self.pseudo_label_source}"
        balanced = "__balanced" if self.stage1_class_balanced else ""
        return f"{base}__fold_{self.fold}{source}{balanced}"

    def prepare_training_data(self) -> None:
        """Stage 2's data: the fold's pseudo labels (reused, imported, or made by stage 1), read as a second channel.

        ``on_train_start`` runs it after warning about unannotated classes, so the warning comes before stage 1.
        """
        if self.dataset_class is None:
            self.dataset_class = infer_dataset_class(self.preprocessed_dataset_folder)
        self.pseudo_label_folder = self.prepare_pseudo_labels()
        self._stage = 2

    def pseudo_label_folder_path(self) -> str:
        """Where this fold's pseudo labels live (whether or not they exist yet)."""
        return os.path.join(stage1.pseudo_label_root(self.preprocessed_dataset_folder_base), self.pseudo_label_key())

    def prepare_pseudo_labels(self) -> str:
        """The fold's complete pseudo-label folder: reused, imported from ``pseudo_labels_raw``, or made by stage 1."""
        tr_keys, _ = self.do_split()
        folder = self.pseudo_label_folder_path()
        if os.path.isdir(folder):
            manifest = stage1.check_folder(folder, tr_keys, self.dataset_class, self.preprocessed_dataset_folder)
            self.print_to_log_file(f"CSPNet: reusing pseudo labels in {folder} (source {manifest['source']})")
            return folder
        if self.local_rank != 0:
            stage1.wait_for_folder(folder)
            return folder
        os.makedirs(os.path.dirname(folder), exist_ok=True)
        if self.pseudo_labels_raw:
            stage1.import_user_pseudo_labels(self, self.pseudo_labels_raw, tr_keys, folder)
        else:
            self._stage = 1
            loader_train, loader_val = self.get_dataloaders()
            try:
                model = stage1.train_stage1(self, loader_train)
            finally:
                for loader in (loader_train, loader_val):
                    if hasattr(loader, "_finish"):
                        loader._finish()
            manifest = stage1.generate_pseudo_labels(self, model, tr_keys, folder)
            summary = stage1.evaluate_against_dense(self, folder, tr_keys)
            if summary is not None:
                stage1.record_dense_summary(folder, manifest, summary)
        return folder

    def get_tr_and_val_datasets(self):
        dataset_tr, dataset_val = super().get_tr_and_val_datasets()
        if self._stage == 2 and self.pseudo_label_folder is not None:
            # the pseudo label is read like a cascade input: a second segmentation channel, augmented with the first
            dataset_tr = self.dataset_class(self.preprocessed_dataset_folder, dataset_tr.identifiers,
                                            folder_with_segs_from_previous_stage=self.pseudo_label_folder)
        return dataset_tr, dataset_val

    def extra_target_transforms(self) -> list[BasicTransform]:
        if self._stage == 1:
            return []
        return [CSPNetMapsTransform(self.label_manager.ignore_label, self.lambda_s, self.lambda_c,
                                    self.configuration_manager.spacing)]

    # ------------------------------------------------------------------ stage 2 loss
    def compute_loss_terms(self, data: torch.Tensor, target: torch.Tensor | list[torch.Tensor],
                           extra: torch.Tensor | None = None) -> LossTerms:
        out = self.network(data)
        if not isinstance(out, MultiDecoderOutput):
            raise RuntimeError("nnUNetTrainerCSPNet.compute_loss_terms needs the network in training mode")
        ignore = self.label_manager.ignore_label
        if extra is None:  # a batch without pseudo labels (e.g. a synthetic benchmark batch): scribbles stand in
            extra = self._maps_from_labels((target[0] if isinstance(target, list) else target)[:, 0])
        pseudo, d_s, d_c = extra[:, 0].round().long(), extra[:, 1].float(), extra[:, 2].float()
        logits = out.main[0] if isinstance(out.main, (list, tuple)) else out.main
        terms: LossTerms = {
            "segs": (self.loss(out.main, target), 1.0),
            "segc": (label_smoothed_ce(logits, pseudo, self.label_smoothing, ignore), self.lambda_segc),
        }
        if out.embeddings is not None:
            features, query, key = out.embeddings
            foreground = ((pseudo > 0) & (pseudo != ignore)).float().unsqueeze(1)
            grid = F.interpolate(foreground, size=features.shape[2:], mode="area")[:, 0] > 0.5
            delta = unwrap_network(self.network).head.delta
            terms["lorm"] = (lorm_loss(features, query, key, grid, delta), self.lambda_lorm)
        ramp = self.distance_perception_ramp()
        if self.weight_ds > 0:
            terms["ds"] = (distance_perception_loss(logits, d_s), self.weight_ds * ramp)
        if self.weight_dc > 0:
            terms["dc"] = (distance_perception_loss(logits, d_c), self.weight_dc * ramp)
        return terms

    def distance_perception_ramp(self) -> float:
        """Factor on ``weight_ds``/``weight_dc`` at the current epoch: 1 unless ``dp_rampup_fraction`` > 0."""
        return sigmoid_rampup(self.current_epoch, self.dp_rampup_fraction * self.num_epochs)

    def _maps_from_labels(self, labels: torch.Tensor) -> torch.Tensor:
        ignore, spacing = self.label_manager.ignore_label, self.configuration_manager.spacing
        maps = []
        for s in labels.detach().cpu().numpy():
            maps.append(np.stack([s.astype(np.float32), scribble_distance_map(s, ignore, self.lambda_s, spacing),
                                  boundary_distance_map(s, ignore, self.lambda_c, spacing)]))
        return torch.from_numpy(np.stack(maps)).to(labels.device)


class nnUNetTrainerCSPNetNoLoRM(nnUNetTrainerCSPNet):
    """Table VI line 9: ``L_segs + L_segc + L_ds + L_dc`` (no LoRM head)."""

    USE_LORM: bool = False


class nnUNetTrainerCSPNetNoDPM(nnUNetTrainerCSPNet):
    """Table VI line 8: ``L_segs + L_segc + L_lorm`` (no distance perception)."""

    weight_ds: float = 0.0
    weight_dc: float = 0.0


class nnUNetTrainerCSPNetDPMRamp(nnUNetTrainerCSPNet):
    """Variant (not in the paper): ``ds`` and ``dc`` ramped up over the first 30 % of the epochs, every term kept."""

    dp_rampup_fraction: float = 0.3


class nnUNetTrainerCSPNetNoDs(nnUNetTrainerCSPNet):
    """Table VI line 7: without the scribble distance term ``L_ds``."""

    weight_ds: float = 0.0


class nnUNetTrainerCSPNetNoDc(nnUNetTrainerCSPNet):
    """Table VI line 6: without the pseudo-label boundary term ``L_dc``."""

    weight_dc: float = 0.0


class nnUNetTrainerCSPNetBasic(nnUNetTrainerCSPNet):
    """Table VI line 3: ``L_basic = L_segs + λ_segc·L_segc`` only (no LoRM, no DPM)."""

    USE_LORM: bool = False
    weight_ds: float = 0.0
    weight_dc: float = 0.0
