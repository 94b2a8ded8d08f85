"""nnUNetTrainerDMPLS: loss of eq. 4, gradients, ignore handling, empty batches, checkpoints, hyperparameters."""
from __future__ import annotations

import pytest
import torch
from nnunet_helpers import synthetic_batch

from nnunet_scribble.losses.pseudo_label import mixed_pseudo_label, pseudo_label_supervision
from nnunet_scribble.networks import MultiDecoderNetwork
from nnunet_scribble.trainers import nnUNetTrainerDMPLS


def _terms(trainer, batch, seed=0):
    torch.manual_seed(seed)  # same dropout draw and beta in repeated calls
    return trainer.compute_loss_terms(batch["data"], batch["target"])


@pytest.mark.parametrize("dim", [2, 3])
def test_loss_is_eq4_with_main_and_aux_supervision_and_mixed_pseudo_labels(make_trainer, dim):
    trainer = make_trainer(nnUNetTrainerDMPLS, dim=dim)
    trainer.network.train()
    trainer.draw_beta = lambda: 0.25
    batch = synthetic_batch(trainer)
    terms = _terms(trainer, batch)
    assert {k: w for k, (_, w) in terms.items()} == {"sup_main": 0.5, "sup_aux": 0.5, "pls": 0.5}
    torch.manual_seed(0)
    out = trainer.network(batch["data"])
    main, aux = out.main, out.aux[0]
    pl = mixed_pseudo_label(main[0], aux[0], 0.25)
    assert torch.allclose(terms["sup_main"][0], trainer.loss(main, batch["target"]))
    assert torch.allclose(terms["sup_aux"][0], trainer.loss(aux, batch["target"]))
    assert torch.allclose(terms["pls"][0], pseudo_label_supervision(main[0], aux[0], pl))
    assert not torch.allclose(terms["sup_main"][0], terms["sup_aux"][0])  # two different branches


def test_train_step_gives_every_parameter_a_gradient(make_trainer):
    trainer = make_trainer(nnUNetTrainerDMPLS)
    assert isinstance(trainer.network, MultiDecoderNetwork) and trainer.network.aux_feature_dropout == 0.5
    trainer.network.train()
    out = trainer.train_step(synthetic_batch(trainer))
    missing = {n for n, p in trainer.network.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0}
    # nnU-Net gives the lowest-resolution deep-supervision output weight 0 outside DDP (1e-6 under DDP, for this
    # very reason), so only that head of each decoder may lack a gradient, as in plain nnU-Net
    assert missing <= {f"{d}.seg_layers.0.{w}" for d in ("decoder", "aux_decoders.0") for w in ("weight", "bias")}
    assert set(out) >= {"loss", "term_sup_main", "term_sup_aux", "term_pls", "term_pls@w"}
    expected = 0.5 * out["term_sup_main"] + 0.5 * out["term_sup_aux"] + 0.5 * out["term_pls"]
    assert float(out["loss"]) == pytest.approx(expected, rel=1e-5)


def test_ignored_voxels_get_no_gradient_from_supervised_terms(make_trainer):
    trainer = make_trainer(nnUNetTrainerDMPLS)
    trainer.network.train()
    batch = synthetic_batch(trainer, annotated=0.3)
    captured = {}

    def keep_grads(module, args, output):
        for t in (output.main[0], output.aux[0][0]):
            t.retain_grad()
        captured["out"] = output

    trainer.network.register_forward_hook(keep_grads)
    terms = _terms(trainer, batch)
    (0.5 * terms["sup_main"][0] + 0.5 * terms["sup_aux"][0]).backward(retain_graph=True)
    ignored = batch["target"][0][:, 0] == 4
    assert ignored.any() and (~ignored).any()
    for logits in (captured["out"].main[0], captured["out"].aux[0][0]):
        grad = logits.grad.movedim(1, -1)
        assert grad[ignored].abs().max() == 0 and grad[~ignored].abs().max() > 0
        logits.grad = None
    terms["pls"][0].backward()  # the pseudo-label term does reach unannotated voxels
    assert captured["out"].main[0].grad.movedim(1, -1)[ignored].abs().max() > 0


def test_batch_without_annotation_gives_finite_loss(make_trainer):
    trainer = make_trainer(nnUNetTrainerDMPLS)
    trainer.network.train()
    batch = synthetic_batch(trainer, annotated=0.0)
    assert (batch["target"][0] == 4).all()
    out = trainer.train_step(batch)
    assert torch.isfinite(torch.as_tensor(out["loss"])) and out["term_pls"] > 0
    assert all(torch.isfinite(p).all() for p in trainer.network.parameters())


def test_deep_supervision_switch_reaches_both_decoders(make_trainer):
    trainer = make_trainer(nnUNetTrainerDMPLS)
    trainer.set_deep_supervision_enabled(False)
    assert trainer.network.decoder.deep_supervision is False
    assert trainer.network.aux_decoders[0].deep_supervision is False
    trainer.network.train()
    out = trainer.network(synthetic_batch(trainer)["data"])
    assert torch.is_tensor(out.main) and torch.is_tensor(out.aux[0])


def test_checkpoint_round_trip_and_strict_inference_load(make_trainer, tmp_path):
    trainer = make_trainer(nnUNetTrainerDMPLS)
    trainer.network.train()
    trainer.train_step(synthetic_batch(trainer))
    path = str(tmp_path / "checkpoint.pth")
    trainer.save_checkpoint(path)
    fresh = make_trainer(nnUNetTrainerDMPLS)
    fresh.load_checkpoint(path)
    for (k, a), b in zip(trainer.network.state_dict().items(), fresh.network.state_dict().values()):
        assert torch.equal(a, b), k
    # what nnUNetv2_predict does: build without deep supervision, load strictly, eval mode
    weights = torch.load(path, weights_only=False)["network_weights"]
    net = nnUNetTrainerDMPLS.build_network_architecture(trainer.plans_manager, trainer.configuration_manager, 1, 4,
                                                        enable_deep_supervision=False)
    net.load_state_dict(weights, strict=True)
    x = synthetic_batch(trainer, seed=3)["data"]
    trainer.set_deep_supervision_enabled(False)
    with torch.no_grad():
        assert torch.equal(net.eval()(x), trainer.network.eval()(x))


def test_hyperparameters_from_environment(make_trainer, monkeypatch):
    monkeypatch.setenv("nnUNet_scribble_hparams", '{"lambda_pls": 0.3, "aux_dropout_p": 0.2}')
    trainer = make_trainer(nnUNetTrainerDMPLS)
    assert trainer.lambda_pls == 0.3 and trainer.network.aux_feature_dropout == 0.2
    trainer.network.train()
    assert _terms(trainer, synthetic_batch(trainer))["pls"][1] == 0.3
