"""nnUNetTrainerCSPNet stage 2: terms (eq. 5-19), gradients, ignore handling, empty batches, ablations, inference."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from nnunet_helpers import DATASET_JSON, remove_label_transforms, synthetic_batch

from nnunet_scribble.losses.cspnet import distance_perception_loss, label_smoothed_ce, lorm_loss
from nnunet_scribble.networks import LoRMHead, MultiDecoderNetwork
from nnunet_scribble.trainers import (nnUNetTrainerCSPNet, nnUNetTrainerCSPNetBasic, nnUNetTrainerCSPNetNoDc,
                                      nnUNetTrainerCSPNetNoDPM, nnUNetTrainerCSPNetNoDs, nnUNetTrainerCSPNetNoLoRM)
from nnunet_scribble.transforms.cspnet_maps import CSPNetMapsTransform, PseudoLabelOutsideToBackgroundTransform

IGNORE = 4


def cspnet_batch(trainer, annotated: float = 0.1, seed: int = 0) -> dict:
    """A loader-like batch whose full-resolution target carries [scribble, pseudo label, d_s, d_c]."""
    batch = synthetic_batch(trainer, annotated, seed)
    g = torch.Generator().manual_seed(seed + 1)
    scribble = batch["target"][0]
    patch = scribble.shape[2:]
    # blocky pseudo labels: random classes on a coarse grid, upsampled
    coarse = torch.randint(0, 4, (scribble.shape[0], 1, *[max(1, s // 4) for s in patch]), generator=g).float()
    pseudo = F.interpolate(coarse, size=patch, mode="nearest").long()
    transform = CSPNetMapsTransform(IGNORE, trainer.lambda_s, trainer.lambda_c, trainer.configuration_manager.spacing)
    full = torch.stack([transform(segmentation=torch.cat([s, p]).short())["segmentation"]
                        for s, p in zip(scribble, pseudo)])
    batch["target"] = [full.float()] + [t.float() for t in batch["target"][1:]]
    return batch


@pytest.mark.parametrize("dim", [2, 3])
def test_terms_match_the_pure_losses_and_every_parameter_gets_a_gradient(make_trainer, dim):
    trainer = make_trainer(nnUNetTrainerCSPNet, dim=dim)
    net = trainer.network
    assert isinstance(net, MultiDecoderNetwork) and isinstance(net.head, LoRMHead)
    net.train()
    batch = cspnet_batch(trainer)
    target, extra = trainer.split_target(batch["target"])
    terms = trainer.compute_loss_terms(batch["data"], target, extra)
    assert {k: w for k, (_, w) in terms.items()} == {"segs": 1.0, "segc": 0.1, "lorm": 0.5, "ds": 1.0, "dc": 1.0}
    out = net(batch["data"])
    logits, pseudo = out.main[0], extra[:, 0].long()
    assert torch.allclose(terms["segs"][0], trainer.loss(out.main, target))
    assert torch.allclose(terms["segc"][0], label_smoothed_ce(logits, pseudo, 0.2, IGNORE))
    assert torch.allclose(terms["ds"][0], distance_perception_loss(logits, extra[:, 1]))
    assert torch.allclose(terms["dc"][0], distance_perception_loss(logits, extra[:, 2]))
    features, q, k = out.embeddings
    grid = F.interpolate(((pseudo > 0) & (pseudo != IGNORE)).float().unsqueeze(1), size=features.shape[2:],
                         mode="area")[:, 0] > 0.5
    assert torch.allclose(terms["lorm"][0], lorm_loss(features, q, k, grid, net.head.delta))

    result = trainer.train_step(batch)
    expected = sum(w * result["term_" + n] for n, (_, w) in terms.items())
    assert float(result["loss"]) == pytest.approx(expected, rel=1e-4)
    missing = {n for n, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0}
    # nnU-Net weights the lowest deep-supervision output 0 outside DDP: only that head may lack a gradient
    assert missing <= {"decoder.seg_layers.0.weight", "decoder.seg_layers.0.bias"}
    assert net.head.delta.grad is not None and net.head.delta.grad != 0


def test_ignored_voxels_get_no_gradient_from_the_scribble_term(make_trainer):
    trainer = make_trainer(nnUNetTrainerCSPNet)
    trainer.network.train()
    batch = cspnet_batch(trainer, annotated=0.3)
    target, extra = trainer.split_target(batch["target"])
    captured = {}

    def keep(module, args, output):
        output.main[0].retain_grad()
        captured["logits"] = output.main[0]

    trainer.network.register_forward_hook(keep)
    terms = trainer.compute_loss_terms(batch["data"], target, extra)
    terms["segs"][0].backward(retain_graph=True)
    ignored = target[0][:, 0] == IGNORE
    grad = captured["logits"].grad.movedim(1, -1)
    assert ignored.any() and grad[ignored].abs().max() == 0 and grad[~ignored].abs().max() > 0
    captured["logits"].grad = None
    terms["segc"][0].backward()  # the pseudo labels reach unannotated voxels
    assert captured["logits"].grad.movedim(1, -1)[ignored].abs().max() > 0


def test_batch_without_annotation_or_pseudo_foreground_gives_finite_loss(make_trainer):
    trainer = make_trainer(nnUNetTrainerCSPNet)
    trainer.network.train()
    batch = cspnet_batch(trainer, annotated=0.0)
    full = batch["target"][0]
    full[:, 1] = 0  # pseudo label all background: no LoRM foreground, no boundary
    full[:, 3] = 1.0
    out = trainer.train_step(batch)
    assert torch.isfinite(torch.as_tensor(out["loss"]))
    assert out["term_lorm"] == 0.0


def test_batch_without_pseudo_label_channels_falls_back_to_the_scribbles(make_trainer):
    trainer = make_trainer(nnUNetTrainerCSPNet)
    trainer.network.train()
    out = trainer.train_step(synthetic_batch(trainer))  # e.g. the step benchmark's synthetic batch
    assert torch.isfinite(torch.as_tensor(out["loss"])) and {"term_segc", "term_lorm", "term_ds"} <= set(out)


@pytest.mark.parametrize("cls, absent", [(nnUNetTrainerCSPNetNoLoRM, {"lorm"}),
                                         (nnUNetTrainerCSPNetNoDPM, {"ds", "dc"}),
                                         (nnUNetTrainerCSPNetNoDs, {"ds"}), (nnUNetTrainerCSPNetNoDc, {"dc"}),
                                         (nnUNetTrainerCSPNetBasic, {"lorm", "ds", "dc"})])
def test_ablations_drop_their_terms(make_trainer, cls, absent):
    trainer = make_trainer(cls)
    trainer.network.train()
    batch = cspnet_batch(trainer)
    target, extra = trainer.split_target(batch["target"])
    terms = trainer.compute_loss_terms(batch["data"], target, extra)
    assert set(terms) == {"segs", "segc", "lorm", "ds", "dc"} - absent
    assert (trainer.network.head is None) == ("lorm" in absent)
    if "lorm" in absent:  # DDP: no parameter without a gradient
        trainer.train_step(batch)
        assert all(p.grad is not None for n, p in trainer.network.named_parameters() if "seg_layers.0" not in n)


def test_distance_perception_ramp_scales_ds_and_dc_only(make_trainer):
    trainer = make_trainer(nnUNetTrainerCSPNet)
    trainer.network.train()
    batch = cspnet_batch(trainer)
    target, extra = trainer.split_target(batch["target"])
    assert trainer.dp_rampup_fraction == 0.0 and trainer.distance_perception_ramp() == 1.0  # the paper: no ramp
    trainer.num_epochs, trainer.dp_rampup_fraction, trainer.weight_dc = 50, 0.3, 2.0  # ramp over 15 epochs
    # exp(-5 (1 - t)^2): t = 0 -> e^-5; t = 9/15 = 0.6 -> e^-0.8; t >= 1 -> 1
    for epoch, factor in [(0, math.exp(-5.0)), (9, math.exp(-0.8)), (15, 1.0), (40, 1.0)]:
        trainer.current_epoch = epoch
        terms = trainer.compute_loss_terms(batch["data"], target, extra)
        weights = {k: w for k, (_, w) in terms.items()}
        assert weights == pytest.approx({"segs": 1.0, "segc": 0.1, "lorm": 0.5, "ds": factor, "dc": 2 * factor})


@pytest.mark.parametrize("dim", [2, 3])
def test_eval_output_is_the_planned_network_and_inference_loads_strictly(make_trainer, dim):
    trainer = make_trainer(nnUNetTrainerCSPNet, dim=dim)
    net = trainer.network.eval()
    x = torch.randn(1, 1, *trainer.configuration_manager.patch_size)
    with torch.no_grad():
        out = net(x)
    assert isinstance(out, torch.Tensor) or isinstance(out, list)
    rebuilt = nnUNetTrainerCSPNet.build_network_architecture(trainer.plans_manager, trainer.configuration_manager,
                                                             1, 4, False)
    rebuilt.load_state_dict(net.state_dict(), strict=True)


def test_cascaded_configuration_is_refused(make_trainer):
    from nnunet_helpers import DATASET_JSON, tiny_plans

    plans = tiny_plans(3)
    config = next(iter(plans["configurations"]))
    plans["configurations"][config]["previous_stage"] = "3d_lowres"
    with pytest.raises(ValueError, match="cascaded configuration"):
        nnUNetTrainerCSPNet(plans, config, 0, dict(DATASET_JSON), torch.device("cpu"))


def test_cspnet_follows_a_declared_outside_image_background(make_trainer, monkeypatch):
    monkeypatch.delenv("nnUNet_scribble_hparams", raising=False)
    declared = {**DATASET_JSON, "outside_image_background": True}
    trainer = make_trainer(nnUNetTrainerCSPNet, dataset_json=declared, initialize=False)
    assert trainer.outside_image_background is True
    assert trainer.dataset_overrides == {"outside_image_background": True}


def test_outside_image_background_is_background_in_stage_2_pseudo_labels_only(make_trainer, monkeypatch):
    """-1 stays ignore for the scribbles (both stages); in stage 2 the pseudo label becomes background there."""
    monkeypatch.setenv("nnUNet_scribble_hparams", '{"outside_image_background": true}')
    trainer = make_trainer(nnUNetTrainerCSPNet)
    assert trainer.outside_image_background is True and trainer.outside_is_background() is False
    patch = trainer.configuration_manager.patch_size
    rot, dummy2d, _, mirror = trainer.configure_rotation_dummyDA_mirroring_and_inital_patch_size()

    def pipelines():
        return [trainer.get_training_transforms(patch, rot, None, mirror, dummy2d, ignore_label=IGNORE),
                trainer.get_validation_transforms(None, ignore_label=IGNORE)]

    def inserted(pipeline):
        return [t for t in getattr(pipeline, "transforms", [])
                if isinstance(t, PseudoLabelOutsideToBackgroundTransform)]

    for stage in (1, 2):
        trainer._stage = stage
        train, val = pipelines()
        assert [t.set_to for p in (train, val) for t in remove_label_transforms(p) if t.label_value == -1] == \
            [IGNORE, IGNORE]
        assert len(inserted(train)) == (stage == 2) and not inserted(val)
    # stage 2: the inserted transform runs right before nnU-Net's RemoveLabelTransform(-1, ignore)
    steps = train.transforms
    at = steps.index(inserted(train)[0])
    scribble = torch.tensor([[-1, -1, 0], [1, IGNORE, -1]])
    pseudo = torch.tensor([[IGNORE, 2, 0], [1, 3, IGNORE]])
    out = steps[at + 1](**steps[at](segmentation=torch.stack([scribble, pseudo]).short()))["segmentation"]
    assert out.tolist() == [[[IGNORE, IGNORE, 0], [1, IGNORE, IGNORE]], [[0, 0, 0], [1, 3, 0]]]
    monkeypatch.delenv("nnUNet_scribble_hparams")
    plain = make_trainer(nnUNetTrainerCSPNet)
    assert plain.outside_image_background is False
    assert not inserted(plain.get_training_transforms(patch, rot, None, mirror, dummy2d, ignore_label=IGNORE))
