"""Where the project keeps things: data, the MLflow store, figures, state.

Every location is absolute and derived from the project root, so notebooks (which run from
``notebooks/``) and scripts (which run from the root) see the same folders. Environment variables
override them for tests and shared servers; nothing else in ``lib`` hard-codes a path.

The committed reference (``figures/``) is written only when it is asked for by name: the reference
refresh (``make reference``) sets ``HYPERTUNE_FIGURES_DIR`` to it. Everything else (a notebook run in
JupyterLab or by papermill, a try-out profile) writes under ``runs/<profile>/``, which git ignores.
"""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def data_dir() -> Path:
    """Folder holding ``FashionMNIST/raw`` (torchvision's layout). Override: ``HYPERTUNE_DATA_DIR``."""
    return Path(os.environ.get("HYPERTUNE_DATA_DIR", PROJECT_ROOT / "data"))


def mlruns_dir() -> Path:
    """The project's fixed MLflow folder (database and artifacts)."""
    return PROJECT_ROOT / "mlruns"


DEFAULT_PROFILE = "quick"  # the profile of a notebook run that names none (JupyterLab, papermill by hand)


def current_profile() -> str:
    """The study profile of this process: ``HYPERTUNE_PROFILE``, else ``quick``."""
    return os.environ.get("HYPERTUNE_PROFILE", DEFAULT_PROFILE)


def reference_figures_dir() -> Path:
    """The committed figures and tables (``figures/``): written only by the reference refresh."""
    return PROJECT_ROOT / "figures"


def tryout_dir(profile: str | None = None) -> Path:
    """The ignored folder of a profile's try-out outputs: ``runs/<profile>`` (default: this process's profile)."""
    return PROJECT_ROOT / "runs" / (profile or current_profile())


def figures_dir() -> Path:
    """Where figures and tables are written: ``HYPERTUNE_FIGURES_DIR`` when set (the reference refresh sets
    it to ``figures/``, tests to a temp dir), else ``runs/<profile>/figures`` (never the committed ``figures/``)."""
    path = Path(os.environ.get("HYPERTUNE_FIGURES_DIR") or tryout_dir() / "figures")
    path.mkdir(parents=True, exist_ok=True)
    return path


def own_figures_dir(name: str) -> Path:
    """Give this process's figures and tables a folder of their own, ``runs/<profile>/figures/<name>/``, unless
    ``HYPERTUNE_FIGURES_DIR`` names one already; returns it. A notebook that is not part of the study (00_by_hand)
    calls it once, so that the study's notebooks, which write the same file names into ``runs/<profile>/figures/``,
    never overwrite its outputs (nor it theirs). It sets ``HYPERTUNE_FIGURES_DIR``, so :func:`figures_dir` and
    the processes this one starts agree."""
    os.environ.setdefault("HYPERTUNE_FIGURES_DIR", str(tryout_dir() / "figures" / name))
    return figures_dir()


def sqlite_file(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` MLflow URI, ``None`` for any other store and for in-memory
    SQLite (the one place that parses a store URI)."""
    if not uri.startswith("sqlite:///"):
        return None
    text = uri.removeprefix("sqlite:///").split("?", 1)[0]
    return None if text in ("", ":memory:") else Path(text)


def state_dir() -> Path:
    """Where resumable sweep state lives, next to the MLflow store it belongs to.

    Override: ``HYPERTUNE_STATE_DIR``. With a non-default ``MLFLOW_TRACKING_URI`` pointing at a
    SQLite file, the state goes next to that file so a temporary store gets temporary state.
    """
    if "HYPERTUNE_STATE_DIR" in os.environ:
        path = Path(os.environ["HYPERTUNE_STATE_DIR"])
    else:
        store = sqlite_file(os.environ.get("MLFLOW_TRACKING_URI", ""))
        path = (store.parent if store else mlruns_dir()) / "state"
    path.mkdir(parents=True, exist_ok=True)
    return path
