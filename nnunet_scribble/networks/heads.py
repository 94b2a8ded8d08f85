"""Projection heads for pixel-level contrastive terms, on any encoder stage, 2D or 3D."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def stage_closest_to_stride(strides: list[list[int]] | list[tuple[int, ...]], target: int = 8) -> int:
    """Index of the encoder stage whose total stride (maximum over the axes) is closest to ``target``.

    Ties go to the finer stage. For ACDC 2d (strides 1, 2, 2, 2, 2, 2) this is stage 3 (stride 8); for an anisotropic
    3d plan (1x1x1, 1x2x2, 1x2x2, 2x2x2, ...) also stage 3 (in-plane stride 8).
    """
    total, best, best_gap = None, 0, math.inf
    for i, s in enumerate(strides):
        total = list(s) if total is None else [t * si for t, si in zip(total, s)]
        gap = abs(math.log2(max(total)) - math.log2(target))
        if gap < best_gap:
            best, best_gap = i, gap
    return best


class ProjectionHead(nn.Module):
    """Two 1x1 convolutions (``C -> C -> dim``, normalisation and non-linearity between them), L2-normalised output.

    The reference (PCLMix ``unet_tf.py``) uses BatchNorm between the convolutions; here the planned network's
    normalisation (instance norm in nnU-Net) is used, because nnU-Net's 3d batches have two samples.

    Args:
        in_channels: channels of the encoder stage.
        dim: embedding size (256 in PCLMix).
        conv_op, norm_op, norm_op_kwargs, nonlin, nonlin_kwargs: the planned encoder's operators.

    Shape:
        input ``(B, in_channels, *spatial)``, output ``(B, dim, *spatial)`` with unit L2 norm along dim 1.
    """

    def __init__(self, in_channels: int, dim: int, conv_op: type[nn.Module], norm_op: type[nn.Module] | None = None,
                 norm_op_kwargs: dict | None = None, nonlin: type[nn.Module] | None = None,
                 nonlin_kwargs: dict | None = None):
        super().__init__()
        self.conv1 = conv_op(in_channels, in_channels, 1)
        self.norm = norm_op(in_channels, **(norm_op_kwargs or {})) if norm_op is not None else nn.Identity()
        self.nonlin = nonlin(**(nonlin_kwargs or {})) if nonlin is not None else nn.ReLU(inplace=True)
        self.conv2 = conv_op(in_channels, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.conv2(self.nonlin(self.norm(self.conv1(x)))), dim=1)

    @classmethod
    def for_encoder(cls, encoder: nn.Module, stage: int, dim: int = 256) -> ProjectionHead:
        """A head on stage ``stage`` of an nnU-Net encoder, with its operators."""
        return cls(encoder.output_channels[stage], dim, encoder.conv_op, encoder.norm_op, encoder.norm_op_kwargs,
                   encoder.nonlin, encoder.nonlin_kwargs)
