"""Scribble-guided attention masking of MaCo (Alg. 1, eq. 1): batch-level, on the training device.

The patch is split into cells (the paper's "patches") of ``cell_size`` voxels; a cell holding any annotated voxel
gets the weight ``w_s``, any other cell ``w_o``; ``K = floor(phi * N)`` of the ``N`` cells are drawn without
replacement with probability proportional to the weights (``torch.multinomial``: successive draws, each
proportional to the weights of the cells not drawn yet), and the drawn cells are set to 0, which is the mean
intensity after nnU-Net's z-score normalisation. ``w_s == w_o`` gives the uniform random masking of the ablation.

Partial cells: a patch size that is not a multiple of the cell size gets smaller cells at the far border (the paper
zero-pads before splitting; here the padded part is simply cropped away again), and a patch smaller than one cell
is a single cell (with ``N = 1`` and ``phi < 1`` nothing is masked, ``K = 0``).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def cell_size_for_spacing(spacing: Sequence[float], in_plane: int = 16) -> tuple[int, ...]:
    """Cell extent per axis so that cells are about isotropic in mm: ``in_plane`` voxels along the finest axis.

    Axis ``i`` gets ``max(1, round(in_plane * min(spacing) / spacing[i]))`` voxels. 2D or isotropic 3D: ``in_plane``
    everywhere; ACDC 3d_fullres (10 x 1.48 x 1.48 mm): ``(2, 16, 16)``, cells of 20 x 23.7 x 23.7 mm.

    Raises:
        ValueError: for an empty ``spacing``, a non-positive entry or ``in_plane < 1``.
    """
    if not spacing or min(spacing) <= 0 or in_plane < 1:
        raise ValueError(f"need positive spacings and in_plane >= 1, got spacing={tuple(spacing)}, "
                         f"in_plane={in_plane}")
    finest = min(spacing)
    return tuple(max(1, round(in_plane * finest / s)) for s in spacing)


def annotated_cells(annotated: torch.Tensor, cell_size: Sequence[int]) -> torch.Tensor:
    """Which cells contain an annotated voxel.

    Args:
        annotated: ``(B, *spatial)`` bool.
        cell_size: cell extent per spatial axis.

    Returns:
        ``(B, *grid)`` bool with ``grid[i] = ceil(spatial[i] / cell_size[i])``.
    """
    spatial = annotated.shape[1:]
    if len(cell_size) != len(spatial) or min(cell_size) < 1:
        raise ValueError(f"cell_size must have {len(spatial)} entries >= 1, got {tuple(cell_size)}")
    grid = [-(-s // c) for s, c in zip(spatial, cell_size)]
    pad = [p for s, c, g in zip(reversed(spatial), reversed(cell_size), reversed(grid)) for p in (0, g * c - s)]
    padded = F.pad(annotated.to(torch.uint8), pad)  # zero padding: the padded part holds no annotation
    view = [annotated.shape[0]] + [n for g, c in zip(grid, cell_size) for n in (g, c)]
    return padded.reshape(view).amax(dim=tuple(range(2, 2 * len(spatial) + 1, 2))).bool()


def sample_cell_mask(cell_weights: torch.Tensor, phi: float, generator: torch.Generator | None = None
                     ) -> torch.Tensor:
    """Keep-mask of the cells: ``K = floor(phi * N)`` cells per sample drawn without replacement ∝ weights -> 0.

    Args:
        cell_weights: ``(B, *grid)`` positive weights.
        phi: masking ratio in ``[0, 1]``.
        generator: random generator on the weights' device (``None``: global RNG).

    Returns:
        ``(B, *grid)`` float, 0 for masked cells and 1 for kept ones.
    """
    if not 0 <= phi <= 1:
        raise ValueError(f"phi (masking ratio) must lie in [0, 1], got {phi}")
    flat = cell_weights.flatten(1).float()
    if (flat <= 0).any():
        raise ValueError(f"cell weights must be > 0, got minimum {flat.min().item()}")
    keep = torch.ones_like(flat)
    k = int(phi * flat.shape[1])
    if k > 0:
        drawn = torch.multinomial(flat, k, replacement=False, generator=generator)
        keep.scatter_(1, drawn, 0.0)
    return keep.reshape(cell_weights.shape)


def attention_mask(annotated: torch.Tensor, cell_size: Sequence[int], phi: float = 0.5, w_s: float = 2.0,
                   w_o: float = 1.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """Voxel-wise attention mask ``A`` of MaCo Alg. 1 (1 = keep, 0 = masked).

    Args:
        annotated: ``(B, *spatial)`` bool, True on annotated (non-ignore) voxels.
        cell_size: cell extent per spatial axis (see :func:`cell_size_for_spacing`).
        phi: masking ratio (paper: 0.5).
        w_s: weight of cells with scribble voxels (paper: 2).
        w_o: weight of the other cells (paper: 1); ``w_s == w_o`` is uniform random masking.
        generator: random generator (``None``: global RNG).

    Returns:
        ``(B, 1, *spatial)`` float mask, to multiply with the ``(B, C, *spatial)`` image.
    """
    if w_s <= 0 or w_o <= 0:
        raise ValueError(f"cell weights must be > 0, got w_s={w_s}, w_o={w_o}")
    cells = annotated_cells(annotated, cell_size)
    weights = torch.where(cells, torch.full_like(cells, w_s, dtype=torch.float32),
                          torch.full_like(cells, w_o, dtype=torch.float32))
    keep = sample_cell_mask(weights, phi, generator)
    for axis, c in enumerate(cell_size, start=1):
        keep = keep.repeat_interleave(c, dim=axis)
    crop = (slice(None),) + tuple(slice(0, s) for s in annotated.shape[1:])
    return keep[crop].unsqueeze(1).to(annotated.device)


def mask_images(images: torch.Tensor, annotated: torch.Tensor, cell_size: Sequence[int], phi: float = 0.5,
                w_s: float = 2.0, w_o: float = 1.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """``x_m = x ⊙ A`` (Alg. 1, line 17) for a batch ``(B, C, *spatial)``; see :func:`attention_mask`."""
    if images.shape[0] != annotated.shape[0] or images.shape[2:] != annotated.shape[1:]:
        raise ValueError(f"images (B, C, *spatial) and annotated (B, *spatial) disagree: {tuple(images.shape)} vs "
                         f"{tuple(annotated.shape)}")
    return images * attention_mask(annotated, cell_size, phi, w_s, w_o, generator).to(images.dtype)
