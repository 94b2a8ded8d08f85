"""Evaluate a folder of predicted segmentations against dense reference labels (Dice and HD95 per class).

Files are read with nnU-Net's own reader/writers, so every format nnU-Net supports works (NIfTI, PNG, TIFF, MHA,
NRRD...). The spacing of each case is taken from the *reference* file. Empty-mask conventions are those of
:mod:`nnunet_scribble.evaluation.metrics` (:data:`METRIC_CONVENTIONS`); standard deviations are population
standard deviations (``np.std``, ``ddof=0``).
"""
from __future__ import annotations

import contextlib
import io
import json
import multiprocessing
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence, Union

import numpy as np

from nnunet_scribble.evaluation.metrics import (METRIC_CONVENTIONS, compute_case_metrics, dice, far_foreground_fraction,
                                                foreground_labels, keep_largest_foreground_component)

#: File endings recognised when the ending is neither given nor found in ``dataset.json`` (longest first).
FILE_ENDINGS = (".nii.gz", ".nii", ".png", ".tiff", ".tif", ".mha", ".nrrd")
METRICS = ("Dice", "HD95")
PathLike = Union[str, os.PathLike]


def evaluate_folder(reference_folder: PathLike, prediction_folder: PathLike,
                    labels: Mapping[str, int] | Sequence[int] | None = None, file_ending: str | None = None,
                    cases: Sequence[str] | None = None, num_processes: int = 1, output_json: PathLike | None = None,
                    output_markdown: PathLike | None = None, output_boxplot: PathLike | None = None,
                    extra_metrics: bool = False) -> dict[str, Any]:
    """Compute Dice and HD95 of every case and class, aggregate them and optionally write JSON/Markdown/PNG.

    Args:
        reference_folder: folder with the dense reference label files (e.g. ``nnUNet_raw/DatasetXXX/labelsTs``).
        prediction_folder: folder with predicted label files named like the references.
        labels: ``{name: value}`` or a list of values (named ``label_<v>``); background (0) and ``"ignore"``
            are skipped. Default: the ``labels`` of ``dataset.json`` in the reference folder's parent.
        file_ending: e.g. ``".nii.gz"``. Default: from that ``dataset.json``, else inferred from the files.
        cases: case identifiers to evaluate (all must have a prediction). Default: every prediction file; reference
            cases without prediction are listed under ``"missing_predictions"`` (with a warning). Prediction files
            named ``*_boxplot`` without a reference (plots written by this module) are skipped.
        num_processes: worker processes (spawn context); 1 evaluates in this process.
        output_json: where to write the summary as JSON (atomically); None writes nothing.
        output_markdown: where to write :func:`summary_to_markdown`; None writes nothing.
        output_boxplot: where to write :func:`save_boxplot`; None writes nothing.
        extra_metrics: also compute, per case, the share of predicted foreground farther than 15 mm from the
            reference foreground (``far_foreground``, see ``metrics.far_foreground_fraction``) and the mean Dice
            after nnU-Net's largest-foreground-component post-processing (``Dice_largest_component``); their
            mean/std over cases go to ``summary["extra"]``.

    Returns:
        The summary: ``reference_folder``, ``prediction_folder``, ``labels``, ``metric_conventions``, ``cases``
        (per-case metrics and class means), ``per_class`` (mean/std/median/n of Dice and HD95), ``mean`` (mean and
        std over cases of the per-case class means) and ``missing_predictions``.

    Raises:
        FileNotFoundError: if a folder, a requested prediction, a reference file or a needed dataset.json is missing.
        ValueError: if no foreground label is left, or a prediction and its reference differ in shape.
    """
    ref_dir, pred_dir = _existing_dir(reference_folder), _existing_dir(prediction_folder)
    dataset_json = _read_dataset_json(ref_dir, required=labels is None) if labels is None or not file_ending else None
    label_map = _resolve_labels(labels, dataset_json, ref_dir)
    file_ending = file_ending or (dataset_json or {}).get("file_ending") or _infer_file_ending(pred_dir)
    case_ids, missing = _select_cases(ref_dir, pred_dir, file_ending, cases)
    if missing:
        warnings.warn(f"{len(missing)} reference case(s) in {ref_dir} have no prediction in {pred_dir}: "
                      f"{missing[:5]}{' ...' if len(missing) > 5 else ''}", stacklevel=2)
    rw_class = _reader_class(file_ending, pred_dir / f"{case_ids[0]}{file_ending}", dataset_json)
    jobs = [(rw_class, case, str(pred_dir / f"{case}{file_ending}"), str(ref_dir / f"{case}{file_ending}"),
             label_map, extra_metrics) for case in case_ids]
    if num_processes > 1:
        with multiprocessing.get_context("spawn").Pool(min(num_processes, len(jobs))) as pool:
            case_results = pool.starmap(_evaluate_case, jobs)
    else:
        case_results = [_evaluate_case(*job) for job in jobs]
    summary = _summarize(case_results, label_map, ref_dir, pred_dir, missing)
    _write_outputs(summary, output_json, output_markdown, output_boxplot)
    return summary


