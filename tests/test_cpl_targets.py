"""benchmarks/cpl_targets.py: the class MaCo's L_con pulls each voxel towards, worked out by hand on one row."""
from __future__ import annotations

import numpy as np
from nnunet_helpers import load_benchmark


def _module():
    return load_benchmark("cpl_targets")


def test_weight_argmax_on_a_row_by_hand():
    ct = _module()
    seg = np.full((1, 60), 2)  # classes 0 and 1, ignore label 2
    seg[0, 0], seg[0, 50] = 0, 1
    labels = ct.weight_argmax(seg, 2, 2, (1.0, 1.0), alpha=0.1, tau=0.05)
    class_rule, voxel_rule, nearest = (labels[r][0] for r in ct.RULES)
    # one N: exp(-0.1 * d) of the two scribbles decides -> foreground right of the midpoint (x = 25 is a tie -> 0)
    assert (voxel_rule == (np.arange(60) >= 26)).all()
    assert (nearest == voxel_rule).all()
    # per-class N: N_bg = 60 (tau floor everywhere), N_fg = 39 (x = 21..59 have exp(-0.1 d) > 0.05);
    # foreground wins where exp(-0.1 (50 - x)) / 39 > exp(-0.1 x) / 60, i.e. x > 25 + 5 ln(39/60) = 22.85
    assert (class_rule == (np.arange(60) >= 23)).all()


def test_score_counts_only_unannotated_voxels():
    ct = _module()
    dense = np.array([[0, 1, 1, 1]])
    labels = {"r": np.array([[1, 1, 0, 1]])}
    counts = {}
    ct.score(counts, labels, dense, np.array([[True, True, True, False]]), 2)
    assert counts["r"][1].tolist() == [1, 1, 1]  # tp at x=1, fp at x=0, fn at x=2; x=3 is annotated
