"""The project's fixed MLflow store and the helpers that write and read it: the only module that imports MLflow.

The store is ``sqlite:///<project>/mlruns/mlflow.db`` with artifacts under ``mlruns/artifacts/``,
whatever the current working directory (notebooks run from ``notebooks/``). The standard
``MLFLOW_TRACKING_URI`` variable overrides it (tests use a temporary store; a class can point at a
shared ``mlflow server``). All writes go through :class:`mlflow.MlflowClient` with explicit run ids,
so several runs can be open at once and nothing depends on a global "active run".

The rest of ``lib`` reads runs as :class:`StoredRun` records (:func:`find_runs`, :func:`get_run`);
:func:`search` still returns MLflow's own ``Run`` objects for notebooks and tests that want them.
What this is not: the cache or the run life cycle of a study (``lib.engine.records``).
"""

from __future__ import annotations

import atexit
import logging
import math
import os
import signal
import socket
import subprocess
import threading
from collections.abc import Callable, Iterable
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from functools import lru_cache, wraps
from pathlib import Path
from typing import Any

import pandas as pd

from lib.errors import EXIT_ENVIRONMENT, HypertuneError
from lib.paths import PROJECT_ROOT, mlruns_dir, sqlite_file

FINISHED, FAILED, KILLED, RUNNING = "FINISHED", "FAILED", "KILLED", "RUNNING"  # MLflow's run states
# The one status vocabulary of every DataFrame of trials (runs_frame, report.trial_runs, a grid's results):
# lower case, as run_grid has always written it. MLflow's own words stay inside this module and records.
ROW_FINISHED, ROW_FAILED, ROW_KILLED, ROW_RUNNING = "finished", "failed", "killed", "running"


def row_status(mlflow_status: str) -> str:
    """A run's MLflow status (``FINISHED``) in the frames' vocabulary (``finished``)."""
    return str(mlflow_status).lower()


def tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI`` if set, else the project's SQLite store."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{mlruns_dir() / 'mlflow.db'}"


def artifact_root() -> str:
    """Artifact folder that belongs to the current store (next to a SQLite file)."""
    store = sqlite_file(tracking_uri())
    return str((store.parent if store else mlruns_dir()) / "artifacts")


def artifact_location(experiment: str) -> str | None:
    """Where a new experiment keeps its artifacts: a folder in the local store, or (``None``) wherever
    a tracking server decides, so figures logged from another machine land on the server's disk."""
    if tracking_uri().startswith(("http://", "https://")):
        return None
    return (Path(artifact_root()) / experiment).as_uri()


def client():
    """An :class:`mlflow.MlflowClient` on the project store; creates the database once."""
    return _client(tracking_uri())


@lru_cache(maxsize=4)
def _client(uri: str):
    import mlflow

    logging.getLogger("alembic").setLevel(logging.WARNING)
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)
    with _store_lock(uri):  # two first calls on a new file must not both create and migrate it
        path = sqlite_file(uri)
        if path is not None:
            _check_sqlite_store(path)
        mlflow.set_tracking_uri(uri)
        result = mlflow.MlflowClient(tracking_uri=uri)
        result.search_experiments(max_results=1)  # creates and migrates the database here, once
    return result


# --- Creating and migrating a SQLite store: serialised across processes, half-migrated stores repaired.
# MLflow creates and migrates a new SQLite store in whichever process opens it first, without a lock:
# two processes that open a new file at once both migrate it, one crashes ("duplicate column name",
# "table ... already exists") and the file can stay at an intermediate schema with ``_alembic_tmp_*``
# tables, after which every later call fails. Here every process takes an exclusive lock on
# ``<db>.lock`` (beside the database) while it checks, creates or migrates the store.


class StoreError(HypertuneError, RuntimeError):
    """The tracking store cannot be used as it is; the message names the file and the fix."""

    exit_code = EXIT_ENVIRONMENT


