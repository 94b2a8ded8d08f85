"""The base scribble trainer: ignore-label checks, loss terms, ignore handling, logging, checkpoints, hparams."""
from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest
import torch
from nnunet_helpers import DATASET_JSON, remove_label_transforms, synthetic_batch

from nnunet_scribble.trainers import nnUNetTrainerFullySupervised, nnUNetTrainerScribble
from nnunet_scribble.trainers.common import TERM_PREFIX
from nnunet_scribble.trainers.nnUNetTrainerScribble import check_ignore_label


class TwoTermTrainer(nnUNetTrainerScribble):
    """Supervised loss plus an L2 penalty on the logits with weight ``lam`` and extra checkpoint state."""

    lam: float = 0.5

    def compute_loss_terms(self, data, target, extra=None):
        out = self.network(data)
        penalty = (out[0] ** 2).mean()
        return {"sup": (self.loss(out, target), 1.0), "l2": (penalty, self.lam)}

    def get_extra_checkpoint_state(self):
        return {"queue": getattr(self, "queue", torch.zeros(3)), "counter": getattr(self, "counter", 0)}

    def load_extra_checkpoint_state(self, state):
        self.queue, self.counter = state["queue"], state["counter"]


# ----------------------------------------------------------------------------- ignore label required
def test_dataset_without_ignore_label_is_refused_before_anything_is_written(make_trainer, nnunet_dirs):
    dense = {**DATASET_JSON, "labels": {"background": 0, "RV": 1, "MYO": 2, "LV": 3}}
    with pytest.raises(ValueError) as e:
        make_trainer(nnUNetTrainerScribble, dataset_json=dense, initialize=False)
    msg = str(e.value)
    assert os.path.join(str(nnunet_dirs["nnUNet_preprocessed"]), "Dataset999_Tiny", "dataset.json") in msg
    assert '"ignore": 4' in msg
    assert not any(nnunet_dirs["nnUNet_results"].iterdir())  # no output folder was created


def test_ignore_label_must_be_highest():
    with pytest.raises(ValueError, match="one integer higher"):
        check_ignore_label({"labels": {"background": 0, "a": 1, "ignore": 1, "b": 2}}, "x/dataset.json")
    assert check_ignore_label(DATASET_JSON, "x") == 4


def test_fully_supervised_trainer_accepts_dense_dataset(make_trainer):
    dense = {**DATASET_JSON, "labels": {"background": 0, "RV": 1, "MYO": 2, "LV": 3}}
    trainer = make_trainer(nnUNetTrainerFullySupervised, dataset_json=dense)
    assert trainer.label_manager.ignore_label is None


# ----------------------------------------------------------------------------- loss terms and the training step
def test_base_loss_is_nnunet_partial_loss(make_trainer):
    trainer = make_trainer(nnUNetTrainerScribble)
    batch = synthetic_batch(trainer)
    torch.manual_seed(0)
    terms = trainer.compute_loss_terms(batch["data"], batch["target"])
    assert list(terms) == ["sup"] and terms["sup"][1] == 1.0
    # identity: the term is exactly nnU-Net's loss (deep-supervised DC+CE with ignore label) on the same output
    with torch.no_grad():
        trainer.network.eval()  # no dropout in the tiny net, eval only freezes instance norm stats (none kept)
        out = trainer.network(batch["data"])
        expected = trainer.loss(out, batch["target"])
        got = trainer.compute_loss_terms(batch["data"], batch["target"])["sup"][0]
    assert torch.allclose(got, expected)


def test_train_step_total_is_weighted_sum_and_terms_are_reported(make_trainer):
    trainer = make_trainer(TwoTermTrainer)
    trainer.lam = 0.25
    batch = synthetic_batch(trainer)
    before = [p.detach().clone() for p in trainer.network.parameters()]
    out = trainer.train_step(batch)
    assert math.isclose(float(out["loss"]), out[TERM_PREFIX + "sup"] + 0.25 * out[TERM_PREFIX + "l2"], rel_tol=1e-5)
    assert out[TERM_PREFIX + "l2@w"] == 0.25
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.network.parameters()))


def test_ignored_voxels_get_zero_gradient(make_trainer):
    trainer = make_trainer(nnUNetTrainerScribble)
    batch = synthetic_batch(trainer, annotated=0.3)
    logits = [torch.randn(t.shape[0], 4, *t.shape[2:], requires_grad=True) for t in batch["target"]]
    trainer.loss(logits, batch["target"]).backward()
    ignored = (batch["target"][0] == 4).expand_as(logits[0])
    assert logits[0].grad[ignored].abs().max() == 0
    assert logits[0].grad[~ignored].abs().max() > 0


