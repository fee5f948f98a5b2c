"""Links into the MLflow UI that open an experiment's runs table (not MLflow 3's GenAI traces view), with
the varied hyperparameters and ``val_accuracy`` as columns. What this is not: the UI itself (``make ui``).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable, Sequence

from lib import tracking
from lib.report.table import ReportError, experiment_names, trial_runs, varied
from lib.store.schema import TAG_HYPOTHESIS, column

DEFAULT_UI = "http://127.0.0.1:5000"

SHARE_KEY = "hypertune-runs"

def ui_base() -> str:
    """Where the MLflow UI is: ``HYPERTUNE_UI_URL``, else a tracking server's own URL, else ``make ui``'s."""
    if os.environ.get("HYPERTUNE_UI_URL"):
        return os.environ["HYPERTUNE_UI_URL"].rstrip("/")
    uri = tracking.tracking_uri()
    if uri.startswith(("http://", "https://")):
        return uri.rstrip("/")
    return DEFAULT_UI

def ui_columns(experiment: str) -> list[str]:
    """The runs-table columns worth seeing first: the varied hyperparameters, seed, val_accuracy."""
    try:
        runs = trial_runs(experiment)
    except ReportError:
        return ["metrics.`val_accuracy`"]
    names = [n for n in varied(runs) if n in runs]
    cols = [f"params.`{n}`" for n in names]
    if runs["seed"].nunique() > 1 and "seed" not in names:
        cols.append("params.`seed`")
    metrics = ["val_accuracy_pct", "val_accuracy"] if "val_accuracy_pct" in runs else ["val_accuracy"]
    return cols + [f"metrics.`{m}`" for m in metrics] + [f"tags.`{TAG_HYPOTHESIS}`"] * (column(TAG_HYPOTHESIS) in runs)

def share_view(experiment: str, columns: Sequence[str] | None = None) -> str:
    """Store a saved view of the runs table (columns, best first) on the experiment; returns its key.

    MLflow 3's UI reads ``?viewStateShareKey=KEY`` from the URL and restores the view stored in the
    experiment tag ``mlflow.sharedViewState.KEY`` (what its own "Share" button writes): selected
    columns and sort order. Run names are cut to fit; hovering shows the full name.
    """
    exp_id = tracking.find_experiment_id(experiment)
    if exp_id is None:
        raise ReportError(f"unknown experiment '{experiment}'; the store has: {', '.join(experiment_names())}")
    state = {
        "searchFilter": "",
        "orderByKey": "metrics.`val_accuracy`",
        "orderByAsc": False,
        "startTime": "ALL",
        "lifecycleFilter": "Active",
        "datasetsFilter": [],
        "modelVersionFilter": "All Runs",
        "selectedColumns": ["attributes.`Run Name`", *(columns if columns is not None else ui_columns(experiment))],
        "runListHidden": False,
        "viewMaximized": False,
        "isAccordionReordered": False,
        "groupBy": None,
        "useGroupedValuesInCharts": True,
        "hideEmptyCharts": True,
    }
    tracking.set_experiment_tag(exp_id, f"mlflow.sharedViewState.{SHARE_KEY}", json.dumps(state))
    return SHARE_KEY

def runs_url(experiment: str, base: str | None = None, view: bool = True) -> str:
    """Link that opens ``experiment``'s runs table in MLflow's model-training mode.

    ``workflowType=machine_learning`` skips the GenAI "Traces" overview MLflow 3 opens by default.
    With ``view=True`` the link also carries a saved view (:func:`share_view`): the varied
    hyperparameters and ``val_accuracy`` as columns, best run first.
    """
    exp_id = tracking.find_experiment_id(experiment)
    if exp_id is None:
        raise ReportError(f"unknown experiment '{experiment}'; the store has: {', '.join(experiment_names())}")
    url = f"{(base or ui_base()).rstrip('/')}/#/experiments/{exp_id}/runs?workflowType=machine_learning"
    if view:
        with contextlib.suppress(Exception):  # a read-only store still gets the plain link
            url += f"&viewStateShareKey={share_view(experiment)}"
    return url

def ui_links(experiments: Iterable[str] | None = None, base: str | None = None) -> dict[str, str]:
    """``{experiment: runs_url}`` for the given experiments (default: all in the store)."""
    return {name: runs_url(name, base) for name in (experiments if experiments is not None else experiment_names())}
