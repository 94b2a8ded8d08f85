"""MedCL: intra/inter-image mixing and anatomy-consistent prototype clustering (Zhang & Patel), and its ablations."""
from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager, PlansManager
from torch import nn

from nnunet_scribble.data.class_presence import ClassPresenceDataLoader, use_data_loader_class
from nnunet_scribble.losses.medcl import (anatomy_consistency_loss, category_loss, cluster_loss,
                                          mix_consistency_loss, prototype_loss)
from nnunet_scribble.networks.medcl_heads import MedCLNetwork, MedCLOutput
from nnunet_scribble.trainers.common import LossTerms
from nnunet_scribble.trainers.nnUNetTrainerScribble import nnUNetTrainerScribble
from nnunet_scribble.transforms.anatomy_mixing import (intra_mix_images, intra_mix_labels, inter_mix,
                                                       sample_inter_mix_weights, sample_intra_mix_parameters)

Output = torch.Tensor | list[torch.Tensor]


class nnUNetTrainerMedCL(nnUNetTrainerScribble):
    """MedCL-UNet on nnU-Net's planned network: ``L_mix + L_proto + L_cluster + L_ac + L_scribble + L_category``.

    - Network (:class:`~nnunet_scribble.networks.medcl_heads.MedCLNetwork`): planned encoder/decoder + union head,
      projector and ``K`` prototypes, all in the state_dict (``--c`` and inference restore them).
    - Step: the batch is intra-mixed (rotation ``|θ| ≤ 15°``, Beta(0.5, 0.5) blend outside a 0.9-1.0 box; scribbles
      mixed alike, ignore kept where nothing is annotated), then inter-mixed with the reversed batch; ``x'`` and
      ``x_12`` go through the network as one ``2B`` batch. ``L_scribble`` is nnU-Net's partial Dice + CE with deep
      supervision on ``x'`` and its mixed scribbles (the paper's CE + Dice on annotated pixels); ``L_category``
      (image-level labels) on ``x'``; ``L_mix`` (eq. 1) on the softmax and union maps of ``x_12``, background
      included so that the cosine is defined on all-background patches; ``L_proto`` (eq. 2-3, appendix), ``L_cluster``
      (eq. 4) and ``L_ac`` (eq. 5) on all ``2B`` samples. All weights 1 (eq. 6), no ramp-up.
    - ``Ψ`` of the category loss: the classes annotated in the sample's whole image (slice in 2D, case in 3D), from
      :class:`~nnunet_scribble.data.class_presence.ClassPresenceDataLoader` (``batch["class_presence"]``). A batch
      without it (e.g. a synthetic benchmark batch) uses every class, i.e. ``L_category = 0``; the patch's own
      scribbles would be a wrong, too small ``Ψ``.
    - Method terms use the full-resolution output. The unions are trained by ``L_ac`` and the prototype terms only
      (the paper supervises class maps only).
    - DDP: mixing draws and the per-sample terms are per rank; Sinkhorn normalisation and the cluster centres use the
      global batch (all-reduce, :mod:`nnunet_scribble.losses.sinkhorn`), with gradients scaled so that DDP's averaging
      gives the single-process gradient.

    References:
        Zhang & Patel, "MedCL: Learning Consistent Anatomy Distribution for Scribble-supervised Medical Image
        Segmentation", arXiv 2503.22890. Code: BWGZK-keke/MedCL (released engine.py 2024-07-01 has no Sinkhorn; this
        follows the paper, size- and batch-agnostic, 2D and 3D).
    """

    SUPPORTS_REGIONS: ClassVar[bool] = False

    # ---- MedCL hyperparameters (paper / reference defaults)
    use_mixing: bool = True  # intra- and inter-mix and L_mix (Table 5 "Mix/L_mix")
    max_rotation_deg: float = 15.0  # |θ| of the intra-mix rotation ("small"; the reference draws 0-360°)
    box_fraction_low: float = 0.9  # I_b covers U(low, 1) of each axis
    beta_concentration: float = 0.5  # β', β ~ Beta(c, c)
    sinkhorn_epsilon: float = 0.05  # w of eq. 2-3
    sinkhorn_iterations: int = 3
    code_temperature: float = 0.05  # softmax(scores / w) of the appendix pseudocode
    cluster_tau: float = 0.1  # τ of eq. 4
    lambda_mix: float = 1.0
    lambda_proto: float = 1.0
    lambda_cluster: float = 1.0
    lambda_ac: float = 1.0
    lambda_category: float = 1.0
    # ---- architecture constants (change in a subclass: the inference build reads the class values)
    EMBED_DIM: ClassVar[int] = 128  # d
    NUM_PROTOTYPES: ClassVar[int] = 128  # K
    UNION_HEAD: ClassVar[bool] = True  # learned union maps (False: the sums of the class maps, as the reference code)

    @classmethod
    def build_network_architecture(cls, plans_manager: PlansManager, configuration_manager: ConfigurationManager,
                                   num_input_channels: int, num_output_channels: int,
                                   enable_deep_supervision: bool = True) -> nn.Module:
        # a classmethod (nnU-Net's is static; it calls it on the class or the instance alike) so that subclasses'
        # architecture constants apply
        base = nnUNetTrainer.build_network_architecture(plans_manager, configuration_manager, num_input_channels,
                                                        num_output_channels, enable_deep_supervision)
        return MedCLNetwork(base, num_output_channels, cls.EMBED_DIM, cls.NUM_PROTOTYPES, cls.UNION_HEAD)

    def get_dataloaders(self):
        with use_data_loader_class(ClassPresenceDataLoader):
            return super().get_dataloaders()

    def train_step(self, batch: dict) -> dict:
        self._class_presence = batch.get("class_presence")
        try:
            return super().train_step(batch)
        finally:
            self._class_presence = None

    def image_class_presence(self, labels: torch.Tensor) -> torch.Tensor:
        """``(B, C)`` Ψ of the current batch (every class when the batch does not carry it)."""
        present = getattr(self, "_class_presence", None)
        if present is None:
            return torch.ones(labels.shape[0], self.label_manager.num_segmentation_heads, dtype=torch.bool,
                              device=labels.device)
        return present.to(labels.device, torch.bool)

    def mixed_inputs(self, data: torch.Tensor, target: Output) -> tuple[torch.Tensor, Output, torch.Tensor | None]:
        """``(network input, targets of its first B samples, inter-mix weights or None)``."""
        if not self.use_mixing:
            return data, target, None
        lm, n, spatial = self.label_manager, data.shape[0], tuple(data.shape[2:])
        angles, betas, boxes = sample_intra_mix_parameters(n, spatial, self.max_rotation_deg,
                                                           (self.box_fraction_low, 1.0), self.beta_concentration,
                                                           data.device)
        x1 = intra_mix_images(data, angles, betas, boxes)
        full = target[0] if isinstance(target, list) else target
        y1 = intra_mix_labels(full, angles, betas, boxes, lm.num_segmentation_heads, lm.ignore_label)
        if isinstance(target, list):  # deep-supervision targets as nnU-Net's DownsampleSegForDSTransform makes them
            y1 = [y1] + [F.interpolate(y1.float(), t.shape[2:], mode="nearest-exact").to(t.dtype) for t in target[1:]]
        beta = sample_inter_mix_weights(n, self.beta_concentration).to(data.device)
        return torch.cat([x1, inter_mix(x1, beta)]), y1, beta

    def compute_loss_terms(self, data: torch.Tensor, target: Output, extra: torch.Tensor | None = None) -> LossTerms:
        n, m = data.shape[0], self.label_manager.num_segmentation_heads - 1
        present = self.image_class_presence(data)
        inputs, target1, beta = self.mixed_inputs(data, target)
        out = self.network(inputs)
        if not isinstance(out, MedCLOutput):
            raise RuntimeError(f"{type(self).__name__} needs the network in training mode (got {type(out).__name__})")
        main1 = [o[:n] for o in out.main] if isinstance(out.main, list) else out.main[:n]
        terms: LossTerms = {"scribble": (self.loss(main1, target1), 1.0)}
        if self.lambda_category > 0:
            terms["category"] = (category_loss(out.probs[:n], present), self.lambda_category)
        if beta is not None and self.lambda_mix > 0:
            maps = torch.cat([out.probs, out.unions], 1)
            terms["mix"] = (mix_consistency_loss(maps[n:], inter_mix(maps[:n].detach(), beta)), self.lambda_mix)
        proto, codes = prototype_loss(out.scores.flatten(0, 1), self.code_temperature, self.sinkhorn_epsilon,
                                      self.sinkhorn_iterations)
        codes = codes.view(*out.scores.shape)
        terms["proto"] = (proto, self.lambda_proto)
        if self.lambda_cluster > 0:
            terms["cluster"] = (cluster_loss(codes[:, :m], self.cluster_tau), self.lambda_cluster)
        if self.lambda_ac > 0 and m >= 2:
            terms["ac"] = (anatomy_consistency_loss(out.probs[:, 1:], out.unions, codes[:, :m], codes[:, m:]),
                           self.lambda_ac)
        return terms


