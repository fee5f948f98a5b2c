"""The store of runs, read one way: the tag names and words of the schema, and the one typed reader.

``lib.store.schema`` names every tag the engine writes and the report reads, the status and kind words and
the typed columns; ``lib.store.reader`` reads runs back as typed frames (:func:`runs`, :func:`trials`), their
per-epoch metrics (:func:`epoch_histories`) and a row's config (:func:`run_config`). Every read of runs in
``lib`` goes through here.

What this is not: MLflow (``lib.tracking`` is the only module that imports it and keeps the low-level calls)
or the writers (the engine's records write runs).
"""

from lib.store import schema
from lib.store.reader import (
    StoredRun,
    config_identity,
    deleted_runs,
    epoch_histories,
    experiment_names,
    history,
    kinds,
    run_config,
    runs,
    stored_run,
    stored_runs,
    trials,
    trials_of,
    typed,
)
from lib.store.schema import FAILED, FINISHED, KILLED, RUNNING, STATUSES

__all__ = [
    "FAILED",
    "FINISHED",
    "KILLED",
    "RUNNING",
    "STATUSES",
    "StoredRun",
    "config_identity",
    "deleted_runs",
    "epoch_histories",
    "experiment_names",
    "history",
    "kinds",
    "run_config",
    "runs",
    "schema",
    "stored_run",
    "stored_runs",
    "trials",
    "trials_of",
    "typed",
]
