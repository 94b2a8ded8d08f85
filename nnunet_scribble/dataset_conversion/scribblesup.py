"""ScribbleSup (PASCAL VOC 2012 images with the released scribbles) as a natural-image 2D nnU-Net dataset.

Source: ``<voc>/JPEGImages/<id>.jpg``, scribble PNGs ``<scribbles>/<id>.png`` (class ids 0-20, 255 =
unannotated), optional dense ``<voc>/SegmentationClass/<id>.png`` for the evaluation images, and image lists
(``--train_list``, default ``<voc>/ImageSets/Segmentation/train.txt``; ``--test_list`` for the held-out images,
default ``val.txt`` when it exists).

Output follows nnU-Net's own natural-image converter (Dataset120_RoadSegmentation): each RGB image is written as
one ``<id>_0000.png`` holding the three colour channels, ``channel_names`` is ``{"0": "R", "1": "G", "2": "B"}``
and nnU-Net's NaturalImage2DIO reads it as three channels. Scribble value 255 becomes the ignore label 21; the
VOC "void" value 255 of dense labels in ``labelsTs`` becomes 21 as well (nnU-Net's evaluation skips it).
No splits are written: the ScribbleSup protocol trains on all training images and tests on ``val``.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

import numpy as np
from skimage import io

from nnunet_scribble.dataset_conversion import cli
from nnunet_scribble.dataset_conversion.common import (
    IMAGES_TR, IMAGES_TS, LABELS_TR, LABELS_TS, staged_dataset_folder, write_dataset_json)
from nnunet_scribble.dataset_conversion.image_io import check_label_values, check_scribble

VOC_CLASSES = ("background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
               "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
               "tvmonitor")
IGNORE = len(VOC_CLASSES)
DEFAULT_ID = 31
DEFAULT_NAME = "ScribbleSup"


def read_list(path: Path) -> list[str]:
    """Image ids of a VOC list file (first token per line)."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: image list not found")
    return [line.split()[0] for line in path.read_text().splitlines() if line.strip()]


def _read(path: Path) -> np.ndarray:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    return io.imread(path)


def load_pair(image_path: Path, label_path: Path, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Read an RGB image and a label PNG (255 -> ignore), checking shape and values."""
    image, label = _read(image_path), _read(label_path)
    if image.ndim == 2:
        image = np.stack([image] * 3, -1)
    if label.ndim != 2 or label.shape != image.shape[:2]:
        raise ValueError(f"{label_path}: {what} shape {label.shape} differs from the image shape "
                         f"{image.shape[:2]} of {image_path}")
    check_label_values(label, list(range(IGNORE)) + [255], label_path, what)
    label = label.astype(np.uint8)
    label[label == 255] = IGNORE
    return image[..., :3].astype(np.uint8), label


def convert_image(out: Path, voc: Path, image_id: str, label_path: Path, test: bool) -> None:
    """Write one image and its scribble (training) or dense label (test)."""
    image, label = load_pair(voc / "JPEGImages" / f"{image_id}.jpg", label_path,
                             "dense label" if test else "scribble")
    if not test:
        check_scribble(label, label_path, IGNORE, slice_axis=None)
    images, labels = (IMAGES_TS, LABELS_TS) if test else (IMAGES_TR, LABELS_TR)
    (out / images).mkdir(exist_ok=True)
    (out / labels).mkdir(exist_ok=True)
    io.imsave(out / images / f"{image_id}_0000.png", image, check_contrast=False)
    io.imsave(out / labels / f"{image_id}.png", label, check_contrast=False)


def convert(args: argparse.Namespace) -> None:
    """Run the conversion described by parsed command-line ``args`` (see :func:`main`)."""
    final = cli.output_dataset_dir(args)
    voc, scribbles = Path(args.voc), Path(args.scribbles)
    sets = voc / "ImageSets" / "Segmentation"
    train = read_list(Path(args.train_list) if args.train_list else sets / "train.txt")[: args.max_images]
    test_list = Path(args.test_list) if args.test_list else sets / "val.txt"
    test = read_list(test_list)[: args.max_images] if (args.test_list or test_list.is_file()) else []
    jobs = [(i, scribbles / f"{i}.png", False) for i in train] + \
        [(i, voc / "SegmentationClass" / f"{i}.png", True) for i in test]
    with staged_dataset_folder(final, args.overwrite) as out:
        for image_id, label_path, is_test in cli.progress(jobs, "ScribbleSup"):
            convert_image(out, voc, image_id, label_path, is_test)
        write_dataset_json(out, {0: "R", 1: "G", 2: "B"}, {c: i for i, c in enumerate(VOC_CLASSES)}, len(train),
                           ".png", dataset_name=final.name, reference="Lin et al., ScribbleSup, CVPR 2016")
    cli.finish(final, args, f"{len(train)} training images, {len(test)} test images")


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of :func:`main`."""
    parser = cli.make_parser(__doc__.split("\n")[0], DEFAULT_ID, DEFAULT_NAME,
                             epilog="Default: dataset 031 (Dataset031_ScribbleSup); no splits_final.json (nnU-Net's "
                                    "5 random folds); the val list goes to imagesTs/labelsTs.")
    parser.add_argument("voc", help="VOC2012 folder (JPEGImages/, ImageSets/, SegmentationClass/)")
    parser.add_argument("-s", "--scribbles", required=True, help="folder of scribble PNGs <id>.png")
    parser.add_argument("--train_list", help="training image list (default: ImageSets/Segmentation/train.txt)")
    parser.add_argument("--test_list", help="held-out image list with dense labels (default: val.txt if present)")
    parser.add_argument("--max_images", type=int, default=None, help="convert only the first N of each list")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit code (2 for input errors)."""
    args = build_parser().parse_args(argv)
    return cli.run_main(lambda: convert(args))


if __name__ == "__main__":
    raise SystemExit(main())
