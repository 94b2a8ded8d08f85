"""2D geometry helpers of the scribble simulators: skeleton paths, contours, curves and rasterisation.

All functions work on boolean 2D masks and ``(N, 2)`` arrays of (row, column) points.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import dijkstra, minimum_spanning_tree
from scipy.stats import binom
from skimage.draw import line as draw_line
from skimage.measure import find_contours
from skimage.morphology import skeletonize

EIGHT = np.ones((3, 3), bool)


def components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """8-connected components of ``mask``: (label image, count)."""
    return ndimage.label(mask, structure=EIGHT)


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 8-connected component of ``mask`` (an empty mask stays empty)."""
    labels, n = components(mask)
    if n <= 1:
        return mask.astype(bool)
    sizes = np.bincount(labels.ravel())[1:]
    return labels == 1 + int(np.argmax(sizes))


def pixel_graph(mask: np.ndarray) -> tuple[np.ndarray, coo_matrix]:
    """The pixels of ``mask`` as points and their 8-neighbour graph (edge weight = Euclidean step length)."""
    points = np.argwhere(mask)
    index = np.full(mask.shape, -1, np.int64)
    index[tuple(points.T)] = np.arange(len(points))
    rows, cols, weights = [], [], []
    for dr, dc in ((0, 1), (1, 0), (1, 1), (1, -1)):
        r, c = points[:, 0] + dr, points[:, 1] + dc
        inside = (r >= 0) & (r < mask.shape[0]) & (c >= 0) & (c < mask.shape[1])
        neighbour = np.full(len(points), -1)
        neighbour[inside] = index[r[inside], c[inside]]
        ok = neighbour >= 0
        rows.append(np.nonzero(ok)[0])
        cols.append(neighbour[ok])
        weights.append(np.full(ok.sum(), np.hypot(dr, dc)))
    graph = coo_matrix((np.concatenate(weights), (np.concatenate(rows), np.concatenate(cols))),
                       shape=(len(points),) * 2)
    return points, graph


def skeleton_tree(mask: np.ndarray) -> tuple[np.ndarray, object] | None:
    """Skeleton of ``mask`` (largest 8-connected piece) as points and the minimum spanning tree of its
    8-neighbour graph; None when the skeleton has 2 pixels or fewer.

    Deviation from CSPNet: the skeleton comes from scikit-image's thinning (``skeletonize``) rather than the
    medial axis transform; both give a one-pixel centre line, and ``medial_axis`` rebuilds lookup tables on
    every call, which made it ~50x slower for the thousands of slices of a medical dataset.
    """
    skeleton = largest_component(skeletonize(mask))
    if skeleton.sum() <= 2:
        return None
    points, graph = pixel_graph(skeleton)
    return points, minimum_spanning_tree(graph)


def endpoint_order(piece: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The pixels of a connected scribble piece ordered by geodesic distance from one of its two ends.

    The ends are found by a double sweep (the pixel farthest from an arbitrary pixel, then the pixel farthest
    from that one); which end is used is drawn with ``rng``.
    """
    points, graph = pixel_graph(piece)
    far = np.argmax(np.nan_to_num(dijkstra(graph, directed=False, indices=0), posinf=-1))
    dist = dijkstra(graph, directed=False, indices=far)
    if rng.random() < 0.5:
        other = np.argmax(np.nan_to_num(dist, posinf=-1))
        dist = dijkstra(graph, directed=False, indices=other)
    return points[np.argsort(dist, kind="stable")]


def root_to_leaf_path(mask: np.ndarray, rng: np.random.Generator, deterministic: bool = False
                      ) -> np.ndarray | None:
    """A path from the root of the skeleton tree to one of its leaves (CSPNet's "random depth search").

    The root is the skeleton point that is extreme along the longer side of the skeleton's bounding box. Every
    root-to-leaf path of the spanning tree is a candidate; one is drawn with probability proportional to its
    (Euclidean) length, or the longest is taken when ``deterministic``. Returns None when the skeleton is too
    small (2 pixels or fewer).
    """
    tree = skeleton_tree(mask)
    if tree is None:
        return None
    points, mst = tree
    extent = points.max(0) - points.min(0)
    root = int(np.argmin(points[:, int(np.argmax(extent))]))
    dist, pred = dijkstra(mst, directed=False, indices=root, return_predecessors=True)
    undirected = mst + mst.T
    degree = np.diff(undirected.tocsr().indptr)
    leaves = np.nonzero((degree == 1) & (np.arange(len(points)) != root) & np.isfinite(dist))[0]
    if len(leaves) == 0:
        return None
    lengths = dist[leaves]
    leaf = leaves[np.argmax(lengths)] if deterministic else rng.choice(leaves, p=lengths / lengths.sum())
    path = [int(leaf)]
    while path[-1] != root:
        path.append(int(pred[path[-1]]))
    return points[path[::-1]].astype(float)


def outer_contour(mask: np.ndarray) -> np.ndarray | None:
    """The longest iso-contour of ``mask`` as an open sequence of (row, col) points (closing point dropped)."""
    if not mask.any():
        return None
    contours = find_contours(np.pad(mask.astype(float), 1), 0.5)
    contour = max(contours, key=len)[:-1] - 1
    return contour if len(contour) >= 3 else None


def bezier(control: np.ndarray, num: int | None = None) -> np.ndarray:
    """Sample the Bezier curve whose control points are ``control`` (Bernstein form, numerically stable).

    By default the curve is sampled with ``h + w`` steps, h and w being the bounding-box size of the control
    points (CSPNet samples t in steps of ``1/(h+w)``).
    """
    if len(control) < 3:
        return control
    if num is None:
        extent = control.max(0) - control.min(0)
        num = int(max(extent.sum(), 2)) + 1
    t = np.linspace(0.0, 1.0, num)
    weights = binom.pmf(np.arange(len(control))[None, :], len(control) - 1, t[:, None])
    return weights @ control


def piecewise_bezier(points: np.ndarray, window: int) -> np.ndarray:
    """Smooth a point sequence with consecutive Bezier curves of ``window`` control points sharing endpoints."""
    if window < 3 or len(points) < 3:
        return points
    pieces, start = [], 0
    while start < len(points) - 1:
        stop = min(start + window - 1, len(points) - 1)
        pieces.append(bezier(points[start: stop + 1]))
        start = stop
    return np.concatenate(pieces)


def rasterize(points: np.ndarray, shape: tuple[int, int], thickness: int = 1) -> np.ndarray:
    """Draw the polyline through ``points`` (rounded) into a boolean mask, dilated to ``thickness`` pixels."""
    canvas = np.zeros(shape, bool)
    p = np.clip(np.rint(points).astype(int), 0, np.array(shape) - 1)
    if len(p) == 1:
        canvas[p[0, 0], p[0, 1]] = True
    for (r0, c0), (r1, c1) in zip(p[:-1], p[1:]):
        rr, cc = draw_line(r0, c0, r1, c1)
        canvas[rr, cc] = True
    if thickness == 2:
        canvas = ndimage.binary_dilation(canvas, structure=np.ones((2, 2), bool))
    elif thickness > 2:
        canvas = ndimage.binary_dilation(canvas, iterations=(thickness - 1) // 2)
    return canvas
