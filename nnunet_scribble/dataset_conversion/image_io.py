"""Reading, checking and writing medical images for the converters (SimpleITK).

All readers silence ITK's global warning display while reading: ACDC headers as distributed make ITK print
"unexpected scales in sform" for every file, which would bury the converter's own messages. Labels are always
written on the exact grid (spacing, origin, direction) of their image, so nnU-Net's integrity check cannot trip
over floating-point noise in label headers.
"""
from __future__ import annotations

import os
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
import SimpleITK as sitk
from scipy import ndimage


class ConversionWarning(UserWarning):
    """A documented, recoverable problem of the input (a skipped slice, a repaired header, ...)."""


#: Tolerances for "same grid": spacing relative, origin in mm, direction cosines absolute.
SPACING_RTOL = 1e-3
ORIGIN_ATOL = 1e-2
DIRECTION_ATOL = 1e-3


@contextmanager
def quiet_itk() -> Iterator[None]:
    """Turn ITK's global warning display off inside the block and restore it afterwards."""
    previous = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    try:
        yield
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(previous)


def read_image(path: str | os.PathLike) -> sitk.Image:
    """Read an image without ITK warnings.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: if SimpleITK cannot read it.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    with quiet_itk():
        try:
            return sitk.ReadImage(str(path))
        except RuntimeError as e:
            raise ValueError(f"{path}: SimpleITK cannot read the file ({str(e).strip().splitlines()[-1]})") from e


def geometry_mismatch(image: sitk.Image, other: sitk.Image) -> str | None:
    """Describe how the grid of ``other`` differs from ``image`` (size, spacing, origin, direction), or None."""
    if image.GetSize() != other.GetSize():
        return f"size {other.GetSize()} differs from the image's {image.GetSize()}"
    checks = (
        ("spacing", image.GetSpacing(), other.GetSpacing(), dict(rtol=SPACING_RTOL, atol=0)),
        ("origin", image.GetOrigin(), other.GetOrigin(), dict(rtol=0, atol=ORIGIN_ATOL)),
        ("direction", image.GetDirection(), other.GetDirection(), dict(rtol=0, atol=DIRECTION_ATOL)),
    )
    for name, a, b, tol in checks:
        if not np.allclose(a, b, **tol):
            return f"{name} {tuple(round(x, 5) for x in b)} differs from the image's {tuple(round(x, 5) for x in a)}"
    return None


def check_label_grid(image: sitk.Image, label: sitk.Image, label_path: str | os.PathLike,
                     repair_geometry: bool = False) -> None:
    """Check that ``label`` lies on the grid of ``image``.

    A size difference is always an error. A spacing/origin/direction difference is an error unless
    ``repair_geometry`` is set, in which case a :class:`ConversionWarning` is issued and the caller writes the
    label with the image's geometry (used for the known MSCMRseg label whose affine holds only the spacing).

    Raises:
        ValueError: naming ``label_path`` and the difference.
    """
    problem = geometry_mismatch(image, label)
    if problem is None:
        return
    if repair_geometry and image.GetSize() == label.GetSize():
        warnings.warn(f"{label_path}: {problem}; using the image's geometry for the label", ConversionWarning,
                      stacklevel=2)
        return
    raise ValueError(f"{label_path}: {problem}")


def check_label_values(array: np.ndarray, allowed: Iterable[int], path: str | os.PathLike, what: str = "label"
                       ) -> None:
    """Raise ValueError naming ``path`` if ``array`` holds values outside ``allowed``."""
    allowed = sorted(int(a) for a in allowed)
    values = np.unique(array)
    bad = [v.item() for v in values if v not in allowed]
    if bad:
        raise ValueError(f"{path}: {what} values {bad[:10]} are outside the declared classes {allowed}")


def label_image(array: np.ndarray, reference: sitk.Image) -> sitk.Image:
    """Wrap a label array (numpy axis order z, y, x) as a uint8 image with the exact geometry of ``reference``."""
    if array.max(initial=0) > 255 or array.min(initial=0) < 0:
        raise ValueError(f"label values must lie in 0..255 to be written as uint8, got {array.min()}..{array.max()}")
    out = sitk.GetImageFromArray(np.ascontiguousarray(array.astype(np.uint8)))
    out.CopyInformation(reference)
    return out


def write_image(image: sitk.Image, path: str | os.PathLike) -> None:
    """Write ``image`` with compression, creating the parent folder."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with quiet_itk():
        sitk.WriteImage(image, str(path), useCompression=True)


def agreement(scribble: np.ndarray, dense: np.ndarray, ignore_label: int) -> tuple[int, int]:
    """Return (annotated voxels whose scribble value equals the dense label, annotated voxels)."""
    annotated = scribble != ignore_label
    return int((scribble[annotated] == dense[annotated]).sum()), int(annotated.sum())


