"""Scribble-robustness benchmark: conditions, derived dataset IDs and names, and the robustness table.

Used by ``benchmarks/run_robustness.py``, which trains the same trainers under several *conditions* of one scribble
dataset and tabulates how their quality degrades:

- ``full``: the source dataset itself (its own scribbles);
- ``shrink30``, ``shrink50``, ``drop30``, ``drop50``: copies with degraded scribbles
  (``dataset_conversion/degrade_scribbles.py --mode shrink|drop --ratio 0.3|0.5``);
- ``s1``, ``s2``, ``s3``: scribbles simulated from the dense labels by three simulated annotators
  (``dataset_conversion/simulate_scribbles.py --annotator s1|s2|s3`` on the dataset's dense twin).

Every derived dataset gets the ID ``id_base + offset`` (fixed per condition, so that selecting fewer conditions never
renumbers them) and the name ``Dataset<ID>_<SourceName><Suffix>``, e.g. ``Dataset501_ACDCScribbleShrink30``. An
existing folder with that ID is reused only if it is the same derived dataset (same name and the same provenance
recorded by the tools in its ``dataset.json``); anything else is refused with :class:`DatasetIdConflict`.

Everything here is pure (file system reads at most); the commands run in the script.
"""
from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

#: seeds of the simulated annotators (same as ``simulate_scribbles.py --annotator``)
ANNOTATOR_SEEDS = {"s1": 1, "s2": 2, "s3": 3}


@dataclass(frozen=True)
class Condition:
    """One scribble condition of the robustness benchmark.

    Attributes:
        name: the name on the command line and in the tables (``full``, ``shrink30``, ``drop50``, ``s1``, ...).
        kind: ``"full"`` (the source dataset), ``"shrink"`` or ``"drop"`` (degraded copies) or ``"simulated"``.
        offset: dataset ID offset from ``--id_base`` (unused for ``full``, which keeps the source's ID).
        ratio: degradation ratio in [0, 1) for ``shrink``/``drop``.
        annotator: simulated annotator (``s1``, ``s2``, ``s3``) for ``simulated``.
    """

    name: str
    kind: str
    offset: int = 0
    ratio: float | None = None
    annotator: str | None = None

    @property
    def is_degraded(self) -> bool:
        """True for the shrink/drop conditions (the ones with a "retained vs full" column)."""
        return self.kind in ("shrink", "drop")

    @property
    def is_simulated(self) -> bool:
        """True for the simulated annotators s1-s3."""
        return self.kind == "simulated"

    @property
    def suffix(self) -> str:
        """Suffix of the derived dataset's name: ``Shrink30``, ``Drop50``, ``SimS1``; empty for ``full``."""
        if self.is_degraded:
            return f"{self.kind.capitalize()}{round(100 * self.ratio)}"
        if self.is_simulated:
            return f"Sim{self.annotator.upper()}"
        return ""

    def tool_args(self, seed: int = 0, style: str = "cspnet") -> list[str]:
        """Condition-specific arguments of ``degrade_scribbles.py`` / ``simulate_scribbles.py``.

        Args:
            seed: random seed of the degradation (the simulated annotators carry their own seeds).
            style: scribble style of the simulation.

        Raises:
            ValueError: for ``full``, which is not derived.
        """
        if self.is_degraded:
            return ["--mode", self.kind, "--ratio", str(self.ratio), "--seed", str(seed)]
        if self.is_simulated:
            return ["--annotator", self.annotator, "--style", style]
        raise ValueError(f"condition {self.name!r} is the source dataset itself; no tool derives it")


#: all conditions, in table order; ``offset`` gives the derived dataset's ID (``id_base + offset``)
CONDITIONS: tuple[Condition, ...] = (
    Condition("full", "full"),
    Condition("shrink30", "shrink", 1, ratio=0.3),
    Condition("shrink50", "shrink", 2, ratio=0.5),
    Condition("drop30", "drop", 3, ratio=0.3),
    Condition("drop50", "drop", 4, ratio=0.5),
    Condition("s1", "simulated", 5, annotator="s1"),
    Condition("s2", "simulated", 6, annotator="s2"),
    Condition("s3", "simulated", 7, annotator="s3"),
)
CONDITION_NAMES: tuple[str, ...] = tuple(c.name for c in CONDITIONS)
MAX_OFFSET = max(c.offset for c in CONDITIONS)


