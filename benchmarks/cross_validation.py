#!/usr/bin/env python
"""Pool the ``run_quality.py`` results of several folds into one cross-validation table and plot.

Every case is scored once, by the model of the fold that held it out; the table gives per trainer the statistics over
all cases of all folds (the papers' 5-fold protocol), each fold's mean Dice and the fold-to-fold standard deviation.
Runs of one fold (``--repeats``) are averaged per case. A trainer missing from a fold is left out and named.

Example (ACDC, all five folds, e.g. after ``benchmarks/reproduce.py acdc --folds all``):

    python benchmarks/cross_validation.py benchmarks/results/acdc_2d_fold{0,1,2,3,4}_cpu \\
        --output benchmarks/results/acdc_2d_5fold_cpu

The fold of a folder is read from its summaries (the ``fold_N`` model folder); ``FOLDER=FOLD`` sets it, and several
folders of one fold (e.g. runs added later by another call) are pooled as runs of that fold.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from nnunet_scribble import benchmarking as bm
from nnunet_scribble.cross_validation import cross_validation_rows, fold_label, pool_folds


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folders", nargs="+", help="run_quality.py results folders, one or more per fold, "
                                              "optionally FOLDER=FOLD")
    p.add_argument("--output", required=True, help="folder for results.md, results.csv and results.png")
    p.add_argument("--upper_bound", default="nnUNetTrainerFullySupervised",
                   help="name whose Dice is 100%% in the table (default: %(default)s)")
    p.add_argument("--title", default=None, help="first line of results.md")
    return p.parse_args(argv)


def results_by_fold(specs: list[str]) -> dict[str, list[bm.TrainerResult]]:
    """Fold label -> the results of every folder of that fold.

    Raises:
        SystemExit: naming a folder that is missing, holds no summaries, mixes folds, or whose fold is unknown.
    """
    by_fold: dict[str, list[bm.TrainerResult]] = {}
    for spec in specs:
        folder, _, forced = spec.partition("=")
        if not Path(folder).is_dir():
            sys.exit(f"{folder}: no such results folder")
        try:
            found = bm.load_results(folder)
        except FileNotFoundError as e:
            sys.exit(str(e))
        folds = {fold_label(r) for r in found}
        if not forced and (len(folds) != 1 or None in folds):
            sys.exit(f"{folder}: its summaries name the folds {sorted(map(str, folds))}, expected one fold; "
                     f"pass {folder}=FOLD")
        by_fold.setdefault(forced or folds.pop(), []).extend(found)
    if len(by_fold) < 2:
        sys.exit(f"the folders hold one fold ({', '.join(by_fold)}): a cross-validation needs two or more")
    return dict(sorted(by_fold.items()))


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        cv = pool_folds(results_by_fold(args.folders))
    except ValueError as e:
        sys.exit(str(e))
    if not cv.results:
        sys.exit(f"no trainer is in every fold ({', '.join(cv.folds)}): {cv.incomplete}")
    first = [args.upper_bound, "nnUNetTrainerScribble"]
    cv.results.sort(key=lambda r: first.index(r.name) if r.name in first else len(first))
    left_out = [f"{n} (folds {', '.join(f)})" for n, f in cv.incomplete.items()]
    title = args.title or "Cross-validation over folds " + ", ".join(cv.folds)
    sources = ", ".join(f"`{s}`" for s in args.folders)
    header = "\n".join([
        f"# {title}", "", f"Pooled {time.strftime('%Y-%m-%d')} from: {sources}.", "",
        "Dice in %, HD95 in mm, mean ± std over all cases of all folds (runs of one fold averaged per case); "
        "'Dice per fold': each fold's mean Dice; 'train s', 'predict s': mean per fold."
        + (f" Left out, not in every fold: {'; '.join(left_out)}." if left_out else "")])
    rows = cross_validation_rows(cv, bm.results_rows(cv.results, args.upper_bound))
    out = Path(args.output)
    _, md = bm.write_tables(rows, out, header)
    bm.plot_results(cv.results, out / "results.png")
    print(md.read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
