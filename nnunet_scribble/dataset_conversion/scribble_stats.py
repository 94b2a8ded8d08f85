"""Statistics of a scribble dataset against its dense labels (``labelsTr`` vs ``labelsTr_dense``).

Per class c (background included):

- *annotated fraction*: scribble voxels of class c / dense voxels of class c (in %);
- *components per slice*: mean number of 8-connected scribble pieces of class c per 2D slice (along ``axis``),
  over the slices in which the dense label contains c.

Plus the fraction of all voxels that carry a scribble. Usage:
``python -m nnunet_scribble.dataset_conversion.scribble_stats DATASET [DATASET ...]`` (folders or IDs).
"""
from __future__ import annotations

import argparse
from typing import Sequence

import numpy as np

from nnunet_scribble.dataset_conversion.common import LABELS_TR, LABELS_TR_DENSE
from nnunet_scribble.dataset_conversion.raw_dataset import open_raw_dataset
from nnunet_scribble.dataset_conversion.scribble_geometry import components


def volume_counts(scribble: np.ndarray, dense: np.ndarray, num_classes: int, axis: int = 0) -> np.ndarray:
    """Per class: [scribble voxels, dense voxels, scribble components, slices with the class]; shape (C, 4)."""
    counts = np.zeros((num_classes, 4), np.int64)
    for s, d in zip(np.moveaxis(scribble, axis, 0), np.moveaxis(dense, axis, 0)):
        for c in range(num_classes):
            present = d == c
            if not present.any():
                continue
            drawn = s == c
            counts[c] += (drawn.sum(), present.sum(), components(drawn)[1], 1)
    return counts


def dataset_stats(spec: str, axis: int = 0) -> dict:
    """Aggregate :func:`volume_counts` over all training cases of a scribble dataset with ``labelsTr_dense``."""
    ds = open_raw_dataset(spec)
    reader, names = ds.reader(), list(ds.labels)
    counts = np.zeros((len(names), 4), np.int64)
    annotated = total = 0
    for case in ds.cases():
        scribble, _ = ds.read_label(ds.folder / LABELS_TR / f"{case}{ds.file_ending}", reader)
        dense, _ = ds.read_label(ds.folder / LABELS_TR_DENSE / f"{case}{ds.file_ending}", reader)
        counts += volume_counts(scribble, dense, len(names), axis if scribble.shape[0] > 1 else 0)  # 2D: (1, y, x)
        annotated, total = annotated + int((scribble != ds.ignore_label).sum()), total + scribble.size
    return {"name": ds.folder.name, "classes": names, "annotated_percent": 100 * annotated / total,
            "class_percent": (100 * counts[:, 0] / np.maximum(counts[:, 1], 1)).tolist(),
            "components_per_slice": (counts[:, 2] / np.maximum(counts[:, 3], 1)).tolist()}


def format_table(stats: Sequence[dict]) -> str:
    """A Markdown table with one row per dataset."""
    classes = stats[0]["classes"]
    head = ["dataset", "annotated %"] + [f"{c} %" for c in classes] + [f"{c} cc/slice" for c in classes]
    rows = [[s["name"], f"{s['annotated_percent']:.2f}"] + [f"{v:.2f}" for v in s["class_percent"]]
            + [f"{v:.2f}" for v in s["components_per_slice"]] for s in stats]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def main(argv: Sequence[str] | None = None) -> int:
    """Print the statistics table of the given scribble datasets."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("datasets", nargs="+", help="scribble datasets with labelsTr_dense (folders or IDs)")
    parser.add_argument("--axis", type=int, default=0, help="slice axis of volumes (default: 0)")
    args = parser.parse_args(argv)
    print(format_table([dataset_stats(d, args.axis) for d in args.datasets]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