class DatasetIdConflict(FileExistsError):
    """A derived dataset's ID (or name) is taken by a dataset that is not the expected derived dataset."""


def parse_conditions(specs: Sequence[str]) -> list[Condition]:
    """The conditions named in ``specs``, in table order, always with ``full`` first.

    Args:
        specs: condition names (case-insensitive), comma-separated lists of names, or ``"all"``; e.g.
            ``["shrink30", "s1,s2"]``. ``full`` is added when missing: it is the reference of the "retained" columns.

    Raises:
        ValueError: naming an unknown condition and the valid ones, or if ``specs`` is empty.
    """
    names = [n.strip().lower() for spec in specs for n in spec.split(",") if n.strip()]
    if not names:
        raise ValueError(f"no condition given; expected names from {', '.join(CONDITION_NAMES)} or 'all'")
    unknown = [n for n in names if n not in CONDITION_NAMES and n != "all"]
    if unknown:
        raise ValueError(f"unknown condition(s) {', '.join(unknown)}; expected names from "
                         f"{', '.join(CONDITION_NAMES)} or 'all'")
    wanted = set(CONDITION_NAMES) if "all" in names else {"full", *names}
    return [c for c in CONDITIONS if c.name in wanted]


def derived_dataset_id(condition: Condition, id_base: int) -> int:
    """``id_base + condition.offset``.

    Raises:
        ValueError: for ``full`` or if the ID leaves nnU-Net's range 1..999.
    """
    if condition.kind == "full":
        raise ValueError("condition 'full' is the source dataset itself and has no derived ID")
    dataset_id = id_base + condition.offset
    if not 1 <= dataset_id <= 999:
        raise ValueError(f"--id_base {id_base} gives dataset ID {dataset_id} for condition {condition.name!r}; "
                         f"nnU-Net IDs must lie in 1..999, so --id_base must lie in 0..{999 - MAX_OFFSET}")
    return dataset_id


def derived_dataset_name(source_folder_name: str, condition: Condition, id_base: int) -> str:
    """``Dataset<ID>_<SourceName><Suffix>`` of a derived dataset, e.g. ``Dataset501_ACDCScribbleShrink30``.

    Args:
        source_folder_name: the source's folder name ``DatasetXXX_<SourceName>``.
        condition: a derived (not ``full``) condition.
        id_base: see :func:`derived_dataset_id`.

    Raises:
        ValueError: if ``source_folder_name`` is not of the form ``DatasetXXX_Name``, or as :func:`derived_dataset_id`.
    """
    prefix, _, short = source_folder_name.partition("_")
    if not (prefix.startswith("Dataset") and prefix[len("Dataset"):].isdigit() and short):
        raise ValueError(f"{source_folder_name!r} is not an nnU-Net dataset folder name (expected DatasetXXX_Name)")
    return f"Dataset{derived_dataset_id(condition, id_base):03d}_{short}{condition.suffix}"


def expected_provenance(condition: Condition, source_name: str, dense_source_name: str, seed: int = 0,
                        style: str = "cspnet") -> tuple[str, dict]:
    """The ``dataset.json`` entry the conversion tool writes for ``condition``: (key, expected values).

    Args:
        condition: a derived condition.
        source_name: folder name of the scribble dataset (input of ``degrade_scribbles.py``).
        dense_source_name: folder name of its dense twin (input of ``simulate_scribbles.py``).
        seed: degradation seed.
        style: simulation style.
    """
    if condition.is_degraded:
        return "scribble_degradation", {"source": source_name, "mode": condition.kind, "ratio": condition.ratio,
                                        "seed": seed}
    if condition.is_simulated:
        return "scribble_simulation", {"source": dense_source_name, "style": style,
                                       "seed": ANNOTATOR_SEEDS[condition.annotator]}
    raise ValueError(f"condition {condition.name!r} is the source dataset itself and has no provenance entry")


