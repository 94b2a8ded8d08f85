"""PNG overlays of an image with its scribbles, prediction and reference labels, for a quick visual check.

Panels are drawn side by side: the image (grayscale, windowed to its 1st-99th percentile), then the image with a
coloured overlay for each of scribble, prediction and reference that is given. Every label value has a fixed colour
(the same in every panel and every file); background (0) and the ignore label are left transparent, except in the
scribble panel, where background scribbles are annotations and are drawn in yellow. Drawing uses a
private Agg canvas, so the global matplotlib backend is left untouched.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Union

import numpy as np

from nnunet_scribble.evaluation.folder import FILE_ENDINGS, _atomic_write_bytes, _figure_png_bytes, _reader_class

PathLike = Union[str, os.PathLike]

#: Fixed RGB colour per label value ``v`` (``_PALETTE[(v - 1) % len(_PALETTE)]``), Tableau-10 colours.
_PALETTE = ((0.12, 0.47, 0.71), (1.0, 0.50, 0.05), (0.17, 0.63, 0.17), (0.84, 0.15, 0.16), (0.58, 0.40, 0.74),
            (0.55, 0.34, 0.29), (0.89, 0.47, 0.76), (0.50, 0.50, 0.50), (0.74, 0.74, 0.13), (0.09, 0.75, 0.81))
_ALPHA = 0.5
#: Colour of background (0) scribbles in the scribble panel.
_BACKGROUND_SCRIBBLE = (1.0, 0.9, 0.1)


def save_overlay_png(image: np.ndarray, out_png: PathLike, prediction: np.ndarray | None = None,
                     reference: np.ndarray | None = None, scribble: np.ndarray | None = None,
                     ignore_label: int | None = None, title: str = "", slice_index: int | None = None) -> Path:
    """Write one PNG with the image and one overlay panel per given label map.

    Args:
        image: 2D ``(H, W)`` or 3D ``(Z, H, W)`` image.
        out_png: output file (written atomically; parent folders are created).
        prediction: predicted label map with the image's shape, or None.
        reference: dense reference label map with the image's shape, or None.
        scribble: scribble label map with the image's shape, or None.
        ignore_label: label value that is not drawn (unannotated voxels of scribbles), or None.
        title: figure title.
        slice_index: slice of a 3D image to draw. Default: the slice with the most reference foreground (else
            prediction, else scribble foreground; else the middle slice).

    Returns:
        The path of the written PNG.

    Raises:
        ValueError: if the image is not 2D/3D, a label map's shape differs from the image's, or ``slice_index`` is
            out of range.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    image = np.asarray(image, dtype=float)
    maps = {name: np.asarray(arr) for name, arr in (("scribble", scribble), ("prediction", prediction),
                                                     ("reference", reference)) if arr is not None}
    _check_shapes(image, maps)
    if image.ndim == 3:
        z = _pick_slice(image.shape[0], maps, ignore_label, slice_index)
        image, maps = image[z], {name: arr[z] for name, arr in maps.items()}
    gray = _window(image)
    fig = Figure(figsize=(4.0 * (1 + len(maps)), 4.4), dpi=100)
    FigureCanvasAgg(fig)
    axes = np.atleast_1d(fig.subplots(1, 1 + len(maps)))
    for ax, (name, labels) in zip(axes, [("image", None), *maps.items()]):
        ax.imshow(gray, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
        if labels is not None:
            ax.imshow(_label_rgba(labels, ignore_label, draw_background=name == "scribble" and
                                  ignore_label is not None), interpolation="nearest")
        ax.set_title(name)
        ax.axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _atomic_write_bytes(out_png, _figure_png_bytes(fig))


def save_case_overlays(image_file: PathLike, out_png: PathLike, prediction_file: PathLike | None = None,
                       reference_file: PathLike | None = None, scribble_file: PathLike | None = None,
                       ignore_label: int | None = None, title: str = "", slice_index: int | None = None) -> Path:
    """Read a case with nnU-Net's reader/writers (any nnU-Net format) and write :func:`save_overlay_png`.

    Args:
        image_file: image file (e.g. ``case_0000.nii.gz``); its first channel is drawn.
        out_png: output PNG file.
        prediction_file: predicted segmentation file, or None.
        reference_file: dense reference segmentation file, or None.
        scribble_file: scribble segmentation file, or None.
        ignore_label: label value that is not drawn, or None.
        title: figure title; default the image file name.
        slice_index: slice of a 3D image to draw; default as in :func:`save_overlay_png`.

    Returns:
        The path of the written PNG.

    Raises:
        FileNotFoundError: if a given file does not exist.
        ValueError: if the shapes of the image and the label maps differ.
    """
    image = _read(image_file, segmentation=False)
    segs = {key: _read(f, segmentation=True) if f is not None else None
            for key, f in (("prediction", prediction_file), ("reference", reference_file),
                           ("scribble", scribble_file))}
    return save_overlay_png(image, out_png, ignore_label=ignore_label, title=title or Path(image_file).name,
                            slice_index=slice_index, **segs)


def _read(file: PathLike, segmentation: bool) -> np.ndarray:
    """Spatial array of a file read with nnU-Net's reader/writer (channel 0 of images)."""
    path = Path(file)
    if not path.is_file():
        raise FileNotFoundError(f"{'segmentation' if segmentation else 'image'} file {path} does not exist")
    ending = next((e for e in FILE_ENDINGS if path.name.endswith(e)), path.suffix)
    rw = _reader_class(ending, path, None)()
    data, _ = rw.read_seg(str(path)) if segmentation else rw.read_images([str(path)])
    return data[0]


def _check_shapes(image: np.ndarray, maps: dict[str, np.ndarray]) -> None:
    if image.ndim not in (2, 3):
        raise ValueError(f"image has shape {image.shape}, expected a 2D (H, W) or 3D (Z, H, W) array")
    for name, arr in maps.items():
        if arr.shape != image.shape:
            raise ValueError(f"{name} has shape {arr.shape}, expected the image shape {image.shape}")


def _pick_slice(depth: int, maps: dict[str, np.ndarray], ignore_label: int | None, slice_index: int | None) -> int:
    if slice_index is not None:
        if not 0 <= slice_index < depth:
            raise ValueError(f"slice_index {slice_index} is out of range, expected 0 <= slice_index < {depth}")
        return int(slice_index)
    for name in ("reference", "prediction", "scribble"):
        if name in maps:
            fg = (maps[name] != 0) & (maps[name] != (ignore_label if ignore_label is not None else 0))
            counts = fg.reshape(depth, -1).sum(axis=1)
            if counts.any():
                return int(np.argmax(counts))
    return depth // 2


def _window(image: np.ndarray) -> np.ndarray:
    """Scale the 1st-99th percentile range of ``image`` to [0, 1] (clipped); constant images become 0."""
    lo, hi = np.percentile(image, (1, 99))
    if hi <= lo:
        return np.zeros_like(image, dtype=float)
    return np.clip((image - lo) / (hi - lo), 0.0, 1.0)


def _label_rgba(labels: np.ndarray, ignore_label: int | None, draw_background: bool = False) -> np.ndarray:
    """RGBA overlay: fixed colour per label value; ignore label transparent, background too unless asked."""
    rgba = np.zeros((*labels.shape, 4))
    for value in np.unique(labels):
        value = int(value)
        if value == ignore_label or (value == 0 and not draw_background):
            continue
        colour = _BACKGROUND_SCRIBBLE if value == 0 else _PALETTE[(value - 1) % len(_PALETTE)]
        rgba[labels == value] = (*colour, 0.9 if value == 0 else _ALPHA)
    return rgba
