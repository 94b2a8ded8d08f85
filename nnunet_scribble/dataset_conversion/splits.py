"""Patient-level splits used by the scribble papers, expanded to nnU-Net case identifiers.

Cases of one patient (e.g. the end-diastole and end-systole frames of ACDC) always stay on the same side of a
split: they are near-duplicates.
"""
from __future__ import annotations

import warnings
from typing import Mapping, Sequence

import numpy as np

from nnunet_scribble.dataset_conversion.image_io import ConversionWarning


def block_kfold(patients: Sequence[int], n_folds: int = 5, block: int = 20) -> list[dict[str, list[int]]]:
    """Fold k (1-based) validates patients ``block*(k-1)+1 .. block*k``; it trains on all other given patients.

    This is the ACDC split of DMPLS and PCLMix (5 folds of 20 patients). Folds whose validation block holds none
    of ``patients`` (e.g. patients 81-100 absent from a partial download) or all of them are left out with one
    :class:`ConversionWarning`, since nnU-Net cannot train a fold with an empty training or validation set; the
    remaining folds keep their order. When no fold is left (a small ``--patients`` subset), patients are split
    into ``min(n_folds, len(patients))`` interleaved groups instead (deviation, for quick experiments only).
    """
    folds, dropped = [], []
    for k in range(1, n_folds + 1):
        val = [p for p in patients if block * (k - 1) < p <= block * k]
        train = [p for p in patients if p not in val]
        if val and train:
            folds.append({"train": train, "val": val})
        else:
            dropped.append(f"{k} (patients {block * (k - 1) + 1}-{block * k})")
    if not folds and len(patients) >= 2:
        groups = [sorted(patients)[i::min(n_folds, len(patients))] for i in range(min(n_folds, len(patients)))]
        folds = [{"train": [p for p in patients if p not in g], "val": g} for g in groups]
    if dropped:
        fallback = "; using interleaved patient groups instead" if folds and len(dropped) == n_folds else ""
        warnings.warn(f"{len(patients)} patients given: folds {', '.join(dropped)} left out of splits_final.json "
                      f"(empty training or validation set){fallback}", ConversionWarning, stacklevel=2)
    return folds


def random_patient_split(patients: Sequence[int], val_fraction: float = 0.15, test_fraction: float = 0.15,
                         num_train: int | None = None, seed: int = 0) -> dict[str, list[int]]:
    """Shuffle patients with ``seed`` and cut them into test, validation and training patients.

    ``round(fraction * N)`` patients go to test and to validation (70/15/15 for the defaults); the rest form the
    training pool, of which the first ``num_train`` (all when None) are used for training; MaCo and ScribFormer
    train on 35 of the 70 pool patients of ACDC. The unused pool patients are returned under ``"unused"``.

    Raises:
        ValueError: if ``num_train`` exceeds the pool or a part would be empty.
    """
    order = [int(p) for p in np.random.default_rng(seed).permutation(sorted(patients))]
    n_test, n_val = round(test_fraction * len(order)), round(val_fraction * len(order))
    test, val, pool = order[:n_test], order[n_test:n_test + n_val], order[n_test + n_val:]
    if num_train is None:
        num_train = len(pool)
    if not 1 <= num_train <= len(pool) or not val:
        raise ValueError(f"cannot take {num_train} training patients and {n_val} validation patients from "
                         f"{len(order)} patients (training pool {len(pool)}); expected 1 <= num_train <= pool")
    return {"train": sorted(pool[:num_train]), "val": sorted(val), "test": sorted(test),
            "unused": sorted(pool[num_train:])}


def expand(split: Mapping[str, Sequence[int]], cases_of: Mapping[int, Sequence[str]]) -> dict[str, list[str]]:
    """Replace patient numbers by their case identifiers in the ``train``/``val`` lists of one fold."""
    return {key: sorted(c for p in split[key] for c in cases_of[p]) for key in ("train", "val")}