def check_provenance(dataset_json: Mapping, json_path: str | os.PathLike, key: str, expected: Mapping) -> None:
    """Raise :class:`DatasetIdConflict` unless ``dataset_json[key]`` holds ``expected`` (extra entries allowed).

    Ratios are compared with a tolerance of 1e-9.
    """
    found = dataset_json.get(key)
    if not isinstance(found, Mapping):
        raise DatasetIdConflict(f"{json_path} has no {key!r} entry: the dataset was not made by the robustness "
                                f"benchmark's tool (expected {key} = {dict(expected)}); remove it or choose "
                                f"another --id_base")
    for k, v in expected.items():
        same = (isinstance(v, float) and isinstance(found.get(k), (int, float))
                and math.isclose(found[k], v, abs_tol=1e-9)) or found.get(k) == v
        if not same:
            raise DatasetIdConflict(f"{json_path}: {key}.{k} is {found.get(k)!r}, expected {v!r} (the dataset was "
                                    f"derived differently: {dict(found)}); remove it or choose another --id_base")


def find_existing(dataset_id: int, expected_name: str, roots: Sequence[str | os.PathLike]) -> Path | None:
    """The existing raw folder of a derived dataset, ``None`` if it has to be created.

    Args:
        dataset_id: the derived dataset's ID.
        expected_name: its folder name (``Dataset<ID>_<Name>``).
        roots: ``nnUNet_raw``, ``nnUNet_preprocessed``, ``nnUNet_results`` (in this order; the first is the raw root).

    Raises:
        DatasetIdConflict: if a folder ``Dataset<ID>_*`` with another name exists in any root (nnU-Net resolves an
            ID through all three folders), or if the expected dataset exists in ``nnUNet_preprocessed`` or
            ``nnUNet_results`` but not in ``nnUNet_raw`` (left over from a deleted dataset: reusing it could mix
            data of two different derivations).
    """
    raw = Path(roots[0]) / expected_name
    for root in roots:
        for folder in sorted(Path(root).glob(f"Dataset{dataset_id:03d}_*")):
            if folder.name != expected_name:
                raise DatasetIdConflict(f"dataset ID {dataset_id} is taken by {folder}, expected {expected_name} "
                                        f"(or no Dataset{dataset_id:03d}_* at all); choose another --id_base")
            if not raw.is_dir():
                raise DatasetIdConflict(f"{folder} exists but {raw} does not (left over from a deleted dataset); "
                                        f"remove {folder} or choose another --id_base")
    return raw if raw.is_dir() else None


def normalise_splits(splits: Sequence[Mapping[str, Sequence[str]]]) -> list[dict[str, list[str]]]:
    """Splits with sorted ``train``/``val`` lists (order within a fold does not matter to nnU-Net)."""
    return [{"train": sorted(map(str, s["train"])), "val": sorted(map(str, s["val"]))} for s in splits]


def mean_dice(summary: Mapping) -> float:
    """Mean foreground Dice of a ``summary_<trainer>.json`` (mean over cases of the per-case class mean), in [0, 1]."""
    return float(summary["mean"]["Dice"]["mean"])


def held_out_cases(summary: Mapping) -> list[str]:
    """Sorted case identifiers scored in a ``summary_<trainer>.json``."""
    return sorted(c["case"] for c in summary["cases"])


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def _runs(value: float | Sequence[float] | None) -> list[float]:
    """The finite per-run values of one cell (a single float is one run)."""
    if value is None:
        return []
    values = [value] if isinstance(value, (int, float)) else list(value)
    return [float(v) for v in values if _finite(v)]


def cell_mean(value: float | Sequence[float] | None) -> float | None:
    """Mean over the runs of one cell (one float or a sequence of per-run values), None when no run is finite."""
    values = _runs(value)
    return float(np.mean(values)) if values else None