def test_batch_without_annotation_gives_finite_loss(make_trainer):
    trainer = make_trainer(nnUNetTrainerScribble)
    batch = synthetic_batch(trainer, annotated=0.0)
    out = trainer.train_step(batch)
    assert np.isfinite(out["loss"])


# ----------------------------------------------------------------------------- outside the image = ignore
@pytest.mark.parametrize("dim", [2, 3])
def test_outside_image_becomes_ignore_in_training_and_validation_pipelines(make_trainer, dim):
    trainer = make_trainer(nnUNetTrainerScribble, dim=dim)
    patch = trainer.configuration_manager.patch_size
    rot, dummy2d, _, mirror = trainer.configure_rotation_dummyDA_mirroring_and_inital_patch_size()
    tr = trainer.get_training_transforms(patch, rot, None, mirror, dummy2d, ignore_label=4)
    found = remove_label_transforms(tr)
    assert [(t.label_value, t.set_to) for t in found] == [(-1, 4)]

    val = trainer.get_validation_transforms(None, ignore_label=4)
    seg = torch.zeros((1, *patch), dtype=torch.int16)
    seg[(0, *[slice(0, 3)] * dim)] = -1  # what the loader pads beyond the image
    out = val(image=torch.zeros((1, *patch)), segmentation=seg)["segmentation"]
    assert (out[(0, *[slice(0, 3)] * dim)] == 4).all() and (out == 0).sum() == seg.numel() - 3 ** dim


def test_outside_image_background_keeps_nnunets_minus_one_to_background(make_trainer, monkeypatch):
    monkeypatch.setenv("nnUNet_scribble_hparams", '{"outside_image_background": true}')
    trainer = make_trainer(nnUNetTrainerScribble)
    assert trainer.outside_image_background is True
    patch = trainer.configuration_manager.patch_size
    rot, dummy2d, _, mirror = trainer.configure_rotation_dummyDA_mirroring_and_inital_patch_size()
    tr = trainer.get_training_transforms(patch, rot, None, mirror, dummy2d, ignore_label=4)
    assert [(t.label_value, t.set_to) for t in remove_label_transforms(tr)] == [(-1, 0)]
    val = trainer.get_validation_transforms(None, ignore_label=4)
    seg = torch.full((1, *patch), 4, dtype=torch.int16)
    seg[0, :3, :3] = -1  # e.g. a background label outside nnU-Net's non-zero mask
    out = val(image=torch.zeros((1, *patch)), segmentation=seg)["segmentation"]
    assert (out[0, :3, :3] == 0).all() and (out == 4).sum() == seg.numel() - 9


def test_stock_trainer_pipeline_is_not_modified(make_trainer):
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    trainer = make_trainer(nnUNetTrainerScribble)
    patch = trainer.configuration_manager.patch_size
    rot, dummy2d, _, mirror = trainer.configure_rotation_dummyDA_mirroring_and_inital_patch_size()
    tr = nnUNetTrainer.get_training_transforms(patch, rot, None, mirror, dummy2d, ignore_label=4)
    assert [(t.label_value, t.set_to) for t in remove_label_transforms(tr)] == [(-1, 0)]


# ----------------------------------------------------------------------------- per-term logging
def test_terms_are_logged_per_epoch_and_plotted(make_trainer, tmp_path):
    trainer = make_trainer(TwoTermTrainer)
    outputs = [trainer.train_step(synthetic_batch(trainer, seed=s)) for s in range(3)]
    trainer.on_train_epoch_end(outputs)
    terms = trainer.logged_terms()
    assert set(terms) == {"sup", "l2"}
    assert math.isclose(terms["l2"][0], np.mean([o[TERM_PREFIX + "l2"] for o in outputs]), rel_tol=1e-6)
    # a term that appears only in a later epoch is NaN-padded, so nnU-Net's progress plot keeps working
    trainer.current_epoch = 2
    trainer._log_term(TERM_PREFIX + "late", 1.5)
    assert trainer.logged_terms()["late"][:2] == [] or all(math.isnan(v) for v in trainer.logged_terms()["late"][:2])
    assert trainer.logged_terms()["late"][2] == 1.5
    from nnunet_scribble.trainers.plotting import plot_loss_terms
    png = tmp_path / "terms.png"
    plot_loss_terms(trainer.logged_terms(), str(png))
    assert png.stat().st_size > 1000