def _evaluate_case(rw_class: type, case: str, pred_file: str, ref_file: str,
                   labels: Mapping[str, Any], extra_metrics: bool = False) -> dict[str, Any]:
    """Read one prediction/reference pair and compute its metrics (top-level so that worker processes can run it)."""
    rw = rw_class()
    pred, _ = rw.read_seg(pred_file)
    ref, props = rw.read_seg(ref_file)
    pred, ref = pred[0], ref[0]
    if pred.shape != ref.shape:
        raise ValueError(f"prediction {pred_file} has shape {pred.shape} but reference {ref_file} has shape "
                         f"{ref.shape}; expected equal shapes")
    spacing = [float(s) for s in props["spacing"]]
    metrics = compute_case_metrics(pred, ref, labels, spacing)
    mean = {m: float(np.mean([v[m] for v in metrics.values()])) for m in METRICS}
    result = {"case": case, "prediction_file": pred_file, "reference_file": ref_file, "spacing": spacing,
              "metrics": metrics, "mean": mean}
    if extra_metrics:
        post = keep_largest_foreground_component(pred, labels)
        result["extra"] = {
            "far_foreground": far_foreground_fraction(pred, ref, spacing),
            "Dice_largest_component": float(np.mean([
                dice(np.isin(post, np.atleast_1d(v)), np.isin(ref, np.atleast_1d(v))) for v in labels.values()]))}
    return result


def _summarize(case_results: list[dict[str, Any]], labels: Mapping[str, Any], ref_dir: Path, pred_dir: Path,
               missing: list[str]) -> dict[str, Any]:
    summary = {"reference_folder": str(ref_dir), "prediction_folder": str(pred_dir), "labels": dict(labels),
               "metric_conventions": METRIC_CONVENTIONS}
    summary.update(summarize_cases(case_results, labels))
    summary["missing_predictions"] = missing
    return summary


def summarize_cases(case_results: Sequence[Mapping[str, Any]], labels: Iterable[str]) -> dict[str, Any]:
    """The statistics over cases that :func:`evaluate_folder` reports, from its per-case entries.

    Args:
        case_results: entries of a summary's ``cases`` (``metrics`` per class, ``mean``, optionally ``extra``),
            possibly gathered from several summaries (e.g. the folds of a cross-validation).
        labels: the class names, in table order.

    Returns:
        ``{"cases", "per_class", "mean"}`` and ``"extra"`` when the cases carry it: per class and metric mean, std
        (ddof 0), median and n; for the per-case mean and the extra metrics mean and std.
    """
    cases = list(case_results)
    per_class = {name: {m: _stats([c["metrics"][name][m] for c in cases]) for m in METRICS} for name in labels}
    mean = {m: {k: v for k, v in _stats([c["mean"][m] for c in cases]).items() if k in ("mean", "std")}
            for m in METRICS}
    summary = {"cases": cases, "per_class": per_class, "mean": mean}
    if cases and "extra" in cases[0]:
        summary["extra"] = {k: {s: v for s, v in _stats([c["extra"][k] for c in cases]).items()
                                if s in ("mean", "std")} for k in cases[0]["extra"]}
    return summary


def _stats(values: Sequence[float]) -> dict[str, float]:
    arr = np.asarray(values, dtype=float)
    if arr.size == 0:
        return {"mean": float("nan"), "std": float("nan"), "median": float("nan"), "n": 0}
    return {"mean": float(arr.mean()), "std": float(arr.std()), "median": float(np.median(arr)), "n": int(arr.size)}


def _existing_dir(folder: PathLike) -> Path:
    path = Path(folder)
    if not path.is_dir():
        raise FileNotFoundError(f"folder {path} does not exist (expected a folder of segmentation files)")
    return path


def _read_dataset_json(ref_dir: Path, required: bool) -> dict[str, Any] | None:
    path = ref_dir.resolve().parent / "dataset.json"
    if not path.is_file():
        if required:
            raise FileNotFoundError(f"{path} does not exist: pass the labels explicitly or keep the reference folder "
                                    f"inside the raw dataset folder that holds dataset.json")
        return None
    with open(path) as f:
        return json.load(f)


