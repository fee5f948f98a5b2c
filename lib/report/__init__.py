"""The report room: ``report.md`` with its figures, checks and best configurations for any experiments.

``python -m lib report --experiment NAME`` and the notebooks call the same public names, listed here (the
whole surface: ``from lib import report; report.trial_runs(...)``). One job per module:

- ``table``: the report's trial table (:func:`trial_runs`, read through ``lib.store``), budgets
  (:func:`budget_label`, :func:`budget_of`), controlled comparisons (:func:`controlled`);
- ``figures``: accuracy against a factor, learning rate vs weight decay, validation curves, importance,
  expected-max curves;
- ``checks``: boundary warnings, failed and collapsed trials per value, a tuned study's arms, the best
  configurations (:func:`top_configs`);
- ``links``: links into the MLflow UI;
- ``markdown``: :func:`write_report`, the study log and the sections.

What this is not: the reader of runs (``lib.store``), the engine's tuning rule (:func:`lib.engine.tuning.pick_winner`,
which :func:`tuned_arms` reuses) or the hypothesis verdicts (``lib.study``), which decide claims by fixed rules.
"""

from lib.report.checks import EDGE, boundary_warnings, edge_position, failure_shares, top_configs, tuned_arms
from lib.report.figures import factor_figure, importance_table, scatter_figure, tuning_expected_max_figure
from lib.report.links import DEFAULT_UI, SHARE_KEY, runs_url, ui_base, ui_links
from lib.report.markdown import write_report
from lib.report.table import (
    ReportError,
    budget_label,
    budget_of,
    controlled,
    experiment_names,
    n_classes,
    runs_train_images,
    trial_runs,
)

__all__ = [
    "DEFAULT_UI",
    "EDGE",
    "SHARE_KEY",
    "ReportError",
    "boundary_warnings",
    "budget_label",
    "budget_of",
    "controlled",
    "edge_position",
    "experiment_names",
    "factor_figure",
    "failure_shares",
    "importance_table",
    "n_classes",
    "runs_train_images",
    "runs_url",
    "scatter_figure",
    "top_configs",
    "trial_runs",
    "tuned_arms",
    "tuning_expected_max_figure",
    "ui_base",
    "ui_links",
    "write_report",
]
