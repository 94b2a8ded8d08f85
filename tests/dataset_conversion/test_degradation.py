"""Scribble shrink/drop degradation, the dataset-level tool and scribble statistics."""
from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from nnunet_scribble.dataset_conversion import acdc, degrade_dataset, scribble_stats
from nnunet_scribble.dataset_conversion.degrade_dataset import degrade, drop_objects, shrink_slice
from nnunet_scribble.dataset_conversion.scribble_geometry import components


def _two_class_slice() -> np.ndarray:
    s = np.full((30, 40), 9, np.uint8)
    s[5, 2:32] = 1           # one scribble of 30 px
    s[15, 2:12] = 2          # two scribbles of 10 and 20 px
    s[25, 5:25] = 2
    return s


def test_shrink_single_scribble_from_one_end():
    out = shrink_slice(_two_class_slice(), 9, 0.3, np.random.default_rng(0))
    kept = np.nonzero(out[5] == 1)[0]
    assert len(kept) == 21 and components(out == 1)[1] == 1
    assert kept[0] == 2 or kept[-1] == 31  # removed from one end


def test_shrink_removes_whole_scribbles_first():
    for seed in range(5):
        out = shrink_slice(_two_class_slice(), 9, 0.5, np.random.default_rng(seed))
        assert (out == 2).sum() == 15  # 50% of 30 px
        rows = {r for r in (15, 25) if (out[r] == 2).any()}
        assert len(rows) == 1 or (out[15] == 2).sum() == 10  # small one removed whole, or big partially


def test_drop_objects_keeps_one():
    vol = np.stack([_two_class_slice()] * 4)
    out = drop_objects(vol, 9, 0.5, np.random.default_rng(0))
    remaining = sum(len(set(np.unique(z)) - {9}) for z in out)
    assert remaining == 4
    assert (drop_objects(vol, 9, 0.99, np.random.default_rng(0)) != 9).any()
    with pytest.raises(ValueError, match="ratio must lie in"):
        degrade(vol, 9, "drop", 1.0, np.random.default_rng(0))


@pytest.mark.parametrize("mode", ["shrink", "drop"])
def test_degrade_dataset_and_stats(acdc_official, nnunet_env, verify, mode):
    root, scribbles = acdc_official(patients=(1, 2))
    acdc.convert(acdc.build_parser().parse_args([str(root), "-s", str(scribbles)]))
    args = ["-i", "27", "-d", "40", "-n", "Deg", "--mode", mode, "--ratio", "0.5", "--seed", "3"]
    degrade_dataset.convert(degrade_dataset.build_parser().parse_args(args))
    out = nnunet_env[0] / "Dataset040_Deg"
    assert json.loads((out / "dataset.json").read_text())["scribble_degradation"]["mode"] == mode
    before, after = scribble_stats.dataset_stats("27"), scribble_stats.dataset_stats(str(out))
    assert 0.4 * before["annotated_percent"] < after["annotated_percent"] < 0.6 * before["annotated_percent"]
    assert (out / "labelsTr_dense").is_dir() and (out / "splits_final.json").is_file()
    verify(out)


def test_degrade_rejects_dense_dataset(dense_raw, nnunet_env):
    args = ["-i", str(dense_raw()), "-d", "41", "-n", "Deg", "--mode", "drop", "--ratio", "0.5"]
    with pytest.raises(ValueError, match="no ignore label"):
        degrade_dataset.convert(degrade_dataset.build_parser().parse_args(args))


def test_volume_counts():
    dense = np.zeros((2, 10, 10), np.uint8)
    dense[:, 2:8, 2:8] = 1
    scribble = np.full_like(dense, 2)
    scribble[0, 4, 3:7] = 1
    scribble[0, 6, 3:7] = 1
    scribble[:, 0, :] = 0
    counts = scribble_stats.volume_counts(scribble, dense, 2)
    assert counts[1].tolist() == [8, 72, 2, 2] and counts[0].tolist() == [20, 128, 2, 2]


@pytest.mark.parametrize("mode", ["shrink", "drop"])
def test_degrade_2d_images_treats_the_whole_image_as_one_slice(nnunet_env, mode):
    # 2D images are read as (1, y, x); degrading them row by row kept part of every dropped class and shrank each
    # image row separately
    from nnunet_scribble.data.synthetic import generate_synthetic_dataset

    src = generate_synthetic_dataset(nnunet_env[0], dataset_id=42, dim=2, num_train=3, num_test=1, progress=False)
    args = ["-i", str(src), "-d", "43", "-n", "Deg2d", "--mode", mode, "--ratio", "0.5"]
    degrade_dataset.convert(degrade_dataset.build_parser().parse_args(args))
    for path in sorted((src / "labelsTr").glob("*.nii.gz")):
        before = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
        after = sitk.GetArrayFromImage(sitk.ReadImage(str(nnunet_env[0] / "Dataset043_Deg2d" / "labelsTr" / path.name)))
        classes = [c for c in np.unique(before) if c != 4]
        kept = [c for c in classes if (after == c).any()]
        if mode == "drop":  # whole classes go: round(0.5 * N) of the N classes of the image, the others stay intact
            assert len(kept) == len(classes) - min(round(0.5 * len(classes)), len(classes) - 1)
            assert all((after == c).sum() == (before == c).sum() for c in kept)
        else:  # round(0.5 * n) pixels per class of the whole image
            assert all((after == c).sum() == (before == c).sum() - round(0.5 * (before == c).sum()) for c in classes)


def test_dataset_stats_count_2d_images_as_one_slice(nnunet_env):
    # a 2D case is read as (1, y, x): its components must be counted per image, not per image row
    from nnunet_scribble.data.synthetic import generate_synthetic_dataset

    src = generate_synthetic_dataset(nnunet_env[0], dataset_id=44, dim=2, num_train=2, num_test=0, progress=False)
    stats = scribble_stats.dataset_stats(str(src))
    expected = np.zeros((len(stats["classes"]), 4), np.int64)
    for path in sorted((src / "labelsTr").glob("*.nii.gz")):
        scribble = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
        dense = sitk.GetArrayFromImage(sitk.ReadImage(str(src / "labelsTr_dense" / path.name)))
        expected += scribble_stats.volume_counts(scribble[0][None], dense[0][None], len(stats["classes"]), axis=0)
    assert expected[:, 3].max() == 2  # each class present in the 2 images counts 2 slices, not one per row
    assert stats["components_per_slice"] == pytest.approx((expected[:, 2] / np.maximum(expected[:, 3], 1)).tolist())
