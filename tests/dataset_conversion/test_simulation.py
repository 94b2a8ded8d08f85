"""Scribble simulation: algorithm properties and the dataset-level tool."""
from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
from conversion_helpers import heart

from nnunet_scribble.dataset_conversion import simulate_dataset
from nnunet_scribble.dataset_conversion.scribble_geometry import components, piecewise_bezier, root_to_leaf_path
from nnunet_scribble.dataset_conversion.scribble_simulation import STYLES, simulate

DENSE = heart(shape=(3, 48, 44))


@pytest.mark.parametrize("style", STYLES)
def test_scribbles_stay_inside_their_objects(style):
    scribble = simulate(DENSE, [1, 2, 3], 4, style, np.random.default_rng(0))
    annotated = scribble != 4
    assert annotated.any() and (scribble[annotated] == DENSE[annotated]).all()
    for z in range(DENSE.shape[0]):
        assert (scribble[z] == 0).any()  # every slice has a background scribble
        assert set(np.unique(scribble[z])) == {0, 1, 2, 3, 4}  # every class present gets a scribble


def test_scribblebench_annotates_every_present_class():
    scribble = simulate(DENSE, [1, 2, 3], 4, "scribblebench", np.random.default_rng(3))
    for z in range(DENSE.shape[0]):
        assert set(np.unique(scribble[z])) == {0, 1, 2, 3, 4}


@pytest.mark.parametrize("style", STYLES)
def test_seed_reproducible_and_annotators_differ(style):
    a = simulate(DENSE, [1, 2, 3], 4, style, np.random.default_rng(1))
    b = simulate(DENSE, [1, 2, 3], 4, style, np.random.default_rng(1))
    c = simulate(DENSE, [1, 2, 3], 4, style, np.random.default_rng(2))
    assert (a == b).all() and (a != c).any()


def test_line_path_follows_skeleton_and_boundary_style_for_large_objects():
    mask = np.zeros((60, 60), bool)
    mask[20:40, 5:55] = True
    path = root_to_leaf_path(mask, np.random.default_rng(0), deterministic=True)
    assert np.ptp(path[:, 1]) > 30  # runs along the long side
    assert len(piecewise_bezier(path, 16)) >= len(path) // 2
    big = np.zeros((1, 60, 60), np.uint8)
    big[0, 5:55, 5:55] = 1  # 69% of the image: boundary scribble most of the time
    rings = [components(simulate(big, [1], 2, "cspnet", np.random.default_rng(s), erosion=10)[0] == 1)[1]
             for s in range(6)]
    assert all(r >= 1 for r in rings)


def _run(argv):
    simulate_dataset.convert(simulate_dataset.build_parser().parse_args([str(a) for a in argv]))


@pytest.mark.parametrize("kind", ["nifti", "png"])
def test_simulate_dataset(dense_raw, nnunet_env, verify, kind):
    src = dense_raw(kind)
    _run(["-i", src, "-d", 501, "-n", "Sim", "--annotator", "s2", "--style", "scribblebench"])
    out = nnunet_env[0] / "Dataset501_Sim"
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["labels"]["ignore"] == 4 and meta["scribble_simulation"]["seed"] == 2
    assert sorted(p.name for p in (out / "labelsTr_dense").iterdir()) == \
        sorted(p.name for p in (src / "labelsTr").iterdir())
    assert json.loads((nnunet_env[1] / out.name / "splits_final.json").read_text())[0]["val"] == ["case2"]
    verify(out)


def test_simulate_rejects_bad_sources(dense_raw, nnunet_env):
    from conversion_helpers import write_nifti
    src = dense_raw("nifti")
    write_nifti(np.full((3, 40, 36), 9, np.uint8), src / "labelsTr/case1.nii.gz")
    with pytest.raises(ValueError, match=r"case1.nii.gz: dense label values \[9\]"):
        _run(["-i", src, "-d", 502, "-n", "Sim"])
    meta = json.loads((src / "dataset.json").read_text())
    meta["labels"]["ignore"] = 4
    (src / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="already declares an ignore label"):
        _run(["-i", src, "-d", 502, "-n", "Sim"])
    assert not (nnunet_env[0] / "Dataset502_Sim").exists()


def test_simulate_same_result_with_workers(dense_raw, nnunet_env):
    src = dense_raw("nifti")
    _run(["-i", src, "-d", 503, "-n", "A"])
    _run(["-i", src, "-d", 504, "-n", "B", "-np", 2])
    a, b = (sitk.GetArrayFromImage(sitk.ReadImage(str(nnunet_env[0] / f"{d}/labelsTr/case1.nii.gz")))
            for d in ("Dataset503_A", "Dataset504_B"))
    assert (a == b).all()