def check_scribble(array: np.ndarray, path: str | os.PathLike, ignore_label: int, slice_axis: int | None = 0
                   ) -> int:
    """Validate a scribble volume and return the number of slices (along ``slice_axis``) without any scribble.

    Values must lie in ``0..ignore_label``. A volume without a single annotated voxel is an error: nnU-Net would
    sample patches from it that carry no supervision at all. Slices without scribbles are legitimate (they stay
    unannotated) and only reported with a :class:`ConversionWarning`.

    Raises:
        ValueError: naming ``path`` for out-of-range values or a volume without annotation.
    """
    check_label_values(array, range(ignore_label + 1), path, "scribble")
    annotated = array != ignore_label
    if not annotated.any():
        raise ValueError(f"{path}: no annotated voxel (every voxel is the unannotated value {ignore_label})")
    if slice_axis is None or array.ndim < 3:
        return 0
    per_slice = annotated.any(axis=tuple(a for a in range(array.ndim) if a != slice_axis))
    empty = int((~per_slice).sum())
    if empty:
        warnings.warn(f"{path}: {empty} of {per_slice.size} slices have no scribble; they stay unannotated",
                      ConversionWarning, stacklevel=2)
    return empty


def zero_border_mask(image: np.ndarray, axes: Sequence[int] | None = None) -> np.ndarray:
    """Voxels of value exactly 0 connected, along ``axes``, to the border of the array along ``axes``.

    Scanners and dataset curators often fill what lies outside the body or the reconstructed field of view with
    exact zeros (MSCMRseg's LGE images: about a third of every slice). Such a region touching the image border can
    hold no anatomy, so a converter may label it background. Zeros inside the body (isolated dark voxels) do not
    touch the border and are left out. Components are face-connected along ``axes`` only, so with the in-plane
    axes of a stack of slices each slice is treated on its own (a through-plane step cannot join two regions).

    nnU-Net's preprocessing does the same for dense labels: ``crop_to_nonzero`` sets the background voxels outside
    ``binary_fill_holes(image != 0)`` (3D, every face a border) to -1, and training turns -1 into background. An
    ignore-labelled voxel is not background there, so with scribbles that region stays unsupervised unless the
    converter labels it. Deviation: per slice here, so zeros inside the body of the first and last slice (which the
    3D fill counts as touching the border) are left out.

    Args:
        image: N-D intensity array.
        axes: axes along which voxels connect and whose first/last index is the border (default: all axes).

    Returns:
        Boolean array of ``image``'s shape.
    """
    axes = tuple(range(image.ndim)) if axes is None else tuple(a % image.ndim for a in axes)
    structure = np.zeros((3,) * image.ndim, bool)
    centre = (1,) * image.ndim
    structure[centre] = True
    for a in axes:
        for offset in (0, 2):
            structure[centre[:a] + (offset,) + centre[a + 1:]] = True
    labels, _ = ndimage.label(image == 0, structure=structure)
    border = np.zeros(image.shape, bool)
    for a in axes:
        border[(slice(None),) * a + (0,)] = True
        border[(slice(None),) * a + (-1,)] = True
    touching = np.unique(labels[border])
    return np.isin(labels, touching[touching > 0])


def write_case(dataset_dir: str | os.PathLike, case_id: str, images: list[sitk.Image], label: np.ndarray | None,
               images_folder: str, labels_folder: str, dense: np.ndarray | None = None,
               dense_folder: str | None = None) -> None:
    """Write ``<case>_<cccc>.nii.gz`` images, the label and optionally a dense label on the first image's grid."""
    dataset_dir = Path(dataset_dir)
    for channel, image in enumerate(images):
        write_image(image, dataset_dir / images_folder / f"{case_id}_{channel:04d}.nii.gz")
    if label is not None:
        write_image(label_image(label, images[0]), dataset_dir / labels_folder / f"{case_id}.nii.gz")
    if dense is not None and dense_folder is not None:
        write_image(label_image(dense, images[0]), dataset_dir / dense_folder / f"{case_id}.nii.gz")


def load_case(image_paths: list[Path], label_path: Path, num_values: int, what: str,
              repair_geometry: bool = False) -> tuple[list[sitk.Image], np.ndarray]:
    """Read the channel images and one label file of a case and check their grids and label values.

    Every channel and the label must lie on the grid of the first channel (see :func:`check_label_grid`;
    ``repair_geometry`` turns a geometry-only difference into a warning). Label values must lie in
    ``0..num_values-1``.
    """
    images = [read_image(p) for p in image_paths]
    for path, image in zip(image_paths[1:], images[1:]):
        check_label_grid(images[0], image, path, repair_geometry)
        image.CopyInformation(images[0])
    label = read_image(label_path)
    check_label_grid(images[0], label, label_path, repair_geometry)
    array = sitk.GetArrayFromImage(label)
    check_label_values(array, range(num_values), label_path, what)
    return images, array
