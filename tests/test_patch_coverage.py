"""benchmarks/patch_coverage.py: nnU-Net's own patch sampler on a constructed case, exact windows."""
from __future__ import annotations

import numpy as np
from nnunet_helpers import load_benchmark
from nnunetv2.training.dataloading.data_loader import nnUNetDataLoader
from nnunetv2.utilities.label_handling.label_handling import LabelManager

LABELS = {"background": 0, "a": 1, "ignore": 2}


def _module():
    return load_benchmark("patch_coverage")


class _OneCase:
    """The part of nnU-Net's dataset interface the loader touches: two 40x40 slices, one scribble voxel."""

    identifiers = ["case"]

    def __init__(self):
        self.seg = np.full((1, 2, 40, 40), LABELS["ignore"], dtype=np.int16)
        self.seg[0, 0, 20, 20] = 1
        where = np.array([[0, 0, 20, 20]])
        self.class_locations = {(-1, 0, 1): where, 1: where}

    def load_case(self, key):
        return np.zeros((1, 2, 40, 40), np.float32), self.seg, None, {"class_locations": self.class_locations}


def _loader(patch):
    return nnUNetDataLoader(_OneCase(), 4, patch, patch, LabelManager(LABELS, None), oversample_foreground_percent=0.33)


def test_patches_are_centred_on_the_scribble():
    cov = _module().coverage(_loader((1, 10, 10)), _OneCase().seg[0], _OneCase().class_locations, (1, 10, 10),
                             draws=50, per_slice=True)
    expected = np.zeros((2, 40, 40))
    expected[0, 15:25, 15:25] = 1  # every draw centres the 10x10 patch on (20, 20); slice 1 is never drawn
    np.testing.assert_array_equal(cov, expected)


def test_a_patch_as_large_as_the_slice_covers_it():
    cov = _module().coverage(_loader((1, 40, 40)), _OneCase().seg[0], _OneCase().class_locations, (1, 40, 40),
                             draws=20, per_slice=True)
    assert (cov[0] == 1).all() and (cov[1] == 0).all()