def _resolve_labels(labels: Mapping[str, int] | Sequence[int] | None, dataset_json: dict[str, Any] | None,
                    ref_dir: Path) -> dict[str, Any]:
    if labels is None:
        if "labels" not in (dataset_json or {}):
            raise ValueError(f"dataset.json next to {ref_dir} has no 'labels' entry; pass the labels explicitly")
        labels = dataset_json["labels"]
    if not isinstance(labels, Mapping):
        labels = {f"label_{int(v)}": int(v) for v in labels}
    label_map = foreground_labels({str(k): v if isinstance(v, (list, tuple)) else int(v) for k, v in labels.items()})
    if not label_map:
        raise ValueError(f"labels {dict(labels)} contain no foreground label to evaluate (expected values other than "
                         f"0 and a name other than 'ignore')")
    return label_map


def _infer_file_ending(pred_dir: Path) -> str:
    counts = dict.fromkeys(FILE_ENDINGS, 0)
    for path in pred_dir.iterdir():
        ending = next((e for e in FILE_ENDINGS if path.name.endswith(e)), None)
        if ending and path.is_file() and not path.name.startswith("."):
            counts[ending] += 1
    best = max(counts, key=lambda e: counts[e])
    if counts[best] == 0:
        raise FileNotFoundError(f"no segmentation files in {pred_dir} (expected one of the endings {FILE_ENDINGS})")
    return best


def cases_with_reference(reference_folder: PathLike, cases: Sequence[str],
                         file_ending: str) -> tuple[list[str], list[str]]:
    """Split ``cases`` into those with a file ``<case><file_ending>`` in ``reference_folder`` and those without.

    For dense labels that exist for only some cases (MSCMRseg's ``labelsTr_dense`` holds the 5 densely labelled
    subjects, not the 25 scribbled ones): callers score the first list and say how many they left out, because
    :func:`evaluate_folder` refuses a requested case without a reference.
    """
    present = _case_ids(Path(reference_folder), file_ending) if Path(reference_folder).is_dir() else set()
    return [c for c in cases if c in present], [c for c in cases if c not in present]


def _case_ids(folder: Path, file_ending: str) -> set[str]:
    return {p.name[:-len(file_ending)] for p in folder.iterdir()
            if p.is_file() and p.name.endswith(file_ending) and not p.name.startswith(".")}


def _select_cases(ref_dir: Path, pred_dir: Path, file_ending: str,
                  cases: Sequence[str] | None) -> tuple[list[str], list[str]]:
    """Return the cases to evaluate and the reference cases that have no prediction."""
    pred_ids, ref_ids = _case_ids(pred_dir, file_ending), _case_ids(ref_dir, file_ending)
    if cases is not None:
        selected = list(cases)
        for case in selected:
            if case not in pred_ids:
                raise FileNotFoundError(f"prediction file {pred_dir / (case + file_ending)} of requested case "
                                        f"{case!r} does not exist")
    else:
        selected = sorted(c for c in pred_ids if c in ref_ids or not c.endswith("_boxplot"))
    if not selected:
        raise FileNotFoundError(f"no prediction files ending with {file_ending!r} in {pred_dir}")
    for case in selected:
        if case not in ref_ids:
            raise FileNotFoundError(f"reference file {ref_dir / (case + file_ending)} for prediction "
                                    f"{pred_dir / (case + file_ending)} does not exist")
    missing = sorted(ref_ids - pred_ids) if cases is None else []
    return selected, missing


def _reader_class(file_ending: str, example_file: Path, dataset_json: dict[str, Any] | None) -> type:
    """nnU-Net's reader/writer class for ``file_ending`` that can read ``example_file`` (its output muted)."""
    from nnunetv2.imageio.reader_writer_registry import (determine_reader_writer_from_dataset_json,
                                                         determine_reader_writer_from_file_ending)
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dataset_json and dataset_json.get("overwrite_image_reader_writer", "None") != "None":
            return determine_reader_writer_from_dataset_json(dataset_json, str(example_file),
                                                             allow_nonmatching_filename=True, verbose=False)
        return determine_reader_writer_from_file_ending(file_ending, str(example_file),
                                                        allow_nonmatching_filename=True, verbose=False)


