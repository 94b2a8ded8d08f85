"""Degenerate data never produces NaN or a crash, for every trainer (issue 9).

Each case runs real ``train_step`` calls (two, so that an optimiser step on a bad gradient would show as NaN
parameters) on batches that nnU-Net's loader can produce: no annotated voxel, a class absent from the whole batch,
a dataset with a single foreground class, patches smaller than MaCo's 16-voxel mask cells and LoRM's stride-8 grid,
strongly anisotropic 3D spacing through the trainer's own per-sample transforms, and mixed precision (bfloat16
autocast on CPU: the dtype paths AMP takes on a GPU). Also: a class never scribbled in the dataset is announced at
the start of training.
"""
from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from nnunet_helpers import tiny_plans

import nnunet_scribble.trainers as trainers
from nnunet_scribble.trainers.common import unwrap_network

TRAINERS = ["nnUNetTrainerScribble", "nnUNetTrainerDMPLS", "nnUNetTrainerMaCo", "nnUNetTrainerPCLMix",
            "nnUNetTrainerMedCL", "nnUNetTrainerCSPNet"]
FOUR_CLASSES = {"background": 0, "RV": 1, "MYO": 2, "LV": 3, "ignore": 4}
ONE_CLASS = {"background": 0, "tumour": 1, "ignore": 2}


def build(nnunet_dirs, name: str, dim: int = 2, labels: dict | None = None, patch: list[int] | None = None,
          spacing: list[float] | None = None, device: str = "cpu"):
    """An initialised trainer (CPU unless ``device``) for the tiny plans, with optional labels, patch and spacing."""
    plans = tiny_plans(dim)
    config = next(iter(plans["configurations"]))
    cfg = plans["configurations"][config]
    if patch is not None:
        cfg["patch_size"] = cfg["median_image_size_in_voxels"] = patch
    if spacing is not None:
        cfg["spacing"] = spacing
    data_dir = nnunet_dirs["nnUNet_preprocessed"] / plans["dataset_name"] / f"nnUNetPlans_{config}"
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "dummy.b2nd").touch()
    dataset_json = {"channel_names": {"0": "MRI"}, "labels": dict(labels or FOUR_CLASSES), "numTraining": 4,
                    "file_ending": ".nii.gz"}
    trainer = getattr(trainers, name)(plans, config, 0, dataset_json, torch.device(device))
    trainer.initialize()
    if hasattr(trainer, "iteration"):
        trainer.iteration = 5000  # PCLMix: contrast on
    trainer.network.train()
    return trainer


def batch_from_labels(trainer, seg: torch.Tensor, extra: torch.Tensor | None = None, seed: int = 0) -> dict:
    """nnU-Net's batch layout for ``seg`` ``(B, 1, *patch)``: one target per deep-supervision scale."""
    g = torch.Generator().manual_seed(seed)
    data = torch.randn(seg.shape, generator=g)
    full = seg.float() if extra is None else torch.cat([seg.float(), extra.float()], 1)
    targets = [full] + [torch.nn.functional.interpolate(seg.float(), scale_factor=s, mode="nearest-exact")
                        for s in trainer._get_deep_supervision_scales()[1:]]
    return {"data": data, "target": targets}


