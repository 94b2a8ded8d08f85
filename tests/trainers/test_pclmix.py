"""nnUNetTrainerPCLMix: loss terms and weights, gradients, empty batches, contrast schedule, queue checkpoints."""
from __future__ import annotations

import pytest
import torch
from nnunet_helpers import synthetic_batch

from nnunet_scribble.networks import MultiDecoderNetwork
from nnunet_scribble.networks.transformer_decoder import TransformerDecoder
from nnunet_scribble.trainers import (nnUNetTrainerPCLMix, nnUNetTrainerPCLMixNoContrast, nnUNetTrainerPCLMixNoHet,
                                      nnUNetTrainerPCLMixNoMix, nnUNetTrainerPCLMixNoTFSup)
from nnunet_scribble.trainers.nnUNetTrainerPCLMix import contrast_weight

TERMS = {"sup_cnn", "sup_tf", "sup_mix_cnn", "sup_mix_tf", "pl_cnn", "pl_tf", "het", "mix", "ctr"}


@pytest.mark.parametrize("dim", [2, 3])
def test_terms_weights_and_step(make_trainer, dim):
    trainer = make_trainer(nnUNetTrainerPCLMix, dim=dim)
    net = trainer.network
    assert isinstance(net, MultiDecoderNetwork) and isinstance(net.aux_decoders[0], TransformerDecoder)
    trainer.network.train()
    torch.manual_seed(0)
    batch = synthetic_batch(trainer)
    terms = trainer.compute_loss_terms(batch["data"], batch["target"])
    assert set(terms) == TERMS
    weights = {k: w for k, (_, w) in terms.items()}
    assert weights == pytest.approx({"sup_cnn": 0.6, "sup_tf": 0.4, "sup_mix_cnn": 0.6, "sup_mix_tf": 0.4,
                                     "pl_cnn": 0.6, "pl_tf": 0.4, "het": 1.0, "mix": 1.0, "ctr": 0.0})
    assert all(torch.isfinite(v) for v, _ in terms.values())
    assert terms["het"][0] > 0 and terms["mix"][0] > 0
    assert terms["ctr"][0] == 0  # empty queue: no positives yet
    assert int(trainer.queue.count.sum()) > 0  # class means enqueued from the first iteration on
    assert trainer.compute_loss_terms(batch["data"], batch["target"])["ctr"][0] > 0


def test_every_parameter_gets_a_gradient(make_trainer):
    trainer = make_trainer(nnUNetTrainerPCLMix)
    trainer.iteration = 2000  # contrast switched on
    trainer.network.train()
    batch = synthetic_batch(trainer, annotated=0.3)
    trainer.compute_loss_terms(batch["data"], batch["target"])  # fills the queue
    trainer.optimizer.zero_grad()
    out = trainer.train_step(synthetic_batch(trainer, annotated=0.3, seed=1))
    assert out["term_ctr@w"] > 0 and trainer.iteration == 2001
    missing = {n for n, p in trainer.network.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0}
    # only nnU-Net's zero-weighted lowest deep-supervision head of each decoder (see test_dmpls)
    assert missing <= {f"{d}.seg_layers.0.{w}" for d in ("decoder", "aux_decoders.0") for w in ("weight", "bias")}
    expected = sum(out[k] * out[k + "@w"] for k in out if k.startswith("term_") and "@" not in k)
    assert float(out["loss"]) == pytest.approx(expected, rel=1e-5)


def test_batch_without_annotation_gives_finite_loss(make_trainer):
    trainer = make_trainer(nnUNetTrainerPCLMix)
    trainer.iteration = 5000
    trainer.network.train()
    batch = synthetic_batch(trainer, annotated=0.0)
    assert (batch["target"][0] == 4).all()
    out = trainer.train_step(batch)
    assert torch.isfinite(torch.as_tensor(out["loss"]))
    assert all(torch.isfinite(p).all() for p in trainer.network.parameters())


def test_contrast_schedule():
    assert contrast_weight(999, 10000, 1000, 0.15) == 0.0
    assert contrast_weight(1000, 10000, 1000, 0.15) == pytest.approx(0.15 * 0.1 ** 0.9)
    assert contrast_weight(10000, 10000, 1000, 0.15) == pytest.approx(0.15)
    assert contrast_weight(5000, 10000, 1000, 0.0) == 0.0


@pytest.mark.parametrize("cls,zero", [(nnUNetTrainerPCLMixNoContrast, {"ctr"}), (nnUNetTrainerPCLMixNoHet, {"het"}),
                                      (nnUNetTrainerPCLMixNoMix, {"mix"}),
                                      (nnUNetTrainerPCLMixNoTFSup, {"sup_tf", "sup_mix_tf", "pl_tf"})])
def test_ablations_zero_their_terms(make_trainer, cls, zero):
    trainer = make_trainer(cls)
    trainer.iteration = 5000
    trainer.network.train()
    batch = synthetic_batch(trainer)
    terms = trainer.compute_loss_terms(batch["data"], batch["target"])
    assert {k for k, (_, w) in terms.items() if w == 0} == zero


def test_checkpoint_keeps_queue_and_iteration_and_loads_for_inference(make_trainer, tmp_path):
    trainer = make_trainer(nnUNetTrainerPCLMix)
    trainer.network.train()
    trainer.train_step(synthetic_batch(trainer))
    trainer.iteration = 1234
    path = str(tmp_path / "checkpoint.pth")
    trainer.save_checkpoint(path)
    fresh = make_trainer(nnUNetTrainerPCLMix)
    fresh.load_checkpoint(path)
    assert fresh.iteration == 1234
    assert torch.equal(fresh.queue.queue, trainer.queue.queue) and torch.equal(fresh.queue.count, trainer.queue.count)
    weights = torch.load(path, weights_only=False)["network_weights"]
    net = nnUNetTrainerPCLMix.build_network_architecture(trainer.plans_manager, trainer.configuration_manager, 1, 4,
                                                         enable_deep_supervision=False)
    net.load_state_dict(weights, strict=True)
    x = synthetic_batch(trainer, seed=3)["data"]
    trainer.set_deep_supervision_enabled(False)
    with torch.no_grad():
        assert torch.equal(net.eval()(x), trainer.network.eval()(x))


@pytest.mark.parametrize("dim", [2, 3])
def test_one_pass_over_concatenated_batches_equals_separate_passes(make_trainer, dim):
    """compute_loss_terms sends both mixed batches through the network as one batch [x12; x21]; that equals two
    passes because every layer works per sample (instance/layer norms, no dropout), in training mode included."""
    trainer = make_trainer(nnUNetTrainerPCLMix, dim=dim)
    net = trainer.network
    net.train()
    torch.manual_seed(0)
    x = torch.randn(2 * trainer.configuration_manager.batch_size, 1, *trainer.configuration_manager.patch_size)
    b = x.shape[0] // 2
    with torch.no_grad():
        joint, first, second = net(x), net(x[:b]), net(x[b:])
    def scales(output):  # one tensor per deep-supervision scale, or the tensor itself
        return output if isinstance(output, (list, tuple)) else [output]

    for part in (lambda o: o.main, lambda o: o.aux[0], lambda o: o.embeddings):
        for j, f, r in zip(*(scales(part(o)) for o in (joint, first, second))):
            torch.testing.assert_close(j, torch.cat([f, r]), rtol=1e-4, atol=1e-5)