def summary_to_markdown(summary: Mapping[str, Any]) -> str:
    """Render a summary of :func:`evaluate_folder` as Markdown.

    Args:
        summary: the dictionary returned by :func:`evaluate_folder`.

    Returns:
        A class table (Dice and HD95 as mean ± std, number of cases, plus a "mean" row), a per-case table, the
        missing predictions and the metric conventions.
    """
    lines = ["# Dense evaluation", "", f"- reference: `{summary['reference_folder']}`",
             f"- prediction: `{summary['prediction_folder']}`", f"- cases: {len(summary['cases'])}", ""]
    lines += _markdown_table(_CLASS_HEADER, _summary_rows(summary))
    names = list(summary["labels"])
    header = ["Case", *(f"{n} {m}" for n in names for m in ("Dice", "HD95 mm")), "mean Dice", "mean HD95 mm"]
    rows = [[c["case"], *(_fmt(c["metrics"][n][m], m) for n in names for m in METRICS),
             *(_fmt(c["mean"][m], m) for m in METRICS)] for c in summary["cases"]]
    lines += ["", "## Per case", ""] + _markdown_table(header, rows)
    missing = summary.get("missing_predictions") or []
    if missing:
        lines += ["", f"Missing predictions ({len(missing)}): " + ", ".join(missing)]
    lines += ["", f"Conventions: {summary['metric_conventions']}"]
    return "\n".join(lines) + "\n"


def format_table(summary: Mapping[str, Any]) -> str:
    """Render the class table of a summary (as in :func:`summary_to_markdown`) as fixed-width text.

    Args:
        summary: the dictionary returned by :func:`evaluate_folder`.

    Returns:
        The table, one line per class plus a "mean" line, without a trailing newline.
    """
    rows = [list(_CLASS_HEADER)] + _summary_rows(summary)
    widths = [max(len(row[i]) for row in rows) for i in range(len(_CLASS_HEADER))]
    lines = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
             for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)


def save_boxplot(summary: Mapping[str, Any], png_path: PathLike) -> Path:
    """Write a PNG with two panels: per-class box plots of Dice and of HD95 over the cases.

    Uses a private Agg canvas, so the global matplotlib backend is left untouched.

    Args:
        summary: the dictionary returned by :func:`evaluate_folder`.
        png_path: output file (written atomically; parent folders are created).

    Returns:
        The path of the written PNG.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = list(summary["labels"])
    fig = Figure(figsize=(max(8.0, 1.6 * len(names)), 4.0), dpi=100)
    FigureCanvasAgg(fig)
    for ax, metric, ylabel in zip(fig.subplots(1, 2), METRICS, ("Dice", "HD95 (mm)")):
        ax.boxplot([[c["metrics"][n][metric] for c in summary["cases"]] for n in names])
        ax.set_xticks(range(1, len(names) + 1), names, rotation=30 if len(names) > 4 else 0)
        ax.set_title(f"{metric} per class ({len(summary['cases'])} cases)")
        ax.set_ylabel(ylabel)
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return _atomic_write_bytes(png_path, _figure_png_bytes(fig))


_CLASS_HEADER = ("Class", "Dice (mean ± std)", "HD95 mm (mean ± std)", "n cases")


def _summary_rows(summary: Mapping[str, Any]) -> list[list[str]]:
    rows = [[name, *(f"{_fmt(s[m]['mean'], m)} ± {_fmt(s[m]['std'], m)}" for m in METRICS), str(s["Dice"]["n"])]
            for name, s in summary["per_class"].items()]
    mean = summary["mean"]
    rows.append(["mean", *(f"{_fmt(mean[m]['mean'], m)} ± {_fmt(mean[m]['std'], m)}" for m in METRICS),
                 str(len(summary["cases"]))])
    return rows


def _fmt(value: float, metric: str) -> str:
    return f"{value:.4f}" if metric == "Dice" else f"{value:.2f}"


def _markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"] + \
        ["| " + " | ".join(row) + " |" for row in rows]


def _write_outputs(summary: Mapping[str, Any], output_json: PathLike | None, output_markdown: PathLike | None,
                   output_boxplot: PathLike | None) -> None:
    if output_json is not None:
        _atomic_write_bytes(output_json, (json.dumps(summary, indent=2) + "\n").encode())
    if output_markdown is not None:
        _atomic_write_bytes(output_markdown, summary_to_markdown(summary).encode())
    if output_boxplot is not None:
        save_boxplot(summary, output_boxplot)


def _figure_png_bytes(fig: Any) -> bytes:
    """PNG bytes of a matplotlib Figure that has an Agg canvas attached."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def _atomic_write_bytes(path: PathLike, data: bytes) -> Path:
    """Write ``data`` to a temporary file next to ``path`` and move it into place with ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
