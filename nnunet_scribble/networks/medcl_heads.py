"""MedCL heads on nnU-Net's planned network: union maps, map-pooled embeddings and learnable prototypes.

:class:`MedCLNetwork` keeps the planned ``encoder`` and ``decoder`` (same names and state_dict keys) and adds:

- ``union_head``: a 1x1 convolution on the last decoder features (the input of the full-resolution segmentation
  layer) giving ``m − 1`` sigmoid maps for ``Ω_k = {1..k}``, ``k = 2..m`` (none when ``m < 2``). A union computed
  as a sum of the softmax class maps would make the first term of eq. 5 vanish; a separate head keeps it meaningful.
  ``union_head=False`` computes the unions so instead, as the reference code does (``Σ_{i≤k} ŷ_i``, no head);
- ``projector``: ``Linear -> ReLU -> Linear`` from the feature width to ``d`` applied to the decoder features pooled
  with each of the ``2m − 1`` maps as weights (size-agnostic; the reference's MLP over a flattened 212x212 map is
  tied to one input size);
- ``prototypes``: ``K`` learnable prototype vectors (a bias-free ``Linear(d, K)``), L2-normalised in the forward.

All of it lives in the network's state_dict, so nnU-Net's checkpoints (``--c``) restore the prototypes and the
inference-time build loads strictly. Eval mode returns exactly the planned network's output (heads unused, no extra
cost); training mode returns a :class:`MedCLOutput`.

References:
    Zhang & Patel, "MedCL", arXiv 2503.22890, §2.1-2.2 and appendix section 7. Code: BWGZK-keke/MedCL.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

Output = torch.Tensor | list[torch.Tensor]


@dataclass
class MedCLOutput:
    """Training-mode output of :class:`MedCLNetwork`.

    Attributes:
        main: the planned output (tensor or deep-supervision list, full resolution first).
        probs: ``(B, C, *spatial)`` softmax of the full-resolution output (background first).
        unions: ``(B, m − 1, *spatial)`` sigmoid union maps.
        scores: ``(B, 2m − 1, K)`` cosine similarities of the map embeddings to the prototypes; maps ordered
            class ``1..m`` then union ``2..m``.
    """

    main: Output
    probs: torch.Tensor
    unions: torch.Tensor
    scores: torch.Tensor


def map_weighted_pooling(features: torch.Tensor, maps: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Feature vector per map: ``Σ_p map_p·f_p / Σ_p map_p``.

    Shape:
        features: ``(B, F, *spatial)``; maps: ``(B, M, *spatial)``; returns ``(B, M, F)``.
    """
    w = maps.flatten(2).float()
    pooled = torch.bmm(w, features.flatten(2).float().transpose(1, 2))
    return pooled / w.sum(-1, keepdim=True).clamp_min(eps)


class MedCLNetwork(nn.Module):
    """Planned encoder/decoder plus MedCL's union head, projector and prototypes (see the module docstring).

    Args:
        base: the planned network (``nnUNetTrainer.build_network_architecture``).
        num_classes: number of segmentation outputs ``C`` (background included), so ``m = C − 1``.
        embed_dim: embedding size ``d`` (paper: 128).
        num_prototypes: number of prototypes ``K`` (older reference code: 128).
        union_head: learn the union maps with a head (default); ``False``: the union of ``Ω_k`` is the sum of the
            softmax maps of classes ``1..k``.
    """

    def __init__(self, base: nn.Module, num_classes: int, embed_dim: int = 128, num_prototypes: int = 128,
                 union_head: bool = True):
        super().__init__()
        if not hasattr(base, "encoder") or not hasattr(base, "decoder"):
            raise TypeError(f"expected a planned nnU-Net network with 'encoder' and 'decoder', got {type(base)}")
        if num_classes < 2:
            raise ValueError(f"MedCL needs at least one foreground class, got num_classes={num_classes}")
        self.encoder = base.encoder
        self.decoder = base.decoder
        last = self.decoder.seg_layers[-1]
        width = last.in_channels
        self.num_foreground = num_classes - 1
        learned = union_head and self.num_foreground >= 2
        self.union_head = type(last)(width, self.num_foreground - 1, 1) if learned else None
        self.projector = nn.Sequential(nn.Linear(width, embed_dim), nn.ReLU(inplace=True),
                                       nn.Linear(embed_dim, embed_dim))
        self.prototypes = nn.Linear(embed_dim, num_prototypes, bias=False)
        self._features: torch.Tensor | None = None
        self.decoder.stages[-1].register_forward_hook(self._keep_last_features)

    def _keep_last_features(self, module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        if self.training:
            self._features = output

    def forward(self, x: torch.Tensor) -> Output | MedCLOutput:
        main = self.decoder(self.encoder(x))
        if not self.training:
            return main
        features, self._features = self._features, None
        logits = main[0] if isinstance(main, (list, tuple)) else main
        probs = torch.softmax(logits.float(), 1)
        if self.union_head is not None:
            unions = torch.sigmoid(self.union_head(features).float())
        else:  # Σ_{i≤k} ŷ_i for k = 2..m (empty when m < 2)
            unions = probs[:, 1:].cumsum(1)[:, 1:]
        maps = torch.cat([probs[:, 1:], unions], 1)
        z = F.normalize(self.projector(map_weighted_pooling(features, maps)), dim=-1)
        scores = z @ F.normalize(self.prototypes.weight.float(), dim=1).t()
        return MedCLOutput(main=main, probs=probs, unions=unions, scores=scores)

    def compute_conv_feature_map_size(self, input_size: list[int]) -> int:
        """Feature-map size estimate of nnU-Net's planners (the heads add little)."""
        return self.encoder.compute_conv_feature_map_size(input_size) + \
            self.decoder.compute_conv_feature_map_size(input_size)
