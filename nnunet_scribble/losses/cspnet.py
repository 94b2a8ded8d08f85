"""Loss terms of CSPNet (Zhang et al., "Scribble hides class"): L_segc (eq. 8), L_lorm (eq. 11-14), L_dp (eq. 15-19).

Pure tensor functions, dimension-agnostic (``(B, C, *spatial)``, 2D or 3D). The scribble term L_segs (eq. 7) is
nnU-Net's partial Dice + CE of the base trainer, not the paper's pCE (methods.md, common rules). The distance maps
``d_s`` and ``d_c`` of eq. 15 and 17 are computed in the data-augmentation workers
(:mod:`nnunet_scribble.transforms.cspnet_maps`); here they are only weights.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

#: Attention entries (batch x N x N, float32) of one batched LoRM product: 2^26 = 256 MiB.
LORM_CHUNK_ELEMENTS = 2 ** 26


def _squeeze_channel(t: torch.Tensor, logits: torch.Tensor, name: str) -> torch.Tensor:
    """``(B, 1, *spatial)`` -> ``(B, *spatial)``; checks that the result matches ``logits``' batch and grid."""
    if t.ndim == logits.ndim and t.shape[1] == 1:
        t = t[:, 0]
    if t.shape != (logits.shape[0], *logits.shape[2:]):
        raise ValueError(f"{name} must be (B, [1,] *spatial) matching logits {tuple(logits.shape)}, got "
                         f"{tuple(t.shape)}")
    return t


def label_smoothed_ce(logits: torch.Tensor, target: torch.Tensor, epsilon: float = 0.2,
                      ignore_index: int | None = None) -> torch.Tensor:
    """L_segc (eq. 8): label-smoothed cross-entropy against the pseudo labels.

    Per voxel ``(1 - eps) * c(y, p) + eps * c(1/K, p)`` with ``c(y, p) = -sum_k y_k log p_k``, averaged over the
    voxels whose target is not ``ignore_index`` (``|Omega~|`` of eq. 8). This is what
    ``F.cross_entropy(..., label_smoothing=eps, ignore_index=...)`` computes; written out with ``log_softmax`` so
    the masking is explicit and ignored voxels get exactly zero gradient. The paper uses ``eps = 0.2``; the released
    script uses 0.1 (reference-implementations.md §4.2).

    Args:
        logits: ``(B, K, *spatial)`` network output.
        target: ``(B, *spatial)`` or ``(B, 1, *spatial)`` integer class map (pseudo labels); values other than
            ``ignore_index`` must lie in ``0..K-1``.
        epsilon: smoothing weight in ``[0, 1]``.
        ignore_index: target value excluded from the loss (nnU-Net's ignore label); ``None``: every voxel counts.

    Returns:
        Scalar loss; a finite 0, still connected to ``logits``' graph, when no voxel is valid.

    Raises:
        ValueError: for ``epsilon`` outside ``[0, 1]`` or a target not matching ``logits``.
    """
    if not 0.0 <= epsilon <= 1.0:
        raise ValueError(f"epsilon must lie in [0, 1], got {epsilon}")
    target = _squeeze_channel(target, logits, "target").long()
    valid = torch.ones_like(target, dtype=torch.bool) if ignore_index is None else target != ignore_index
    log_p = F.log_softmax(logits.float(), dim=1)
    nll = -log_p.gather(1, torch.where(valid, target, 0).unsqueeze(1)).squeeze(1)  # c(y, p)
    uniform = -log_p.mean(1)  # c(1/K, p)
    per_voxel = torch.where(valid, (1.0 - epsilon) * nll + epsilon * uniform, 0.0)
    return per_voxel.sum() / valid.sum().clamp_min(1)


def entropy_map(logits: torch.Tensor) -> torch.Tensor:
    """Shannon entropy ``-sum_c p_c log p_c`` of the softmax prediction at every voxel (eq. 16 and 18).

    ``log p`` is ``log_softmax`` of the logits, so saturated predictions give ``0 * (finite)`` rather than
    ``0 * log 0``.

    Args:
        logits: ``(B, C, *spatial)`` network output.

    Returns:
        ``(B, *spatial)`` entropy in nats, in ``[0, log C]``.
    """
    log_p = F.log_softmax(logits.float(), dim=1)
    return -(log_p.exp() * log_p).sum(1)