def random_scribbles(trainer, classes: list[int], fraction: float = 0.2, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    bs, patch = trainer.configuration_manager.batch_size, trainer.configuration_manager.patch_size
    ignore = trainer.label_manager.ignore_label
    seg = torch.tensor(classes)[torch.randint(0, len(classes), (bs, 1, *patch), generator=g)]
    seg[torch.rand(seg.shape, generator=g) > fraction] = ignore
    return seg


def steps_are_finite(trainer, batches: list[dict]) -> None:
    for batch in batches:
        out = trainer.train_step(batch)
        assert np.isfinite(out["loss"]), out
        assert all(np.isfinite(v) for k, v in out.items() if k.startswith("term_")), out
    assert all(torch.isfinite(p).all() for p in unwrap_network(trainer.network).parameters())


@pytest.mark.parametrize("name", TRAINERS)
def test_batch_without_any_annotated_voxel(nnunet_dirs, name):
    trainer = build(nnunet_dirs, name)
    seg = random_scribbles(trainer, [0], fraction=0.0)
    assert (seg == 4).all()
    steps_are_finite(trainer, [batch_from_labels(trainer, seg, seed=s) for s in range(2)])


@pytest.mark.parametrize("name", TRAINERS)
def test_class_without_scribble_in_the_whole_batch(nnunet_dirs, name):
    trainer = build(nnunet_dirs, name)
    seg = random_scribbles(trainer, [0, 1, 3])  # no MYO anywhere in the batch
    steps_are_finite(trainer, [batch_from_labels(trainer, seg, seed=s) for s in range(2)])
    seg = random_scribbles(trainer, [2], seed=1)  # only one foreground class, no background
    steps_are_finite(trainer, [batch_from_labels(trainer, seg)])


@pytest.mark.parametrize("dim", [2, 3])
@pytest.mark.parametrize("name", TRAINERS)
def test_single_foreground_class_dataset(nnunet_dirs, name, dim):
    trainer = build(nnunet_dirs, name, dim=dim, labels=ONE_CLASS)
    assert trainer.label_manager.num_segmentation_heads == 2
    batches = [batch_from_labels(trainer, random_scribbles(trainer, [0, 1], seed=s), seed=s) for s in range(2)]
    if name == "nnUNetTrainerMedCL":  # one foreground class: no union of foreground classes to predict
        assert unwrap_network(trainer.network).union_head is None
        for b in batches:
            b["class_presence"] = torch.tensor([[True, True], [True, False]])
    steps_are_finite(trainer, batches)


@pytest.mark.parametrize("name", TRAINERS)
def test_patch_smaller_than_mask_cells_and_lorm_grid(nnunet_dirs, name):
    # 8 x 8 patches: below MaCo's 16-voxel cells; the tiny plan's deepest stage (stride 4) is 2 x 2 tokens
    trainer = build(nnunet_dirs, name, patch=[8, 8])
    steps_are_finite(trainer, [batch_from_labels(trainer, random_scribbles(trainer, [0, 1, 2, 3], 0.5, s), seed=s)
                               for s in range(2)])


@pytest.mark.parametrize("name", ["nnUNetTrainerMaCo", "nnUNetTrainerCSPNet", "nnUNetTrainerDMPLS"])
def test_anisotropic_3d_spacing_through_the_trainers_own_transforms(nnunet_dirs, name):
    # ACDC-like 3d: 10 mm between slices, 1.5 mm in plane; distance maps are spacing-aware
    trainer = build(nnunet_dirs, name, dim=3, spacing=[10.0, 1.5, 1.5])
    seg = random_scribbles(trainer, [0, 1, 2, 3], fraction=0.02)
    seg[:, :, 1:-1] = 4  # scribbles on the first and last slice only
    channels = [seg.float()]
    if name == "nnUNetTrainerCSPNet":
        channels.append(torch.randint(0, 4, seg.shape).float())  # a pseudo-label channel, as from the cascade input
    samples = []
    for i in range(seg.shape[0]):
        sample = {"image": torch.randn(1, *seg.shape[2:]), "segmentation": torch.cat([c[i] for c in channels])}
        for t in trainer.extra_target_transforms():
            sample = t(**sample)
        assert not torch.isnan(sample["segmentation"]).any()  # +inf is MaCo's "no scribble of this class"
        samples.append(sample["segmentation"])
    full = torch.stack(samples)
    extra = full[:, 1:] if full.shape[1] > 1 else None
    steps_are_finite(trainer, [batch_from_labels(trainer, seg, extra)])


@pytest.mark.parametrize("name", TRAINERS)
def test_mixed_precision_dtype_paths(nnunet_dirs, name):
    trainer = build(nnunet_dirs, name)
    batch = batch_from_labels(trainer, random_scribbles(trainer, [0, 1, 2, 3]))
    if hasattr(trainer, "queue"):  # fill PCLMix's queue so that the contrast term is active
        trainer.compute_loss_terms(batch["data"], batch["target"])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        terms = trainer.compute_loss_terms(batch["data"], batch["target"])
    for key, (value, _) in terms.items():
        assert value.dtype == torch.float32 or value.dtype == torch.bfloat16, key
        assert torch.isfinite(value), key
    sum(w * v for v, w in terms.values()).backward()
    assert all(torch.isfinite(p.grad).all() for p in trainer.network.parameters() if p.grad is not None)


def test_class_never_annotated_in_the_dataset_is_announced(nnunet_dirs, capsys):
    trainer = build(nnunet_dirs, "nnUNetTrainerScribble")
    folder = trainer.preprocessed_dataset_folder
    empty = np.zeros((0, 3), dtype=np.int64)
    for i in range(4):  # MYO (2) never scribbled; LV (3) only in case 3
        locations = {1: np.ones((5, 3), dtype=np.int64), 2: empty, 3: np.ones((2, 3)) if i == 3 else empty,
                     (-1, 0, 1, 2, 3): np.ones((9, 3))}  # nnU-Net's "annotated" entry of ignore-label datasets
        with open(f"{folder}/case_{i}.pkl", "wb") as f:
            pickle.dump({"class_locations": locations}, f)
    import json
    with open(f"{trainer.preprocessed_dataset_folder_base}/splits_final.json", "w") as f:
        json.dump([{"train": ["case_0", "case_1", "case_3"], "val": ["case_2"]}], f)
    assert trainer.warn_about_unannotated_classes() == {2: "MYO"}
    out = capsys.readouterr().out
    assert "WARNING: 'MYO' (label 2) is not annotated in any of the 3 training cases of fold 0" in out
    assert trainer.warn_about_unannotated_classes() == {}  # once per training
    trainer._annotation_checked = False
    with open(f"{trainer.preprocessed_dataset_folder_base}/splits_final.json", "w") as f:
        json.dump([{"train": ["case_0", "case_1"], "val": ["case_2", "case_3"]}], f)
    assert trainer.warn_about_unannotated_classes() == {2: "MYO", 3: "LV"}
    assert "'MYO' (label 2), 'LV' (label 3) are not annotated" in capsys.readouterr().out


@pytest.mark.needs_cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
@pytest.mark.parametrize("name", TRAINERS + ["nnUNetTrainerMedCLUnionSum"])  # its unions: another forward path
def test_cuda_mixed_precision_steps(nnunet_dirs, monkeypatch, name, compiled):
    """On a GPU, as nnU-Net trains there: float16 autocast with its GradScaler, eager and under ``torch.compile``.

    Batches without the pipeline's extra channels (MaCo and CSPNet then compute them in the step, their fallback);
    four steps (the GradScaler may skip the first ones), finite losses, terms and parameters, and parameters move.
    """
    monkeypatch.setenv("nnUNet_compile", "true" if compiled else "false")
    trainer = build(nnunet_dirs, name, device="cuda")
    assert trainer.device.type == "cuda" and trainer.grad_scaler is not None
    before = [p.detach().clone() for p in unwrap_network(trainer.network).parameters()]
    steps_are_finite(trainer, [batch_from_labels(trainer, random_scribbles(trainer, [0, 1, 2, 3], 0.2, s), seed=s)
                               for s in range(4)])
    after = list(unwrap_network(trainer.network).parameters())
    assert any(not torch.equal(a, b) for a, b in zip(after, before))