@contextmanager
def _store_lock(uri: str):
    """Hold an exclusive ``flock`` on ``<db>.lock`` (SQLite stores on POSIX; elsewhere a no-op).

    A folder where the lock file cannot be created cannot hold a new store either: then the store
    is opened without the lock (reading an existing one still works; writing fails with a clear error).
    """
    path = sqlite_file(uri)
    if path is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # Windows
        yield
        return
    try:
        fd = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT, 0o666)
    except OSError:
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _schema_revisions() -> tuple[str, set[str]]:
    """MLflow's head schema revision and every revision it knows."""
    from alembic.script import ScriptDirectory
    from mlflow.store.db.utils import _get_alembic_config

    script = ScriptDirectory.from_config(_get_alembic_config(db_url=""))
    heads = script.get_heads()
    return heads[0], {revision.revision for revision in script.walk_revisions()}


def _check_sqlite_store(path: Path) -> None:
    """Leave a healthy store alone; repair one left half-migrated, or raise :class:`StoreError`.

    Called with the store lock held. A store that is not at MLflow's head schema, or holds
    ``_alembic_tmp_*`` tables (an interrupted migration), is repaired when that is safe:

    - it holds no run (a store broken while being created): it is moved aside to
      ``<db>.broken-<time>`` and MLflow creates a new one;
    - it holds runs: it is copied to ``<db>.bak-<revision>``, the leftover ``_alembic_tmp_*`` tables
      are dropped and MLflow's migrations are run to the head; if that fails the copy is put back
      and :class:`StoreError` names the file and the fix.
    """
    import sqlite3

    if not path.exists() or path.stat().st_size == 0:
        return  # MLflow creates it
    try:
        try:
            tables, row, n_runs = _store_facts(path, "ro")
        except sqlite3.OperationalError as exc:
            if getattr(exc, "sqlite_errorname", "") != "SQLITE_READONLY_ROLLBACK":
                raise
            # a hot journal: a writer was killed inside a transaction (kill -9, a crash, a power cut) and
            # only a read-write connection may roll it back, as SQLite does on the next write-capable open
            tables, row, n_runs = _store_facts(path, "rw")
    except sqlite3.DatabaseError as exc:
        raise StoreError(
            f"MLflow store {path} is not a readable SQLite database ({exc}): move it away (a new store is "
            "created) or point MLFLOW_TRACKING_URI at another file."
        ) from None
    if not tables:
        return
    version = row[0] if row else None
    head, known = _schema_revisions()
    leftovers = sorted(name for name in tables if name.startswith("_alembic_tmp_"))
    if version == head and not leftovers:
        return
    if version is not None and version not in known:
        raise StoreError(
            f"MLflow store {path} has schema {version}, newer than this MLflow knows: install the MLflow "
            "version of requirements.txt that wrote it, or point MLFLOW_TRACKING_URI at another file."
        )
    if n_runs == 0:
        import time

        aside = path.with_name(f"{path.name}.broken-{time.strftime('%Y%m%d-%H%M%S')}")
        os.replace(path, aside)
        logging.getLogger(__name__).warning(
            "MLflow store %s was half-created and held no run: moved to %s", path, aside
        )
        return
    orphans = [name for name in leftovers if name.removeprefix("_alembic_tmp_") not in tables]
    if orphans:  # the original table is gone: the temporary copy may hold the only data
        raise StoreError(
            f"MLflow store {path} was interrupted in a migration and {orphans[0]} holds the only copy of a "
            "table: back the file up and repair it by hand (rename the table), or move it away to start a new store."
        )
    _upgrade_with_backup(path, version, leftovers)


def _store_facts(path: Path, mode: str) -> tuple[set[str], tuple | None, int]:
    """The store's tables, its ``alembic_version`` row and its number of runs, read in ``mode`` (ro | rw)."""
    import sqlite3
    from contextlib import closing

    with closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode={mode}", uri=True)) as db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        row = db.execute("SELECT version_num FROM alembic_version").fetchone() if "alembic_version" in tables else None
        n_runs = db.execute("SELECT count(*) FROM runs").fetchone()[0] if "runs" in tables else 0
    return tables, row, n_runs


