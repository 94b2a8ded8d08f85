"""Localization rectification module (LoRM, CSPNet eq. 11-13): query/key projections on one encoder stage, 2D or 3D.

The head only projects; the attention and the loss are :func:`nnunet_scribble.losses.cspnet.lorm_loss`.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn


def lorm_stage(strides: Sequence[Sequence[int] | int], patch_size: Sequence[int], max_tokens: int = 1024,
               min_stride: int = 8) -> int:
    """Index of the encoder stage LoRM runs on: the finest stage that is coarse enough for ``N x N`` attention.

    The highest-resolution stage whose cumulative stride (maximum over the axes) is at least ``min_stride`` and
    whose token count ``prod(patch_size // cumulative_stride)`` is at most ``max_tokens``; the deepest stage if
    none qualifies. The paper uses the last backbone layer at output stride 8 (reference-implementations.md §4.4);
    ``max_tokens`` bounds the ``O(N^2)`` attention for large (3D) patches.

    For ACDC 2d (strides 1, 2, 2, 2, 2, 2; patch 256 x 224) this is stage 3 (stride 8, 32 x 28 = 896 tokens).

    Args:
        strides: the plan's per-stage strides (``strides`` of ``arch_kwargs``), one list per stage (an int means the
            same stride on every axis).
        patch_size: the configuration's patch size.
        max_tokens: largest admissible number of positions ``N`` of the feature grid.
        min_stride: smallest admissible cumulative stride.

    Returns:
        Stage index in ``0..len(strides)-1``.

    Raises:
        ValueError: for empty ``strides`` or strides whose length differs from ``patch_size``'s.
    """
    if len(strides) == 0:
        raise ValueError("strides must name at least one stage")
    total = [1] * len(patch_size)
    for i, s in enumerate(strides):
        s = [s] * len(patch_size) if isinstance(s, int) else list(s)
        if len(s) != len(patch_size):
            raise ValueError(f"stage {i} has strides {s}, patch_size {list(patch_size)} has {len(patch_size)} axes")
        total = [t * si for t, si in zip(total, s)]
        tokens = math.prod(p // t for p, t in zip(patch_size, total))
        if max(total) >= min_stride and tokens <= max_tokens:
            return i
    return len(strides) - 1


class LoRMHead(nn.Module):
    """Query and key 1x1 convolutions (``C -> C``) and the learnable rectification degree ``delta`` (eq. 11, 13).

    Xavier-uniform weights and zero biases as the reference; ``delta`` starts at 1 (eq. 13). There is no value
    projection: the rectified features are built from the features themselves.

    Args:
        channels: channels of the encoder stage.
        conv_op: the planned encoder's convolution (``nn.Conv2d`` or ``nn.Conv3d``).

    Shape:
        input ``(B, C, *spatial)``; output ``(x, query, key)``, each ``(B, C, *spatial)``.
    """

    def __init__(self, channels: int, conv_op: type[nn.Module]):
        super().__init__()
        self.query = conv_op(channels, channels, 1)
        self.key = conv_op(channels, channels, 1)
        for conv in (self.query, self.key):
            nn.init.xavier_uniform_(conv.weight)
            nn.init.zeros_(conv.bias)
        self.delta = nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return x, self.query(x), self.key(x)

    @classmethod
    def for_encoder(cls, encoder: nn.Module, stage: int) -> LoRMHead:
        """A head on stage ``stage`` of an nnU-Net encoder, with its convolution."""
        return cls(encoder.output_channels[stage], encoder.conv_op)
