"""PCLMix: heterogeneous dual decoder, dynamic CutMix, uncertainty-guided pixel contrast (Lei et al., ICIC 2024)."""
from __future__ import annotations

from typing import Any, ClassVar

import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager, PlansManager
from torch import nn

from nnunet_scribble.losses.consistency import ensemble, heterogeneous_consistency, mix_consistency
from nnunet_scribble.losses.contrastive import (class_mean_embeddings, confirmed_pseudo_labels, downsample_labels,
                                                entropy_threshold, queue_contrastive_loss, sample_anchors)
from nnunet_scribble.memory_queue import ClassMemoryQueue
from nnunet_scribble.networks import MultiDecoderNetwork, MultiDecoderOutput
from nnunet_scribble.networks.heads import ProjectionHead, stage_closest_to_stride
from nnunet_scribble.networks.transformer_decoder import TransformerDecoder
from nnunet_scribble.trainers.common import LossTerms, unwrap_network
from nnunet_scribble.trainers.nnUNetTrainerScribble import nnUNetTrainerScribble
from nnunet_scribble.transforms.mixing import draw_box_masks, draw_permutations, mix_batches

Output = torch.Tensor | list[torch.Tensor]


def contrast_weight(iteration: int, max_iterations: int, start: int, weight: float, power: float = 0.9) -> float:
    """``λ_ctr (iter / max_iter)^0.9`` from iteration ``start`` on, 0 before (reference code's ramp and switch)."""
    if iteration < start or weight == 0:
        return 0.0
    return weight * min(iteration / max(max_iterations, 1), 1.0) ** power