def _upgrade_with_backup(path: Path, version: str | None, leftovers: list[str]) -> None:
    """Drop interrupted-migration tables and migrate to the head; on failure restore the file."""
    import shutil

    import sqlalchemy
    from mlflow.store.db.utils import _upgrade_db

    backup = path.with_name(f"{path.name}.bak-{version}")
    shutil.copy2(path, backup)
    engine = sqlalchemy.create_engine(f"sqlite:///{path}")
    try:
        with engine.begin() as connection:
            for name in leftovers:
                connection.exec_driver_sql(f'DROP TABLE "{name}"')
        _upgrade_db(engine)
    except Exception as exc:
        engine.dispose()
        os.replace(backup, path)
        raise StoreError(
            f"MLflow store {path} is at an intermediate schema ({version}) and holds runs; it could not be "
            f"repaired ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}). Back it up, then run "
            f"`mlflow db upgrade sqlite:///{path}`, or move it away to start a new store."
        ) from exc
    engine.dispose()
    logging.getLogger(__name__).warning(
        "MLflow store %s repaired and migrated; the old file is kept as %s", path, backup
    )


def experiment_id(name: str) -> str:
    """Id of experiment ``name``, created (with its artifact folder in the store) if missing."""
    mlflow_client = client()
    found = mlflow_client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    try:
        return mlflow_client.create_experiment(name, artifact_location=artifact_location(name))
    except Exception:  # created concurrently by another process
        found = mlflow_client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