class nnUNetTrainerMedCLNoMix(nnUNetTrainerMedCL):
    """Ablation without intra/inter-image mixing and ``L_mix`` (Table 5, "Mix/L_mix")."""

    use_mixing: bool = False


class nnUNetTrainerMedCLNoCluster(nnUNetTrainerMedCL):
    """Ablation without the cluster loss of eq. 4 (Table 5, ``L_cluster``); the prototype mapping stays."""

    lambda_cluster: float = 0.0


class nnUNetTrainerMedCLNoAC(nnUNetTrainerMedCL):
    """Ablation without the anatomy consistency loss of eq. 5 (Table 5, ``L_ac``).

    With the separate union head of :class:`~nnunet_scribble.networks.medcl_heads.MedCLNetwork`, eq. 5's map term
    also pulls the class maps towards the (scribble-free) union maps; at the end of a ``cpu``-preset run on MSCMRseg
    its gradient opposed the scribble term's (cosine −0.50, ``benchmarks/term_gradients.py``), and this
    ablation scored 83.4, 82.5 and 82.5 mean Dice there in three runs against MedCL's 60.4-77.1 (benchmarks/README.md,
    MSCMRseg). On ACDC (one run) it scored 72.3, MedCL 71.9 and 72.5.
    """

    lambda_ac: float = 0.0


class nnUNetTrainerMedCLUnionSum(nnUNetTrainerMedCL):
    """Variant: the union maps are the sums of the softmax class maps (``Ω_k``: ``Σ_{i≤k} ŷ_i``), no union head.

    This is what the reference code does (its fifth map is the sum of the foreground channels). Eq. 5's map term is
    then 0 and moves nothing; its centre term (union codes, pooled with the summed maps, against the sums of the
    class centres), ``L_mix`` on the unions and the prototype terms stay. Compare :class:`nnUNetTrainerMedCLNoAC`,
    which drops eq. 5 and keeps the union head (trained by the prototype terms and ``L_mix`` only). On MSCMRseg
    (``cpu`` preset, three runs) it scored 80.2 mean Dice (sd 0.6), between MedCL (67.1) and the ablation (82.8);
    on ACDC (two runs) 72.5 (sd 3.0), tied with MedCL (72.2) and the ablation (72.3, one run).
    """

    UNION_HEAD: ClassVar[bool] = False


class nnUNetTrainerMedCLNoCategory(nnUNetTrainerMedCL):
    """Ablation without the image-level category loss (Appendix Table I, ``L_sup-category``)."""

    lambda_category: float = 0.0
