"""MultiDecoderNetwork: train/eval outputs, deep supervision, state_dict without duplicates, gradients, dropout."""
from __future__ import annotations

import copy

import pytest
import torch
from nnunet_helpers import tiny_plans
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

from nnunet_scribble.networks import MultiDecoderNetwork, MultiDecoderOutput, channel_dropout
from nnunet_scribble.trainers import nnUNetTrainerDMPLS

CASES = [(2, "plain"), (3, "plain"), (2, "resenc"), (3, "resenc")]


def _managers(dim: int, arch: str):
    plans = tiny_plans(dim)
    config = next(iter(plans["configurations"]))
    plans["configurations"][config]["patch_size"] = [16, 16] if dim == 2 else [4, 16, 16]  # small = fast
    if arch == "resenc":
        a = plans["configurations"][config]["architecture"]
        a["network_class_name"] = "dynamic_network_architectures.architectures.unet.ResidualEncoderUNet"
        a["arch_kwargs"]["n_blocks_per_stage"] = a["arch_kwargs"].pop("n_conv_per_stage")
    pm = PlansManager(plans)
    return pm, pm.get_configuration(config)


def _build(dim: int, arch: str, ds: bool = True, num_aux: int = 1, p: float = 0.5):
    pm, cm = _managers(dim, arch)
    torch.manual_seed(0)
    base = nnUNetTrainer.build_network_architecture(pm, cm, 1, 4, ds)
    return MultiDecoderNetwork(base, num_aux=num_aux, aux_feature_dropout=p), pm, cm


def _set_ds(net: torch.nn.Module, enabled: bool) -> None:
    for m in net.modules():  # what TrainerCommon.set_deep_supervision_enabled does
        if isinstance(getattr(m, "deep_supervision", None), bool):
            m.deep_supervision = enabled


@pytest.mark.parametrize("dim,arch", CASES)
def test_train_and_eval_outputs_with_and_without_deep_supervision(dim, arch):
    net, _, cm = _build(dim, arch, num_aux=2)
    x = torch.randn(2, 1, *cm.patch_size)
    net.train()
    out = net(x)
    assert isinstance(out, MultiDecoderOutput) and out.features is None and len(out.aux) == 2
    shapes = [t.shape for t in out.main]
    assert len(shapes) == 2 and shapes[0] == (2, 4, *cm.patch_size)  # 3 stages -> 2 decoder outputs
    assert all([t.shape for t in a] == shapes for a in out.aux)
    with torch.no_grad():
        out = net.eval()(x)
    assert isinstance(out, list) and [t.shape for t in out] == shapes
    _set_ds(net, False)
    net.train()
    out = net(x)
    assert torch.is_tensor(out.main) and all(torch.is_tensor(a) and a.shape == out.main.shape for a in out.aux)
    with torch.no_grad():
        out = net.eval()(x)
    assert torch.is_tensor(out) and out.shape == (2, 4, *cm.patch_size)


@pytest.mark.parametrize("dim,arch", CASES)
def test_state_dict_has_no_duplicate_encoder_and_loads_strictly_for_inference(dim, arch):
    net, pm, cm = _build(dim, arch)
    planned = nnUNetTrainer.build_network_architecture(pm, cm, 1, 4, False)
    sd = net.state_dict()
    assert not any(k.startswith("aux_decoders.0.encoder.") for k in sd)
    # the main part has exactly the planned network's keys
    assert sorted(k for k in sd if not k.startswith("aux_decoders.")) == sorted(planned.state_dict())
    n_planned = sum(p.numel() for p in planned.parameters())
    n_decoder = sum(p.numel() for n, p in planned.named_parameters() if n.startswith("decoder.")
                    and not n.startswith("decoder.encoder."))
    assert sum(p.numel() for p in net.parameters()) == n_planned + n_decoder
    # strict round trip into the inference-time build (what nnUNetv2_predict does) and into the plain network
    if dim == 2 and arch == "plain":
        inference = nnUNetTrainerDMPLS.build_network_architecture(pm, cm, 1, 4, enable_deep_supervision=False)
    else:
        inference = MultiDecoderNetwork(nnUNetTrainer.build_network_architecture(pm, cm, 1, 4, False), num_aux=1)
    inference.load_state_dict(sd, strict=True)
    planned.load_state_dict({k: v for k, v in sd.items() if not k.startswith("aux_decoders.")}, strict=True)
    x = torch.randn(2, 1, *cm.patch_size)
    net.eval(), inference.eval(), planned.eval()
    _set_ds(net, False)
    with torch.no_grad():
        expected = planned(x)
        assert torch.equal(inference(x), expected) and torch.equal(net(x), expected)


@pytest.mark.parametrize("dim,arch", [(2, "plain"), (3, "resenc")])
def test_every_parameter_gets_a_gradient_and_aux_starts_apart(dim, arch):
    net, _, cm = _build(dim, arch, num_aux=1)
    net.train()
    out = net(torch.randn(2, 1, *cm.patch_size))
    sum(t.float().square().mean() for t in [*out.main, *out.aux[0]]).backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing
    main_w = net.decoder.transpconvs[0].weight
    aux_w = net.aux_decoders[0].transpconvs[0].weight
    assert main_w.shape == aux_w.shape and not torch.equal(main_w, aux_w)
    assert net.aux_decoders[0].encoder is net.encoder  # kept as a plain attribute, not a submodule


def test_dropout_only_on_auxiliary_features_and_only_in_training():
    net, _, cm = _build(2, "plain", p=0.5)
    x = torch.randn(2, 1, *cm.patch_size)
    net.return_features = True
    torch.manual_seed(1)
    out = net.train()(x)
    with torch.no_grad():
        clean = net.eval()(x)
        skips = net.encoder(x)
    # the main decoder sees clean features (no batch-statistics layers here, so train == eval)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(out.main, clean))
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(out.features, skips))
    aux_clean = net.aux_decoders[0](skips)
    assert not torch.allclose(out.aux[0][0], aux_clean[0])  # aux input perturbed in training


def test_channel_dropout_drops_whole_channels_and_rescales():
    torch.manual_seed(0)
    x = torch.ones(64, 8, 3, 4, 5)
    y = channel_dropout(x, 0.5)
    per_channel = y.flatten(2)
    assert torch.all((per_channel == 0).all(-1) | (per_channel == 2.0).all(-1))  # kept channels scaled by 1/(1-p)
    assert 0.4 < (per_channel[..., 0] == 0).float().mean() < 0.6
    assert torch.equal(channel_dropout(x, 0.5, training=False), x) and torch.equal(channel_dropout(x, 0.0), x)
    with pytest.raises(ValueError, match="p=1.0"):
        channel_dropout(x, 1.0)


def test_wrapper_rejects_bad_arguments():
    net, _, _ = _build(2, "plain")
    with pytest.raises(TypeError, match="encoder"):
        MultiDecoderNetwork(torch.nn.Conv2d(1, 1, 1))
    with pytest.raises(ValueError, match="num_aux"):
        MultiDecoderNetwork(copy.deepcopy(net), num_aux=-1)
    with pytest.raises(ValueError, match="aux_feature_dropout must be in"):
        MultiDecoderNetwork(copy.deepcopy(net), aux_feature_dropout=1.0)
    assert net.compute_conv_feature_map_size([32, 32]) > 0
