"""Scribble simulation from dense labels, per 2D image or per slice of a volume.

Two styles, both re-implemented from their descriptions (the original CSPNet code was withdrawn):

``cspnet`` (CSPNet, Zhang et al., §IV; withdrawn ScribbleSimulation code as summarised in the reference notes)
    Every 8-connected component ("object") of every foreground class larger than ``min_size`` pixels gets one
    scribble, after a 2-pixel image border has been removed. The style follows the object's area fraction P of
    the image (Eq. 20): a *line* when P < 10%, otherwise a *boundary* scribble with probability P. The variant
    ``cspnet-shape`` uses the medical rule instead (ratio r = object area / area of its minimum enclosing circle,
    approximated by the circle through the two farthest contour points: r < 1/3 line, r > 0.9 boundary, else
    boundary with probability r).
    Line: skeleton (thinning; CSPNet: medial axis) -> spanning tree of its 8-neighbour graph -> a root-to-leaf
    path drawn with probability proportional to its length. Boundary: erosion with a ``erosion`` x ``erosion``
    square (CSPNet: 20), largest piece, its contour jittered radially about the centroid by one integer offset drawn
    from [-erosion, erosion/2 - 1] (the "random affine transformation", Eq. 21; we draw one offset per scribble, which
    makes it a scaling about the centroid, and limit the outward offset to the erosion depth erosion/2 so that the
    curve stays inside convex objects; CSPNet draws from [-k, k]); falls back to a line when the erosion leaves
    nothing. Deviation: an object whose skeleton has 2 pixels or fewer (discs, squares: thinning reduces them to a
    point) is not skipped as in CSPNet but gets a boundary scribble with the largest erosion k/2, k/4, ..., 1 that
    leaves a contour, so that every class present in a slice gets a scribble.
    Both are smoothed by Bezier curves and drawn 2 pixels thick. Background: the longest skeleton path of the
    (largest piece of the) background, not smoothed.
    Deviation: the smoothing uses consecutive Bezier curves of ``window`` (16) control points instead of one
    curve through all path vertices, because a single high-degree curve contracts long or curved paths towards
    their middle and leaves thin or ring-shaped objects (the myocardium). Drawn pixels are clipped to the
    object's mask, so scribbles never leave their object.

``scribblebench`` (nnU-Net scribble benchmark, reference notes §6.2)
    For every class present in the slice, background included, one 8-connected component is drawn with
    probability proportional to its area and gets two scribbles: an *interior curve* (quadratic B-spline through
    4 control points drawn one after the other inside the component; when the segment from the previous point
    leaves the component, the point is moved to a random position on the segment before the exit) and a
    *boundary segment* (contour of the component eroded by a disk of radius 2..5, segment of 7-15% of its
    length centred at a point drawn with probability proportional to the smoothed contour curvature; only its
    largest piece is kept). Both are 3 pixels thick and clipped to the component.

The unannotated value is ``ignore``; a seed makes the result reproducible, different seeds play different
annotators (s1, s2, s3).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import ndimage
from scipy.interpolate import BSpline
from skimage.morphology import disk

from nnunet_scribble.dataset_conversion import scribble_geometry as geo

STYLES = ("cspnet", "cspnet-shape", "scribblebench")


def _circle_ratio(mask: np.ndarray) -> float:
    contour = geo.outer_contour(mask)
    if contour is None:
        return 1.0
    hull = contour[:: max(1, len(contour) // 200)]
    diameter = np.sqrt(((hull[:, None] - hull[None]) ** 2).sum(-1).max())
    return float(mask.sum() / max(np.pi * (diameter / 2) ** 2, 1.0))


def _use_boundary(mask: np.ndarray, rng: np.random.Generator, style: str) -> bool:
    if style == "cspnet-shape":
        ratio = _circle_ratio(mask)
        return ratio > 0.9 or (ratio >= 1 / 3 and rng.random() < ratio)
    fraction = mask.sum() / mask.size
    return fraction >= 0.1 and rng.random() < fraction


def cspnet_boundary(mask: np.ndarray, rng: np.random.Generator, erosion: int) -> np.ndarray | None:
    """Jittered contour of the eroded object (see module docstring), or None when erosion removes it."""
    eroded = geo.largest_component(ndimage.binary_erosion(mask, structure=np.ones((erosion, erosion), bool)))
    contour = geo.outer_contour(eroded)
    if contour is None:
        return None
    centroid = np.argwhere(eroded).mean(0)
    direction = contour - centroid
    direction /= np.maximum(np.linalg.norm(direction, axis=1, keepdims=True), 1e-6)
    start = rng.integers(len(contour))
    offset = rng.integers(-erosion, max(erosion // 2, 1))
    return np.roll(contour, -start, axis=0) + offset * np.roll(direction, -start, axis=0)


def cspnet_object(mask: np.ndarray, rng: np.random.Generator, style: str, erosion: int, window: int
                  ) -> np.ndarray:
    """The scribble pixels (boolean mask) of one foreground object in the CSPNet style."""
    path = cspnet_boundary(mask, rng, erosion) if _use_boundary(mask, rng, style) else None
    if path is None:
        path = geo.root_to_leaf_path(mask, rng)
    k = erosion
    while path is None and k > 1:  # compact object whose skeleton is a point: smaller boundary scribble
        k //= 2
        path = cspnet_boundary(mask, rng, k)
    if path is None:
        return np.zeros_like(mask)
    return geo.rasterize(geo.piecewise_bezier(path, window), mask.shape, 2) & mask


def cspnet_slice(seg: np.ndarray, classes: Sequence[int], rng: np.random.Generator, ignore: int,
                 style: str = "cspnet", erosion: int = 20, window: int = 16, min_size: int = 5) -> np.ndarray:
    """CSPNet-style scribbles for one 2D label map (0 = background, ``classes`` = foreground ids)."""
    out = np.full(seg.shape, ignore, dtype=np.uint8)
    inner = np.zeros(seg.shape, bool)
    inner[2:-2, 2:-2] = True
    for c in classes:
        labels, n = geo.components((seg == c) & inner)
        for i in range(1, n + 1):
            obj = labels == i
            if obj.sum() > min_size:
                out[cspnet_object(obj, rng, style, erosion, window)] = c
    background = geo.largest_component((seg == 0) & inner)
    if background.sum() > min_size:
        path = geo.root_to_leaf_path(background, rng, deterministic=True)
        if path is not None:
            out[geo.rasterize(path, seg.shape, 2) & background] = 0
    return out


def _interior_points(comp: np.ndarray, rng: np.random.Generator, n: int = 4) -> np.ndarray:
    pixels = np.argwhere(comp)
    points = [pixels[rng.integers(len(pixels))]]
    while len(points) < n:
        target = pixels[rng.integers(len(pixels))]
        steps = int(np.abs(target - points[-1]).max()) + 1
        segment = np.rint(np.linspace(points[-1], target, steps)).astype(int)
        outside = np.nonzero(~comp[segment[:, 0], segment[:, 1]])[0]
        points.append(segment[rng.integers(outside[0])] if len(outside) else target)
    return np.array(points, float)


def interior_curve(comp: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Quadratic clamped B-spline through 4 sequentially drawn interior control points, as a boolean mask."""
    control = _interior_points(comp, rng)
    spline = BSpline(np.array([0, 0, 0, 0.5, 1, 1, 1.0]), control, 2)
    return geo.rasterize(spline(np.arange(0.0, 1.0 + 1e-9, 0.001)), comp.shape, 1)


