"""The embedded default dataset: a deterministic generator of small synthetic cardiac scribble datasets.

It is the dataset of the package's end-to-end demo and tests (generate -> ``nnUNetv2_plan_and_preprocess`` ->
``nnUNetv2_train`` -> predict -> evaluate against the dense labels). It imitates the ACDC task (short-axis cine
MRI; labels 0 background, 1 RV, 2 MYO, 3 LV) while staying small enough to be learnt by a tiny network on a CPU.

Anatomy (all sizes in mm, so the spacing matters; the heart is shrunk when the field of view is below 150 mm):

- LV blood pool: an ellipse (radius 10-14 mm, ellipticity up to 18 %, random rotation) with 0-2 small dark
  papillary muscles inside that are labelled LV, as in ACDC;
- MYO: a ring of 5-7.5 mm around the LV (LV is nested inside MYO);
- RV: the part of a second, larger ellipse that lies outside the epicardium, i.e. a crescent attached to the
  myocardium on a random side, with a thin dark free wall that is labelled background;
- background: an air-surrounded body ellipse with low-frequency texture, a liver-like blob, dark lungs that may
  touch the heart, a bright vessel (aorta-like) and 2-4 small bright fat-like blobs kept away from the heart,
  so neither "bright" means blood nor "dark" means myocardium.

In 3D the slices run from base to apex: the LV radius shrinks like ``sqrt(1 - t**2)`` (t = 0 at the base), the
centre drifts by up to 6 mm, the RV shrinks faster and is absent in the last 1-3 slices (LV+MYO only). In 2D a
single slice is drawn at a random level between base and 3/4 of the way to the apex.

Intensity model (float32, roughly 0-1000 like bSSFP MRI; bright spots may exceed it slightly): blood 700-820
(RV 88-100 % of LV), myocardium 190-250, body 250-330, liver 330-420, lungs 30-80, bright blobs 620-900,
vessel 650-850, air 0; a global gain of 0.75-0.95; multiplicative texture (10-18 % on background, 4 % on the
heart); Gaussian blur of 0.9 mm; a smooth quadratic bias field (typically +-15 %, clipped to 0.7-1.3); Rician
noise with sigma 3.5-6 % of the blood intensity. Pure intensity does not solve the task: the best per-pixel
intensity classifier (histogram Bayes on z-scored intensities, fitted on the 20 training and scored on the 10
test cases of the default 2D dataset) reaches Dice 0.65 RV, 0.00 MYO, 0.32 LV; blood (RV+LV) against the rest
reaches 0.85 (bright blobs), RV against LV blood 66 % accuracy (chance 62 %).

Scribble model (label 4 = unannotated): every stroke lies strictly inside its class and is 1-2 pixels wide.

- MYO and RV: a random connected piece of the skeleton of the (1-pixel eroded) class mask;
- LV: a random arc of an inner contour at 30-60 % of the maximal depth of the blood pool;
- background: an arc of the contour 4-10 mm around the heart plus 1-3 straight strokes farther away.

In 2D every class present gets a stroke. In 3D every slice gets background strokes (like the ACDC scribbles of
Valvano et al.) and each foreground class present in a slice is annotated there with probability 0.75, at least
once per volume. A class too small for a stroke gets its deepest pixel; background strokes are added while
less than 1.2 % is annotated, and all strokes are thinned to one pixel above 4.5 %. Measured on the
default datasets (seed 0, 200 cases each) the annotated fraction is 2.0 % of the pixels in 2D (1.2-3.8 % per
case; per class: 1.3 % of background, 11 % of RV, 11 % of MYO, 13 % of LV pixels) and 2.0 % of the voxels
in 3D (1.35-2.7 % per case; 1.6 %, 9.8 %, 5.8 %, 12 %). About 72 % of the scribble pixels are background.

Sizes and conventions: 2D defaults to 96 x 96 pixels at 1.6 mm, 3D to 12 x 80 x 80 voxels at (6.0, 1.6, 1.6)
mm; numpy arrays are (H, W) or (Z, H, W), spacings are in the same order. 2D cases are written as NIfTI
volumes with one slice (numpy shape (1, H, W)) and a slice thickness of 10 mm; SimpleITK's spacing order is
reversed, (sW, sH, sZ). The raw dataset has ``imagesTr/<case>_0000.nii.gz``, ``labelsTr/<case>.nii.gz``
(scribbles, ignore = 4), ``labelsTr_dense/``, ``imagesTs/`` and ``labelsTs/`` (dense), ``dataset.json`` and
a 5-fold ``splits_final.json``. Generation is deterministic: case ``i`` of the training (test) set is drawn
from its own child of ``np.random.SeedSequence(seed)`` and does not depend on the number of cases.
"""
from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

import numpy as np
import SimpleITK as sitk
from scipy import ndimage
from skimage.draw import line as draw_line
from skimage.morphology import skeletonize
from tqdm import tqdm

