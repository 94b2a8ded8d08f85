"""Scribble-guided attention masking (MaCo Alg. 1): cell grid, exact counts, sampling frequencies, 3D."""
from __future__ import annotations

from functools import lru_cache

import pytest
import torch

from nnunet_scribble.transforms.masking import (annotated_cells, attention_mask, cell_size_for_spacing, mask_images,
                                                sample_cell_mask)


def inclusion_probabilities(n_s: int, n_o: int, k: int, w_s: float, w_o: float) -> tuple[float, float]:
    """Exact probability that a given scribble / other cell is among k successive weighted draws without
    replacement (cells of one kind are exchangeable, so the state is the number drawn of each kind)."""

    @lru_cache(None)
    def expected_scribble_draws(a: int, b: int) -> float:
        if a + b == k:
            return float(a)
        rest_s, rest_o = (n_s - a) * w_s, (n_o - b) * w_o
        total = rest_s + rest_o
        out = 0.0
        if rest_s:
            out += rest_s / total * expected_scribble_draws(a + 1, b)
        if rest_o:
            out += rest_o / total * expected_scribble_draws(a, b + 1)
        return out

    e_s = expected_scribble_draws(0, 0)
    return e_s / n_s, (k - e_s) / n_o


def test_cell_size_for_spacing():
    assert cell_size_for_spacing((1.48, 1.48)) == (16, 16)
    assert cell_size_for_spacing((10.0, 1.48, 1.48)) == (2, 16, 16)
    assert cell_size_for_spacing((1.0, 1.0, 1.0), 8) == (8, 8, 8)
    with pytest.raises(ValueError, match="spacing"):
        cell_size_for_spacing((0.0, 1.0))


def test_partial_border_cells_and_tiny_images():
    annotated = torch.zeros(1, 20, 33, dtype=torch.bool)
    annotated[0, 19, 32] = True  # in the partial corner cell
    cells = annotated_cells(annotated, (16, 16))
    assert cells.shape == (1, 2, 3) and cells.sum() == 1 and cells[0, 1, 2]
    mask = attention_mask(annotated, (16, 16), phi=0.5)
    assert mask.shape == (1, 1, 20, 33)
    assert annotated_cells(torch.ones(2, 5, 5, dtype=torch.bool), (16, 16)).shape == (2, 1, 1)
    assert (attention_mask(torch.ones(2, 5, 5, dtype=torch.bool), (16, 16)) == 1).all()  # N = 1 -> K = 0


def test_masked_cells_are_zero_others_unchanged_and_count_is_exact():
    g = torch.Generator().manual_seed(0)
    images = torch.randn(3, 2, 40, 48, generator=g) + 5  # no zeros by chance
    annotated = torch.rand(3, 40, 48, generator=g) > 0.97
    out = mask_images(images, annotated, (16, 16), phi=0.5, generator=g)
    zero = out == 0
    assert torch.equal(out[~zero], images[~zero])
    assert torch.equal(zero[:, 0], zero[:, 1])  # one mask for all channels
    # grid 3 x 3 = 9 cells -> K = 4; cells are 16x16 except the last row (8 high)
    cell_zero = annotated_cells(zero[:, 0], (16, 16))
    assert cell_zero.flatten(1).sum(1).tolist() == [4, 4, 4]
    full = annotated_cells(~zero[:, 0], (16, 16))
    assert torch.equal(cell_zero, ~full)  # every cell is entirely masked or entirely kept


@pytest.mark.parametrize("w_s", [2.0, 1.0])
def test_masking_frequency_proportional_to_weights(w_s):
    # 4 x 4 = 16 cells, 4 with a scribble; K = 8 at phi = 0.5 (2-voxel cells keep 20000 draws cheap; the cell size
    # plays no part in the sampling)
    draws = 20000
    annotated = torch.zeros(draws, 8, 8, dtype=torch.bool)
    annotated[:, 0, :] = True  # the first row of cells
    mask = attention_mask(annotated, (2, 2), phi=0.5, w_s=w_s, w_o=1.0, generator=torch.Generator().manual_seed(1))
    masked = 1 - annotated_cells(mask[:, 0] > 0, (2, 2)).float()
    p_s, p_o = inclusion_probabilities(4, 12, 8, w_s, 1.0)
    assert masked[:, 0].mean().item() == pytest.approx(p_s, abs=0.01)
    assert masked[:, 1:].mean().item() == pytest.approx(p_o, abs=0.01)
    # w_s = 2: 0.687 vs 0.438, ratio 1.57 (not 2: drawing half the cells without replacement shrinks it)
    expected_ratio = 1.0 if w_s == 1.0 else p_s / p_o
    assert masked[:, 0].mean() / masked[:, 1:].mean() == pytest.approx(expected_ratio, rel=0.03)


def test_first_draw_probability_is_the_normalised_weight():
    weights = torch.tensor([[2.0, 1.0, 1.0, 1.0]]).expand(40000, 4)
    keep = sample_cell_mask(weights, phi=0.25, generator=torch.Generator().manual_seed(0))  # K = 1
    assert (keep == 0).sum(1).eq(1).all()
    assert (keep[:, 0] == 0).float().mean().item() == pytest.approx(2 / 5, abs=0.01)


def test_3d_masking_with_anisotropic_cells():
    g = torch.Generator().manual_seed(0)
    images = torch.randn(2, 1, 5, 32, 32, generator=g) + 5
    annotated = torch.zeros(2, 5, 32, 32, dtype=torch.bool)
    annotated[:, 0, 0, 0] = True
    out = mask_images(images, annotated, (2, 16, 16), phi=0.5, generator=g)
    zero = (out == 0)[:, 0]
    cells = annotated_cells(zero, (2, 16, 16))
    assert cells.shape == (2, 3, 2, 2) and cells.flatten(1).sum(1).tolist() == [6, 6]
    assert torch.equal(cells, ~annotated_cells(~zero, (2, 16, 16)))


def test_invalid_arguments():
    with pytest.raises(ValueError, match="phi"):
        sample_cell_mask(torch.ones(1, 4), phi=1.5)
    with pytest.raises(ValueError, match="w_s"):
        attention_mask(torch.ones(1, 4, 4, dtype=torch.bool), (2, 2), w_s=0.0)
    with pytest.raises(ValueError, match="disagree"):
        mask_images(torch.ones(1, 1, 4, 4), torch.ones(1, 4, 5, dtype=torch.bool), (2, 2))
