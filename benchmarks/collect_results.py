#!/usr/bin/env python
"""Merge the results of several ``run_quality.py`` runs into one table and one plot.

Experiments that cannot share one ``run_quality.py`` call end up in several results folders: trainers run with
changed hyperparameters (their own ``nnUNet_results``), runs added later, repeats made by a second call. This script
reads every ``summary_*.json`` of the given folders and writes the same table as ``run_quality.py`` (pooling runs of
one name as repeats, with the run-to-run spread and the ranking notes when a name has several runs).

Example (the ACDC fold-0 table of benchmarks/README.md):

    python benchmarks/collect_results.py /tmp/acdc/out /tmp/acdc/out_pcl /tmp/acdc/out_medcl \\
        /tmp/acdc/out_rep1 /tmp/acdc/out_rep1d --output benchmarks/results/acdc_fold0_cpu

A folder may be given as ``FOLDER=SUFFIX``: ``SUFFIX`` is appended to the names of its trainers (to tell variants
apart that ``run_quality.py`` did not label itself). Names are the trainer class, followed by the
``nnUNet_scribble_hparams`` a run was made with. ``--rename OLD=NEW`` shows the rows named OLD as NEW (all renames
apply to the original names at once, so two names can swap), e.g. after a default changed:

    python benchmarks/collect_results.py out_full out_maco_voxel --output merged \\
        --rename 'nnUNetTrainerMaCo=nnUNetTrainerMaCoPerClassN' \\
        'nnUNetTrainerMaCo {"con_normalisation": "voxel"}=nnUNetTrainerMaCo'
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from nnunet_scribble import benchmarking as bm
from nnunet_scribble.evaluation import evaluate_folder


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folders", nargs="+", help="run_quality.py results folders, optionally FOLDER=SUFFIX")
    p.add_argument("--output", required=True, help="folder for results.md, results.csv and results.png")
    p.add_argument("--upper_bound", default="nnUNetTrainerFullySupervised",
                   help="name whose Dice is 100%% in the table (default: %(default)s)")
    p.add_argument("--title", default=None, help="first line of results.md")
    p.add_argument("--rename", nargs="+", default=[], metavar="OLD=NEW",
                   help="show the rows named OLD as NEW (runs that end up with one name are pooled as repeats)")
    p.add_argument("--rescore", action="store_true",
                   help="re-evaluate summaries that lack the far-field / largest-component metrics from the "
                        "predictions they name (summaries of older runs)")
    return p.parse_args(argv)


def rescore(summary: dict) -> dict:
    """The summary's cases evaluated again with ``extra_metrics`` (same reference and prediction folders)."""
    return evaluate_folder(summary["reference_folder"], summary["prediction_folder"],
                           cases=[c["case"] for c in summary["cases"]], extra_metrics=True)


def parse_renames(specs: list[str]) -> dict[str, str]:
    """``{OLD: NEW}`` from ``OLD=NEW`` strings (split at the last ``=``).

    Raises:
        SystemExit: naming a spec without ``=`` or with an empty side.
    """
    renames = {}
    for spec in specs:
        old, sep, new = spec.rpartition("=")
        if not sep or not old or not new:
            sys.exit(f"--rename {spec!r}: expected OLD=NEW")
        renames[old] = new
    return renames


def main(argv=None) -> int:
    args = parse_args(argv)
    renames = parse_renames(args.rename)
    results, sources, matched = [], [], set()
    for spec in args.folders:
        folder, _, suffix = spec.partition("=")
        if not Path(folder).is_dir():
            sys.exit(f"{folder}: no such results folder")
        found = bm.load_results(folder, f" {suffix}" if suffix else "")
        if args.rescore:
            for r in found:
                if "extra" not in r.summary:
                    r.summary.update({k: v for k, v in rescore(r.summary).items() if k in ("cases", "extra")})
        for r in found:
            if r.name in renames:
                matched.add(r.name)
                r.label = renames[r.name]
        results += found
        header = Path(folder) / "results.md"
        first = header.read_text().splitlines()[0].lstrip("# ") if header.is_file() else "no results.md"
        sources.append(f"- `{folder}` ({first}): {', '.join(sorted({r.name for r in found}))}")
    unused = set(renames) - matched
    if unused:
        sys.exit(f"--rename: no results named {sorted(unused)} in the folders")
    first = [args.upper_bound, "nnUNetTrainerScribble"]  # upper bound and baseline on top, then as given
    results.sort(key=lambda r: first.index(r.name) if r.name in first else len(first))
    cases = {len(r.summary["cases"]) for r in results}
    if len(cases) > 1:
        sys.exit(f"the folders score different numbers of cases ({sorted(cases)}): not one benchmark")
    out = Path(args.output)
    header = "\n".join([f"# {args.title or 'Merged results'}", "",
                        f"Merged {time.strftime('%Y-%m-%d')} from:", *sources, "",
                        "Dice in %, HD95 in mm, mean ± std over cases (several runs of a name: mean over runs)."])
    _, md = bm.write_tables(bm.results_rows(results, args.upper_bound), out, header)
    bm.plot_results(results, out / "results.png")
    print(md.read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