def boundary_segment(comp: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A contour segment of 7-15% of the eroded component's contour, centred where curvature is high."""
    eroded = ndimage.binary_erosion(comp, structure=disk(1 + int(rng.integers(1, 5))))
    contour = geo.outer_contour(eroded if eroded.any() else comp)
    if contour is None:
        return np.zeros_like(comp)
    d1 = np.gradient(contour, axis=0)
    d2 = np.gradient(d1, axis=0)
    curvature = np.abs(d1[:, 0] * d2[:, 1] - d1[:, 1] * d2[:, 0]) / np.maximum(
        (d1 ** 2).sum(1) ** 1.5, 1e-6)
    curvature = ndimage.gaussian_filter1d(curvature, 2.0, mode="wrap")
    span = curvature.max() - curvature.min()
    weights = (curvature - curvature.min()) / span if span > 0 else np.ones_like(curvature)
    weights = weights + 1e-6
    centre = rng.choice(len(contour), p=weights / weights.sum())
    half = max(1, int(rng.uniform(0.07, 0.15) * len(contour) / 2))
    segment = contour[np.arange(centre - half, centre + half + 1) % len(contour)]
    return geo.largest_component(geo.rasterize(segment, comp.shape, 1) & comp)


def scribblebench_slice(seg: np.ndarray, classes: Sequence[int], rng: np.random.Generator, ignore: int
                        ) -> np.ndarray:
    """ScribbleBench-style scribbles for one 2D label map, background (0) included."""
    out = np.full(seg.shape, ignore, dtype=np.uint8)
    for c in [0, *classes]:
        labels, n = geo.components(seg == c)
        if n == 0:
            continue
        sizes = np.bincount(labels.ravel())[1:].astype(float)
        comp = labels == 1 + rng.choice(n, p=sizes / sizes.sum())
        drawn = interior_curve(comp, rng) | boundary_segment(comp, rng)
        out[ndimage.binary_dilation(drawn) & comp] = c
    return out


def simulate(seg: np.ndarray, classes: Sequence[int], ignore: int, style: str, rng: np.random.Generator,
             axis: int = 0, **options) -> np.ndarray:
    """Scribbles for a 2D label map or, slice by slice along ``axis``, for a 3D label volume."""
    if style not in STYLES:
        raise ValueError(f"unknown scribble style {style!r}; expected one of {STYLES}")
    if seg.ndim == 2:
        if style == "scribblebench":
            return scribblebench_slice(seg, classes, rng, ignore)
        return cspnet_slice(seg, classes, rng, ignore, style=style, **options)
    moved = np.moveaxis(seg, axis, 0)
    out = np.stack([simulate(s, classes, ignore, style, rng, **options) for s in moved])
    return np.moveaxis(out, 0, axis)