@lru_cache(maxsize=1)
def git_commit(full: bool = False) -> str:
    """Current git commit of the project, short or ``full`` (``unknown`` outside a checkout)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", *([] if full else ["--short"]), "HEAD"],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def whole_write(write: Callable[..., Any]) -> Callable[..., Any]:
    """A write to the store that a Ctrl-C never cuts in half: pressed meanwhile, it is raised when the write ends.

    A ``KeyboardInterrupt`` raised inside SQLAlchemy can leave the write's transaction open, its lock held by a
    connection that the traceback keeps alive, and the next write (marking the runs in flight KILLED) then
    waits out SQLite's busy timeout and fails with "database is locked" instead of the one interrupted line.
    """

    @wraps(write)
    def whole(*args: Any, **kwargs: Any) -> Any:
        if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) is None:
            return write(*args, **kwargs)  # only the main thread handles Ctrl-C; None: a handler outside Python
        pressed: list[int] = []
        previous = signal.signal(signal.SIGINT, lambda signum, frame: pressed.append(signum))
        try:
            return write(*args, **kwargs)
        finally:
            signal.signal(signal.SIGINT, previous)
            if pressed and callable(previous):
                previous(signal.SIGINT, None)  # the handler that was there: KeyboardInterrupt, or a kernel's

    return whole


def default_tags() -> dict[str, str]:
    return {"git_commit": git_commit(), "host": socket.gethostname(), "pid": str(os.getpid())}


def _param_value(value: Any) -> str:
    if isinstance(value, tuple | list):
        return "(" + ",".join(str(v) for v in value) + ("," if len(value) == 1 else "") + ")"
    return str(value)


@whole_write
def start_run(
    exp_id: str,
    params: dict[str, Any],
    tags: dict[str, str],
    run_name: str | None = None,
    parent_run_id: str | None = None,
) -> str:
    """Create a RUNNING run with all ``params`` and ``tags``; returns its id."""
    from mlflow.entities import Param

    mlflow_client = client()
    all_tags = default_tags() | {k: str(v) for k, v in tags.items()}
    if parent_run_id:
        all_tags["mlflow.parentRunId"] = parent_run_id
    try:
        run = mlflow_client.create_run(exp_id, run_name=run_name, tags=all_tags)
    except Exception as exc:  # a tracking server with logins: another user's experiment
        if getattr(exc, "error_code", "") == "PERMISSION_DENIED":
            name = mlflow_client.get_experiment(exp_id).name
            raise StoreError(
                f"experiment '{name}' on {tracking_uri()} belongs to another user (403): use an experiment name "
                f"of your own, e.g. '{name}-{os.environ.get('MLFLOW_TRACKING_USERNAME', 'yourname')}'."
            ) from None
        raise
    mlflow_client.log_batch(run.info.run_id, params=[Param(k, _param_value(v)) for k, v in sorted(params.items())])
    return run.info.run_id


@whole_write
def log_metrics(run_id: str, metrics: dict[str, float], step: int = 0) -> None:
    """Log finite metrics at ``step`` (non-finite values are skipped, not stored as NaN)."""
    from mlflow.entities import Metric

    timestamp = _now_ms()
    batch = [
        Metric(k, float(v), timestamp, step) for k, v in metrics.items() if v is not None and math.isfinite(float(v))
    ]
    if batch:
        client().log_batch(run_id, metrics=batch)


EPOCH_PREFIX = "epoch_"


@whole_write
def log_history(run_id: str, history: Iterable[dict[str, float]]) -> None:
    """Per-epoch metrics as ``epoch_<name>`` with ``step`` = epoch, in one batch.

    The prefix keeps them apart from the final ``val_accuracy``/``val_loss`` of the run (MLflow
    reports the value at the highest step as a metric's latest value).
    """
    from mlflow.entities import Metric

    timestamp = _now_ms()
    batch = [
        Metric(EPOCH_PREFIX + k, float(v), timestamp, int(row["epoch"]))
        for row in history
        for k, v in row.items()
        if k != "epoch" and v is not None and math.isfinite(float(v))
    ]
    for start in range(0, len(batch), 900):
        client().log_batch(run_id, metrics=batch[start : start + 900])


@dataclass(frozen=True)
class StoredRun:
    """One run as the library reads it: plain dicts of strings and floats, no MLflow types."""

    run_id: str
    status: str
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    name: str = ""
    start_time: int = 0  # ms since 1970
    end_time: int | None = None


def _stored(run: Any) -> StoredRun:
    info = run.info
    return StoredRun(
        info.run_id, info.status, dict(run.data.params), dict(run.data.metrics), dict(run.data.tags),
        info.run_name or "", int(info.start_time or 0), info.end_time,
    )


def find_runs(exp_id: str) -> list[StoredRun]:
    """Every run of one experiment (every status)."""
    return [_stored(run) for run in search_ids([exp_id])]


def get_run(run_id: str) -> StoredRun:
    return _stored(client().get_run(run_id))


def deleted_runs(exp_id: str) -> list[StoredRun]:
    """The runs of one experiment in MLflow's trash (deleted, restorable): every search, the cache and the
    report leave them out."""
    from mlflow.entities import ViewType

    runs, token = [], None
    while True:
        page = client().search_runs([exp_id], run_view_type=ViewType.DELETED_ONLY, max_results=5000, page_token=token)
        runs.extend(_stored(run) for run in page)
        token = page.token
        if not token:
            return runs


@whole_write
def delete_run(run_id: str) -> None:
    """Move a run to MLflow's trash (lifecycle stage ``deleted``): kept in the store, restorable."""
    client().delete_run(run_id)


@whole_write
def restore_run(run_id: str) -> None:
    """Take a run out of MLflow's trash."""
    client().restore_run(run_id)


@whole_write
def set_status(run_id: str, status: str) -> None:
    """Set a run's status without ending it (a resumed sweep's parent goes back to RUNNING)."""
    client().update_run(run_id, status=status)


@whole_write
def set_tags(run_id: str, tags: dict[str, Any]) -> None:
    for key, value in tags.items():
        client().set_tag(run_id, key, str(value))


@whole_write
def delete_tag(run_id: str, key: str) -> None:
    """Remove tag ``key`` from a run if it has it."""
    if key in client().get_run(run_id).data.tags:
        client().delete_tag(run_id, key)


@whole_write
def end_run(run_id: str, status: str = FINISHED) -> None:
    client().set_terminated(run_id, status=status)


def _now_ms() -> int:
    import time

    return int(time.time() * 1000)


@whole_write
def log_artifact(run_id: str, path: str | Path) -> None:
    client().log_artifact(run_id, str(path))


def read_artifact(run_id: str, name: str) -> bytes:
    """The bytes of artifact ``name`` (a path inside the run's artifacts) of run ``run_id``."""
    import tempfile

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # no bar per small read
    with tempfile.TemporaryDirectory(prefix="hypertune-artifact-") as folder:
        return Path(client().download_artifacts(run_id, name, folder)).read_bytes()


def search(experiment_names: str | Iterable[str], filter_string: str = "") -> list:
    """All runs (as MLflow ``Run`` objects) of the named experiments that exist."""
    names = [experiment_names] if isinstance(experiment_names, str) else list(experiment_names)
    mlflow_client = client()
    ids = [e.experiment_id for n in names if (e := mlflow_client.get_experiment_by_name(n))]
    return search_ids(ids, filter_string) if ids else []


def search_ids(experiment_ids: list[str], filter_string: str = "") -> list:
    """All runs of the given experiment ids (every status), following pagination."""
    runs, token = [], None
    while True:
        page = client().search_runs(experiment_ids, filter_string=filter_string, max_results=5000, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def _convert(series: pd.Series) -> pd.Series:
    """Turn a column of MLflow param strings into bools, numbers or strings."""
    values = series.dropna()
    if values.empty:
        return series
    if set(values) <= {"True", "False"}:
        return series.map({"True": True, "False": False})
    numeric = pd.to_numeric(series.replace("None", None), errors="coerce")
    if numeric.notna().sum() == values[values != "None"].size:
        return numeric
    return series


def runs_frame(
    experiment_names: str | Iterable[str], status: str | None = FINISHED, filter_string: str = ""
) -> pd.DataFrame:
    """Runs as a DataFrame: ``run_id``, ``experiment``, ``status``, params (typed), metrics, tags.

    Params become proper dtypes (numbers, bools, strings) so they can be grouped and plotted.
    ``status`` filters (MLflow's ``FINISHED`` or the frames' ``finished``); ``None`` returns runs of every
    status. The ``status`` column uses the frames' words (``finished``, ``failed``, ``killed``, ``running``),
    the same as a grid's results frame.
    """
    mlflow_client = client()
    rows = []
    names = {}
    for run in search(experiment_names, filter_string):
        if status and run.info.status != str(status).upper():
            continue
        exp = run.info.experiment_id
        if exp not in names:
            names[exp] = mlflow_client.get_experiment(exp).name
        row = {
            "run_id": run.info.run_id,
            "experiment": names[exp],
            "status": row_status(run.info.status),
            "start_time": pd.to_datetime(run.info.start_time, unit="ms"),
        }
        row |= {k: v for k, v in run.data.params.items()}
        row |= {k: v for k, v in run.data.metrics.items()}
        row |= {f"tag.{k}": v for k, v in run.data.tags.items() if not k.startswith("mlflow.")}
        rows.append(row)
    frame = pd.DataFrame(rows)
    for column in frame.columns:
        is_text = frame[column].dtype == object or pd.api.types.is_string_dtype(frame[column])
        if is_text and column not in ("run_id", "experiment", "status") and not column.startswith("tag."):
            frame[column] = _convert(frame[column])
    return frame


def metric_history(run_id: str, keys: Iterable[str] = ("train_loss", "val_loss", "val_accuracy")) -> pd.DataFrame:
    """Per-epoch metrics of one run (logged by :func:`log_history`) as a DataFrame indexed by epoch."""
    mlflow_client = client()
    series = {
        key: {m.step: m.value for m in mlflow_client.get_metric_history(run_id, EPOCH_PREFIX + key)} for key in keys
    }
    return pd.DataFrame(series).rename_axis("epoch").sort_index()


def open_store() -> None:
    """Open (create or migrate) the store now, so a problem with it shows before anything is trained."""
    client()


def experiment_names() -> list[str]:
    """Names of the experiments in the store, ``Default`` left out when it holds no run."""
    found = client().search_experiments(max_results=1000)
    return sorted(e.name for e in found if e.name != "Default" or search_ids([e.experiment_id]))


def find_experiment_id(name: str) -> str | None:
    """The id of experiment ``name``, or ``None`` when the store has none of that name (nothing is created)."""
    found = client().get_experiment_by_name(name)
    return None if found is None else found.experiment_id


@whole_write
def set_experiment_tag(exp_id: str, key: str, value: str) -> None:
    client().set_experiment_tag(exp_id, key, value)


# --- Runs as plain data, out of one store and into another (a student's hand-in, lib.assignment.handin).


@contextmanager
def using_store(uri: str):
    """Inside the block every helper of this module reads and writes the store at ``uri`` (then the old one)."""
    old = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = uri
    try:
        yield uri
    finally:
        if old is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = old


def export_runs(experiment: str) -> list[dict[str, Any]]:
    """Every run of ``experiment`` as JSON-ready data: ids, name, status, start and end (ms), params, tags and
    each metric's whole history ``[[step, value, timestamp], ...]`` (per-epoch values included). No artifacts."""
    mlflow_client = client()
    exported = []
    for run in search(experiment):
        metrics = {
            key: [[m.step, m.value, m.timestamp] for m in mlflow_client.get_metric_history(run.info.run_id, key)]
            for key in run.data.metrics
        }
        exported.append({
            "run_id": run.info.run_id, "run_name": run.info.run_name, "status": run.info.status,
            "start_time": run.info.start_time, "end_time": run.info.end_time,
            "params": dict(run.data.params), "tags": dict(run.data.tags), "metrics": metrics,
        })
    return sorted(exported, key=lambda run: (run["start_time"] or 0, run["run_id"]))


def import_runs(experiment: str, runs: list[dict[str, Any]]) -> dict[str, str]:
    """Recreate exported ``runs`` (:func:`export_runs`) in a new ``experiment`` of the current store, with their
    own start and end times and statuses; a parent run id is mapped to its copy. Returns old id -> new id."""
    from mlflow.entities import Metric, Param

    mlflow_client = client()
    if mlflow_client.get_experiment_by_name(experiment) is not None:
        raise StoreError(f"experiment '{experiment}' already exists in {tracking_uri()}: import into a new store")
    exp_id = mlflow_client.create_experiment(experiment, artifact_location=artifact_location(experiment))
    new_ids: dict[str, str] = {}
    for run in sorted(runs, key=lambda r: (r["start_time"] or 0, r["run_id"])):
        tags = {k: v for k, v in run["tags"].items() if k not in ("mlflow.runName", "mlflow.parentRunId")}
        if run["tags"].get("mlflow.parentRunId") in new_ids:
            tags["mlflow.parentRunId"] = new_ids[run["tags"]["mlflow.parentRunId"]]
        created = mlflow_client.create_run(exp_id, start_time=run["start_time"], tags=tags, run_name=run["run_name"])
        run_id = new_ids[run["run_id"]] = created.info.run_id
        params = [Param(k, v) for k, v in run["params"].items()]
        metrics = [Metric(k, value, ts, step) for k, points in run["metrics"].items() for step, value, ts in points]
        for start in range(0, len(params), 100):  # MLflow takes at most 100 params and 1,000 metrics a batch
            mlflow_client.log_batch(run_id, params=params[start : start + 100])
        for start in range(0, len(metrics), 900):
            mlflow_client.log_batch(run_id, metrics=metrics[start : start + 900])
        if run["status"] != RUNNING:
            mlflow_client.set_terminated(run_id, status=run["status"], end_time=run["end_time"])
    return new_ids


# --- The analysis run of a notebook: opened and closed inside each logging step, never left RUNNING.
# A notebook's figures, tables and summary metrics go to one "analysis run" per execution. No run spans
# cells: every logging call (one step) sets the run RUNNING, logs, and closes it again (FINISHED; KILLED
# on Ctrl-C; FAILED on an error), so a notebook stopped anywhere between steps leaves nothing open. The
# last step tags it complete. A new execution of the same notebook and profile first closes the stale
# runs of its own (KILLED, reason in the ``stop_reason`` tag): one left RUNNING by a process killed inside
# a step, and one a stopped execution never completed. A kernel that ends normally (JupyterLab closing
# it, papermill after a failing cell) marks its incomplete runs the same way on its way out.

ANALYSIS_COMPLETE = "analysis_complete"  # tag: "true" once the last step has logged, "false" before
STOP_REASON = "stop_reason"  # tag: why an analysis run was closed as KILLED or FAILED
_open_analyses: list[AnalysisRun] = []  # this process's executions not yet complete (closed at exit)


def owner_gone(run: StoredRun) -> bool:
    """Whether the process that wrote ``run`` (its ``host`` and ``pid`` tags) no longer runs, or is this one."""
    pid = run.tags.get("pid", "")
    if run.tags.get("host") != socket.gethostname() or not pid.isdigit() or int(pid) == os.getpid():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


@contextmanager
def _sigint_ignored():
    """Ctrl-C ignored inside the block (main thread only: elsewhere signals cannot be changed or arrive)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


class AnalysisRun:
    """One execution's analysis run of ``notebook`` in ``profile``: figures, tables and summary metrics.

    Create it once, in the notebook's set-up cell (``tracking.analysis_run(...)``); nothing is written
    until the first step, except that stale runs of the same notebook and profile are closed. Each of
    :meth:`log_artifact`, :meth:`log_table`, :meth:`log_metrics` and :meth:`complete` is one step; a
    ``with analysis:`` block (yielding the run id) is one step for anything else that logs to the run.
    ``last=True`` on the final step marks the run complete. Not a trial run (``lib.engine.records``).
    """

    def __init__(self, experiment: str, notebook: str, profile: str, params: dict[str, Any] | None = None) -> None:
        self.experiment, self.notebook, self.profile = experiment, notebook, profile
        self.params = dict(params or {})
        self.exp_id = experiment_id(experiment)
        self.run_id: str | None = None
        self.completed = False
        self._steps: list[Any] = []
        self.closed = close_stale_analyses(self.exp_id, notebook, profile)
        _open_analyses.append(self)

    def __repr__(self) -> str:
        where = f"{self.experiment!r}, notebook={self.notebook!r}, profile={self.profile!r}"
        return f"AnalysisRun({where}, run_id={self.run_id!r})"

    @contextmanager
    def step(self, last: bool = False):
        """One logging step: the run is RUNNING inside the block and closed when it ends (see the class)."""
        if self.run_id is None:
            tags = {"kind": "analysis", "notebook": self.notebook, "profile": self.profile, ANALYSIS_COMPLETE: "false"}
            self.run_id = start_run(self.exp_id, self.params, tags, run_name=f"analysis-{self.notebook}-{self.profile}")
        else:
            set_status(self.run_id, RUNNING)
        try:
            yield self.run_id
        except BaseException as exc:
            interrupted = isinstance(exc, KeyboardInterrupt | SystemExit)
            reason = "interrupted in a logging step" if interrupted else f"{type(exc).__name__}: {exc}"[:500]
            with _sigint_ignored():  # a second Ctrl-C must not leave the run RUNNING half-closed
                try:
                    set_tags(self.run_id, {STOP_REASON: reason})
                finally:
                    end_run(self.run_id, KILLED if interrupted else FAILED)
            raise
        if last:
            set_tags(self.run_id, {ANALYSIS_COMPLETE: "true"})
            self.completed = True
            self._forget()
        end_run(self.run_id, FINISHED)
        _exit_hook_first()

    def __enter__(self) -> str:
        """``with analysis as run_id:`` is ``with analysis.step() as run_id:``."""
        step = self.step()
        self._steps.append(step)
        return step.__enter__()

    def __exit__(self, *exc: Any) -> bool | None:
        return self._steps.pop().__exit__(*exc)

    def log_artifact(self, path: str | Path, last: bool = False) -> Path:
        """Log one file (a figure from ``plots.save_figure``, a table) as one step; returns its path."""
        with self.step(last) as run_id:
            log_artifact(run_id, path)
        return Path(path)

    def log_table(self, frame: pd.DataFrame, name: str, last: bool = False) -> Path:
        """Write ``frame`` as ``<figures>/<name>.csv`` (without in-memory ``_`` columns) and log it as one step;
        returns the file's path."""
        from lib.paths import figures_dir

        path = figures_dir() / f"{name}.csv"
        frame.drop(columns=[c for c in frame.columns if str(c).startswith("_")]).to_csv(path, index=False)
        return self.log_artifact(path, last)

    def log_metrics(self, metrics: dict[str, float], last: bool = False) -> None:
        """Log summary metrics as one step; a value the run already holds is not logged again."""
        with self.step(last) as run_id:
            held = get_run(run_id).metrics
            log_metrics(run_id, {k: v for k, v in metrics.items() if held.get(k) != float(v)})

    def complete(self) -> None:
        """The notebook's last step when it logs nothing more: the run is marked complete."""
        with self.step(last=True):
            pass

    def abandon(self, reason: str) -> None:
        """Close an execution that will not complete (KILLED, ``reason`` in a tag); a run that never logged,
        is complete, or was closed by a failed step stays as it is."""
        self._forget()
        if self.run_id is not None and not self.completed and get_run(self.run_id).status == FINISHED:
            set_tags(self.run_id, {STOP_REASON: reason})
            end_run(self.run_id, KILLED)

    def _forget(self) -> None:
        if self in _open_analyses:
            _open_analyses.remove(self)


def analysis_run(experiment: str, notebook: str, profile: str, params: dict[str, Any] | None = None) -> AnalysisRun:
    """A new execution's :class:`AnalysisRun` (stale runs of the same notebook and profile are closed first)."""
    return AnalysisRun(experiment, notebook, profile, params)


def close_stale_analyses(exp_id: str, notebook: str, profile: str) -> list[str]:
    """Close the analysis runs of ``notebook`` + ``profile`` that no live process will finish; their ids.

    KILLED with a ``stop_reason``: a RUNNING one whose process is gone (killed inside a step), and an
    incomplete one (a stopped execution, or an earlier execution in this same process). A run another
    live process on this host is writing is left alone, and so is every complete run.
    """
    closed = []
    for run in find_runs(exp_id):
        tags = run.tags
        own = tags.get("kind") == "analysis" and tags.get("notebook") == notebook and tags.get("profile") == profile
        if not own or not owner_gone(run):
            continue
        if run.status == RUNNING:
            reason = "its process ended inside a logging step (killed, or its kernel died)"
        elif run.status == FINISHED and tags.get(ANALYSIS_COMPLETE) == "false":
            reason = "the notebook stopped before its last logging step"
        else:
            continue
        set_tags(run.run_id, {STOP_REASON: f"{reason}; closed when the notebook ran again"})
        end_run(run.run_id, KILLED)
        closed.append(run.run_id)
    return closed


def _abandon_open_analyses() -> None:
    """At exit (a kernel shut down before its notebook's last step): close this process's incomplete runs."""
    for analysis in list(_open_analyses):
        with suppress(Exception):  # the store is gone at exit: the next execution closes the run instead
            analysis.abandon("the kernel ended before the notebook's last logging step")


def _exit_hook_first() -> None:
    """Make :func:`_abandon_open_analyses` the first exit handler to run (handlers run last-in first-out):
    MLflow registers its own as it goes (telemetry among them, which can wait seconds for the network),
    and a kernel that does not exit within its shutdown time is killed before later handlers run."""
    atexit.unregister(_abandon_open_analyses)
    atexit.register(_abandon_open_analyses)


atexit.register(_abandon_open_analyses)
