"""Pool ``run_quality.py`` results of several folds into one cross-validation result per trainer.

The papers report ACDC as a 5-fold cross-validation: every patient is scored once, by the model of the fold that
held it out, and the table gives the mean over all patients. :func:`pool_folds` does the same with the results
folders of ``run_quality.py -f 0``, ``-f 1``, ...: per trainer (table name) it concatenates the per-case metrics of
every fold (a case scored by several runs of one fold enters once, as the mean over those runs), recomputes the
statistics over all cases, and keeps each fold's mean Dice for the fold-to-fold spread.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from nnunet_scribble.benchmarking import TrainerResult, group_runs
from nnunet_scribble.evaluation import summarize_cases


@dataclass
class CrossValidation:
    """Per table name: the pooled result and what each fold contributed."""

    results: list[TrainerResult]  #: one per name found in every fold; ``summary["cases"]`` holds all folds' cases
    fold_dice: dict[str, list[float]]  #: per name, each fold's mean foreground Dice (mean over its runs), fold order
    runs: dict[str, list[int]]  #: per name, the number of runs of each fold
    folds: list[str]  #: fold labels, in order
    incomplete: dict[str, list[str]] = field(default_factory=dict)  #: names missing from some fold -> folds they have


def fold_label(result: TrainerResult) -> str | None:
    """The fold a result was trained on (``fold_N`` of its model folder), or None when the summary does not say."""
    match = re.fullmatch(r"fold_(\w+)", Path(result.summary.get("model_folder", "")).name)
    return match.group(1) if match else None


def _mean_case(runs: Sequence[Mapping], fold: str) -> dict:
    """One case's entry averaged over the runs that scored it (metrics per class, per-case mean, extra metrics)."""
    first = runs[0]
    case = {"case": first["case"], "fold": fold,
            "metrics": {cls: {m: float(np.mean([r["metrics"][cls][m] for r in runs])) for m in values}
                        for cls, values in first["metrics"].items()},
            "mean": {m: float(np.mean([r["mean"][m] for r in runs])) for m in first["mean"]}}
    if all("extra" in r for r in runs):
        case["extra"] = {k: float(np.mean([r["extra"][k] for r in runs])) for k in first["extra"]}
    return case


def pool_folds(results_by_fold: Mapping[str, Sequence[TrainerResult]]) -> CrossValidation:
    """Pool the results of several folds (fold label -> the results of all runs of that fold).

    Raises:
        ValueError: naming the case and folds when a case is scored in two folds (not folds of one split), or the
            trainer and run when runs of one fold score different cases.
    """
    folds = list(results_by_fold)
    groups = {f: group_runs(results_by_fold[f]) for f in folds}
    seen: dict[str, str] = {}
    for f in folds:
        for name, runs in groups[f].items():
            for r in runs:
                for c in r.summary["cases"]:
                    other = seen.setdefault(c["case"], f)
                    if other != f:
                        raise ValueError(f"case {c['case']} is scored in fold {other} and fold {f} ({name}): the "
                                         f"folders are not distinct folds of one split")
    names = list(dict.fromkeys(n for f in folds for n in groups[f]))
    pooled, fold_dice, runs_per_fold, incomplete = [], {}, {}, {}
    for name in names:
        present = [f for f in folds if name in groups[f]]
        if len(present) < len(folds):
            incomplete[name] = present
            continue
        cases, dice = [], []
        for f in folds:
            runs = groups[f][name]
            ids = [c["case"] for c in runs[0].summary["cases"]]
            for r in runs[1:]:
                if [c["case"] for c in r.summary["cases"]] != ids:
                    raise ValueError(f"{name}, fold {f}: run {r.run} scores other cases than run {runs[0].run}")
            cases += [_mean_case([r.summary["cases"][i] for r in runs], f) for i in range(len(ids))]
            dice.append(float(np.mean([r.summary["mean"]["Dice"]["mean"] for r in runs])))
        first = groups[folds[0]][name][0]
        summary = summarize_cases(cases, first.summary["per_class"])
        summary.update(folds=folds, fold_dice=dice)
        # times: mean per fold of the mean over that fold's runs
        train_s, predict_s = (float(np.nanmean([np.nanmean([getattr(r, attr) for r in groups[f][name]])
                                                for f in folds])) for attr in ("train_seconds", "predict_seconds"))
        pooled.append(TrainerResult(first.trainer, summary, train_s, predict_s, first.dataset, label=first.label))
        fold_dice[name] = dice
        runs_per_fold[name] = [len(groups[f][name]) for f in folds]
    return CrossValidation(pooled, fold_dice, runs_per_fold, folds, incomplete)


def cross_validation_rows(cv: CrossValidation, rows: Sequence[dict]) -> list[dict]:
    """``rows`` (from :func:`~nnunet_scribble.benchmarking.results_rows` of ``cv.results``) with the fold columns:
    ``folds``, ``runs per fold``, ``Dice per fold`` and ``fold-to-fold sd`` (ddof 1, percentage points)."""
    out = []
    for row in rows:
        dice = cv.fold_dice[row["trainer"]]
        extra = {"folds": len(cv.folds), "runs per fold": " / ".join(map(str, cv.runs[row["trainer"]])),
                 "Dice per fold": " / ".join(f"{100 * d:.1f}" for d in dice),
                 "fold-to-fold sd": f"{100 * np.std(dice, ddof=1):.1f}" if len(dice) > 1 else "-"}
        keys = list(row)
        at = keys.index("Dice mean") + 1 if "Dice mean" in keys else len(keys)
        out.append({**{k: row[k] for k in keys[:at]}, **extra, **{k: row[k] for k in keys[at:]}})
    return out
