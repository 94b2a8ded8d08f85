#!/usr/bin/env python
"""Pool ``postprocessing_choice.py`` results over folds: every trainer before and after post-processing, side by side.

``postprocessing_choice.py`` scores one model on the folds it is given; its ``-o`` result (``.json``) holds, per
choice, the mean and standard deviation over cases of the dense Dice and HD95 and the mean Dice per class. This script
reads any number of these results, groups them by trainer (the model folder's name before ``__``; a model padded
off the centre is its own group), pools each trainer's folds over their cases and prints one Markdown table. Several
results of a trainer on the same folds are repeat runs (independent trainings; ``reproduce.py postprocessing
--repeats N`` makes them): their values are averaged, and the columns ``runs``, ``run-to-run sd`` (of the pooled mean
Dice, none and after) and ``rank`` (by "after"; "may swap with" another trainer whose mean lies within the sum of both
run-to-run sds, as ``run_quality.py --repeats`` ranks) appear. The rows:

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
weighted by each fold's number of cases (exact where every case contains every class, as in ACDC). With repeats the
standard deviation is over every run's cases, each block of folds weighing its cases once whatever its runs.

Example (the folds 0, 1 and 3 tables of ``benchmarks/README.md``, one result per trainer and fold; repeat runs'
results added the same way):

    python benchmarks/postprocessing_summary.py res/*_f0.json res/*_f1.json res/*_f3.json -o res/summary_f013
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path

from nnunet_scribble.benchmarking import print_and_save, swap_notes

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


def run_to_run_sd(blocks: list[tuple[list[float], int]]) -> tuple[float, bool] | None:
    """Run-to-run standard deviation of a mean pooled over folds from the runs' means in each block of folds.

    Args:
        blocks: per block of folds (one result's folds), the mean Dice of each of its runs and its number of cases.

    Returns:
        ``(sd, measured)``: ``sqrt(sum_b (n_b / N)^2 s_b^2)`` with ``s_b`` the standard deviation (``ddof=1``) of block
        ``b``'s run means and ``n_b`` its cases (the runs of different folds are independent trainings, so their noise
        adds as variances weighted like the pooled mean); ``measured`` is False when a block has a single run (its
        ``s_b`` counts as 0, so the value is a lower bound). None when no block has two runs. For one block this is
        the standard deviation of its run means, as ``run_quality.py --repeats`` reports it.
    """
    if all(len(means) < 2 for means, _ in blocks):
        return None
    total = sum(n for _, n in blocks)
    variance = sum((n / total) ** 2 * statistics.variance(means) for means, n in blocks if len(means) > 1)
    return math.sqrt(variance), all(len(means) > 1 for means, _ in blocks)


def _pool_trainer(trainer: str, items: list[tuple[str, dict]]) -> dict:
    """One trainer's entry of :func:`summarise`: its results grouped into blocks of folds, repeats averaged."""
    blocks: dict[tuple[int, ...], list[tuple[str, dict]]] = {}
    for name, result in items:
        blocks.setdefault(tuple(sorted(result["folds"])), []).append((name, result))
    keys = list(blocks)
    for i, a in enumerate(keys):
        for b in keys[i + 1:]:
            if set(a) & set(b):
                raise ValueError(
                    f"{trainer}: {blocks[a][0][0]} (folds {' '.join(map(str, a))}) and {blocks[b][0][0]} (folds "
                    f"{' '.join(map(str, b))}) overlap; repeat runs of a trainer must cover the same folds")
        cases = {r["cases"] for _, r in blocks[a]}
        if len(cases) > 1:
            raise ValueError(f"{trainer} folds {' '.join(map(str, a))}: the runs {', '.join(n for n, _ in blocks[a])} "
                             f"scored different numbers of cases ({', '.join(map(str, sorted(cases)))})")
    dense = {is_dense_model(r) for _, r in items}
    if len(dense) > 1:
        raise ValueError(f"{trainer}: {', '.join(n for n, _ in items)} mix densely and scribble-trained models")
    counts = [runs[0][1]["cases"] for runs in blocks.values()]   # cases per block of folds
    total = sum(counts)
    entry = {"folds": sorted(f for k in keys for f in k), "cases": total, "dense_model": dense.pop(),
             "off_centre": items[0][1].get("off_centre") or 0, "files": [n for n, _ in items],
             "runs": {" ".join(map(str, k)): len(runs) for k, runs in sorted(blocks.items())},
             "rows": {}, "run-to-run sd": {}}
    for which in ("none", "on scribbles", "on dense labels", "after"):
        picked = [[_row(r, which) for _, r in runs] for runs in blocks.values()]
        if any(row is None for rows in picked for row in rows):
            continue
        # every block of folds weighs its cases, shared by its runs: the values are the mean over runs
        weighted = [(row, n, len(rows)) for rows, n in zip(picked, counts) for row in rows]
        classes = list(picked[0][0]["per class"])
        entry["rows"][which] = {
            "post-processing": sorted({row["post-processing"] for row, _, _ in weighted}),
            "Dice": pool([(*row["dense Dice"], n / k) for row, n, k in weighted]),
            "HD95": pool([(*row["dense HD95"], n / k) for row, n, k in weighted]),
            "per class": {c: sum(row["per class"][c] * n / k for row, n, k in weighted) / total for c in classes}}
        entry["run-to-run sd"][which] = run_to_run_sd(
            [([row["dense Dice"][0] for row in rows], n) for rows, n in zip(picked, counts)])
    return entry


