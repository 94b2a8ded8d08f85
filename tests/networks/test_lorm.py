"""LoRM head (query/key projections, delta) and the choice of its encoder stage."""
from __future__ import annotations

import pytest
import torch
from dynamic_network_architectures.building_blocks.plain_conv_encoder import PlainConvEncoder
from torch import nn

from nnunet_scribble.losses.cspnet import lorm_loss
from nnunet_scribble.networks import LoRMHead
from nnunet_scribble.networks.lorm import lorm_stage

ACDC_2D = [[1, 1], [2, 2], [2, 2], [2, 2], [2, 2], [2, 2]]
ACDC_3D = [[1, 1, 1], [1, 2, 2], [1, 2, 2], [2, 2, 2], [2, 2, 2], [1, 2, 2]]


def test_lorm_stage_2d_acdc_plan_is_stride_8():
    assert lorm_stage(ACDC_2D, [256, 224]) == 3  # stride 8: 32 x 28 = 896 tokens
    assert lorm_stage(ACDC_2D, [256, 224], max_tokens=10**9) == 3  # first stage with stride >= 8
    assert lorm_stage(ACDC_2D, [256, 224], max_tokens=224) == 4  # 16 x 14
    assert lorm_stage(ACDC_2D, [256, 224], min_stride=1, max_tokens=10**9) == 0


def test_lorm_stage_3d_plan_first_stage_with_few_tokens():
    # cumulative strides: (1,1,1) (1,2,2) (1,4,4) (2,8,8) (4,16,16) (4,32,32)
    # tokens from stride 8 on: 10*32*28 = 8960, 5*16*14 = 1120, 5*8*7 = 280
    assert lorm_stage(ACDC_3D, [20, 256, 224]) == 5
    assert lorm_stage(ACDC_3D, [20, 256, 224], max_tokens=1120) == 4
    assert lorm_stage(ACDC_3D, [20, 256, 224], max_tokens=10**9) == 3


def test_lorm_stage_falls_back_to_the_deepest_stage():
    assert lorm_stage(ACDC_2D, [256, 224], max_tokens=1) == 5
    assert lorm_stage(ACDC_3D, [20, 256, 224], max_tokens=1) == 5
    assert lorm_stage([1, 2, 2], [16, 16], min_stride=8) == 2  # int strides; never reaches stride 8
    with pytest.raises(ValueError, match="stage 1"):
        lorm_stage([[1, 1], [2, 2, 2]], [16, 16])


@pytest.mark.parametrize("conv_op", [nn.Conv2d, nn.Conv3d])
def test_head_initialisation_and_forward(conv_op):
    torch.manual_seed(0)
    head = LoRMHead(6, conv_op)
    assert isinstance(head.query, conv_op) and isinstance(head.key, conv_op)
    assert head.query.kernel_size == (1,) * (2 if conv_op is nn.Conv2d else 3)
    for conv in (head.query, head.key):
        assert not conv.bias.any()
        bound = (6 / (6 + 6)) ** 0.5  # Xavier-uniform for a 1x1 conv, 6 -> 6 channels
        assert conv.weight.abs().max() <= bound and conv.weight.std() > bound / 4
    assert head.delta.shape == () and head.delta.item() == 1.0 and head.delta.requires_grad
    x = torch.randn(2, 6, *([3] * (2 if conv_op is nn.Conv2d else 3)))
    feats, q, k = head(x)
    assert feats is x and q.shape == k.shape == x.shape


@pytest.mark.parametrize("dim", [2, 3])
def test_head_for_encoder_and_gradient_to_the_projections(dim):
    conv_op = nn.Conv2d if dim == 2 else nn.Conv3d
    encoder = PlainConvEncoder(1, 3, [4, 8, 16], conv_op, 3, [1, 2, 2], 1, return_skips=True)
    stage = 1
    head = LoRMHead.for_encoder(encoder, stage)
    assert head.query.in_channels == head.query.out_channels == 8 and isinstance(head.key, conv_op)
    torch.manual_seed(0)
    skips = encoder(torch.randn(2, 1, *([8] * dim)))
    fg = torch.zeros(2, *([4] * dim), dtype=torch.bool)
    fg[:, 1:3, 1:3] = True
    loss = lorm_loss(*head(skips[stage]), fg, head.delta)
    loss.backward()
    for p in (head.query.weight, head.key.weight, head.delta, encoder.stages[0][0].convs[0].conv.weight):
        assert p.grad is not None and p.grad.abs().sum() > 0
