"""nnUNetTrainerMedCL: loss terms, gradients, empty batches, image-level class sets, checkpoints, ablations."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from nnunet_helpers import synthetic_batch

import nnunetv2.training.nnUNetTrainer.nnUNetTrainer as trainer_module
from nnunet_scribble.data.class_presence import (ClassPresenceDataLoader, class_presence_table,
                                                 use_data_loader_class)
from nnunet_scribble.networks.medcl_heads import MedCLNetwork
from nnunet_scribble.trainers import (nnUNetTrainerMedCL, nnUNetTrainerMedCLNoAC, nnUNetTrainerMedCLNoCategory,
                                      nnUNetTrainerMedCLNoCluster, nnUNetTrainerMedCLNoMix, nnUNetTrainerMedCLUnionSum)

ALL_TERMS = {"scribble", "category", "mix", "proto", "cluster", "ac"}


@pytest.mark.parametrize("dim", [2, 3])
def test_train_step_terms_and_every_parameter_gets_a_gradient(make_trainer, dim):
    trainer = make_trainer(nnUNetTrainerMedCL, dim=dim)
    net = trainer.network
    assert isinstance(net, MedCLNetwork) and net.union_head.out_channels == 2  # m - 1 unions for m = 3
    assert net.prototypes.weight.shape == (128, 128)
    net.train()
    batch = synthetic_batch(trainer, annotated=0.3)
    batch["class_presence"] = torch.tensor([[True, True, False, True], [True, True, True, True]])
    out = trainer.train_step(batch)
    assert {k[5:] for k in out if k.startswith("term_") and "@" not in k} == ALL_TERMS
    assert np.isfinite(out["loss"]) and out["term_category"] > 0
    missing = {n for n, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0}
    # nnU-Net's lowest deep-supervision head has weight 0 outside DDP, as in plain nnU-Net (see test_dmpls)
    assert missing <= {"decoder.seg_layers.0.weight", "decoder.seg_layers.0.bias"}
    expected = sum(out[f"term_{t}"] * out[f"term_{t}@w"] for t in ALL_TERMS)
    assert float(out["loss"]) == pytest.approx(expected, rel=1e-5)


def test_batch_without_annotation_gives_finite_loss(make_trainer):
    trainer = make_trainer(nnUNetTrainerMedCL)
    trainer.network.train()
    batch = synthetic_batch(trainer, annotated=0.0)
    batch["class_presence"] = torch.zeros(2, 4, dtype=torch.bool)  # no class annotated anywhere in the images
    out = trainer.train_step(batch)
    assert np.isfinite(out["loss"]) and out["term_category"] == 0
    assert all(torch.isfinite(p).all() for p in trainer.network.parameters())


def test_category_term_uses_the_image_class_set_from_the_batch(make_trainer):
    trainer = make_trainer(nnUNetTrainerMedCL)
    trainer.network.train()
    batch = synthetic_batch(trainer, annotated=1.0)  # every class annotated in the patch
    torch.manual_seed(0)
    without = trainer.train_step(dict(batch))  # no class_presence: every class, loss 0
    assert without["term_category"] == pytest.approx(0.0, abs=1e-6)
    batch["class_presence"] = torch.tensor([[True, False, False, False]] * 2)
    assert trainer.train_step(batch)["term_category"] > 0
    assert trainer._class_presence is None  # not carried over to the next step


@pytest.mark.parametrize("cls, absent", [(nnUNetTrainerMedCLNoMix, {"mix"}), (nnUNetTrainerMedCLNoCluster, {"cluster"}),
                                         (nnUNetTrainerMedCLNoAC, {"ac"}),
                                         (nnUNetTrainerMedCLNoCategory, {"category"})])
def test_ablations_drop_their_term(make_trainer, cls, absent):
    trainer = make_trainer(cls)
    trainer.network.train()
    terms = trainer.compute_loss_terms(**{k: v for k, v in synthetic_batch(trainer).items()})
    assert set(terms) == ALL_TERMS - absent


def test_checkpoint_round_trip_restores_prototypes_and_strict_inference_load(make_trainer, tmp_path):
    trainer = make_trainer(nnUNetTrainerMedCL)
    trainer.network.train()
    trainer.train_step(synthetic_batch(trainer))
    path = str(tmp_path / "checkpoint.pth")
    trainer.save_checkpoint(path)
    fresh = make_trainer(nnUNetTrainerMedCL)
    assert not torch.equal(fresh.network.prototypes.weight, trainer.network.prototypes.weight)
    fresh.load_checkpoint(path)
    for (k, a), b in zip(trainer.network.state_dict().items(), fresh.network.state_dict().values()):
        assert torch.equal(a, b), k
    weights = torch.load(path, weights_only=False)["network_weights"]
    net = nnUNetTrainerMedCL.build_network_architecture(trainer.plans_manager, trainer.configuration_manager, 1, 4,
                                                        enable_deep_supervision=False)
    net.load_state_dict(weights, strict=True)
    x = synthetic_batch(trainer, seed=3)["data"]
    trainer.set_deep_supervision_enabled(False)
    with torch.no_grad():
        assert torch.equal(net.eval()(x), trainer.network.eval()(x))  # eval returns the planned output only


@pytest.mark.parametrize("dim", [2, 3])
def test_union_sum_variant_sums_the_class_maps_and_has_no_union_head(make_trainer, dim, tmp_path):
    trainer = make_trainer(nnUNetTrainerMedCLUnionSum, dim=dim)
    net = trainer.network
    assert net.union_head is None and not any(k.startswith("union_head") for k in net.state_dict())
    net.train()
    out = net(synthetic_batch(trainer)["data"])
    expected = torch.stack([out.probs[:, 1:3].sum(1), out.probs[:, 1:4].sum(1)], 1)  # Ω_2 = {1, 2}, Ω_3 = {1, 2, 3}
    assert out.unions.shape == expected.shape and torch.allclose(out.unions, expected, atol=1e-6)
    batch = synthetic_batch(trainer, annotated=0.3)
    result = trainer.train_step(batch)
    assert result["term_ac"] < 0.05  # eq. 5's map term is 0 (cos(s, s) = 1); the centre term remains
    assert {k[5:] for k in result if k.startswith("term_") and "@" not in k} == ALL_TERMS
    missing = {n for n, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0}
    assert missing <= {"decoder.seg_layers.0.weight", "decoder.seg_layers.0.bias"}
    path = str(tmp_path / "checkpoint.pth")
    trainer.save_checkpoint(path)  # the inference build (class constants) loads it strictly
    inference = nnUNetTrainerMedCLUnionSum.build_network_architecture(
        trainer.plans_manager, trainer.configuration_manager, 1, 4, enable_deep_supervision=False)
    inference.load_state_dict(torch.load(path, weights_only=False)["network_weights"], strict=True)


# ---------------------------------------------------------------- whole-image class sets from the data loader
def test_class_presence_table_per_slice():
    seg = np.full((1, 3, 4, 4), 4, dtype=np.int16)  # ignore everywhere
    seg[0, 0, 0, 0], seg[0, 0, 1, 1], seg[0, 2, 3, 3], seg[0, 2, 0, 0] = 0, 2, 3, -1
    table = class_presence_table(seg, 4)
    assert table.tolist() == [[True, False, True, False], [False] * 4, [False, False, False, True]]


class _Dataset:
    """Three slices with different classes; the image value of slice z is z (to see which slice was sampled)."""

    identifiers = ["case"]

    def __init__(self):
        self.seg = np.full((1, 3, 16, 16), 4, dtype=np.int16)
        self.seg[0, 0, 2:4, 2:4], self.seg[0, 1, 5, 5:9], self.seg[0, 2, 8, 8] = 1, 2, 3
        self.seg[0, :, 0, 0] = 0
        self.data = np.broadcast_to(np.arange(3, dtype=np.float32)[None, :, None, None], (1, 3, 16, 16)).copy()

    def load_case(self, identifier):
        annotated = np.argwhere(self.seg != 4)
        locations = {(-1, 0, 1, 2, 3): annotated, 1: np.argwhere(self.seg == 1), 2: np.argwhere(self.seg == 2),
                     3: np.argwhere(self.seg == 3)}
        return self.data, self.seg, None, {"class_locations": locations}


@pytest.mark.parametrize("dim", [2, 3])
def test_loader_adds_the_class_set_of_the_slice_or_case(make_trainer, dim):
    trainer = make_trainer(nnUNetTrainerMedCL, initialize=False)
    patch = (8, 8) if dim == 2 else (3, 8, 8)
    loader = ClassPresenceDataLoader(_Dataset(), 6, patch, patch, trainer.label_manager,
                                     oversample_foreground_percent=0.5)
    expected = class_presence_table(_Dataset().seg, 4)
    for _ in range(3):
        batch = loader.generate_train_batch()
        for data, present in zip(batch["data"], batch["class_presence"]):
            if dim == 2:  # the slice's classes, whatever part of it the patch shows
                assert present.tolist() == expected[int(data.flatten()[0])].tolist()
            else:
                assert present.tolist() == [True] * 4


def test_trainer_builds_the_class_presence_loader():
    original = trainer_module.nnUNetDataLoader
    with use_data_loader_class(ClassPresenceDataLoader):
        assert trainer_module.nnUNetDataLoader is ClassPresenceDataLoader
    assert trainer_module.nnUNetDataLoader is original
