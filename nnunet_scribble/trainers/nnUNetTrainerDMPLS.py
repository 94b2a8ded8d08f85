"""DMPLS: dual-branch network with dynamically mixed pseudo labels (Luo et al., MICCAI 2022)."""
from __future__ import annotations

from typing import ClassVar

import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager, PlansManager
from torch import nn

from nnunet_scribble.losses.pseudo_label import mixed_pseudo_label, pseudo_label_supervision
from nnunet_scribble.networks import MultiDecoderNetwork, MultiDecoderOutput
from nnunet_scribble.trainers.common import LossTerms, unwrap_network
from nnunet_scribble.trainers.nnUNetTrainerScribble import nnUNetTrainerScribble


class nnUNetTrainerDMPLS(nnUNetTrainerScribble):
    """Dual-branch network supervised by scribbles and by dynamically mixed hard pseudo labels.

    - Network: the planned encoder and decoder (main, used at inference) plus one auxiliary decoder of the same
      structure that sees every encoder feature map (skips and bottleneck) through channel dropout with
      ``p = aux_dropout_p``, in training only (the reference code leaves it on in eval; that quirk is not kept).
    - Loss (eq. 4): ``0.5 * (L_sup(main) + L_sup(aux)) + lambda_pls * L_PLS``, logged as the terms ``sup_main``,
      ``sup_aux`` (weight 0.5 each) and ``pls``. ``L_sup`` is nnU-Net's partial Dice + CE with deep supervision
      (the paper uses partial CE only; here every method shares the baseline's supervised term).
    - Pseudo label (eq. 2): ``argmax(beta * softmax(main) + (1 - beta) * softmax(aux))``, detached, with one
      ``beta ~ U(0, 1)`` per iteration (:meth:`draw_beta`). ``L_PLS`` (eq. 3) is the mean over both decoders of a
      batch-global soft Dice over all classes including background, squared denominator (the reference's ``pDLoss``).
    - Deep supervision: ``L_PLS`` uses the full-resolution outputs only (as the reference, which has no deep
      supervision, and the package's rule "method terms at full resolution"); the lower-resolution heads of both
      decoders are trained by their ``L_sup`` terms, so every parameter still receives a gradient.
    - No ramp-up of ``lambda_pls`` (the reference has none) and no method state to checkpoint.
    - DDP: ``beta`` is drawn on each rank and the Dice is computed over each rank's local batch; nothing is
      synchronised beyond the gradients (the reference trains on one GPU).

    References:
        Luo et al., "Scribble-Supervised Medical Image Segmentation via Dual-Branch Network and Dynamically Mixed
        Pseudo Labels Supervision", MICCAI 2022. Code: HiLab-git/WSL4MIS (commit 0f1dbe1).
    """

    SUPPORTS_REGIONS: ClassVar[bool] = False

    #: Weight λ of the pseudo-label supervision term (eq. 4; paper and reference: 0.5).
    lambda_pls: float = 0.5
    #: Weight of each decoder's supervised term (eq. 4: 0.5, i.e. the mean of the two partial losses).
    sup_weight: float = 0.5
    #: Channel-dropout probability on the encoder features fed to the auxiliary decoder (paper: 0.5).
    aux_dropout_p: float = 0.5

    def initialize(self):
        super().initialize()
        # the static builder uses the class default; apply an overridden instance value (no parameters involved)
        unwrap_network(self.network).aux_feature_dropout = self.aux_dropout_p

    @staticmethod
    def build_network_architecture(plans_manager: PlansManager, configuration_manager: ConfigurationManager,
                                   num_input_channels: int, num_output_channels: int,
                                   enable_deep_supervision: bool = True) -> nn.Module:
        base = nnUNetTrainer.build_network_architecture(plans_manager, configuration_manager, num_input_channels,
                                                        num_output_channels, enable_deep_supervision)
        return MultiDecoderNetwork(base, num_aux=1, aux_feature_dropout=nnUNetTrainerDMPLS.aux_dropout_p)

    def draw_beta(self) -> float:
        """The mixing weight of eq. 2 for this iteration, ``beta ~ U(0, 1)``."""
        return float(torch.rand(()))

    def compute_loss_terms(self, data: torch.Tensor, target: torch.Tensor | list[torch.Tensor],
                           extra: torch.Tensor | None = None) -> LossTerms:
        out = self.network(data)
        if not isinstance(out, MultiDecoderOutput):
            raise RuntimeError("nnUNetTrainerDMPLS.compute_loss_terms needs the network in training mode "
                               f"(got {type(out).__name__} instead of MultiDecoderOutput)")
        main, aux = out.main, out.aux[0]
        main_full = main[0] if isinstance(main, (list, tuple)) else main
        aux_full = aux[0] if isinstance(aux, (list, tuple)) else aux
        pseudo_label = mixed_pseudo_label(main_full, aux_full, self.draw_beta())
        return {"sup_main": (self.loss(main, target), self.sup_weight),
                "sup_aux": (self.loss(aux, target), self.sup_weight),
                "pls": (pseudo_label_supervision(main_full, aux_full, pseudo_label), self.lambda_pls)}