class nnUNetTrainerPCLMix(nnUNetTrainerScribble):
    """PCLMix (eq. 1): ``ℓ_sup + λ_ctr·ℓ_ctr + λ_con·(L_het + λ_mix·L_mix)`` on nnU-Net's planned network.

    - Network: planned encoder + planned decoder (CNN, the inference decoder: eval output == planned network) + a
      :class:`~nnunet_scribble.networks.transformer_decoder.TransformerDecoder` (any patch size, 2D/3D, deep
      supervision like the planned decoder; one windowed-attention block with MLP ratio 2 per decoder stage of
      stride >= 16, light 1x1 + depth-wise blocks above: a step costs 3.46x nnU-Net's FLOPs on the ACDC 2d cpu
      plan, inside the 3.5x budget of three passes) + a :class:`~nnunet_scribble.networks.heads.ProjectionHead` (256-d,
      L2-normalised) on the encoder stage closest to stride 8.
    - Dynamic mix (§3.2): two permutations, one box of ``mix_area`` (20 %) per sample, ``x^12`` (box from ``x^1``)
      and ``x^21``; scribbles (every deep-supervision scale, ignore kept) and the detached first-pass ensemble
      ``q`` (eq. 6) are mixed with the same box; mixed pseudo labels = argmax of the mixed ``q``. Both mixed batches
      go through the network as one batch of 2B (instance norm: identical to two passes).
    - ℓ_sup (eq. 3-4), per decoder, weights ``1 - λ_t`` (CNN) and ``λ_t`` (transformer): nnU-Net's partial
      Dice + CE with deep supervision on the original and on both mixed scribbles (terms ``sup_*``, ``sup_mix_*``),
      plus plain CE on the mixed pseudo labels at full resolution (``pl_*``). Deviation: the paper's eq. 3 mixes
      the two decoders' probabilities inside one pCE; weighting the two decoders' losses is what the reference does.
    - ℓ_ctr (eq. 5-8): confirmed pseudo labels (scribble, else argmax q where entropy < H, H ramped as the
      reference), nearest-downsampled to the embedding grid; ≤1024 anchors, ≤100 per image and class, half hard
      (CNN prediction wrong) half easy; InfoNCE (τ=0.07) against the class-mean queue (500 per class, background
      included, :class:`~nnunet_scribble.memory_queue.ClassMemoryQueue`), then the batch's class means are
      enqueued. Weight ``λ_ctr·(iter/max_iter)^0.9`` from iteration ``contrast_start`` (1000) on, 0 before; the
      iteration counter is the optimiser-step counter (the reference ramps some weights with the wrong counter).
      The loss is computed from the first iteration with weight 0, so the queue is full when it switches on and the
      head always takes part in the graph (DDP).
    - ℓ_con (eq. 9-13): L_het = MSE of the softmax probabilities (reference: logits) on the original and both mixed
      batches; L_mix = 1 - cos between the mixed first-pass ``q`` (detached) and ``q`` of the mixed images, both
      directions. No ramp (the paper states none; the reference's het ramp runs on the epoch counter, a quirk).
    - Method terms at full resolution; the transformer decoder's deep-supervision heads are trained by ``sup_tf``.
    - DDP: permutations, boxes, anchors and losses are per rank (local batch); the queue is synchronised (every
      rank gathers all ranks' class means before enqueueing, so queues stay identical).
    - Checkpoint: the queue and the iteration counter (``--c`` resumes exactly).

    References:
        Lei et al., "PCLMix: Weakly Supervised Medical Image Segmentation via Pixel-Level Contrastive Learning and
        Dynamic Mix Augmentation", ICIC 2024, arXiv 2405.06288. Code: Torpedo2648/PCLMix (not copied).
    """

    SUPPORTS_REGIONS: ClassVar[bool] = False

    # ---- PCLMix hyperparameters (paper / methods.md defaults)
    lambda_t: float = 0.4  # transformer decoder's share in ℓ_sup and q (eq. 3, 6)
    lambda_ctr: float = 0.15  # contrastive weight, ramped (iter/max_iter)^0.9
    contrast_start: int = 1000  # iterations without contrast
    lambda_con: float = 1.0  # ℓ_con
    lambda_het: float = 1.0  # L_het inside ℓ_con (ablation switch; paper: 1)
    lambda_mix: float = 1.0  # L_mix inside ℓ_con
    supervise_tf: bool = True  # ℓ_sup of the transformer decoder (Table 2 "w/o tf": False)
    mix_area: float = 0.2  # CutMix box, fraction of the patch
    temperature: float = 0.07
    max_anchors: int = 1024
    max_anchors_per_class: int = 100
    queue_size: int = 500
    # ---- structure, read when the network is built (also by nnUNetv2_predict): upper case, so no environment
    # override can make the training network differ from the one inference builds; change them in a subclass
    EMBED_DIM: int = 256  # projection head output (reference: 256)
    HEAD_STRIDE: int = 8  # projection head on the encoder stage closest to this stride (reference: stride 8)
    #: Transformer decoder: blocks per attention stage, MLP ratio, attention at decoder stages of stride >= this.
    #: Chosen for the 3.5x step budget (FLOPs per step vs nnU-Net, ACDC 2d plans: depth 2 / MLP 4 / stride 8 with
    #: light fine stages 4.1x; depth 1 / MLP 2 / stride 16 3.4x); the reference's Swin decoder has depth 2 / MLP 4.
    TF_DEPTH: int = 1
    TF_MLP_RATIO: float = 2.0
    TF_ATTENTION_MIN_STRIDE: int = 16

    def initialize(self):
        super().initialize()
        self.iteration = 0
        self.queue = ClassMemoryQueue(self.label_manager.num_segmentation_heads, self.queue_size, self.EMBED_DIM,
                                      self.device)

    @staticmethod
    def build_network_architecture(plans_manager: PlansManager, configuration_manager: ConfigurationManager,
                                   num_input_channels: int, num_output_channels: int,
                                   enable_deep_supervision: bool = True) -> nn.Module:
        base = nnUNetTrainer.build_network_architecture(plans_manager, configuration_manager, num_input_channels,
                                                        num_output_channels, enable_deep_supervision)
        enc = base.encoder
        n_conv = configuration_manager.network_arch_init_kwargs.get("n_conv_per_stage_decoder", 2)
        cls = nnUNetTrainerPCLMix
        tf = TransformerDecoder(enc, num_output_channels, n_conv, enable_deep_supervision,
                                attention_min_stride=cls.TF_ATTENTION_MIN_STRIDE, depth=cls.TF_DEPTH,
                                mlp_ratio=cls.TF_MLP_RATIO)
        stage = stage_closest_to_stride(enc.strides, cls.HEAD_STRIDE)
        head = ProjectionHead.for_encoder(enc, stage, cls.EMBED_DIM)
        return MultiDecoderNetwork(base, aux_decoders=[tf], head=head, head_stage=stage)

    def train_step(self, batch: dict) -> dict:
        out = super().train_step(batch)
        self.iteration += 1
        return out

    def _forward(self, x: torch.Tensor) -> MultiDecoderOutput:
        out = self.network(x)
        if not isinstance(out, MultiDecoderOutput):
            raise RuntimeError("nnUNetTrainerPCLMix needs the network in training mode "
                               f"(got {type(out).__name__} instead of MultiDecoderOutput)")
        return out

    def compute_loss_terms(self, data: torch.Tensor, target: Output, extra: torch.Tensor | None = None) -> LossTerms:
        out = self._forward(data)
        p_c, p_t = torch.softmax(_full(out.main).float(), 1), torch.softmax(_full(out.aux[0]).float(), 1)
        q = ensemble(p_c, p_t, self.lambda_t).detach()
        perm_1, perm_2 = draw_permutations(data.shape[0], device=data.device)
        box = draw_box_masks(data.shape[0], data.shape[2:], self.mix_area, device=data.device)
        x12, x21 = mix_batches(data, perm_1, perm_2, box)
        t12, t21 = mix_batches(target, perm_1, perm_2, box)
        q12, q21 = mix_batches(q, perm_1, perm_2, box)
        mixed = self._forward(torch.cat([x12, x21]))
        (c12, c21), (f12, f21) = _halves(mixed.main), _halves(mixed.aux[0])
        w_c, w_t = 1.0 - self.lambda_t, self.lambda_t if self.supervise_tf else 0.0
        ce = nn.functional.cross_entropy
        terms: LossTerms = {
            "sup_cnn": (self.loss(out.main, target), w_c), "sup_tf": (self.loss(out.aux[0], target), w_t),
            "sup_mix_cnn": (self.loss(c12, t12) + self.loss(c21, t21), w_c),
            "sup_mix_tf": (self.loss(f12, t12) + self.loss(f21, t21), w_t),
            "pl_cnn": (ce(_full(c12), q12.argmax(1)) + ce(_full(c21), q21.argmax(1)), w_c),
            "pl_tf": (ce(_full(f12), q12.argmax(1)) + ce(_full(f21), q21.argmax(1)), w_t),
        }
        pairs = [(_full(out.main), _full(out.aux[0])), (_full(c12), _full(f12)), (_full(c21), _full(f21))]
        terms["het"] = (heterogeneous_consistency(pairs), self.lambda_con * self.lambda_het)
        q_of_mixed = [ensemble(torch.softmax(_full(c).float(), 1), torch.softmax(_full(f).float(), 1), self.lambda_t)
                      for c, f in pairs[1:]]
        terms["mix"] = (mix_consistency([q12, q21], q_of_mixed), self.lambda_con * self.lambda_mix)
        terms["ctr"] = (self._contrast(out.embeddings, q, p_c, _full(target)[:, 0]), self.current_contrast_weight())
        return terms

    def _contrast(self, embeddings: torch.Tensor, q: torch.Tensor, p_c: torch.Tensor, scribble: torch.Tensor
                  ) -> torch.Tensor:
        """ℓ_ctr of the original batch against the queue, then enqueue the batch's class means (eq. 5-8)."""
        threshold = entropy_threshold(self.iteration, self.max_iterations())
        labels = confirmed_pseudo_labels(q, scribble, self.label_manager.ignore_label, threshold)
        grid = embeddings.shape[2:]
        labels, predictions = downsample_labels(labels, grid), downsample_labels(p_c.detach().argmax(1), grid)
        anchors, anchor_labels, _ = sample_anchors(embeddings, labels, predictions, self.max_anchors,
                                                   self.max_anchors_per_class)
        bank, bank_labels = self.queue.entries()
        loss = queue_contrastive_loss(anchors, anchor_labels, bank, bank_labels, self.temperature)
        self.queue.enqueue(*class_mean_embeddings(embeddings, labels))
        return loss + embeddings.sum() * 0.0  # keeps the head in the graph when there is no anchor (DDP)

    def max_iterations(self) -> int:
        return self.num_epochs * self.num_iterations_per_epoch

    def current_contrast_weight(self) -> float:
        return contrast_weight(self.iteration, self.max_iterations(), self.contrast_start, self.lambda_ctr)

    def get_extra_checkpoint_state(self) -> dict[str, Any]:
        return {"iteration": self.iteration, "queue": self.queue.state_dict()}

    def load_extra_checkpoint_state(self, state: dict[str, Any]) -> None:
        if "queue" in state:
            self.queue.load_state_dict(state["queue"])
        self.iteration = int(state.get("iteration", self.current_epoch * self.num_iterations_per_epoch))


