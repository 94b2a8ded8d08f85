"""Pieces every scribble-dataset converter shares.

A converted dataset is an nnU-Net v2 raw dataset (``nnUNet_raw/DatasetXXX_Name``) with:

- ``imagesTr/`` + ``labelsTr/``: training images and their *scribbles*; unannotated voxels carry the ignore label,
  which is declared as ``"ignore"`` in ``dataset.json`` and is one more than the highest real label;
- ``labelsTr_dense/`` (optional): dense labels of the training cases, used only for evaluation;
- ``imagesTs/`` + ``labelsTs/`` (optional): held-out cases with dense labels;
- ``dataset.json``; ``splits_final.json`` (optional) is written to ``nnUNet_preprocessed/DatasetXXX_Name/``, where
  ``nnUNetv2_train`` reads it, and a copy is kept in the raw folder.

Converters write into a temporary sibling folder and move it into place only when everything succeeded
(:func:`staged_dataset_folder`), so an interrupted or failed conversion never leaves a half-written dataset.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import threading
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Mapping, Sequence

#: Sub-folder names of a converted dataset.
IMAGES_TR = "imagesTr"
LABELS_TR = "labelsTr"
LABELS_TR_DENSE = "labelsTr_dense"
IMAGES_TS = "imagesTs"
LABELS_TS = "labelsTs"


def dataset_folder_name(dataset_id: int, name: str) -> str:
    """Return nnU-Net's folder name ``DatasetXXX_Name`` for an ID in 1..999.

    Raises:
        ValueError: if the ID is out of range or the name contains characters nnU-Net cannot use.
    """
    if not isinstance(dataset_id, int) or not 1 <= dataset_id <= 999:
        raise ValueError(f"dataset ID must be an integer in 1..999, got {dataset_id!r}")
    if not name or any(c in name for c in " /\\"):
        raise ValueError(f"dataset name must be non-empty without spaces or slashes, got {name!r}")
    return f"Dataset{dataset_id:03d}_{name}"


def labels_with_ignore(labels: Mapping[str, int]) -> dict[str, int]:
    """Validate ``labels`` (``{"background": 0, name: 1, ...}``) and append ``"ignore"`` as the highest value.

    Raises:
        ValueError: if background is not 0, values are not consecutive from 0, or "ignore" is already present.
    """
    labels = {str(k): int(v) for k, v in labels.items()}
    if "ignore" in labels:
        raise ValueError(f"labels must not contain 'ignore' already (it is added as the highest label): {labels}")
    if labels.get("background") != 0:
        raise ValueError(f"labels must map 'background' to 0, got {labels}")
    values = sorted(labels.values())
    if values != list(range(len(values))):
        raise ValueError(f"label values must be consecutive integers starting at 0, got {values}")
    return {**labels, "ignore": len(values)}


def write_dataset_json(
    dataset_dir: str | os.PathLike,
    channel_names: Mapping[int | str, str],
    labels: Mapping[str, int],
    num_training: int,
    file_ending: str = ".nii.gz",
    dataset_name: str | None = None,
    description: str | None = None,
    reference: str | None = None,
    license: str | None = None,
    add_ignore: bool = True,
    **extra,
) -> dict:
    """Write ``dataset.json`` for a scribble dataset and return its content.

    Args:
        dataset_dir: the raw dataset folder (may be a staging folder).
        channel_names: ``{0: "MRI"}``; the names select nnU-Net's normalisation ("CT" vs anything else).
        labels: real labels without ``"ignore"``; see :func:`labels_with_ignore`.
        num_training: number of cases in ``imagesTr``.
        file_ending: file ending of images and labels, e.g. ``".nii.gz"`` or ``".png"``.
        add_ignore: add ``"ignore"`` as the highest label (scribble datasets); ``False`` for dense datasets.
        **extra: further keys stored in the file (nnU-Net keeps unknown keys).
    """
    if num_training < 1:
        raise ValueError(f"num_training must be >= 1, got {num_training}")
    if not file_ending.startswith("."):
        raise ValueError(f"file_ending must start with '.', got {file_ending!r}")
    content: dict = {
        "channel_names": {str(k): v for k, v in channel_names.items()},
        "labels": labels_with_ignore(labels) if add_ignore else dict(labels),
        "numTraining": int(num_training),
        "file_ending": file_ending,
    }
    for key, value in (("name", dataset_name), ("description", description), ("reference", reference),
                       ("licence", license)):
        if value is not None:
            content[key] = value
    content.update(extra)
    _write_json(Path(dataset_dir) / "dataset.json", content)
    return content


def write_splits(dataset_dir: str | os.PathLike, splits: Sequence[Mapping[str, Sequence[str]]]) -> Path:
    """Write ``splits_final.json`` (nnU-Net's format) into the raw dataset folder and return its path.

    Args:
        dataset_dir: the raw dataset folder (final or staging).
        splits: ``[{"train": [...case ids], "val": [...]}, ...]``, one dict per fold.

    Use :func:`install_splits` afterwards to put it where ``nnUNetv2_train`` reads it.

    Raises:
        ValueError: if a fold has a case in both train and val, or an empty train list.
    """
    splits = [{"train": sorted(map(str, s["train"])), "val": sorted(map(str, s["val"]))} for s in splits]
    for i, s in enumerate(splits):
        overlap = set(s["train"]) & set(s["val"])
        if overlap:
            raise ValueError(f"fold {i}: cases in both train and val: {sorted(overlap)[:5]}")
        if not s["train"]:
            raise ValueError(f"fold {i}: empty training set")
    path = Path(dataset_dir) / "splits_final.json"
    _write_json(path, splits)
    return path


def install_splits(final_dataset_dir: str | os.PathLike, preprocessed_root: str | os.PathLike | None = None
                   ) -> Path | None:
    """Copy ``splits_final.json`` of a finished raw dataset to ``nnUNet_preprocessed/<DatasetXXX_Name>/``.

    Call it after :func:`staged_dataset_folder` has moved the dataset into place. Returns the written path, or
    ``None`` when ``nnUNet_preprocessed`` is unknown or the raw dataset has no splits file.
    """
    src = Path(final_dataset_dir) / "splits_final.json"
    root = preprocessed_root or os.environ.get("nnUNet_preprocessed")
    if not src.is_file() or not root:
        return None
    dst = Path(root) / Path(final_dataset_dir).name / "splits_final.json"
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.{uuid.uuid4().hex}.tmp")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)
    return dst


@contextmanager
def staged_dataset_folder(final_dir: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder next to ``final_dir`` and move it to ``final_dir`` when the block succeeds.

    On an exception, Ctrl-C or SIGTERM the temporary folder is removed and ``final_dir`` is left as it was (a
    SIGKILL can leave a hidden ``.<name>.partial-*`` folder behind, never a half-written dataset). With ``overwrite`` an
    existing ``final_dir`` is replaced (the old one is removed only after the new one is complete).

    Raises:
        FileExistsError: if ``final_dir`` exists and ``overwrite`` is False (raised before any work is done).
    """
    final_dir = Path(final_dir)
    if final_dir.exists() and not overwrite:
        raise FileExistsError(f"{final_dir} already exists; pass overwrite=True (--overwrite) to replace it")
    final_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = final_dir.parent / f".{final_dir.name}.partial-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    previous = _raise_on_sigterm()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    old = None
    if final_dir.exists():
        old = final_dir.parent / f".{final_dir.name}.old-{uuid.uuid4().hex[:8]}"
        os.replace(final_dir, old)
    os.replace(tmp, final_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _raise_on_sigterm():
    """Turn SIGTERM into ``SystemExit`` (main thread only) so the staging folder is removed; return the old handler."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum, frame):
        raise SystemExit(128 + signum)

    return signal.signal(signal.SIGTERM, handler)


def _write_json(path: Path, content) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with open(tmp, "w") as f:
        json.dump(content, f, indent=2, sort_keys=False)
    os.replace(tmp, path)