def robustness_rows(dice: Mapping[str, Mapping[str, float | Sequence[float]]], conditions: Sequence[Condition]
                    ) -> list[dict[str, str | float | None]]:
    """One row per trainer: Dice per condition, Dice retained vs full, and the spread across simulated annotators.

    Args:
        dice: ``dice[trainer][condition name]`` = mean foreground Dice in [0, 1] of one training, or a sequence of
            them (repeated trainings of the same cell: the cell is their mean, and every derived column is computed
            from these means); a missing entry means the condition was not run for that trainer (e.g. a fully
            supervised trainer, which never sees scribbles).
        conditions: the conditions of the table, in column order.

    Returns:
        Rows with ``trainer``; ``Dice <condition>`` (%) for every condition; ``retained <condition>`` (%)
        = 100 * Dice_condition / Dice_full for every shrink/drop condition; and, when simulated conditions are
        present, ``simulated mean`` and ``simulated std`` (%): the mean and the population standard deviation
        (ddof 0, like the evaluation's std over cases) of the simulated annotators' Dice (the std needs two of
        them). Values are floats, ``None`` where not available.
    """
    degraded = [c for c in conditions if c.is_degraded]
    simulated = [c for c in conditions if c.is_simulated]
    rows = []
    for trainer, cells in dice.items():
        per_condition = {c: cell_mean(v) for c, v in cells.items()}
        row: dict[str, str | float | None] = {"trainer": trainer}
        for c in conditions:
            d = per_condition.get(c.name)
            row[f"Dice {c.name}"] = 100 * d if _finite(d) else None
        full = per_condition.get("full")
        for c in degraded:
            d = per_condition.get(c.name)
            row[f"retained {c.name}"] = 100 * d / full if _finite(d) and _finite(full) and full > 0 else None
        if simulated:
            values = [100 * per_condition[c.name] for c in simulated if _finite(per_condition.get(c.name))]
            row["simulated mean"] = float(np.mean(values)) if values else None
            row["simulated std"] = float(np.std(values)) if len(values) > 1 else None
        rows.append(row)
    return rows


def runs_rows(dice: Mapping[str, Mapping[str, float | Sequence[float]]], conditions: Sequence[Condition]
              ) -> list[dict[str, str | float | None]]:
    """The per-run Dice (%) behind each cell of :func:`robustness_rows`, for the table of repeated trainings.

    Returns:
        One row per trainer: ``trainer`` and, per condition, the runs' Dice joined by `` / `` in run order, the
        range (max - min) in brackets when there are two or more (``"65.6 / 63.9 (1.7)"``); ``None`` where the
        condition was not run.
    """
    rows = []
    for trainer, cells in dice.items():
        row: dict[str, str | float | None] = {"trainer": trainer}
        for c in conditions:
            values = [100 * v for v in _runs(cells.get(c.name))]
            text = " / ".join(f"{v:.1f}" for v in values)
            row[c.name] = (f"{text} ({max(values) - min(values):.1f})" if len(values) > 1 else text) or None
        rows.append(row)
    return rows


def format_value(value: str | float | None, digits: int = 1, missing: str = "-") -> str:
    """A table cell: floats with ``digits`` decimals, ``missing`` for ``None``/NaN, strings unchanged."""
    if isinstance(value, str):
        return value
    return f"{value:.{digits}f}" if _finite(value) else missing


def markdown_table(rows: Sequence[Mapping[str, str | float | None]], digits: int = 1) -> list[str]:
    """Lines of a Markdown table with one column per key (in order of first appearance)."""
    keys = list(dict.fromkeys(k for row in rows for k in row))
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(format_value(row.get(k), digits) for k in keys) + " |" for row in rows]
    return lines


def write_tables(rows: Sequence[Mapping[str, str | float | None]], out_dir: str | os.PathLike, header: str,
                 footer: str = "") -> tuple[Path, Path]:
    """Write ``robustness.csv`` (2 decimals, empty cells where missing) and ``robustness.md`` (1 decimal, ``-``).

    Args:
        rows: from :func:`robustness_rows`.
        out_dir: the results folder.
        header: Markdown above the table (title, date, commit, machine, settings).
        footer: Markdown below the table (e.g. the conditions and their datasets).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    keys = list(dict.fromkeys(k for row in rows for k in row))
    with open(out / "robustness.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(keys)
        writer.writerows([[format_value(row.get(k), 2, missing="") for k in keys] for row in rows])
    text = "\n".join([header, "", *markdown_table(rows), *(["", footer] if footer else [])]) + "\n"
    (out / "robustness.md").write_text(text)
    return out / "robustness.csv", out / "robustness.md"
