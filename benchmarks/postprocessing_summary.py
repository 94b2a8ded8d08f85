#!/usr/bin/env python
"""Pool ``postprocessing_choice.py`` results over folds: every trainer before and after post-processing, side by side.

``postprocessing_choice.py`` scores one model on the folds it is given; its ``-o`` result (``.json``) holds, per
choice, the mean and standard deviation over cases of the dense Dice and HD95 and the mean Dice per class. This script
reads any number of these results, groups them by trainer (the model folder's name before ``__``; a model padded
off the centre is its own group), pools each trainer's folds over their cases (each trainer-fold given once) and prints
one Markdown table:

    none                  the predictions as they are
    nnU-Net on scribbles  nnU-Net's choice against the scribbles (``nnUNetv2_find_best_configuration``'s)
    on dense labels       nnU-Net's choice against the dense labels (an oracle for a scribble-trained model)
    after                 for a scribble-trained model the default of ``nnunet_scribble_determine_postprocessing``
                          (estimated Dice, + central component); for a densely trained model (the upper bound) its
                          own nnU-Net choice: what each user gets after the post-processing meant for it
    vs baseline           the difference to the baseline trainer (``--baseline``) before and after
    % of upper bound      the mean Dice as a percentage of the densely trained model's, none against none and after
                          against after (the issue's "fraction of the fully supervised Dice", both post-processed)

The comparisons are made only between trainers pooled over the same folds (otherwise ``-``). Pooling is exact for
the mean and the standard deviation over all cases (``ddof=0``, as ``evaluate_folder``); the per-class means are
weighted by each fold's number of cases (exact where every case contains every class, as in ACDC).

Example (the folds 0, 1 and 3 tables of ``benchmarks/README.md``, one result per trainer and fold):

    python benchmarks/postprocessing_summary.py res/*_f0.json res/*_f1.json res/*_f3.json -o res/summary_f013
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from nnunet_scribble.benchmarking import print_and_save

#: the "chosen by" of postprocessing_choice.py's rows, by the name this table gives them
ROWS = {"none": "-", "on scribbles": "nnU-Net on scribbles", "on dense labels": "nnU-Net on dense labels"}
DEFAULT_SUFFIX = "estimated Dice, + central component"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results", nargs="+", help="postprocessing_choice.py results (.json), one per model and folds")
    p.add_argument("--baseline", default="nnUNetTrainerScribble",
                   help="the trainer the others are compared with (default: %(default)s)")
    p.add_argument("-o", "--output", default=None, help="also write the table (.md) and the numbers (.json) here")
    return p.parse_args(argv)


def load(path: Path) -> dict:
    """One ``postprocessing_choice.py`` result; a clear error for a file that is not one."""
    try:
        result = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise SystemExit(f"{path}: cannot read a postprocessing_choice.py result ({e})") from None
    missing = [k for k in ("model", "folds", "cases", "rows") if not isinstance(result, dict) or k not in result]
    if missing:
        raise SystemExit(f"{path}: not a postprocessing_choice.py result (no {', '.join(missing)})")
    return result


def group_name(result: dict) -> str:
    """The trainer of a result (``TRAINER__PLANS__CONFIGURATION``'s first part), marked when padded off the centre."""
    name = Path(result["model"]).name.split("__")[0]
    return f"{name} (off-centre {result['off_centre']:g})" if result.get("off_centre") else name


def is_dense_model(result: dict) -> bool:
    """A densely trained model's result has no row chosen on the scribbles."""
    return result.get("dense_model", not any(r["chosen by"] == ROWS["on scribbles"] for r in result["rows"]))


def pool(groups: list[tuple[float, float, int]]) -> tuple[float, float]:
    """Mean and standard deviation (``ddof=0``) over the union of groups given as (mean, std, number of cases)."""
    n = sum(k for _, _, k in groups)
    mean = sum(m * k for m, _, k in groups) / n
    second = sum(k * (s * s + m * m) for m, s, k in groups) / n
    return mean, math.sqrt(max(second - mean * mean, 0.0))


def _row(result: dict, which: str) -> dict | None:
    """The row of ``result`` that this table calls ``which`` (a key of ``ROWS`` or ``"after"``); None if it has none."""
    if which == "after":
        if is_dense_model(result):
            which = "on dense labels"
        else:
            hits = [r for r in result["rows"] if r["chosen by"].endswith(DEFAULT_SUFFIX)]
            return hits[0] if hits else None
    return next((r for r in result["rows"] if r["chosen by"] == ROWS[which]), None)


def summarise(results: list[tuple[str, dict]], baseline: str = "nnUNetTrainerScribble") -> dict:
    """Pool each trainer's results over its folds and compare them with the baseline and the upper bound.

    Args:
        results: (file name, result) pairs, the file names only for the error messages.
        baseline: the trainer the others are compared with.

    Returns:
        ``{"trainers": {name: {...}}, "baseline", "upper_bound"}``: per trainer its folds, cases, whether densely
        trained, per row (none, on scribbles, on dense labels, after) the pooled ``Dice``/``HD95`` (mean, std) and
        ``per class`` Dice, and the differences ``vs baseline`` and ``% of upper bound`` (None where not comparable).

    Raises:
        ValueError: a trainer-fold given twice, or several densely trained models.
    """
    by_name: dict[str, list[tuple[str, dict]]] = {}
    for name, result in results:
        by_name.setdefault(group_name(result), []).append((name, result))
    trainers = {}
    for trainer, items in by_name.items():
        seen: dict[int, str] = {}
        for name, result in items:
            for fold in result["folds"]:
                if fold in seen:
                    raise ValueError(f"{trainer} fold {fold} is given twice: {seen[fold]} and {name}; pool one run "
                                     "per trainer and fold")
                seen[fold] = name
        dense = {is_dense_model(r) for _, r in items}
        if len(dense) > 1:
            raise ValueError(f"{trainer}: {', '.join(n for n, _ in items)} mix densely and scribble-trained models")
        entry = {"folds": sorted(seen), "cases": sum(r["cases"] for _, r in items), "dense_model": dense.pop(),
                 "off_centre": items[0][1].get("off_centre") or 0, "files": [n for n, _ in items], "rows": {}}
        for which in ("none", "on scribbles", "on dense labels", "after"):
            rows = [(_row(r, which), r["cases"]) for _, r in items]
            if any(row is None for row, _ in rows):
                continue
            classes = list(rows[0][0]["per class"])
            entry["rows"][which] = {
                "post-processing": sorted({row["post-processing"] for row, _ in rows}),
                "Dice": pool([(*row["dense Dice"], n) for row, n in rows]),
                "HD95": pool([(*row["dense HD95"], n) for row, n in rows]),
                "per class": {c: sum(row["per class"][c] * n for row, n in rows) / entry["cases"] for c in classes}}
        trainers[trainer] = entry
    upper = [t for t, e in trainers.items() if e["dense_model"]]
    if len(upper) > 1:
        raise ValueError(f"several densely trained models ({', '.join(upper)}): give one upper bound")
    upper_bound = upper[0] if upper else None
    for trainer, entry in trainers.items():
        shift = entry["off_centre"]
        # a padded model is compared with the baseline padded the same way, and with no upper bound (never padded)
        base_name = group_name({"model": baseline, "off_centre": shift})
        for key, other in (("vs baseline", base_name), ("% of upper bound", None if shift else upper_bound)):
            ref = trainers.get(other) if other not in (None, trainer) else None
            entry[key] = None
            if ref is None or ref["folds"] != entry["folds"]:
                continue
            values = {}
            for which in ("none", "after"):
                if which in entry["rows"] and which in ref["rows"]:
                    mine, theirs = entry["rows"][which]["Dice"][0], ref["rows"][which]["Dice"][0]
                    values[which] = 100 * (mine - theirs) if key == "vs baseline" else 100 * mine / theirs
            entry[key] = values or None
    return {"trainers": trainers, "baseline": baseline if baseline in trainers else None, "upper_bound": upper_bound}


def to_markdown(summary: dict) -> str:
    trainers = summary["trainers"]
    classes = next((list(e["rows"]["after"]["per class"]) for e in trainers.values() if "after" in e["rows"]), [])
    first = [t for t in (summary["upper_bound"], summary["baseline"]) if t]
    rest = sorted((t for t in trainers if t not in first),
                  key=lambda t: -trainers[t]["rows"].get("after", {"Dice": (-1.0, 0)})["Dice"][0])

    def dice(entry: dict, which: str, sd: bool = False) -> str:
        row = entry["rows"].get(which)
        if row is None:
            return "-"
        return f"{100 * row['Dice'][0]:.1f}" + (f" ± {100 * row['Dice'][1]:.1f}" if sd else "")

    def pair(values: dict | None, fmt: str) -> str:
        if not values:
            return "-"
        return " → ".join(format(values[w], fmt) if w in values else "-" for w in ("none", "after"))

    lines = ["Dense Dice in %, mean ± std over the pooled cases; \"after\": "
             "nnunet_scribble_determine_postprocessing's default for a scribble-trained model, nnU-Net's own choice "
             "for the densely trained upper bound.", "",
             "| trainer | folds | cases | none | nnU-Net on scribbles | nnU-Net on dense labels | **after** "
             + "".join(f"| {c} " for c in classes) + "| HD95 mm: none → after | vs baseline: none → after "
             "| % of upper bound: none → after |", "|---" * (10 + len(classes)) + "|"]
    for t in first + rest:
        e = trainers[t]
        after = e["rows"].get("after")
        hd = " → ".join(f"{e['rows'][w]['HD95'][0]:.1f}" if w in e["rows"] else "-" for w in ("none", "after"))
        label = t + (" (upper bound, own choice)" if t == summary["upper_bound"] else "")
        lines.append(f"| {label} | {' '.join(map(str, e['folds']))} | {e['cases']} | {dice(e, 'none', True)} "
                     f"| {dice(e, 'on scribbles')} | {dice(e, 'on dense labels')} | **{dice(e, 'after', True)}** "
                     + "".join(f"| {100 * after['per class'][c]:.1f} " if after else "| - " for c in classes)
                     + f"| {hd} | {pair(e['vs baseline'], '+.1f')} | {pair(e['% of upper bound'], '.1f')} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    args = parse_args(argv)
    summary = summarise([(name, load(Path(name))) for name in args.results], args.baseline)
    print_and_save(to_markdown(summary), summary, args.output)
    return summary


if __name__ == "__main__":
    main()
