"""Evaluation of predictions against dense labels: Dice and HD95 per class, tables, plots and overlays.

nnU-Net's own validation on a scribble dataset only scores the scribbled voxels; these tools score any folder of
predictions against dense reference labels (see :func:`evaluate_folder` and the ``nnunet_scribble_evaluate``
command). Empty-mask conventions are documented in :mod:`nnunet_scribble.evaluation.metrics`.
"""
from __future__ import annotations

from nnunet_scribble.evaluation.folder import (cases_with_reference, evaluate_folder, format_table, save_boxplot,
                                               summarize_cases, summary_to_markdown)
from nnunet_scribble.evaluation.metrics import METRIC_CONVENTIONS, compute_case_metrics, dice, hd95
from nnunet_scribble.evaluation.overlays import save_case_overlays, save_overlay_png

__all__ = [
    "METRIC_CONVENTIONS",
    "cases_with_reference",
    "compute_case_metrics",
    "dice",
    "evaluate_folder",
    "format_table",
    "hd95",
    "save_boxplot",
    "save_case_overlays",
    "save_overlay_png",
    "summarize_cases",
    "summary_to_markdown",
]