# ----------------------------------------------------------------------------- checkpoints
def test_checkpoint_round_trip_restores_method_state(make_trainer):
    trainer = make_trainer(TwoTermTrainer)
    trainer.train_step(synthetic_batch(trainer))
    trainer.queue, trainer.counter = torch.arange(5.0), 7
    trainer.current_epoch = 3
    ckpt = os.path.join(trainer.output_folder, "checkpoint_latest.pth")
    trainer.save_checkpoint(ckpt)
    assert not [f for f in os.listdir(trainer.output_folder) if ".tmp" in f]  # written atomically
    saved = torch.load(ckpt, weights_only=False)
    assert saved["nnunet_scribble"]["hyperparameters"]["lam"] == 0.5
    from nnunet_scribble import provenance
    assert saved["nnunet_scribble"]["code"] == provenance.code_version()  # which code trained the model
    assert not provenance.differs(saved["nnunet_scribble"]["code"])  # the code that runs now

    fresh = make_trainer(TwoTermTrainer, initialize=False)
    fresh.load_checkpoint(ckpt)
    assert torch.equal(fresh.queue, torch.arange(5.0)) and fresh.counter == 7
    assert fresh.current_epoch == 4
    for a, b in zip(trainer.network.state_dict().values(), fresh.network.state_dict().values()):
        assert torch.equal(a, b)


def test_checkpoint_loads_strictly_into_inference_network(make_trainer):
    trainer = make_trainer(nnUNetTrainerScribble)
    ckpt = os.path.join(trainer.output_folder, "checkpoint_final.pth")
    trainer.save_checkpoint(ckpt)
    net = nnUNetTrainerScribble.build_network_architecture(
        trainer.plans_manager, trainer.configuration_manager, 1, 4, enable_deep_supervision=False)
    net.load_state_dict(torch.load(ckpt, weights_only=False)["network_weights"], strict=True)


# ----------------------------------------------------------------------------- hyperparameters
class ShortTrainer(TwoTermTrainer):
    trainer_defaults = {"num_epochs": 3, "initial_lr": 0.001}


def test_trainer_defaults_survive_nnunet_init(make_trainer):
    trainer = make_trainer(ShortTrainer, initialize=False)
    assert trainer.num_epochs == 3 and trainer.initial_lr == 0.001 and trainer.lam == 0.5


def test_environment_overrides(make_trainer, monkeypatch):
    monkeypatch.setenv("nnUNet_scribble_hparams",
                       json.dumps({"num_epochs": 2, "lam": 1, "num_val_iterations_per_epoch": 1}))
    trainer = make_trainer(ShortTrainer, initialize=False)
    assert trainer.num_epochs == 2 and trainer.lam == 1.0 and isinstance(trainer.lam, float)
    assert trainer.num_val_iterations_per_epoch == 1


def test_class_hyperparameters_are_what_a_new_trainer_records(make_trainer, monkeypatch):
    """What run_quality.py --reuse compares a checkpoint with, read from the class, equals what an instance records."""
    from nnunet_scribble.trainers import hparams as hp

    expected = hp.class_hyperparameters(ShortTrainer)
    assert expected["lam"] == 0.5 and expected["num_epochs"] == 3 and "queue" not in expected
    recorded = hp.current_hyperparameters(make_trainer(ShortTrainer, initialize=False))
    assert hp.differences(recorded, expected) == {}
    monkeypatch.setenv("nnUNet_scribble_hparams", json.dumps({"lam": 2.0}))
    recorded = hp.current_hyperparameters(make_trainer(ShortTrainer, initialize=False))
    assert hp.differences(recorded, expected) == {"lam": (2.0, 0.5)}  # a model trained with an override
    assert hp.differences(recorded, {**expected, "lam": 2.0}) == {}  # ... compared under the same override


def test_differences_name_changed_and_unrecorded_hyperparameters():
    from nnunet_scribble.trainers import hparams as hp

    recorded = {"a": 1, "b": (1, 2), "old": True}  # torch.save keeps tuples; JSON overrides give lists
    assert hp.differences(recorded, {"a": 1, "b": [1, 2]}) == {}
    assert hp.differences(recorded, {"a": 2, "b": [1, 2], "new": "voxel"}) == {"a": (1, 2),
                                                                            "new": (hp.NOT_RECORDED, "voxel")}


@pytest.mark.parametrize("value, match", [('{"num_epochs": "5"}', "expects int"),
                                          ('{"nmu_epochs": 5}', "has no hyperparameter 'nmu_epochs'"),
                                          ("[1, 2]", "must be a JSON object"),
                                          ("num_epochs=5", "must be a JSON object")])
def test_bad_overrides_are_rejected(make_trainer, monkeypatch, value, match):
    monkeypatch.setenv("nnUNet_scribble_hparams", value)
    with pytest.raises(ValueError, match=match):
        make_trainer(ShortTrainer, initialize=False)


# ----------------------------------------------------------------------------- deep supervision on every decoder
def test_deep_supervision_toggles_every_decoder(make_trainer):
    from dynamic_network_architectures.building_blocks.unet_decoder import UNetDecoder
    trainer = make_trainer(nnUNetTrainerScribble)
    trainer.network.aux_decoder = UNetDecoder(trainer.network.encoder, 4, 1, deep_supervision=True)
    trainer.set_deep_supervision_enabled(False)
    assert not trainer.network.decoder.deep_supervision and not trainer.network.aux_decoder.deep_supervision
    trainer.set_deep_supervision_enabled(True)
    assert trainer.network.decoder.deep_supervision and trainer.network.aux_decoder.deep_supervision


