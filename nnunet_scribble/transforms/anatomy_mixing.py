"""MedCL's intra-image (rotation + box) and inter-image mixing of images and scribbles, as batch tensor functions.

Everything runs on the device inside the training step (mixing needs the whole batch and the network's outputs),
for 2D ``(B, C, H, W)`` and 3D ``(B, C, D, H, W)`` tensors alike. Randomness lives only in
:func:`sample_intra_mix_parameters` and :func:`sample_inter_mix_weights`; the mixing functions are deterministic.

- Intra-mix (MedCL §2.1): ``x' = I_b·x + (1 − I_b)·[β'·x + (1 − β')·R(x, θ)]`` with ``β' ~ Beta(0.5, 0.5)``, a small
  rotation ``|θ| ≤ 15°`` (the reference code draws 0-360°, which contradicts the paper's "small angle") in the plane
  of the last two axes (3D: the same in-plane rotation for every slice, in voxel units), and a random box ``I_b``
  covering 0.9-1.0 of each spatial axis (the reference: a square of 0.9-1.0 of the height).
- Labels are mixed the same way as one-hot maps with an extra "unannotated" channel, then hardened by argmax so
  that nnU-Net's partial loss can use them: a voxel supervises only if the annotated share of its mixture wins;
  where neither the voxel nor its rotated source is annotated it stays ignore, and voxels rotated in from outside
  the patch are ignore. (The reference keeps soft labels in a custom CE; nnU-Net's loss needs hard labels.)
- Inter-mix: ``x_12 = β·x'_1 + (1 − β)·x'_2``, ``β ~ Beta(0.5, 0.5)`` per sample, partner = the batch reversed
  (as the reference code).

References:
    Zhang & Patel, "MedCL", arXiv 2503.22890, §2.1. Code: BWGZK-keke/MedCL (engine.py, 2024-07-01).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _check_spatial(x: torch.Tensor) -> None:
    if x.ndim not in (4, 5):
        raise ValueError(f"expected (B, C, H, W) or (B, C, D, H, W), got shape {tuple(x.shape)}")


def rotation_theta(angles: torch.Tensor, spatial_shape: tuple[int, ...]) -> torch.Tensor:
    """Affine matrices for ``F.affine_grid`` rotating by ``angles`` (radians) in the plane of the last two axes.

    The rotation is in voxel units: normalised coordinates are rescaled by the axis lengths, so a non-square
    patch is rotated without shearing. Returns ``(B, 2, 3)`` (2D) or ``(B, 3, 4)`` (3D, depth untouched).
    """
    h, w = spatial_shape[-2], spatial_shape[-1]
    c, s = torch.cos(angles), torch.sin(angles)
    dim = len(spatial_shape)
    theta = torch.zeros(angles.shape[0], dim, dim + 1, dtype=angles.dtype, device=angles.device)
    # affine_grid orders coordinates (x=W, y=H[, z=D]); S^-1 R S with S = diag(W/2, H/2)
    theta[:, 0, 0], theta[:, 0, 1] = c, -s * h / w
    theta[:, 1, 0], theta[:, 1, 1] = s * w / h, c
    if dim == 3:
        theta[:, 2, 2] = 1.0
    return theta


def rotate(x: torch.Tensor, angles: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
    """Rotate every sample about the patch centre by its angle (radians), zeros outside. Shape preserved."""
    _check_spatial(x)
    theta = rotation_theta(angles.to(x.device, torch.float32), tuple(x.shape[2:]))
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x.float(), grid, mode=mode, padding_mode="zeros", align_corners=False).to(x.dtype)


def rotate_labels(labels: torch.Tensor, angles: torch.Tensor, fill: int) -> torch.Tensor:
    """Nearest-neighbour rotation of integer labels; voxels coming from outside the patch get ``fill``."""
    shifted = rotate(labels.float() + 1.0, angles, mode="nearest").round().long()  # 0 only outside the patch
    return torch.where(shifted == 0, torch.full_like(shifted, fill), shifted - 1).to(labels.dtype)


def random_boxes(batch_size: int, spatial_shape: tuple[int, ...], fraction: tuple[float, float] = (0.9, 1.0),
                 device: torch.device | str = "cpu", generator: torch.Generator | None = None) -> torch.Tensor:
    """Binary box masks ``I_b`` of side ``U(fraction)`` x axis length per axis, at a random position.

    Returns:
        ``(B, 1, *spatial)`` float tensor, 1 inside the box.
    """
    if not 0.0 < fraction[0] <= fraction[1] <= 1.0:
        raise ValueError(f"box fraction must satisfy 0 < low <= high <= 1, got {fraction}")
    mask = torch.zeros(batch_size, 1, *spatial_shape)
    for b in range(batch_size):
        index = [b, 0]
        for size in spatial_shape:
            f = fraction[0] + (fraction[1] - fraction[0]) * float(torch.rand((), generator=generator))
            side = max(1, min(size, round(f * size)))
            start = int(torch.randint(0, size - side + 1, (), generator=generator))
            index.append(slice(start, start + side))
        mask[tuple(index)] = 1.0
    return mask.to(device)


def sample_intra_mix_parameters(batch_size: int, spatial_shape: tuple[int, ...], max_angle_deg: float = 15.0,
                                box_fraction: tuple[float, float] = (0.9, 1.0), beta_concentration: float = 0.5,
                                device: torch.device | str = "cpu", generator: torch.Generator | None = None
                                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random ``(angles, betas, boxes)`` of the intra-mix: ``θ ~ U(±max_angle)``, ``β' ~ Beta(c, c)``, ``I_b``."""
    angles = (torch.rand(batch_size, generator=generator) * 2 - 1) * math.radians(max_angle_deg)
    betas = sample_beta(batch_size, beta_concentration, generator)
    boxes = random_boxes(batch_size, spatial_shape, box_fraction, device, generator)
    return angles.to(device), betas.to(device), boxes