def summarise(results: list[tuple[str, dict]], baseline: str = "nnUNetTrainerScribble") -> dict:
    """Pool each trainer's results over its folds and compare them with the baseline and the upper bound.

    Several results of one trainer on the same folds are repeat runs (independent trainings): each row's values are
    their mean, and ``run-to-run sd`` (:func:`run_to_run_sd`) and ``rank`` say whether another set of runs could
    order the trainers differently.

    Args:
        results: (file name, result) pairs, the file names only for the error messages.
        baseline: the trainer the others are compared with.

    Returns:
        ``{"trainers": {name: {...}}, "baseline", "upper_bound", "repeated"}``: per trainer its folds, cases, runs per
        block of folds, whether densely trained, per row (none, on scribbles, on dense labels, after) the pooled
        ``Dice``/``HD95`` (mean, std) and ``per class`` Dice, the ``run-to-run sd`` of the mean Dice per row
        (``(sd, measured)`` or None), the differences ``vs baseline`` and ``% of upper bound`` (None where not
        comparable) and, when any trainer has repeats, its ``rank`` by the mean Dice after post-processing among the
        trainers it is compared with.

    Raises:
        ValueError: a file given twice, repeat runs of a trainer on overlapping but different folds or with different
            numbers of cases, or several densely trained models.
    """
    names = [name for name, _ in results]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"{', '.join(twice)} given twice; a repeat run is another training's result")
    by_name: dict[str, list[tuple[str, dict]]] = {}
    for name, result in results:
        by_name.setdefault(group_name(result), []).append((name, result))
    trainers = {trainer: _pool_trainer(trainer, items) for trainer, items in by_name.items()}
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
    repeated = any(n > 1 for e in trainers.values() for n in e["runs"].values())
    if repeated:
        _rank(trainers)
    return {"trainers": trainers, "baseline": baseline if baseline in trainers else None, "upper_bound": upper_bound,
            "repeated": repeated}


def _rank(trainers: dict) -> None:
    """Rank by the Dice after post-processing among the trainers compared with each other (same folds, same padding).

    A trainer whose run-to-run sd after post-processing is not measured gets the largest measured in its set (as
    ``run_quality.py``'s ranking does; a lower bound, from a trainer with one run on some folds, counts), so close rows
    are flagged rather than ranked on one run.
    """
    sets: dict[tuple, list[str]] = {}
    for t, e in trainers.items():
        if "after" in e["rows"]:
            sets.setdefault((tuple(e["folds"]), e["off_centre"]), []).append(t)
    for members in sets.values():
        measured = {t: trainers[t]["run-to-run sd"]["after"] for t in members}
        known = [sd for sd, _ in filter(None, measured.values())]   # lower bounds too: better than nothing
        fallback = max(known) if known else float("nan")
        # not measured on every fold: the fallback, which is at least the trainer's own lower bound
        spread = {t: (trainers[t]["rows"]["after"]["Dice"][0], *(m if m and m[1] else (fallback, False)))
                  for t, m in measured.items()}
        for t, note in swap_notes(spread).items():
            trainers[t]["rank"] = note


def to_markdown(summary: dict) -> str:
    trainers = summary["trainers"]
    repeated = summary.get("repeated", False)
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

    def runs(entry: dict) -> str:
        counts = list(entry["runs"].values())
        return str(counts[0]) if len(set(counts)) == 1 else "/".join(map(str, counts))

    def spread(entry: dict) -> str:
        sds = [entry["run-to-run sd"].get(w) for w in ("none", "after")]
        return " → ".join("-" if sd is None else ("" if sd[1] else "≥") + f"{100 * sd[0]:.1f}" for sd in sds)

    lines = ["Dense Dice in %, mean ± std over the pooled cases; \"after\": "
             "nnunet_scribble_determine_postprocessing's default for a scribble-trained model, nnU-Net's own choice "
             "for the densely trained upper bound."]
    if repeated:
        lines.append("runs: trainings per fold (\"a/b\": per block of folds), the values their mean; run-to-run sd: "
                     "of the pooled mean Dice (≥: some folds have one run); rank: by \"after\" among the trainers "
                     "compared, \"may swap\" where two means differ by less than the sum of their run-to-run sds (*: "
                     "not measured, the largest measured assumed).")
    lines += ["", "| trainer | folds | cases " + ("| runs " if repeated else "")
              + "| none | nnU-Net on scribbles | nnU-Net on dense labels | **after** "
              + "".join(f"| {c} " for c in classes) + "| HD95 mm: none → after | vs baseline: none → after "
              "| % of upper bound: none → after |" + (" run-to-run sd: none → after | rank (after) |" if repeated
                                                      else ""),
              "|---" * (10 + len(classes) + 3 * repeated) + "|"]
    for t in first + rest:
        e = trainers[t]
        after = e["rows"].get("after")
        hd = " → ".join(f"{e['rows'][w]['HD95'][0]:.1f}" if w in e["rows"] else "-" for w in ("none", "after"))
        label = t + (" (upper bound, own choice)" if t == summary["upper_bound"] else "")
        lines.append(f"| {label} | {' '.join(map(str, e['folds']))} | {e['cases']} "
                     + (f"| {runs(e)} " if repeated else "")
                     + f"| {dice(e, 'none', True)} | {dice(e, 'on scribbles')} | {dice(e, 'on dense labels')} "
                     f"| **{dice(e, 'after', True)}** "
                     + "".join(f"| {100 * after['per class'][c]:.1f} " if after else "| - " for c in classes)
                     + f"| {hd} | {pair(e['vs baseline'], '+.1f')} | {pair(e['% of upper bound'], '.1f')} |"
                     + (f" {spread(e)} | {e.get('rank', '-')} |" if repeated else ""))
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    args = parse_args(argv)
    summary = summarise([(name, load(Path(name))) for name in args.results], args.baseline)
    print_and_save(to_markdown(summary), summary, args.output)
    return summary


if __name__ == "__main__":
    main()
