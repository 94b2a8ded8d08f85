"""A size-agnostic transformer decoder for nnU-Net encoders (PCLMix's auxiliary branch), 2D and 3D.

Design (replaces the reference's Swin-Unet decoder, which is hard-wired to 224x224 and whose absolute position
embeddings are never registered, hence never trained):

- the same skeleton as nnU-Net's ``UNetDecoder``: per stage a transposed convolution to the skip's resolution, a
  concatenation with the skip, a stage block, a 1x1 segmentation head; deep-supervision outputs are returned exactly
  like ``UNetDecoder`` (list, full resolution first; one tensor when ``deep_supervision`` is false);
- the stage block is a stack of transformer blocks at the *coarse* stages (the bottleneck, and every decoder stage
  whose output stride is at least ``attention_min_stride`` along some axis, default 8) and a light block at the fine
  stages (1x1 + depth-wise 3x3 convolution, :class:`LightFuseBlock`), where attention would cost the most and adds
  the least: the counterpart of Swin-Unet's final linear x4 patch expansion. With nnU-Net's full convolution blocks
  there (``fine_stage="conv"``) this decoder cost as much as the planned one and a PCLMix step 5x an nnU-Net step
  in FLOPs (ACDC 2d cpu plan), above the 3.5x budget of three passes; light fine stages bring it to ~3.3x;
- attention is windowed (non-overlapping windows of ``window_size`` voxels per axis, 8 in 2D and 4 in 3D, i.e. 64
  tokens; clipped to the feature map, which is zero-padded to a multiple of the window with padded keys masked), so
  the cost grows linearly with the patch size and any patch size works;
- no absolute positions: a depth-wise 3x3(x3) convolution before each block is the positional encoding (conditional
  position encoding, Chu et al. 2021) and a depth-wise convolution inside the MLP (Mix-FFN, Xie et al. 2021) passes
  information between windows (instead of Swin's shifted windows). Both are trained and work for any size.

Memory estimate for ``fine_stage="conv"`` (an upper bound for the default light fine stages; activations kept for
backward, fp16 as under nnU-Net's autocast; heads of 32 channels, depth 2, MLP ratio 4, windows of 64 tokens;
counted with ``torch.autograd.graph.saved_tensors_hooks`` on the meta device, an upper bound because tensors saved
twice are counted twice):

- ACDC 2d plan (patch 256x224, batch 56, 6 stages 32-512, 2 convs per stage): encoder 2.3 GB, planned CNN decoder
  3.2 GB, this decoder 5.7 GB (attention at the bottleneck 8x7x512, stride 16 16x14x512 and stride 8 32x28x256:
  3136, 12544 and 50176 tokens, ~1.8 GB; the fine stages are convolution blocks like the planned decoder's).
  17 M parameters. One pass through encoder + both decoders: 11.1 GB against 5.4 GB for plain nnU-Net; a PCLMix
  step runs the original batch and the two mixed batches (3B samples), so ~33 GB of activations (~6x nnU-Net):
  fits an 80 GB GPU, a 40 GB one narrowly (add cuDNN workspace and the weights/optimiser, < 1 GB).
- 3d_fullres (patch 128^3, batch 2, 6 stages 32-320): encoder 2.0 GB, CNN decoder 2.8 GB, this decoder 3.0 GB
  (attention at 4^3x320, 8^3x320 and 16^3x256: 64, 512 and 4096 tokens per sample, < 0.2 GB); 11 M parameters.
  One pass 7.9 GB against 4.8 GB; a PCLMix step ~24 GB: fits a 40 GB GPU.

References:
    Lei et al., "PCLMix: Weakly Supervised Medical Image Segmentation via Pixel-Level Contrastive Learning and
    Dynamic Mix Augmentation", ICIC 2024 (arXiv 2405.06288), §3.1. Reference code: Torpedo2648/PCLMix
    (``network/unet_tf.py``), not copied.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from dynamic_network_architectures.building_blocks.helper import get_matching_convtransp
from dynamic_network_architectures.building_blocks.simple_conv_blocks import StackedConvBlocks
from dynamic_network_architectures.initialization.weight_init import InitWeights_He
from torch import nn


def window_partition(x: torch.Tensor, window: tuple[int, ...]) -> torch.Tensor:
    """``(B, *S, C)`` with every ``S_d`` divisible by ``window_d`` -> ``(B * n_windows, prod(window), C)``."""
    b, *spatial, c = x.shape
    shape = [b]
    for s, w in zip(spatial, window):
        shape += [s // w, w]
    n = len(spatial)
    x = x.reshape(*shape, c).permute(0, *range(1, 2 * n, 2), *range(2, 2 * n + 1, 2), 2 * n + 1)
    return x.reshape(-1, math.prod(window), c)


def window_reverse(windows: torch.Tensor, window: tuple[int, ...], spatial: tuple[int, ...], batch: int
                   ) -> torch.Tensor:
    """Inverse of :func:`window_partition`: ``(B * n_windows, prod(window), C)`` -> ``(B, *spatial, C)``."""
    n = len(spatial)
    counts = [s // w for s, w in zip(spatial, window)]
    x = windows.reshape(batch, *counts, *window, -1)
    order = [0]
    for d in range(n):
        order += [1 + d, 1 + n + d]
    return x.permute(*order, 2 * n + 1).reshape(batch, *spatial, -1)


class WindowAttention(nn.Module):
    """Multi-head self-attention inside non-overlapping windows of a ``(B, C, *spatial)`` map (any size).

    The map is zero-padded to a multiple of the window; padded positions are masked as keys and cropped afterwards.
    """

    def __init__(self, dim: int, heads: int, window: tuple[int, ...]):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        self.heads, self.window = heads, window
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, *S, C) tokens, channels last
        b, *spatial, c = x.shape
        window = tuple(min(w, s) for w, s in zip(self.window, spatial))
        pads = [(-s) % w for s, w in zip(spatial, window)]
        mask = None
        if any(pads):
            flat_pad = [0, 0] + [p for pad in reversed(pads) for p in (0, pad)]
            x = F.pad(x, flat_pad)
            valid = F.pad(torch.ones(1, *spatial, 1, device=x.device, dtype=torch.bool), flat_pad)
            mask = window_partition(valid, window)[:, None, None, :, 0]  # (n_windows, 1, 1, T), per sample
            mask = mask.repeat(b, 1, 1, 1)
        padded = x.shape[1:-1]
        w = window_partition(x, window)
        qkv = self.qkv(w).reshape(w.shape[0], w.shape[1], 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], attn_mask=mask)
        out = self.proj(out.transpose(1, 2).reshape(w.shape[0], w.shape[1], c))
        out = window_reverse(out, window, tuple(padded), b)
        return out[(slice(None), *(slice(0, s) for s in spatial))]


class TransformerBlock(nn.Module):
    """Conditional position encoding + windowed attention + Mix-FFN, pre-norm, on ``(B, C, *spatial)`` maps."""

    def __init__(self, dim: int, heads: int, window: tuple[int, ...], conv_op: type[nn.Module], mlp_ratio: float = 4.0):
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.pos = conv_op(dim, dim, 3, padding=1, groups=dim)
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, heads, window)
        self.norm2 = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.mix = conv_op(hidden, hidden, 3, padding=1, groups=hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.pos(x)
        t = x.movedim(1, -1)  # (B, *S, C)
        t = t + self.attn(self.norm1(t))
        h = self.fc1(self.norm2(t)).movedim(-1, 1)
        h = F.gelu(self.mix(h)).movedim(1, -1)
        t = t + self.fc2(h)
        return t.movedim(-1, 1).contiguous()


class TransformerStage(nn.Module):
    """1x1 convolution from ``in_channels`` to ``channels`` followed by ``depth`` transformer blocks."""

    def __init__(self, in_channels: int, channels: int, depth: int, head_dim: int, window: tuple[int, ...],
                 conv_op: type[nn.Module], mlp_ratio: float):
        super().__init__()
        self.fuse = conv_op(in_channels, channels, 1) if in_channels != channels else nn.Identity()
        heads = max(1, channels // head_dim)
        while channels % heads:
            heads -= 1
        self.blocks = nn.Sequential(*[TransformerBlock(channels, heads, window, conv_op, mlp_ratio)
                                      for _ in range(depth)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.fuse(x))


class LightFuseBlock(nn.Module):
    """Cheap fine-stage block: 1x1 convolution (concatenated input -> ``channels``), depth-wise 3x3(x3) convolution,
    the planned normalisation and non-linearity. About 1/13 of the FLOPs of nnU-Net's two 3x3 convolutions."""

    def __init__(self, in_channels: int, channels: int, conv_op: type[nn.Module], norm_op, norm_op_kwargs, nonlin,
                 nonlin_kwargs):
        super().__init__()
        self.point = conv_op(in_channels, channels, 1)
        self.depth = conv_op(channels, channels, 3, padding=1, groups=channels)
        self.norm = norm_op(channels, **(norm_op_kwargs or {})) if norm_op is not None else nn.Identity()
        self.nonlin = nonlin(**(nonlin_kwargs or {})) if nonlin is not None else nn.LeakyReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.nonlin(self.norm(self.depth(self.point(x))))


