"""nnUNetTrainerMaCo and its ablations on tiny plans: terms, gradients, the distance channels, the DA pipeline."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from batchgeneratorsv2.transforms.utils.deep_supervision_downsampling import DownsampleSegForDSTransform
from batchgeneratorsv2.transforms.utils.remove_label import RemoveLabelTransform
from nnunet_helpers import synthetic_batch

from nnunet_scribble.trainers import (nnUNetTrainerMaCo, nnUNetTrainerMaCoHardPL, nnUNetTrainerMaCoNoCPL,
                                      nnUNetTrainerMaCoNoMCM, nnUNetTrainerMaCoPerClassN, nnUNetTrainerMaCoRandomMask)
from nnunet_scribble.transforms.distance_maps import ScribbleDistanceTransform, scribble_distance_maps

IGNORE = 4


def with_distances(trainer, batch: dict) -> dict:
    """Append the distance channels to the full-resolution target, as the augmentation pipeline does."""
    t0 = batch["target"][0]
    spacing = trainer.configuration_manager.spacing
    dist = np.stack([scribble_distance_maps(s, 4, IGNORE, spacing, trainer.max_distance()) for s in t0[:, 0].numpy()])
    batch["target"] = [torch.cat([t0.float(), torch.from_numpy(dist)], 1)] + batch["target"][1:]
    return batch


def head_without_ds_weight(name: str) -> bool:
    """nnU-Net's deep supervision gives the lowest-resolution output the weight 0 (``_get_deep_supervision_scales``
    + ``DeepSupervisionWrapper`` skip it), and MaCo's other terms use the full-resolution output: that one head
    gets no gradient by nnU-Net's design."""
    return name.startswith("decoder.seg_layers.0.")


@pytest.mark.parametrize("dim", [2, 3])
def test_every_parameter_gets_a_gradient_and_terms_are_finite(make_trainer, dim):
    trainer = make_trainer(nnUNetTrainerMaCo, dim=dim)
    batch = with_distances(trainer, synthetic_batch(trainer, annotated=0.2))
    target, extra = trainer.split_target(batch["target"])
    terms = trainer.compute_loss_terms(batch["data"], target, extra)
    assert list(terms) == ["sup", "sup_masked", "mcm", "ep", "con"]
    assert [w for _, w in terms.values()] == [1.0, 0.5, 0.1, 0.1, 0.1]
    sum(w * v for v, w in terms.values()).backward()
    assert all(torch.isfinite(v) for v, _ in terms.values())
    missing = [n for n, p in trainer.network.named_parameters()
               if (p.grad is None or p.grad.abs().sum() == 0) and not head_without_ds_weight(n)]
    assert missing == []
    assert trainer.network.decoder.seg_layers[0].weight.grad is None


def test_ignored_voxels_get_zero_gradient_from_the_supervised_terms(make_trainer):
    trainer = make_trainer(nnUNetTrainerMaCo)
    batch = with_distances(trainer, synthetic_batch(trainer, annotated=0.3))
    target, extra = trainer.split_target(batch["target"])
    captured = {}

    def keep_output(module, args, output):
        output[0].retain_grad()
        captured["out"] = output[0]
    trainer.network.register_forward_hook(keep_output)
    terms = trainer.compute_loss_terms(batch["data"], target, extra)
    (terms["sup"][0] + 0.5 * terms["sup_masked"][0]).backward()
    grad = captured["out"].grad  # (2B, C, *spatial): original and masked images
    ignored = (target[0] == IGNORE).repeat(2, 1, 1, 1).expand_as(grad)
    assert grad[ignored].abs().max() == 0 and grad[~ignored].abs().max() > 0


def test_batch_without_annotation_gives_finite_loss(make_trainer):
    trainer = make_trainer(nnUNetTrainerMaCo)
    batch = with_distances(trainer, synthetic_batch(trainer, annotated=0.0))
    assert torch.isinf(batch["target"][0][:, 1:]).all()
    out = trainer.train_step(batch)
    assert np.isfinite(out["loss"]) and out["term_con"] == 0.0