def sample_beta(batch_size: int, concentration: float = 0.5, generator: torch.Generator | None = None
                ) -> torch.Tensor:
    """``Beta(c, c)`` samples from two Gamma draws (``torch.distributions`` takes no generator)."""
    c = torch.full((batch_size,), float(concentration))
    a, b = torch._standard_gamma(c, generator=generator), torch._standard_gamma(c, generator=generator)
    return a / (a + b).clamp_min(1e-12)


def _per_sample(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return values.to(like.device, like.dtype).view(-1, *([1] * (like.ndim - 1)))


def intra_mix_images(images: torch.Tensor, angles: torch.Tensor, betas: torch.Tensor, boxes: torch.Tensor
                     ) -> torch.Tensor:
    """``I_b·x + (1 − I_b)·[β'·x + (1 − β')·R(x, θ)]`` per sample.

    Shape:
        images: ``(B, C, *spatial)``; angles, betas: ``(B,)``; boxes: ``(B, 1, *spatial)``.
    """
    beta = _per_sample(betas, images)
    outside = beta * images + (1 - beta) * rotate(images, angles)
    box = boxes.to(images.dtype)
    return box * images + (1 - box) * outside


def intra_mix_labels(labels: torch.Tensor, angles: torch.Tensor, betas: torch.Tensor, boxes: torch.Tensor,
                     num_classes: int, ignore_label: int) -> torch.Tensor:
    """Scribbles mixed like the images, hardened to the label with the largest mixed share (ignore included).

    Values outside ``[0, num_classes)`` count as unannotated. Inside the box the labels are unchanged; outside, a
    voxel takes the class whose share ``β'·[y = c] + (1 − β')·[R(y) = c]`` is largest, and is ignore when the
    unannotated share is largest (always where neither ``y`` nor ``R(y)`` is annotated).

    Shape:
        labels: ``(B, 1, *spatial)`` integers; returns the same shape and dtype.
    """
    _check_spatial(labels)
    rotated = rotate_labels(labels, angles, ignore_label)

    def one_hot(y: torch.Tensor) -> torch.Tensor:
        y = y[:, 0].long()
        y = torch.where((y >= 0) & (y < num_classes), y, torch.full_like(y, num_classes))
        return F.one_hot(y, num_classes + 1).movedim(-1, 1).float()

    beta = _per_sample(betas, boxes.float())
    box = boxes.float()
    mixed = box * one_hot(labels) + (1 - box) * (beta * one_hot(labels) + (1 - beta) * one_hot(rotated))
    hard = mixed.argmax(1, keepdim=True)
    return torch.where(hard == num_classes, torch.full_like(hard, ignore_label), hard).to(labels.dtype)


def sample_inter_mix_weights(batch_size: int, concentration: float = 0.5, generator: torch.Generator | None = None
                             ) -> torch.Tensor:
    """Inter-mix weights ``β ~ Beta(c, c)``, one per sample."""
    return sample_beta(batch_size, concentration, generator)


def inter_mix(x: torch.Tensor, betas: torch.Tensor) -> torch.Tensor:
    """``β_b·x_b + (1 − β_b)·x_{B−1−b}``: each sample mixed with its partner in the reversed batch.

    Used for images and, with the same ``betas``, for the detached predictions of eq. 1.
    """
    beta = _per_sample(betas, x)
    return beta * x + (1 - beta) * x.flip(0)