class TransformerDecoder(nn.Module):
    """Decoder for the skips of an nnU-Net encoder: attention at coarse stages, convolutions at fine ones.

    See the module docstring for the design and memory estimates. The interface is ``UNetDecoder``'s: ``forward``
    takes the encoder's skips (bottleneck last) and returns the segmentation (list with one tensor per decoder stage,
    full resolution first, when ``deep_supervision`` is true), with the same shapes as the planned decoder.

    Args:
        encoder: the planned encoder (``PlainConvEncoder`` or ``ResidualEncoder``); read for channels, strides,
            kernel sizes and operators, not registered as a submodule.
        num_classes: segmentation outputs.
        n_conv_per_stage: convolutions per fine (convolutional) decoder stage, as the planned decoder.
        deep_supervision: return all stages' outputs.
        attention_min_stride: decoder stages whose output stride (product of encoder strides, maximum over the axes)
            is at least this use transformer blocks; the bottleneck always does.
        depth: transformer blocks per attention stage.
        head_dim: channels per attention head.
        window_size: window extent per axis (default 8 in 2D, 4 in 3D: 64 tokens).
        mlp_ratio: hidden width of the MLP relative to the stage width.
        fine_stage: block of the fine stages: ``"light"`` (default, :class:`LightFuseBlock`: the role of
            Swin-Unet's final linear patch expansion, a few percent of the planned decoder's FLOPs) or ``"conv"``
            (nnU-Net's stacked 3x3 convolutions, as the planned decoder: the transformer decoder then costs about
            as much as the planned one and a PCLMix step ~5x nnU-Net's instead of ~3.3x).
    """

    def __init__(self, encoder: nn.Module, num_classes: int, n_conv_per_stage: int | list[int],
                 deep_supervision: bool, attention_min_stride: int = 8, depth: int = 2, head_dim: int = 32,
                 window_size: int | None = None, mlp_ratio: float = 4.0, fine_stage: str = "light"):
        super().__init__()
        if fine_stage not in ("light", "conv"):
            raise ValueError(f"fine_stage must be 'light' or 'conv', got {fine_stage!r}")
        self.deep_supervision = deep_supervision
        self.num_classes = num_classes
        conv_op = encoder.conv_op
        ndim = {nn.Conv1d: 1, nn.Conv2d: 2, nn.Conv3d: 3}[conv_op]
        window = (window_size or (8 if ndim == 2 else 4),) * ndim
        channels, strides = list(encoder.output_channels), [list(s) for s in encoder.strides]
        n = len(channels)
        if isinstance(n_conv_per_stage, int):
            n_conv_per_stage = [n_conv_per_stage] * (n - 1)
        cumulative: list[int] = []
        total = [1] * ndim
        for s in strides:
            total = [t * si for t, si in zip(total, s)]
            cumulative.append(max(total))
        self.stage_strides = cumulative
        self._strides, self._channels = strides, channels
        self.bottleneck = TransformerStage(channels[-1], channels[-1], depth, head_dim, window, conv_op, mlp_ratio)
        transp = get_matching_convtransp(conv_op=conv_op)
        self.transpconvs, self.stages, self.seg_layers = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        self.attention_stages: list[bool] = []
        for s in range(1, n):
            below, skip, stride = channels[-s], channels[-(s + 1)], strides[-s]
            self.transpconvs.append(transp(below, skip, stride, stride, bias=encoder.conv_bias))
            use_attention = cumulative[-(s + 1)] >= attention_min_stride
            self.attention_stages.append(use_attention)
            if use_attention:
                self.stages.append(TransformerStage(2 * skip, skip, depth, head_dim, window, conv_op, mlp_ratio))
            elif fine_stage == "light":
                self.stages.append(LightFuseBlock(2 * skip, skip, conv_op, encoder.norm_op, encoder.norm_op_kwargs,
                                                  encoder.nonlin, encoder.nonlin_kwargs))
            else:
                self.stages.append(StackedConvBlocks(
                    n_conv_per_stage[s - 1], conv_op, 2 * skip, skip, encoder.kernel_sizes[-(s + 1)], 1,
                    encoder.conv_bias, encoder.norm_op, encoder.norm_op_kwargs, encoder.dropout_op,
                    encoder.dropout_op_kwargs, encoder.nonlin, encoder.nonlin_kwargs))
            self.seg_layers.append(conv_op(skip, num_classes, 1, 1, 0, bias=True))
        self.apply(_init)

    def forward(self, skips: list[torch.Tensor]) -> torch.Tensor | list[torch.Tensor]:
        x = self.bottleneck(skips[-1])
        outputs = []
        for s, (up, stage, seg) in enumerate(zip(self.transpconvs, self.stages, self.seg_layers)):
            x = stage(torch.cat((up(x), skips[-(s + 2)]), 1))
            if self.deep_supervision or s == len(self.stages) - 1:
                outputs.append(seg(x))
        outputs = outputs[::-1]
        return outputs if self.deep_supervision else outputs[0]

    def compute_conv_feature_map_size(self, input_size: list[int]) -> int:
        """Rough count of stored activations (the planners' estimate): ~8 per conv stage voxel and channel, ~22 per
        transformer block."""
        size, sizes = list(input_size), []
        for s in self._strides:
            size = [i // j for i, j in zip(size, s)]
            sizes.append(list(size))
        total = 22 * len(self.bottleneck.blocks) * self._channels[-1] * math.prod(sizes[-1])
        for i, stage in enumerate(self.stages):
            per = 22 * len(stage.blocks) if isinstance(stage, TransformerStage) else \
                3 if isinstance(stage, LightFuseBlock) else 8
            total += per * self._channels[-(i + 2)] * math.prod(sizes[-(i + 2)])
        return total


def _init(module: nn.Module) -> None:
    """He init for convolutions (as nnU-Net), truncated normal for linear layers (as ViTs)."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        nn.init.zeros_(module.bias)
    elif isinstance(module, (nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.ConvTranspose3d)):
        if module.groups == 1:
            InitWeights_He(1e-2)(module)
