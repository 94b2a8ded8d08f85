"""Overlay PNGs for 2D and 3D inputs, from arrays and from nnU-Net files."""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from PIL import Image

from nnunet_scribble.evaluation import save_case_overlays, save_overlay_png
from nnunet_scribble.evaluation.overlays import _label_rgba, _pick_slice


def _png_size(path) -> tuple[int, int]:
    with Image.open(path) as img:
        assert img.format == "PNG"
        return img.size


def test_2d_overlay_with_all_panels(tmp_path):
    rng = np.random.default_rng(0)
    image = rng.normal(size=(32, 40))
    ref = np.zeros((32, 40), np.uint8)
    ref[5:20, 8:30] = 1
    scribble = np.full_like(ref, 3)  # 3 = ignore
    scribble[10:12, 10:25] = 1
    out = save_overlay_png(image, tmp_path / "sub" / "o.png", prediction=ref, reference=ref, scribble=scribble,
                           ignore_label=3, title="case")
    width, height = _png_size(out)
    assert (width, height) == (1600, 440)  # 4 panels of 4 x 4.4 inches at 100 dpi


def test_3d_overlay_picks_slice_with_most_reference_foreground(tmp_path):
    ref = np.zeros((5, 16, 16), np.uint8)
    ref[1, 2:4, 2:4] = 1
    ref[3, 2:10, 2:10] = 2
    assert _pick_slice(5, {"reference": ref}, None, None) == 3
    assert _pick_slice(5, {}, None, None) == 2
    with pytest.raises(ValueError, match="slice_index 7"):
        _pick_slice(5, {"reference": ref}, None, 7)
    out = save_overlay_png(np.random.default_rng(1).random((5, 16, 16)), tmp_path / "o3.png", reference=ref)
    assert _png_size(out) == (800, 440)
    with pytest.raises(ValueError, match="prediction has shape"):
        save_overlay_png(np.zeros((5, 16, 16)), tmp_path / "bad.png", prediction=ref[:4])


def test_label_colours_transparent_background_and_ignore():
    rgba = _label_rgba(np.array([[0, 1, 2, 3]]), ignore_label=3)
    assert rgba[0, 0, 3] == 0 and rgba[0, 3, 3] == 0
    assert rgba[0, 1, 3] > 0 and not np.allclose(rgba[0, 1], rgba[0, 2])


def test_case_overlays_from_nifti_files(tmp_path):
    image = sitk.GetImageFromArray(np.random.default_rng(2).random((4, 12, 14)).astype(np.float32))
    seg_arr = np.zeros((4, 12, 14), np.uint8)
    seg_arr[2, 3:8, 4:9] = 1
    sitk.WriteImage(image, str(tmp_path / "c_0000.nii.gz"))
    sitk.WriteImage(sitk.GetImageFromArray(seg_arr), str(tmp_path / "c.nii.gz"))
    out = save_case_overlays(tmp_path / "c_0000.nii.gz", tmp_path / "c.png", prediction_file=tmp_path / "c.nii.gz",
                             reference_file=tmp_path / "c.nii.gz")
    assert _png_size(out) == (1200, 440)
    with pytest.raises(FileNotFoundError, match="missing.nii.gz"):
        save_case_overlays(tmp_path / "c_0000.nii.gz", tmp_path / "d.png", scribble_file=tmp_path / "missing.nii.gz")
