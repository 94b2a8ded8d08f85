"""Tests of the embedded synthetic scribble dataset (:mod:`nnunet_scribble.data.synthetic`)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from nnunet_scribble.data import synthetic
from nnunet_scribble.data.synthetic import (
    DEFAULT_SHAPE,
    DEFAULT_SPACING,
    IGNORE_LABEL,
    LABELS,
    generate_synthetic_dataset,
    main,
    make_case,
)

REPO = Path(__file__).resolve().parents[2]


def _cases(dim: int, n: int, seed: int = 0):
    """``n`` cases of the default size, drawn like the training cases of the dataset generator."""
    seqs = np.random.SeedSequence(seed).spawn(3)[0].spawn(n)
    return [make_case(np.random.default_rng(s), DEFAULT_SHAPE[dim], DEFAULT_SPACING[dim]) for s in seqs]


def _read(path: Path) -> tuple[np.ndarray, sitk.Image]:
    image = sitk.ReadImage(str(path))
    return sitk.GetArrayFromImage(image), image


@pytest.fixture(autouse=True)
def _no_preprocessed(monkeypatch):
    """Never copy splits into a real nnUNet_preprocessed folder of the environment."""
    monkeypatch.delenv("nnUNet_preprocessed", raising=False)


@pytest.fixture(scope="module")
def cases_2d():
    return _cases(2, 30)


@pytest.fixture(scope="module")
def cases_3d():
    return _cases(3, 12)


@pytest.fixture(scope="module")
def dataset_2d(tmp_path_factory):
    return generate_synthetic_dataset(tmp_path_factory.mktemp("raw2d"), num_train=6, num_test=2, progress=False)


@pytest.fixture(scope="module")
def dataset_3d(tmp_path_factory):
    return generate_synthetic_dataset(tmp_path_factory.mktemp("raw3d"), dim=3, num_train=3, num_test=1,
                                      progress=False)


# ------------------------------------------------------------------------------------------------ make_case
@pytest.mark.parametrize("dim", [2, 3])
def test_make_case_is_deterministic(dim):
    shape, spacing = DEFAULT_SHAPE[dim], DEFAULT_SPACING[dim]
    a = make_case(np.random.default_rng(7), shape, spacing)
    b = make_case(np.random.default_rng(7), shape, spacing)
    c = make_case(np.random.default_rng(8), shape, spacing)
    for x, y in zip(a, b):
        assert x.tobytes() == y.tobytes()
    assert not np.array_equal(a[0], c[0]) and not np.array_equal(a[1], c[1])


@pytest.mark.parametrize("dim", [2, 3])
def test_make_case_shapes_dtypes_and_values(dim, cases_2d, cases_3d):
    cases = cases_2d if dim == 2 else cases_3d
    for image, dense, scribble in cases:
        assert image.shape == dense.shape == scribble.shape == DEFAULT_SHAPE[dim]
        assert image.dtype == np.float32 and dense.dtype == np.uint8 and scribble.dtype == np.uint8
        assert np.isfinite(image).all() and image.min() >= 0 and np.percentile(image, 99) < 1000
        assert set(np.unique(dense)) <= {0, 1, 2, 3} and set(np.unique(scribble)) <= {0, 1, 2, 3, 4}
        assert {0, 2, 3} <= set(np.unique(dense))  # apical 2D slices may lack the RV
    assert sum((dense == LABELS["RV"]).any() for _, dense, _ in cases) >= 0.8 * len(cases)


@pytest.mark.parametrize("dim", [2, 3])
def test_scribbles_lie_inside_their_class_and_cover_every_class(dim, cases_2d, cases_3d):
    for _, dense, scribble in cases_2d if dim == 2 else cases_3d:
        annotated = scribble != IGNORE_LABEL
        np.testing.assert_array_equal(scribble[annotated], dense[annotated])
        for value in np.unique(dense):
            assert (scribble == value).any(), f"class {value} present but not scribbled"
        if dim == 3:  # ACDC-like: every slice has a background scribble
            assert all((scribble[z] == 0).any() for z in range(scribble.shape[0]))


@pytest.mark.parametrize("dim", [2, 3])
def test_annotated_fraction_is_sparse(dim, cases_2d, cases_3d):
    fractions = [np.mean(s != IGNORE_LABEL) for _, _, s in (cases_2d if dim == 2 else cases_3d)]
    assert 0.01 <= min(fractions) and max(fractions) <= 0.05, fractions
    assert 0.015 <= np.mean(fractions) <= 0.04


def test_3d_stack_runs_from_base_to_apex(cases_3d):
    for _, dense, _ in cases_3d:
        heart = (dense > 0).sum(axis=(1, 2))
        assert heart[0] > 2 * heart[-1] > 0
        assert (dense[0] == LABELS["RV"]).any() and not (dense[-1] == LABELS["RV"]).any()
        assert (dense[-1] == LABELS["LV"]).any() and (dense[-1] == LABELS["MYO"]).any()


def test_intensity_alone_does_not_separate_the_classes(cases_2d):
    images = np.stack([c[0] for c in cases_2d])
    dense = np.stack([c[1] for c in cases_2d])
    rv, lv = images[dense == LABELS["RV"]], images[dense == LABELS["LV"]]
    assert abs(np.median(rv) - np.median(lv)) < 0.15 * np.median(lv)  # both blood pools are bright
    assert (images[dense == 0] > np.percentile(lv, 25)).sum() > 0.2 * lv.size  # bright background blobs


@pytest.mark.parametrize("shape, spacing", [((96, 96), (1.6,)), ((4, 96, 96), (1.6, 1.6)), ((16, 16), (1.6, 1.6)),
                                            ((96, 96), (1.6, -1.0)), ((96,), (1.6,))])
def test_make_case_rejects_bad_geometry(shape, spacing):
    with pytest.raises(ValueError, match="shape|spacing|in-plane"):
        make_case(np.random.default_rng(0), shape, spacing)


# ------------------------------------------------------------------------------------------------ the dataset
def test_2d_dataset_layout_and_headers(dataset_2d):
    assert dataset_2d.name == "Dataset901_SyntheticCardiac2D"
    meta = json.loads((dataset_2d / "dataset.json").read_text())
    assert meta["labels"]["ignore"] == IGNORE_LABEL and meta["numTraining"] == 6
    assert meta["channel_names"] == {"0": "MRI"} and meta["file_ending"] == ".nii.gz"
    assert meta["synthetic"]["seed"] == 0 and meta["synthetic"]["dim"] == 2
    for sub, n in (("imagesTr", 6), ("labelsTr", 6), ("labelsTr_dense", 6), ("imagesTs", 2), ("labelsTs", 2)):
        assert len(list((dataset_2d / sub).glob("*.nii.gz"))) == n
    image, itk = _read(dataset_2d / "imagesTr" / "synth_000_0000.nii.gz")
    assert image.shape == (1, 96, 96) and image.dtype == np.float32
    assert itk.GetSpacing() == pytest.approx((1.6, 1.6, synthetic.SLICE_THICKNESS_2D))
    scribble, itk = _read(dataset_2d / "labelsTr" / "synth_000.nii.gz")
    dense, _ = _read(dataset_2d / "labelsTr_dense" / "synth_000.nii.gz")
    assert scribble.dtype == np.uint8 and itk.GetSpacing() == pytest.approx((1.6, 1.6, 10.0))
    np.testing.assert_array_equal(scribble[scribble != 4], dense[scribble != 4])
    assert _read(dataset_2d / "labelsTs" / "synth_test_000.nii.gz")[0].shape == (1, 96, 96)


def test_3d_dataset_headers(dataset_3d):
    assert dataset_3d.name == "Dataset902_SyntheticCardiac3D"
    image, itk = _read(dataset_3d / "imagesTr" / "synth_002_0000.nii.gz")
    assert image.shape == (12, 80, 80) and itk.GetSpacing() == pytest.approx((1.6, 1.6, 6.0))
    scribble, itk = _read(dataset_3d / "labelsTr" / "synth_002.nii.gz")
    assert scribble.shape == (12, 80, 80) and itk.GetSpacing() == pytest.approx((1.6, 1.6, 6.0))
    assert set(np.unique(scribble)) == {0, 1, 2, 3, 4}


def test_splits_cover_the_training_cases(dataset_2d):
    splits = json.loads((dataset_2d / "splits_final.json").read_text())
    assert len(splits) == 5
    assert sorted(c for s in splits for c in s["val"]) == [f"synth_{i:03d}" for i in range(6)]
    assert all(not set(s["train"]) & set(s["val"]) for s in splits)


def test_dataset_is_deterministic_and_cases_do_not_depend_on_counts(tmp_path, dataset_2d):
    other = generate_synthetic_dataset(tmp_path / "a", num_train=3, num_test=1, progress=False)
    changed = generate_synthetic_dataset(tmp_path / "b", num_train=3, num_test=1, seed=1, progress=False)
    for rel in ("imagesTr/synth_002_0000.nii.gz", "labelsTr/synth_002.nii.gz", "labelsTs/synth_test_000.nii.gz"):
        assert _read(dataset_2d / rel)[0].tobytes() == _read(other / rel)[0].tobytes()
    assert not np.array_equal(_read(other / "imagesTr/synth_000_0000.nii.gz")[0],
                              _read(changed / "imagesTr/synth_000_0000.nii.gz")[0])


def test_failed_generation_leaves_nothing_behind(tmp_path, monkeypatch):
    calls = []
    real = synthetic.make_case

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("boom")
        return real(*args, **kwargs)

    monkeypatch.setattr(synthetic, "make_case", failing)
    with pytest.raises(RuntimeError, match="boom"):
        generate_synthetic_dataset(tmp_path, num_train=4, num_test=1, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_existing_folder_needs_overwrite(tmp_path):
    folder = generate_synthetic_dataset(tmp_path, num_train=2, num_test=0, progress=False)
    with pytest.raises(FileExistsError):
        generate_synthetic_dataset(tmp_path, num_train=2, num_test=0, progress=False)
    again = generate_synthetic_dataset(tmp_path, num_train=3, num_test=0, overwrite=True, progress=False)
    assert again == folder and json.loads((folder / "dataset.json").read_text())["numTraining"] == 3
    assert [p.name for p in tmp_path.iterdir()] == [folder.name]


def test_splits_are_installed_into_nnunet_preprocessed(tmp_path, monkeypatch):
    monkeypatch.setenv("nnUNet_preprocessed", str(tmp_path / "pre"))
    folder = generate_synthetic_dataset(tmp_path / "raw", dataset_id=42, num_train=3, num_test=0, progress=False)
    installed = tmp_path / "pre" / "Dataset042_SyntheticCardiac2D" / "splits_final.json"
    assert installed.read_text() == (folder / "splits_final.json").read_text()
    assert len(json.loads(installed.read_text())) == 3  # fewer folds than 5 for 3 cases


@pytest.mark.parametrize("kwargs", [{"dim": 4}, {"num_train": 1}, {"num_test": -1}, {"seed": -1},
                                    {"shape": (12, 80, 80)}, {"dataset_id": 1000}, {"name": "a b"}])
def test_generate_rejects_bad_arguments(tmp_path, kwargs):
    with pytest.raises(ValueError):
        generate_synthetic_dataset(tmp_path, progress=False, **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_nnunet_integrity_check_passes(dataset_2d):
    from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity

    verify_dataset_integrity(str(dataset_2d), num_processes=1)


# ------------------------------------------------------------------------------------------------ command line
def test_main_writes_the_dataset(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("nnUNet_raw", raising=False)
    with pytest.raises(SystemExit) as error:
        main(["--num_train", "2"])
    assert error.value.code == 2 and "nnUNet_raw" in capsys.readouterr().err
    monkeypatch.setenv("nnUNet_raw", str(tmp_path))
    assert main(["--dim", "3", "--num_train", "2", "--num_test", "0", "--no_progress"]) == 0
    assert (tmp_path / "Dataset902_SyntheticCardiac3D" / "dataset.json").is_file()
    with pytest.raises(SystemExit):  # exists already: a clean argparse error, no traceback
        main(["--dim", "3", "--num_train", "2", "--no_progress"])
    assert "already exists" in capsys.readouterr().err


def test_conversion_script_help():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, str(REPO / "dataset_conversion" / "Dataset901_SyntheticCardiac.py"),
                             "--help"], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0 and "--num_train" in result.stdout and "nnUNet_raw" in result.stdout
