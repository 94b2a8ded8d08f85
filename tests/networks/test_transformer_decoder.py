"""TransformerDecoder: windows, padding mask, shapes for odd patch sizes in 2D/3D, deep supervision, eval output."""
from __future__ import annotations

import pytest
import torch
from nnunet_helpers import tiny_plans
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

from nnunet_scribble.networks.heads import ProjectionHead, stage_closest_to_stride
from nnunet_scribble.networks.transformer_decoder import (TransformerDecoder, WindowAttention, window_partition,
                                                          window_reverse)
from nnunet_scribble.trainers import nnUNetTrainerPCLMix


def _base(dim: int, patch: list[int], ds: bool = True):
    plans = tiny_plans(dim)
    config = next(iter(plans["configurations"]))
    plans["configurations"][config]["patch_size"] = patch
    pm = PlansManager(plans)
    cm = pm.get_configuration(config)
    torch.manual_seed(0)
    return nnUNetTrainer.build_network_architecture(pm, cm, 1, 4, ds), pm, cm


@pytest.mark.parametrize("shape,window", [((2, 6, 4, 3), (3, 2)), ((1, 4, 6, 2, 5), (2, 3, 1))])
def test_window_partition_round_trip(shape, window):
    x = torch.randn(shape)
    w = window_partition(x, window)
    assert w.shape == (x.numel() // (shape[-1] * torch.tensor(window).prod()), int(torch.tensor(window).prod()),
                       shape[-1])
    assert torch.equal(window_reverse(w, window, shape[1:-1], shape[0]), x)
    # the first window holds the top-left block
    block = x[(0, *(slice(0, k) for k in window))].reshape(-1, shape[-1])
    assert torch.equal(w[0], block)


def test_padded_keys_are_masked():
    torch.manual_seed(0)
    attn = WindowAttention(8, 2, (4, 4))
    x = torch.randn(1, 5, 4, 8)  # 5 rows: the last window row holds one valid row and three padded rows
    out = attn(x)
    assert out.shape == x.shape
    # a window of one valid row attends only to that row: same result as running that row alone
    alone = attn(x[:, 4:5])
    assert torch.allclose(out[:, 4:5], alone, atol=1e-6)
    assert torch.allclose(out[:, :4], attn(x[:, :4]), atol=1e-6)


@pytest.mark.parametrize("dim,patch", [(2, [36, 20]), (3, [6, 20, 28]), (3, [4, 12, 36])])
@pytest.mark.parametrize("min_stride", [2, 8])
def test_shapes_match_the_planned_decoder_for_odd_patch_sizes(dim, patch, min_stride):
    base, _, _ = _base(dim, patch)
    dec = TransformerDecoder(base.encoder, 4, 1, True, attention_min_stride=min_stride)
    assert dec.attention_stages == ([True, False] if min_stride == 2 else [False, False])
    x = torch.randn(2, 1, *patch)
    skips = base.encoder(x)
    out = dec(skips)
    assert [o.shape for o in out] == [o.shape for o in base.decoder(skips)]
    out.__getitem__(0).sum().backward()
    dec.deep_supervision = False
    single = dec(skips)
    assert torch.is_tensor(single) and single.shape == (2, 4, *patch)
    assert dec.compute_conv_feature_map_size(patch) > 0


def test_attention_stages_of_the_acdc_2d_plan_layout():
    plans = tiny_plans(2)
    config = next(iter(plans["configurations"]))
    kw = plans["configurations"][config]["architecture"]["arch_kwargs"]
    kw.update(n_stages=6, features_per_stage=[8, 8, 8, 16, 16, 16], kernel_sizes=[[3, 3]] * 6,
              strides=[[1, 1]] + [[2, 2]] * 5, n_conv_per_stage=[1] * 6, n_conv_per_stage_decoder=[1] * 5)
    plans["configurations"][config]["patch_size"] = [64, 32]
    pm = PlansManager(plans)
    base = nnUNetTrainer.build_network_architecture(pm, pm.get_configuration(config), 1, 4, True)
    dec = TransformerDecoder(base.encoder, 4, 1, True)
    # decoder stages from the deepest: outputs at stride 16, 8, 4, 2, 1 -> attention at 16 and 8
    assert dec.attention_stages == [True, True, False, False, False]
    assert stage_closest_to_stride(base.encoder.strides, 8) == 3
    skips = base.encoder(torch.randn(1, 1, 64, 32))
    assert [o.shape for o in dec(skips)] == [o.shape for o in base.decoder(skips)]


def test_projection_head_is_unit_norm_with_256_channels():
    base, _, _ = _base(3, [8, 32, 32])
    stage = stage_closest_to_stride(base.encoder.strides, 8)
    assert stage == 2  # strides (1,1,1), (1,2,2), (2,2,2): total in-plane 4 is the closest to 8
    head = ProjectionHead.for_encoder(base.encoder, stage)
    emb = head(base.encoder(torch.randn(2, 1, 8, 32, 32))[stage])
    assert emb.shape == (2, 256, 4, 8, 8)
    assert torch.allclose(emb.norm(dim=1), torch.ones(2, 4, 8, 8), atol=1e-5)


@pytest.mark.parametrize("dim", [2, 3])
def test_eval_output_equals_the_planned_network(dim):
    patch = [32, 32] if dim == 2 else [8, 32, 32]
    _, pm, cm = _base(dim, patch, ds=False)
    net = nnUNetTrainerPCLMix.build_network_architecture(pm, cm, 1, 4, enable_deep_supervision=False)
    planned = nnUNetTrainer.build_network_architecture(pm, cm, 1, 4, enable_deep_supervision=False)
    own = net.state_dict()
    planned.load_state_dict({k: own[k] for k in planned.state_dict()}, strict=True)
    x = torch.randn(2, 1, *patch)
    with torch.no_grad():
        assert torch.equal(net.eval()(x), planned.eval()(x))


@pytest.mark.parametrize("dim,patch", [(2, [32, 32]), (3, [8, 32, 32])])
def test_light_fine_stages_cost_a_fraction_of_the_convolution_blocks(dim, patch):
    from torch.utils.flop_counter import FlopCounterMode

    from nnunet_scribble.networks.transformer_decoder import LightFuseBlock

    base, _, _ = _base(dim, patch)
    skips = [s.detach() for s in base.encoder(torch.randn(1, 1, *patch))]
    flops = {}
    for kind in ("light", "conv"):
        dec = TransformerDecoder(base.encoder, 4, 2, True, fine_stage=kind)
        assert any(isinstance(s, LightFuseBlock) for s in dec.stages) == (kind == "light")
        out = dec(skips)
        assert [o.shape for o in out] == [o.shape for o in base.decoder(skips)]
        with FlopCounterMode(display=False) as counter:
            dec(skips)
        flops[kind] = counter.get_total_flops()
    assert flops["light"] < 0.5 * flops["conv"]  # the attention stages are the same in both
    with pytest.raises(ValueError, match="fine_stage"):
        TransformerDecoder(base.encoder, 4, 2, True, fine_stage="mlp")
