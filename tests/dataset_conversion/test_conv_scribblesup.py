"""ScribbleSup converter: VOC JPEG + scribble PNG -> RGB PNG nnU-Net dataset."""
from __future__ import annotations

import json

import numpy as np
import pytest
from skimage import io

from nnunet_scribble.dataset_conversion import scribblesup


def _voc(root, ids_train=("2007_000032", "2007_000039"), ids_val=("2007_000033",)):
    rng = np.random.default_rng(0)
    for d in ("JPEGImages", "ImageSets/Segmentation", "SegmentationClass", "scribbles"):
        (root / d).mkdir(parents=True, exist_ok=True)
    for i in ids_train + ids_val:
        io.imsave(root / f"JPEGImages/{i}.jpg", rng.integers(0, 255, (20, 24, 3), dtype=np.uint8),
                  check_contrast=False)
        scribble = np.full((20, 24), 255, np.uint8)
        scribble[5, 2:20], scribble[12, 4:10] = 0, 15
        io.imsave(root / f"scribbles/{i}.png", scribble, check_contrast=False)
        dense = np.zeros((20, 24), np.uint8)
        dense[8:16, 3:12], dense[0, :] = 15, 255
        io.imsave(root / f"SegmentationClass/{i}.png", dense, check_contrast=False)
    (root / "ImageSets/Segmentation/train.txt").write_text("\n".join(ids_train) + "\n")
    (root / "ImageSets/Segmentation/val.txt").write_text("\n".join(ids_val) + "\n")
    return root


def test_scribblesup_rgb_png(tmp_path, nnunet_env, verify):
    voc = _voc(tmp_path / "VOC2012")
    assert scribblesup.main([str(voc), "-s", str(voc / "scribbles")]) == 0
    out = nnunet_env[0] / "Dataset031_ScribbleSup"
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["channel_names"] == {"0": "R", "1": "G", "2": "B"} and meta["labels"]["ignore"] == 21
    assert io.imread(out / "imagesTr/2007_000032_0000.png").shape == (20, 24, 3)
    assert set(np.unique(io.imread(out / "labelsTr/2007_000032.png"))) == {0, 15, 21}
    assert set(np.unique(io.imread(out / "labelsTs/2007_000033.png"))) == {0, 15, 21}
    verify(out)


def test_scribblesup_errors(tmp_path, nnunet_env):
    voc = _voc(tmp_path / "VOC2012")
    io.imsave(voc / "scribbles/2007_000039.png", np.full((20, 23), 255, np.uint8), check_contrast=False)
    args = scribblesup.build_parser().parse_args([str(voc), "-s", str(voc / "scribbles")])
    with pytest.raises(ValueError, match="2007_000039.png: scribble shape"):
        scribblesup.convert(args)
    io.imsave(voc / "scribbles/2007_000039.png", np.full((20, 24), 255, np.uint8), check_contrast=False)
    with pytest.raises(ValueError, match="2007_000039.png: no annotated voxel"):
        scribblesup.convert(args)