from nnunet_scribble.dataset_conversion.common import (
    IMAGES_TR,
    IMAGES_TS,
    LABELS_TR,
    LABELS_TR_DENSE,
    LABELS_TS,
    dataset_folder_name,
    install_splits,
    staged_dataset_folder,
    write_dataset_json,
    write_splits,
)

__all__ = [
    "LABELS",
    "IGNORE_LABEL",
    "GENERATOR_VERSION",
    "DEFAULT_SHAPE",
    "DEFAULT_SPACING",
    "DEFAULT_DATASET_ID",
    "DEFAULT_NAME",
    "SLICE_THICKNESS_2D",
    "make_case",
    "generate_synthetic_dataset",
    "main",
]

#: Real labels of the dataset (ACDC convention); the ignore label is added by ``write_dataset_json``.
LABELS: dict[str, int] = {"background": 0, "RV": 1, "MYO": 2, "LV": 3}
#: Value of unannotated pixels in the scribble maps.
IGNORE_LABEL = 4
#: Bumped whenever the generated data change for the same arguments.
GENERATOR_VERSION = "1.0"
DEFAULT_SHAPE: dict[int, tuple[int, ...]] = {2: (96, 96), 3: (12, 80, 80)}
DEFAULT_SPACING: dict[int, tuple[float, ...]] = {2: (1.6, 1.6), 3: (6.0, 1.6, 1.6)}
DEFAULT_DATASET_ID: dict[int, int] = {2: 901, 3: 902}
DEFAULT_NAME: dict[int, str] = {2: "SyntheticCardiac2D", 3: "SyntheticCardiac3D"}
#: Slice thickness (mm) written into the header of 2D cases.
SLICE_THICKNESS_2D = 10.0

_BG, _RV, _MYO, _LV = 0, 1, 2, 3
_MIN_INPLANE = 32  # smallest supported H and W
_FOREGROUND_SLICE_PROB = 0.75  # 3D: chance that a present foreground class is annotated in a slice
_MIN_FRACTION = 0.012  # top up background strokes below this annotated fraction
_MAX_FRACTION = 0.045  # thin the strokes to one pixel above this annotated fraction
_SQUARE = np.ones((3, 3), dtype=bool)
_CROSS = ndimage.generate_binary_structure(2, 1)


# ----------------------------------------------------------------------------------------------------------------
# case parameters
# ----------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Blob:
    """An elliptic object of the background; ``tc``/``th``: centre and half-extent along the base-apex level."""

    cy: float
    cx: float
    ry: float
    rx: float
    rot: float
    intensity: float
    tc: float = 0.5
    th: float = np.inf


@dataclass(frozen=True)
class _Heart:
    """Geometry (mm, radians) and intensities of the heart at the base; see :func:`_heart_slice`."""

    cy: float
    cx: float
    drift_y: float
    drift_x: float
    r_lv: float
    ecc: float
    rot: float
    t_myo: float
    rv_angle: float
    k_d: float
    k_r: float
    k_t: float
    rv_wall: float
    t_rv_end: float
    papillary: tuple[tuple[float, float], ...]
    lv_blood: float
    rv_blood: float
    myo: float

    @property
    def r_epi(self) -> float:
        """Largest epicardial radius at the base."""
        return self.r_lv * (1 + self.ecc) + self.t_myo

    @property
    def extent(self) -> float:
        """Conservative radius (from the LV centre at the base) that contains the heart in every slice."""
        rv = max(1.0, self.k_d + self.k_r, float(np.hypot(self.k_d, self.k_t)))
        return self.r_epi * rv + self.rv_wall + float(np.hypot(self.drift_y, self.drift_x))


@dataclass(frozen=True)
class _Case:
    """Everything that is drawn once per case before the pixels are rendered."""

    heart: _Heart
    body: _Blob
    blobs: tuple[_Blob, ...]  # painted in order, below the heart
    levels: tuple[float, ...]  # base (0) to apex (1) level of every slice
    body_texture: float
    gain: float
    noise_sigma: float
    bias: tuple[float, ...]


def _sample_heart(rng: np.random.Generator, fov: tuple[float, float], dim: int) -> _Heart:
    """Draw the heart geometry, scaled down for a field of view below 150 mm and placed inside it."""
    s = float(np.clip(min(fov) / 150.0, 0.5, 1.0))
    r_lv, ecc, t_myo = rng.uniform(10, 14) * s, rng.uniform(0, 0.18), rng.uniform(5, 7.5) * s
    drift = rng.uniform(0, 6) * s if dim == 3 else 0.0
    drift_angle = rng.uniform(0, 2 * np.pi)
    n_pap = int(rng.integers(0, 3))
    papillary = tuple((float(rng.uniform(0, 2 * np.pi)), float(rng.uniform(1.5, 2.5) * s)) for _ in range(n_pap))
    lv_blood = rng.uniform(700, 820)
    heart = _Heart(0.0, 0.0, drift * np.sin(drift_angle), drift * np.cos(drift_angle), r_lv, ecc,
                   rng.uniform(0, np.pi), t_myo, rng.uniform(0, 2 * np.pi), rng.uniform(0.5, 0.7),
                   rng.uniform(0.85, 1.1), rng.uniform(1.1, 1.4), rng.uniform(1.5, 3.0) * s,
                   rng.uniform(0.7, 0.82), papillary, lv_blood, lv_blood * rng.uniform(0.88, 1.0),
                   rng.uniform(190, 250))
    room = [max(0.0, f / 2 - heart.extent - 2.0) for f in fov]
    cy, cx = (rng.uniform(-r, r) + f / 2 for r, f in zip(room, fov))
    return replace(heart, cy=cy, cx=cx)