# ----------------------------------------------------------------------------- extra target channels
class _AppendOnes:
    """Stand-in for a seg-only transform that appends one float channel (like a distance map)."""

    def __call__(self, **d):
        seg = d["segmentation"]
        d["segmentation"] = torch.cat([seg.float(), torch.ones_like(seg, dtype=torch.float32)], 0)
        return d


class ExtraChannelTrainer(nnUNetTrainerScribble):
    def extra_target_transforms(self):
        return [_AppendOnes()]

    def compute_loss_terms(self, data, target, extra=None):
        self.seen = (target, extra)
        return super().compute_loss_terms(data, target, extra)


def test_extra_target_channels_are_inserted_before_downsampling_and_split_off(make_trainer):
    from batchgeneratorsv2.transforms.utils.deep_supervision_downsampling import DownsampleSegForDSTransform
    trainer = make_trainer(ExtraChannelTrainer)
    patch = trainer.configuration_manager.patch_size
    rot, dummy2d, _, mirror = trainer.configure_rotation_dummyDA_mirroring_and_inital_patch_size()
    scales = trainer._get_deep_supervision_scales()
    tr = trainer.get_training_transforms(patch, rot, scales, mirror, dummy2d, ignore_label=4)
    kinds = [type(t) for t in tr.transforms]
    assert kinds.index(_AppendOnes) == kinds.index(DownsampleSegForDSTransform) - 1

    batch = synthetic_batch(trainer)
    batch["target"] = [torch.cat([t.float(), torch.full_like(t, 7.0, dtype=torch.float32)], 1)
                       for t in batch["target"]]
    trainer.train_step(batch)
    target, extra = trainer.seen
    assert all(t.shape[1] == 1 for t in target) and (extra == 7).all()
    assert extra.shape[2:] == batch["target"][0].shape[2:]


# ----------------------------------------------------------------------------- dense evaluation of the validation
def test_dense_validation_scores_only_cases_with_dense_labels(make_trainer, nnunet_dirs):
    """MSCMRseg-like ``labelsTr_dense`` that holds some cases only: those are scored, the others are named as left out;
    none at all: no evaluation instead of an error after the whole training."""
    import SimpleITK as sitk

    trainer = make_trainer(nnUNetTrainerScribble, initialize=False)
    val = os.path.join(trainer.output_folder, "validation")
    os.makedirs(val)
    dense = nnunet_dirs["nnUNet_raw"] / trainer.plans_manager.dataset_name / "labelsTr_dense"
    dense.mkdir(parents=True)
    seg = np.zeros((1, 8, 8), dtype=np.uint8)
    seg[0, 2:6, 2:6] = 3
    for case in ("a", "b"):
        sitk.WriteImage(sitk.GetImageFromArray(seg), os.path.join(val, f"{case}.nii.gz"))
    assert trainer.evaluate_validation_against_dense_labels() is None  # no dense label for a or b
    sitk.WriteImage(sitk.GetImageFromArray(seg), str(dense / "b.nii.gz"))
    summary = trainer.evaluate_validation_against_dense_labels()
    assert [c["case"] for c in summary["cases"]] == ["b"] and summary["per_class"]["LV"]["Dice"]["mean"] == 1.0
    log = open(trainer.log_file).read()
    assert "No dense labels in" in log and "1 of 2 validation cases; the others have no dense label" in log


def test_dataset_json_declares_outside_image_background(make_trainer, monkeypatch):
    monkeypatch.delenv("nnUNet_scribble_hparams", raising=False)
    declared = {**DATASET_JSON, "outside_image_background": True}
    trainer = make_trainer(nnUNetTrainerScribble, dataset_json=declared, initialize=False)
    assert trainer.outside_image_background is True and trainer.dataset_overrides == {"outside_image_background": True}
    plain = make_trainer(nnUNetTrainerScribble, initialize=False)
    assert plain.outside_image_background is False and plain.dataset_overrides == {}
    # the environment still wins over the dataset's declaration
    monkeypatch.setenv("nnUNet_scribble_hparams", '{"outside_image_background": false}')
    trainer = make_trainer(nnUNetTrainerScribble, dataset_json=declared, initialize=False)
    assert trainer.outside_image_background is False
    # a mistyped declaration names the dataset.json and the expected type
    with pytest.raises(ValueError, match=r"dataset\.json of .*'outside_image_background' expects bool.*'yes'"):
        make_trainer(nnUNetTrainerScribble, dataset_json={**DATASET_JSON, "outside_image_background": "yes"},
                     initialize=False)