def distance_perception_loss(logits: torch.Tensor, weight_map: torch.Tensor) -> torch.Tensor:
    """L_ds (eq. 18) or L_dc (eq. 16) of the distance perception module (L_dp = L_ds + L_dc, eq. 19).

    ``sum_i w_i * H(p_i) / N`` with ``H`` the entropy of the prediction (:func:`entropy_map`) and ``N`` the number
    of non-zero entries of ``weight_map`` over the whole batch (``N_s`` / ``N_c`` of the paper, counted per batch
    rather than per image).

    Deviation from the printed formula: the paper prints ``d(i) * p_i log(p_i)``, i.e. the *negative* entropy;
    minimising it would maximise the entropy near the scribbles, the opposite of the stated aim ("reinforce the
    prediction certainty"). As decided in methods.md (and as the released code does, reference-implementations.md
    §4.2), the weighted entropy is minimised (entropy reduction).

    Args:
        logits: ``(B, C, *spatial)`` network output.
        weight_map: ``(B, *spatial)`` or ``(B, 1, *spatial)`` weights in ``[0, 1]`` (``d_s`` of eq. 17 or ``d_c``
            of eq. 15).

    Returns:
        Scalar loss; a finite 0, connected to ``logits``' graph, when ``weight_map`` is all zeros.

    Raises:
        ValueError: for a weight map not matching ``logits``.
    """
    weight_map = _squeeze_channel(weight_map, logits, "weight_map")
    h = entropy_map(logits)
    return (weight_map.to(h.dtype) * h).sum() / (weight_map != 0).sum().clamp_min(1)


def lorm_loss(features: torch.Tensor, query: torch.Tensor, key: torch.Tensor, fg_mask: torch.Tensor,
              delta: torch.Tensor) -> torch.Tensor:
    """L_lorm (eq. 11-14, without the weight ``lambda_lorm``): rectify foreground features by foreground ones.

    Per sample, on the ``N`` flattened positions of the feature grid:

    - eq. 11: ``A_ij = softmax_j(cos(q_i, k_j))``, the cosine similarity of query ``i`` and key ``j`` (both
      L2-normalised along the channels, ``eps = 1e-6``), softmax over the keys ``j``;
    - eq. 12: ``A'_ij = A_ij * M_j``: background keys contribute nothing (no renormalisation of the rows);
    - eq. 13: ``F^_i = delta * sum_j A'_ij F_j`` with ``delta`` learnable (initialised to 1);
    - eq. 14: ``sum_{i in fg} sum_c (F_ic - F^_ic)^2 / (N_fg * C)``, ``N_fg`` the foreground positions of the batch.

    Deviations from the released code (reference-implementations.md §4.4), where the mask multiplies the *rows*
    (background queries) instead of the key columns and the squared error is averaged over all positions:

    - keys are masked as eq. 12 prints (``M'`` broadcast along the key axis), so a foreground position is rebuilt
      from foreground positions only (the module's stated aim);
    - the loss covers foreground queries only. The reference sets ``F^ = 0`` at background queries, which pulls
      every background feature towards 0; here background positions enter only as (masked) keys.

    As in the reference nothing is detached: the loss trains the features, the projections and ``delta``.
    Computed in float32 with autocast disabled. Memory is ``O(N^2)`` per sample: the samples go through batched
    products in chunks of at most :data:`LORM_CHUNK_ELEMENTS` attention entries (ACDC 2d, 896 tokens: the whole
    batch of 56 in one product; one product per sample launched 56 times the kernels), which bounds the memory
    (choose the feature stage with :func:`nnunet_scribble.networks.lorm.lorm_stage`).

    Args:
        features: ``(B, C, *spatial)`` feature map ``F^S``.
        query: ``(B, C', *spatial)`` query projection of the features (same grid).
        key: ``(B, C', *spatial)`` key projection of the features (same grid).
        fg_mask: ``(B, *spatial)`` or ``(B, 1, *spatial)`` foreground of the pseudo label on the feature grid.
        delta: scalar tensor (learnable rectification degree).

    Returns:
        Scalar loss; a finite 0, connected to all inputs' graphs, when the batch has no foreground position.

    Raises:
        ValueError: for inputs of mismatching shapes.
    """
    if query.shape != key.shape or query.shape[0] != features.shape[0] or query.shape[2:] != features.shape[2:]:
        raise ValueError(f"query and key must be (B, C', *spatial) matching features {tuple(features.shape)}, got "
                         f"{tuple(query.shape)} and {tuple(key.shape)}")
    fg_mask = _squeeze_channel(fg_mask, features, "fg_mask").bool()
    batch, channels = features.shape[:2]
    with torch.autocast(device_type=features.device.type, enabled=False):
        feats = features.float().flatten(2)  # (B, C, N)
        q = F.normalize(query.float().flatten(2), dim=1, eps=1e-6)
        k = F.normalize(key.float().flatten(2), dim=1, eps=1e-6)
        m = fg_mask.flatten(1).to(feats.dtype)  # (B, N)
        d = delta.float()
        error = feats.new_zeros(())
        n = feats.shape[2]
        chunk = max(1, LORM_CHUNK_ELEMENTS // (n * n))  # samples per batched product
        for start in range(0, batch, chunk):
            f, mb = feats[start:start + chunk], m[start:start + chunk]
            qb, kb = q[start:start + chunk], k[start:start + chunk]
            attention = torch.softmax(qb.transpose(1, 2) @ kb, dim=2) * mb[:, None, :]  # (b, N query, N key), A'
            rectified = d * (f @ attention.transpose(1, 2))  # (b, C, N): F^_i = delta * sum_j A'_ij F_j
            error = error + ((f - rectified).square() * mb[:, None, :]).sum()
        return error / (m.sum() * channels).clamp_min(1)