def test_distances_computed_in_the_step_when_missing(make_trainer):
    trainer = make_trainer(nnUNetTrainerMaCo)
    batch = synthetic_batch(trainer)
    target, _ = trainer.split_target(batch["target"])
    full = with_distances(trainer, synthetic_batch(trainer))
    _, extra = trainer.split_target(full["target"])
    trainer.network.eval()  # deterministic forward; the masks differ, so compare the mask-free terms
    torch.manual_seed(0)
    a = trainer.compute_loss_terms(batch["data"], target, None)
    torch.manual_seed(0)
    b = trainer.compute_loss_terms(batch["data"], target, extra)
    assert all(torch.allclose(a[k][0], b[k][0]) for k in ("sup", "sup_masked", "mcm", "ep", "con"))


@pytest.mark.parametrize("cls, terms", [
    (nnUNetTrainerMaCoNoMCM, ["sup", "ep", "con"]),
    (nnUNetTrainerMaCoNoCPL, ["sup", "sup_masked", "mcm", "ep"]),
    (nnUNetTrainerMaCoHardPL, ["sup", "sup_masked", "mcm", "ep", "con"]),
    (nnUNetTrainerMaCoRandomMask, ["sup", "sup_masked", "mcm", "ep", "con"]),
    (nnUNetTrainerMaCoPerClassN, ["sup", "sup_masked", "mcm", "ep", "con"]),
])
def test_ablations(make_trainer, cls, terms):
    trainer = make_trainer(cls)
    out = trainer.train_step(with_distances(trainer, synthetic_batch(trainer, annotated=0.2)))
    assert [k[5:] for k in out if k.startswith("term_") and "@" not in k] == terms
    assert np.isfinite(out["loss"])
    assert (trainer.max_distance() is None) == (cls is nnUNetTrainerMaCoHardPL)


@pytest.mark.parametrize("dim", [2, 3])
def test_distance_transform_sits_between_remove_label_and_ds_and_reaches_the_step(make_trainer, dim):
    trainer = make_trainer(nnUNetTrainerMaCo, dim=dim)
    patch = trainer.configuration_manager.patch_size
    rot, dummy2d, _, mirror = trainer.configure_rotation_dummyDA_mirroring_and_inital_patch_size()
    scales = trainer._get_deep_supervision_scales()
    tr = trainer.get_training_transforms(patch, rot, scales, mirror, dummy2d, ignore_label=IGNORE)
    kinds = [type(t) for t in tr.transforms]
    at = kinds.index(ScribbleDistanceTransform)
    assert max(i for i, k in enumerate(kinds) if k is RemoveLabelTransform) < at == kinds.index(
        DownsampleSegForDSTransform) - 1
    assert tr.transforms[at].spacing == tuple(trainer.configuration_manager.spacing)

    seg = torch.full((1, *patch), IGNORE, dtype=torch.int16)
    seg[(0,) + tuple(s // 2 for s in patch)] = 2
    sample = tr(image=torch.randn(1, *patch), segmentation=seg)
    assert sample["segmentation"][0].shape == (5, *patch)  # labels + 4 distance channels, full resolution
    seen = {}

    class Spy(nnUNetTrainerMaCo):
        def compute_loss_terms(self, data, target, extra=None):
            seen["extra"] = extra
            return super().compute_loss_terms(data, target, extra)
    spy = make_trainer(Spy, dim=dim)
    bs = spy.configuration_manager.batch_size
    batch = {"data": torch.stack([sample["image"]] * bs),
             "target": [torch.stack([s] * bs) for s in sample["segmentation"]]}
    spy.train_step(batch)
    assert seen["extra"].shape == (bs, 4, *patch) and torch.equal(seen["extra"][0], sample["segmentation"][0][1:])