def _full(output: Output) -> torch.Tensor:
    """Full-resolution output of a decoder (first deep-supervision scale)."""
    return output[0] if isinstance(output, (list, tuple)) else output


def _halves(output: Output) -> tuple[Output, Output]:
    """Split an output of the concatenated mixed batches ``[x^12; x^21]`` into its two halves."""
    if isinstance(output, (list, tuple)):
        n = output[0].shape[0] // 2
        return [o[:n] for o in output], [o[n:] for o in output]
    n = output.shape[0] // 2
    return output[:n], output[n:]


class nnUNetTrainerPCLMixNoContrast(nnUNetTrainerPCLMix):
    """Table 2 #4: without ℓ_ctr (the head still runs with weight 0 so DDP sees every parameter used)."""

    lambda_ctr: float = 0.0


class nnUNetTrainerPCLMixNoHet(nnUNetTrainerPCLMix):
    """Without L_het (ℓ_con = λ_mix·L_mix)."""

    lambda_het: float = 0.0


class nnUNetTrainerPCLMixNoMix(nnUNetTrainerPCLMix):
    """Table 2 #5: without L_mix (ℓ_con = L_het)."""

    lambda_mix: float = 0.0


class nnUNetTrainerPCLMixNoTFSup(nnUNetTrainerPCLMix):
    """Table 2 #6 "w/o tf": no supervised loss on the transformer decoder (it still enters q, L_het and L_mix)."""

    supervise_tf: bool = False
