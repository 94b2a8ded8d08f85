"""Batch-level CutMix of images, scribbles and soft predictions with one box, any number of spatial dimensions.

Mixing needs pairs of samples, which nnU-Net's per-sample augmentation pipeline never sees, so it runs on the device
inside the training step. Pure tensor functions; randomness only in :func:`draw_box_masks` and
:func:`draw_permutations` (pass a ``torch.Generator`` for reproducibility).

References:
    Yun et al., "CutMix", ICCV 2019. Lei et al., "PCLMix", ICIC 2024 (arXiv 2405.06288), §3.2; reference code
    Torpedo2648/PCLMix (``Cutmix(prop_range=0.2)``: one box of exactly 20 % of the area, random aspect ratio).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def draw_box_masks(batch_size: int, spatial_shape: tuple[int, ...] | list[int], area: float = 0.2,
                   generator: torch.Generator | None = None, device: torch.device | str | None = None
                   ) -> torch.Tensor:
    """One random axis-aligned box per sample covering ``area`` of the patch, with random aspect ratio.

    The side fractions are ``f_d = area ** w_d`` with ``w`` uniform on the simplex (Dirichlet(1)), so that
    ``prod_d f_d = area``; in 2D this is the reference's ``h = area ** u``, ``w = area / h`` with ``u ~ U(0, 1)``.
    Sides are rounded to whole voxels (at least 1), so the area is ``area`` up to rounding; the box lies entirely
    inside the patch, its position uniform.

    Args:
        batch_size: number of masks.
        spatial_shape: patch shape ``(*spatial)``.
        area: fraction of the patch inside the box, in ``(0, 1]``.
        generator: random generator (CPU) for reproducible draws.
        device: device of the returned mask.

    Returns:
        ``(B, 1, *spatial)`` bool mask, true inside the box.

    Raises:
        ValueError: if ``area`` is not in ``(0, 1]``.
    """
    if not 0.0 < area <= 1.0:
        raise ValueError(f"box area must be in (0, 1], got {area}")
    ndim = len(spatial_shape)
    mask = torch.zeros(batch_size, 1, *spatial_shape, dtype=torch.bool)
    for b in range(batch_size):
        weights = -torch.log(torch.rand(ndim, generator=generator).clamp_min(1e-12))  # exponential -> Dirichlet(1)
        weights = weights / weights.sum()
        index = [b, 0]
        for d, size in enumerate(spatial_shape):
            side = min(size, max(1, round(size * area ** float(weights[d]))))
            start = int(torch.randint(0, size - side + 1, (1,), generator=generator))
            index.append(slice(start, start + side))
        mask[tuple(index)] = True
    return mask.to(device) if device is not None else mask


def draw_permutations(batch_size: int, generator: torch.Generator | None = None,
                      device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Two independent random orders of the batch (the shuffled batches ``x^1`` and ``x^2`` of PCLMix §3.2)."""
    first = torch.randperm(batch_size, generator=generator)
    second = torch.randperm(batch_size, generator=generator)
    return (first.to(device), second.to(device)) if device is not None else (first, second)


def resize_mask(mask: torch.Tensor, spatial_shape: tuple[int, ...] | torch.Size) -> torch.Tensor:
    """A box mask at another resolution (nearest, as nnU-Net downsamples targets for deep supervision)."""
    if tuple(mask.shape[2:]) == tuple(spatial_shape):
        return mask
    return F.interpolate(mask.float(), size=tuple(spatial_shape), mode="nearest-exact") > 0.5


def cutmix(inside: torch.Tensor, outside: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``inside`` in the box, ``outside`` elsewhere; works for images, soft predictions and label maps alike.

    Values are copied, never interpolated, so label maps keep their values (the ignore label included). The mask is
    resized (nearest) to the tensors' resolution, so deep-supervision targets mix with the same box.

    Args:
        inside: ``(B, C, *spatial)`` tensor providing the box contents.
        outside: same shape, providing the rest.
        mask: ``(B, 1, *spatial_m)`` bool box mask (:func:`draw_box_masks`).

    Returns:
        ``(B, C, *spatial)`` tensor of the inputs' dtype.

    Raises:
        ValueError: if the two inputs differ in shape.
    """
    if inside.shape != outside.shape:
        raise ValueError(f"cutmix needs equal shapes, got {tuple(inside.shape)} and {tuple(outside.shape)}")
    return torch.where(resize_mask(mask, inside.shape[2:]).to(inside.device), inside, outside)


def mix_batches(x: torch.Tensor | list[torch.Tensor], perm_1: torch.Tensor, perm_2: torch.Tensor,
                mask: torch.Tensor) -> tuple[torch.Tensor | list[torch.Tensor], torch.Tensor | list[torch.Tensor]]:
    """The two mixed batches of PCLMix §3.2: ``x^12 = M(x^1, x^2)`` (box from ``x^1``) and ``x^21 = M(x^2, x^1)``.

    ``x^1 = x[perm_1]``, ``x^2 = x[perm_2]``. Lists (deep-supervision targets) are mixed scale by scale.

    Shape:
        x: ``(B, C, *spatial)`` or a list of such tensors; returns two of the same form.
    """
    if isinstance(x, (list, tuple)):
        pairs = [mix_batches(t, perm_1, perm_2, mask) for t in x]
        return [p[0] for p in pairs], [p[1] for p in pairs]
    first, second = x[perm_1], x[perm_2]
    return cutmix(first, second, mask), cutmix(second, first, mask)