def _far_from_heart(rng: np.random.Generator, fov: tuple[float, float], heart: _Heart, radius: float
                    ) -> tuple[float, float] | None:
    """A random centre in the field of view whose disc of ``radius`` stays 3 mm clear of the heart, or None."""
    for _ in range(50):
        cy, cx = rng.uniform(0, fov[0]), rng.uniform(0, fov[1])
        if np.hypot(cy - heart.cy, cx - heart.cx) >= heart.extent + radius + 3.0:
            return cy, cx
    return None


def _sample_blobs(rng: np.random.Generator, fov: tuple[float, float], heart: _Heart) -> tuple[_Blob, ...]:
    """Liver, lungs (may touch the heart), a vessel and bright fat-like blobs (kept away from the heart)."""
    s = float(np.clip(min(fov) / 150.0, 0.5, 1.0))
    blobs = []
    a = rng.uniform(0, 2 * np.pi)
    d = heart.extent + rng.uniform(10, 25) * s
    r = rng.uniform(30, 50) * s
    blobs.append(_Blob(heart.cy + d * np.sin(a), heart.cx + d * np.cos(a), r, r * rng.uniform(0.6, 1.0),
                       rng.uniform(0, np.pi), rng.uniform(330, 420), rng.uniform(0.4, 1.0), rng.uniform(0.4, 0.8)))
    for _ in range(2):
        a, r = rng.uniform(0, 2 * np.pi), rng.uniform(18, 35) * s
        d = heart.extent * rng.uniform(0.7, 1.0) + 0.8 * r
        blobs.append(_Blob(heart.cy + d * np.sin(a), heart.cx + d * np.cos(a), r, r * rng.uniform(0.5, 0.9),
                           rng.uniform(0, np.pi), rng.uniform(30, 80)))
    specs = [(rng.uniform(7, 11) * s, rng.uniform(650, 850), 0.5, np.inf)]
    specs += [(rng.uniform(3, 9) * s, rng.uniform(620, 900), rng.uniform(0, 1), rng.uniform(0.2, 0.6))
              for _ in range(int(rng.integers(2, 5)))]
    for r, intensity, tc, th in specs:
        centre = _far_from_heart(rng, fov, heart, r)
        if centre is not None:
            blobs.append(_Blob(*centre, r, r * rng.uniform(0.6, 1.0), rng.uniform(0, np.pi), intensity, tc, th))
    return tuple(blobs)


def _sample_levels(rng: np.random.Generator, depth: int, dim: int) -> tuple[float, ...]:
    """Base-apex level of each slice: one random level in 2D, a base-to-apex ramp in 3D."""
    if dim == 2:
        return (float(rng.uniform(0.0, 0.75)),)
    t0, t1 = rng.uniform(0.0, 0.08), rng.uniform(0.85, 0.93)
    return tuple(float(t) for t in np.linspace(t0, t1, depth)) if depth > 1 else (float(t0),)


def _sample_case(rng: np.random.Generator, shape3: tuple[int, int, int], spacing3: tuple[float, float, float],
                 dim: int) -> _Case:
    """Draw all per-case parameters (geometry, intensities, acquisition) from ``rng``."""
    fov = (shape3[1] * spacing3[1], shape3[2] * spacing3[2])
    heart = _sample_heart(rng, fov, dim)
    blobs = _sample_blobs(rng, fov, heart)
    body = _Blob(fov[0] / 2 + rng.uniform(-5, 5), fov[1] / 2 + rng.uniform(-5, 5), fov[0] * rng.uniform(0.55, 0.7),
                 fov[1] * rng.uniform(0.6, 0.75), rng.uniform(-0.3, 0.3), rng.uniform(250, 330))
    levels = _sample_levels(rng, shape3[0], dim)
    return _Case(heart, body, blobs, levels, rng.uniform(0.10, 0.18), rng.uniform(0.75, 0.95),
                 heart.lv_blood * rng.uniform(0.035, 0.06), tuple(rng.uniform(-0.08, 0.08, size=6)))


# ----------------------------------------------------------------------------------------------------------------
# rendering
# ----------------------------------------------------------------------------------------------------------------
def _ellipse(yy: np.ndarray, xx: np.ndarray, cy: float, cx: float, ry: float, rx: float, rot: float) -> np.ndarray:
    """Boolean mask of an ellipse with semi-axis ``rx`` along direction ``rot`` and ``ry`` across it."""
    c, s = np.cos(rot), np.sin(rot)
    u = c * (xx - cx) + s * (yy - cy)
    v = -s * (xx - cx) + c * (yy - cy)
    return (u / max(rx, 1e-6)) ** 2 + (v / max(ry, 1e-6)) ** 2 <= 1.0


def _blob_slice(yy: np.ndarray, xx: np.ndarray, blob: _Blob, t: float) -> np.ndarray:
    """Mask of a background blob at level ``t`` (its radius shrinks towards the ends of its extent)."""
    f = 1.0 - ((t - blob.tc) / blob.th) ** 2 if np.isfinite(blob.th) else 1.0
    if f <= 0.05:
        return np.zeros(yy.shape, dtype=bool)
    f = float(np.sqrt(f))
    return _ellipse(yy, xx, blob.cy, blob.cx, blob.ry * f, blob.rx * f, blob.rot)


def _heart_slice(yy: np.ndarray, xx: np.ndarray, h: _Heart, t: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Label map, RV free-wall mask and papillary-muscle mask of the heart at level ``t``."""
    f_lv = float(np.sqrt(max(1.0 - t * t, 0.04)))
    cy, cx = h.cy + h.drift_y * t, h.cx + h.drift_x * t
    a, b, tm = h.r_lv * f_lv * (1 + h.ecc), h.r_lv * f_lv * (1 - h.ecc), h.t_myo * (1 - 0.2 * t)
    lv = _ellipse(yy, xx, cy, cx, b, a, h.rot)
    epi = _ellipse(yy, xx, cy, cx, b + tm, a + tm, h.rot)
    label = np.where(epi, _MYO, _BG).astype(np.uint8)
    label[lv] = _LV
    wall = np.zeros(yy.shape, dtype=bool)
    if t < h.t_rv_end:
        f_rv = 1.0 - 0.3 * (t / h.t_rv_end) ** 2
        d = h.k_d * (a + tm)
        ry, rx = h.k_t * h.r_epi * f_rv, h.k_r * h.r_epi * f_rv
        ry_c, rx_c = cy + d * np.sin(h.rv_angle), cx + d * np.cos(h.rv_angle)
        rv = _ellipse(yy, xx, ry_c, rx_c, ry, rx, h.rv_angle) & ~epi
        wall = _ellipse(yy, xx, ry_c, rx_c, ry + h.rv_wall, rx + h.rv_wall, h.rv_angle) & ~epi & ~rv
        label[rv] = _RV
    pap = np.zeros(yy.shape, dtype=bool)
    for angle, r in h.papillary:
        dist = 0.6 * b
        pap |= _ellipse(yy, xx, cy + dist * np.sin(angle), cx + dist * np.cos(angle), r, r, 0.0)
    return label, wall, pap & lv


def _render_slice(case: _Case, yy: np.ndarray, xx: np.ndarray, t: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Noise-free intensity, label and a 'heart' flag (for texture strength) of one slice at level ``t``."""
    h = case.heart
    tissue = np.where(_blob_slice(yy, xx, case.body, t), case.body.intensity, 0.0)
    for blob in case.blobs:
        tissue[_blob_slice(yy, xx, blob, t)] = blob.intensity
    label, wall, pap = _heart_slice(yy, xx, h, t)
    tissue[wall] = h.myo
    for value, intensity in ((_MYO, h.myo), (_LV, h.lv_blood), (_RV, h.rv_blood)):
        tissue[label == value] = intensity
    tissue[pap] = h.myo
    return tissue, label, (label > 0) | wall


def _render(case: _Case, shape3: tuple[int, int, int], spacing3: tuple[float, float, float]
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Render all slices: noise-free intensity (float64), dense label (uint8) and heart flag."""
    yy, xx = np.meshgrid((np.arange(shape3[1]) + 0.5) * spacing3[1], (np.arange(shape3[2]) + 0.5) * spacing3[2],
                         indexing="ij")
    slices = [_render_slice(case, yy, xx, t) for t in case.levels]
    return tuple(np.stack([s[i] for s in slices]) for i in range(3))  # type: ignore[return-value]


def _smooth_noise(rng: np.random.Generator, shape3: tuple[int, int, int], spacing3: tuple[float, float, float],
                  sigma_mm: float) -> np.ndarray:
    """Zero-mean, unit-variance Gaussian random field with correlation length ``sigma_mm``."""
    sigma = [sigma_mm / s if n > 1 else 0.0 for s, n in zip(spacing3, shape3)]
    field = ndimage.gaussian_filter(rng.standard_normal(shape3), sigma, mode="reflect")
    return (field - field.mean()) / max(float(field.std()), 1e-12)


def _bias_field(case: _Case, shape3: tuple[int, int, int]) -> np.ndarray:
    """Smooth multiplicative bias: a quadratic polynomial in normalised coordinates, clipped to [0.7, 1.3]."""
    z, y, x = np.meshgrid(*(np.linspace(-1, 1, n) if n > 1 else np.zeros(1) for n in shape3), indexing="ij")
    c = case.bias
    field = 1 + (c[0] * y + c[1] * x + c[2] * x * y + c[3] * (y * y - 0.5) + c[4] * (x * x - 0.5)) + c[5] * z
    return np.clip(field, 0.7, 1.3)


def _acquire(rng: np.random.Generator, case: _Case, tissue: np.ndarray, heart: np.ndarray,
             spacing3: tuple[float, float, float]) -> np.ndarray:
    """Texture, blur, bias field and Rician noise: the 'MRI' image (float32) of a noise-free tissue map."""
    shape3 = tissue.shape
    texture = _smooth_noise(rng, shape3, spacing3, 4.0)
    image = tissue * (1 + np.where(heart, 0.04, case.body_texture) * texture) * case.gain
    image = ndimage.gaussian_filter(image, (0.0, 0.9 / spacing3[1], 0.9 / spacing3[2]), mode="nearest")
    image *= _bias_field(case, shape3)
    sigma = case.noise_sigma * case.gain
    real = image + sigma * rng.standard_normal(shape3)
    imag = sigma * rng.standard_normal(shape3)
    return np.sqrt(real * real + imag * imag).astype(np.float32)


# ----------------------------------------------------------------------------------------------------------------
# scribbles
# ----------------------------------------------------------------------------------------------------------------
def _deepest_pixel(mask: np.ndarray) -> np.ndarray:
    """A single-pixel stroke at the pixel farthest from the class border (empty if the mask is empty)."""
    out = np.zeros_like(mask)
    if mask.any():
        out[np.unravel_index(int(np.argmax(ndimage.distance_transform_edt(mask))), mask.shape)] = True
    return out


def _random_piece(rng: np.random.Generator, curve: np.ndarray, frac: float) -> np.ndarray:
    """A random connected piece of ``curve`` covering about ``frac`` of its pixels (geodesic growth from a seed)."""
    points = np.argwhere(curve)
    if len(points) == 0:
        return curve.copy()
    lo, hi = points.min(0), points.max(0) + 1
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    seed = np.zeros(curve[box].shape, dtype=bool)
    seed[tuple(points[rng.integers(len(points))] - lo)] = True
    steps = max(1, int(round(frac * len(points) / 2)))
    out = np.zeros_like(curve)
    out[box] = ndimage.binary_dilation(seed, _SQUARE, iterations=steps, mask=curve[box])
    return out


def _medial_curve(mask: np.ndarray) -> np.ndarray:
    """Skeleton of the 1-pixel eroded mask (of the mask itself where erosion leaves nothing)."""
    eroded = ndimage.binary_erosion(mask, _SQUARE)
    return skeletonize(eroded if eroded.any() else mask) & mask


def _inner_contour(mask: np.ndarray, depth_frac: float) -> np.ndarray:
    """Contour of the part of ``mask`` deeper than ``depth_frac`` times its maximal depth."""
    depth = ndimage.distance_transform_edt(mask)
    inner = depth > depth_frac * depth.max()
    return inner & ~ndimage.binary_erosion(inner, _CROSS)


def _finish(rng: np.random.Generator, stroke: np.ndarray, mask: np.ndarray, widen: float) -> np.ndarray:
    """Widen a stroke with probability ``widen``, keep it inside ``mask``; deepest pixel if it is empty."""
    if rng.random() < widen:
        stroke = ndimage.binary_dilation(stroke, _CROSS)
    stroke = stroke & mask
    return stroke if stroke.any() else _deepest_pixel(mask)


def _foreground_stroke(rng: np.random.Generator, mask: np.ndarray, value: int) -> np.ndarray:
    """Stroke of one foreground class in one slice (see the module docstring)."""
    if value == _LV:
        stroke = _random_piece(rng, _inner_contour(mask, rng.uniform(0.35, 0.6)), rng.uniform(0.3, 0.6))
    elif value == _MYO:
        stroke = _random_piece(rng, _medial_curve(mask), rng.uniform(0.2, 0.45))
    else:
        stroke = _random_piece(rng, _medial_curve(mask), rng.uniform(0.4, 0.8))
    return _finish(rng, stroke, mask, 0.3)


def _far_stroke(rng: np.random.Generator, allowed: np.ndarray, spacing2: tuple[float, float]) -> np.ndarray:
    """A straight background stroke of 10-30 mm starting at a random allowed pixel, clipped to ``allowed``."""
    stroke = np.zeros_like(allowed)
    points = np.argwhere(allowed)
    if len(points) == 0:
        return stroke
    y0, x0 = points[rng.integers(len(points))]
    length, angle = rng.uniform(8, 20), rng.uniform(0, 2 * np.pi)
    y1 = int(np.clip(round(y0 + length * np.sin(angle) / spacing2[0]), 0, allowed.shape[0] - 1))
    x1 = int(np.clip(round(x0 + length * np.cos(angle) / spacing2[1]), 0, allowed.shape[1] - 1))
    rr, cc = draw_line(int(y0), int(x0), y1, x1)
    stroke[rr, cc] = True
    return stroke & allowed


def _background_strokes(rng: np.random.Generator, label: np.ndarray, spacing2: tuple[float, float]) -> np.ndarray:
    """Background strokes of one slice: an arc around the heart and 1-3 strokes farther away."""
    background = label == _BG
    if not background.any():
        return background
    heart = ~background
    dist = ndimage.distance_transform_edt(background, sampling=spacing2) if heart.any() else np.full(
        label.shape, np.inf)
    around = dist <= rng.uniform(4, 10)
    loop = around & ~ndimage.binary_erosion(around, _CROSS, border_value=1) & background
    stroke = _random_piece(rng, loop, rng.uniform(0.25, 0.5))
    far = background & (dist >= 18.0)
    for _ in range(int(rng.integers(1, 4))):
        stroke |= _far_stroke(rng, far, spacing2)
    return _finish(rng, stroke, background, 0.5)


def _annotated_slices(rng: np.random.Generator, present: np.ndarray) -> np.ndarray:
    """Slices in which a class (present where ``present``) is annotated; at least one if present anywhere."""
    chosen = present & (rng.random(present.shape) < _FOREGROUND_SLICE_PROB)
    if present.any() and not chosen.any():
        chosen[rng.choice(np.flatnonzero(present))] = True
    return chosen


def _scribble_volume(rng: np.random.Generator, label: np.ndarray, spacing2: tuple[float, float],
                     all_slices: bool) -> np.ndarray:
    """Scribbles (uint8, ``IGNORE_LABEL`` where unannotated) of a (Z, H, W) dense label volume."""
    scribble = np.full(label.shape, IGNORE_LABEL, dtype=np.uint8)
    for z in range(label.shape[0]):
        scribble[z][_background_strokes(rng, label[z], spacing2)] = _BG
    for value in (_RV, _MYO, _LV):
        present = (label == value).any(axis=(1, 2))
        chosen = present if all_slices else _annotated_slices(rng, present)
        for z in np.flatnonzero(chosen):
            scribble[z][_foreground_stroke(rng, label[z] == value, value)] = value
    _top_up(rng, scribble, label, spacing2)
    if np.mean(scribble != IGNORE_LABEL) > _MAX_FRACTION:
        _thin(scribble)
    return scribble


def _top_up(rng: np.random.Generator, scribble: np.ndarray, label: np.ndarray, spacing2: tuple[float, float]
            ) -> None:
    """Add far background strokes (in place) while less than ``_MIN_FRACTION`` of the voxels are annotated."""
    for _ in range(20):
        if np.mean(scribble != IGNORE_LABEL) >= _MIN_FRACTION:
            return
        z = int(rng.integers(label.shape[0]))
        extra = _finish(rng, _far_stroke(rng, label[z] == _BG, spacing2), label[z] == _BG, 0.5)
        scribble[z][extra] = _BG


def _thin(scribble: np.ndarray) -> None:
    """Thin every stroke to one pixel (in place): keeps each stroke's extent, drops the widening."""
    for z in range(scribble.shape[0]):
        for value in (_BG, _RV, _MYO, _LV):
            strokes = scribble[z] == value
            thin = skeletonize(strokes) if strokes.any() else strokes
            if thin.any():
                scribble[z][strokes & ~thin] = IGNORE_LABEL


# ----------------------------------------------------------------------------------------------------------------
# public API: one case
# ----------------------------------------------------------------------------------------------------------------
def _check_geometry(shape: Sequence[int], spacing: Sequence[float]) -> tuple[tuple[int, int, int],
                                                                               tuple[float, float, float]]:
    """Validate a 2D/3D shape and spacing and return both as 3D (a 2D case is one slice of thickness 1)."""
    shape, spacing = tuple(shape), tuple(spacing)
    if len(shape) not in (2, 3) or not all(isinstance(n, (int, np.integer)) and n >= 1 for n in shape):
        raise ValueError(f"shape must be 2 or 3 positive integers (H, W) or (Z, H, W), got {shape!r}")
    if len(spacing) != len(shape) or not all(float(s) > 0 for s in spacing):
        raise ValueError(f"spacing must be {len(shape)} positive numbers matching shape {shape}, got {spacing!r}")
    if min(shape[-2:]) < _MIN_INPLANE:
        raise ValueError(f"in-plane size must be at least {_MIN_INPLANE} pixels, got shape {shape}")
    shape3 = tuple(int(n) for n in shape) if len(shape) == 3 else (1, int(shape[0]), int(shape[1]))
    spacing3 = tuple(float(s) for s in spacing) if len(spacing) == 3 else (1.0, float(spacing[0]), float(spacing[1]))
    return shape3, spacing3  # type: ignore[return-value]


def make_case(rng: np.random.Generator, shape: tuple[int, ...], spacing: tuple[float, ...]
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Generate one synthetic short-axis cardiac case.

    Args:
        rng: the case's random generator; the result is a deterministic function of its state, shape and spacing.
        shape: ``(H, W)`` for a 2D slice or ``(Z, H, W)`` for a base-to-apex stack; H and W at least 32.
        spacing: pixel spacing in mm in the same order as ``shape``, e.g. ``(1.6, 1.6)`` or ``(6.0, 1.6, 1.6)``.

    Returns:
        ``(image, dense, scribble)`` of ``shape``: the float32 MRI-like image (roughly 0-1000), the uint8 dense
        label (0 background, 1 RV, 2 MYO, 3 LV) and the uint8 scribbles (``IGNORE_LABEL`` = 4 where unannotated,
        equal to ``dense`` elsewhere).

    Raises:
        ValueError: if ``shape`` or ``spacing`` is malformed or the image is smaller than 32 pixels in-plane.
    """
    shape3, spacing3 = _check_geometry(shape, spacing)
    dim = len(tuple(shape))
    case = _sample_case(rng, shape3, spacing3, dim)
    tissue, dense, heart = _render(case, shape3, spacing3)
    image = _acquire(rng, case, tissue, heart, spacing3)
    scribble = _scribble_volume(rng, dense, spacing3[1:], all_slices=dim == 2)
    out_shape = tuple(int(n) for n in shape)
    return image.reshape(out_shape), dense.astype(np.uint8).reshape(out_shape), scribble.reshape(out_shape)


# ----------------------------------------------------------------------------------------------------------------
# public API: a dataset
# ----------------------------------------------------------------------------------------------------------------
def _write_nifti(array: np.ndarray, spacing: tuple[float, ...], path: Path) -> None:
    """Write a 2D (as one slice) or 3D numpy array with its numpy-ordered ``spacing`` as compressed NIfTI."""
    if array.ndim == 2:
        array, spacing = array[None], (SLICE_THICKNESS_2D, *spacing)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(tuple(float(s) for s in reversed(spacing)))
    sitk.WriteImage(image, str(path), True)


def _case_seeds(seed: int, num_train: int, num_test: int) -> tuple[list, list, np.random.SeedSequence]:
    """Independent seed sequences: one per training case, one per test case, one for the splits."""
    train_root, test_root, split_root = np.random.SeedSequence(seed).spawn(3)
    return train_root.spawn(num_train), test_root.spawn(num_test), split_root


def _kfold_splits(case_ids: list[str], rng: np.random.Generator, num_folds: int = 5) -> list[dict[str, list[str]]]:
    """Random ``min(num_folds, len(case_ids))``-fold split by case, in nnU-Net's ``splits_final.json`` format."""
    order = [case_ids[i] for i in rng.permutation(len(case_ids))]
    folds = np.array_split(np.arange(len(order)), min(num_folds, len(order)))
    return [{"train": [order[i] for i in range(len(order)) if i not in set(f)], "val": [order[i] for i in f]}
            for f in folds]


def _write_cases(folder: Path, jobs: list[tuple[str, np.random.SeedSequence, bool]], shape: tuple[int, ...],
                 spacing: tuple[float, ...], progress: bool) -> None:
    """Generate and write every ``(case_id, seed_sequence, is_training)`` job into the dataset ``folder``."""
    for sub in (IMAGES_TR, LABELS_TR, LABELS_TR_DENSE, IMAGES_TS, LABELS_TS):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    for case_id, seq, train in tqdm(jobs, desc="synthetic cases", unit="case", disable=not progress):
        image, dense, scribble = make_case(np.random.default_rng(seq), shape, spacing)
        _write_nifti(image, spacing, folder / (IMAGES_TR if train else IMAGES_TS) / f"{case_id}_0000.nii.gz")
        if train:
            _write_nifti(scribble, spacing, folder / LABELS_TR / f"{case_id}.nii.gz")
            _write_nifti(dense, spacing, folder / LABELS_TR_DENSE / f"{case_id}.nii.gz")
        else:
            _write_nifti(dense, spacing, folder / LABELS_TS / f"{case_id}.nii.gz")


def _check_dataset_args(dim: int, num_train: int, num_test: int, seed: int, shape: tuple[int, ...] | None
                        ) -> tuple[int, ...]:
    """Validate the arguments of :func:`generate_synthetic_dataset` and return the shape to use."""
    if dim not in (2, 3):
        raise ValueError(f"dim must be 2 or 3, got {dim!r}")
    if not isinstance(num_train, int) or num_train < 2:
        raise ValueError(f"num_train must be an integer >= 2 (cross-validation needs two cases), got {num_train!r}")
    if not isinstance(num_test, int) or num_test < 0:
        raise ValueError(f"num_test must be a non-negative integer, got {num_test!r}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    shape = tuple(DEFAULT_SHAPE[dim] if shape is None else shape)
    if len(shape) != dim:
        raise ValueError(f"shape must have {dim} entries for dim={dim}, got {shape!r}")
    _check_geometry(shape, DEFAULT_SPACING[dim])
    return tuple(int(n) for n in shape)


def generate_synthetic_dataset(raw_root: str | os.PathLike, dataset_id: int | None = None, dim: int = 2,
                               num_train: int = 20, num_test: int = 10, seed: int = 0,
                               shape: tuple[int, ...] | None = None, overwrite: bool = False,
                               name: str | None = None, progress: bool = True) -> Path:
    """Write the synthetic cardiac scribble dataset as an nnU-Net v2 raw dataset.

    Args:
        raw_root: the ``nnUNet_raw`` folder; the dataset goes to ``raw_root/DatasetXXX_Name``.
        dataset_id: nnU-Net dataset ID; ``None`` means 901 for 2D and 902 for 3D.
        dim: 2 for single slices, 3 for base-to-apex stacks.
        num_train: number of training cases (``synth_000``, ...; at least 2).
        num_test: number of test cases (``synth_test_000``, ...) with dense labels in ``labelsTs``.
        seed: non-negative seed; the same arguments give identical arrays, and case ``i`` does not depend on
            ``num_train`` or ``num_test``.
        shape: ``(H, W)`` or ``(Z, H, W)``; defaults to :data:`DEFAULT_SHAPE`. The spacing is
            :data:`DEFAULT_SPACING`.
        overwrite: replace an existing dataset folder.
        name: dataset name; defaults to ``SyntheticCardiac2D`` / ``SyntheticCardiac3D``.
        progress: show a tqdm progress bar.

    Returns:
        The final dataset folder. ``splits_final.json`` is also copied to ``$nnUNet_preprocessed`` when set.

    Raises:
        ValueError: on invalid arguments. FileExistsError: if the folder exists and ``overwrite`` is False.
    """
    shape = _check_dataset_args(dim, num_train, num_test, seed, shape)
    spacing = DEFAULT_SPACING[dim]
    dataset_id = DEFAULT_DATASET_ID[dim] if dataset_id is None else dataset_id
    final = Path(raw_root) / dataset_folder_name(dataset_id, name or DEFAULT_NAME[dim])
    train_seqs, test_seqs, split_seq = _case_seeds(int(seed), num_train, num_test)
    train_ids = [f"synth_{i:03d}" for i in range(num_train)]
    jobs = [(c, s, True) for c, s in zip(train_ids, train_seqs)]
    jobs += [(f"synth_test_{i:03d}", s, False) for i, s in enumerate(test_seqs)]
    with staged_dataset_folder(final, overwrite=overwrite) as tmp:
        _write_cases(tmp, jobs, shape, spacing, progress)
        write_dataset_json(
            tmp, {0: "MRI"}, LABELS, num_train, ".nii.gz", dataset_name=final.name.split("_", 1)[1],
            description="Synthetic short-axis cardiac MRI with scribbles (nnunet_scribble.data.synthetic)",
            license="CC0-1.0", numTest=num_test,
            synthetic={"generator": "nnunet_scribble.data.synthetic", "version": GENERATOR_VERSION,
                       "seed": int(seed), "dim": dim, "shape": list(shape), "spacing": list(spacing)})
        write_splits(tmp, _kfold_splits(train_ids, np.random.default_rng(split_seq)))
    install_splits(final)
    return final


# ----------------------------------------------------------------------------------------------------------------
# command line
# ----------------------------------------------------------------------------------------------------------------
def _build_parser() -> argparse.ArgumentParser:
    """The argument parser of :func:`main`."""
    parser = argparse.ArgumentParser(
        prog="nnunet_scribble_generate",
        description="Generate the synthetic cardiac scribble dataset (ACDC-like short-axis MRI with labels "
                    "0 background, 1 RV, 2 MYO, 3 LV; scribbles in labelsTr with ignore label 4, dense labels in "
                    "labelsTr_dense and labelsTs) as an nnU-Net v2 raw dataset.")
    parser.add_argument("-o", "--output", default=os.environ.get("nnUNet_raw"),
                        help="nnUNet_raw folder to write DatasetXXX_Name into (default: $nnUNet_raw)")
    parser.add_argument("-d", "--dataset_id", type=int, default=None,
                        help="dataset ID (default: 901 for --dim 2, 902 for --dim 3)")
    parser.add_argument("--dim", type=int, choices=(2, 3), default=2,
                        help="2: single %dx%d slices; 3: %dx%dx%d stacks (default: 2)"
                             % (*DEFAULT_SHAPE[2], *DEFAULT_SHAPE[3]))
    parser.add_argument("--num_train", type=int, default=20, help="number of training cases (default: 20)")
    parser.add_argument("--num_test", type=int, default=10, help="number of test cases (default: 10)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--name", default=None,
                        help="dataset name (default: SyntheticCardiac2D / SyntheticCardiac3D)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing dataset folder")
    parser.add_argument("--no_progress", action="store_true", help="do not show a progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point (``nnunet_scribble_generate``); returns the exit status."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    if not args.output:
        parser.error("no output folder: pass -o/--output or set the nnUNet_raw environment variable")
    try:
        folder = generate_synthetic_dataset(args.output, args.dataset_id, args.dim, args.num_train, args.num_test,
                                            args.seed, overwrite=args.overwrite, name=args.name,
                                            progress=not args.no_progress)
    except (ValueError, FileExistsError) as e:
        parser.error(str(e))
    print(f"Synthetic dataset written to {folder}")
    return 0
