"""Shared fixtures: a small real Fashion-MNIST split and an isolated MLflow/figures/state location."""

from __future__ import annotations

import shutil

import pytest

from lib.data import DataSplits, load_splits


@pytest.fixture(scope="session")
def small_splits() -> DataSplits:
    """2000 training and 500 validation images of the real Fashion-MNIST (stratified)."""
    return load_splits(train_subset=2000, val_subset=500)


@pytest.fixture(autouse=True)
def isolated_outputs(tmp_path, monkeypatch):
    """Point MLflow, figures and sweep state at a temporary folder so tests never touch the repo."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    monkeypatch.setenv("HYPERTUNE_FIGURES_DIR", str(tmp_path / "figures"))
    monkeypatch.setenv("HYPERTUNE_STATE_DIR", str(tmp_path / "state"))
    return tmp_path


@pytest.fixture(scope="session")
def _mlflow_template(tmp_path_factory):
    """An empty, fully migrated MLflow SQLite store, created once per session (a fresh one costs seconds)."""
    from lib import tracking

    path = tmp_path_factory.mktemp("mlflow_template") / "mlflow.db"
    tracking._client(f"sqlite:///{path}")
    return path


@pytest.fixture
def mlflow_store(isolated_outputs, _mlflow_template):
    """The test's own MLflow store (at ``MLFLOW_TRACKING_URI``), pre-migrated: a copy of the template."""
    shutil.copyfile(_mlflow_template, isolated_outputs / "mlflow.db")
    return isolated_outputs


# --- the fast tier (`make test-fast` = `pytest -m "not slow"`) ---------------------------------------
# A test is `slow` when it starts a process (the CLI, a kernel, a server, a pool of workers) or trains
# beyond a second. The files that carry `@pytest.mark.slow` mark their own; the files below do not yet,
# so their slow tests are named here ("file::function", every parametrization included).
SLOW_ELSEWHERE: frozenset[str] = frozenset()
SLOW_MODULES = frozenset({"test_class_server.py"})


def _key(item) -> str:
    return f"{item.path.name}::{getattr(item, 'originalname', item.name)}"


@pytest.hookimpl(tryfirst=True)  # before -k and -m deselect anything, so a stale name is seen
def pytest_collection_modifyitems(config, items):
    files = {item.path.name for item in items}
    keys = {_key(item) for item in items}
    whole_files = not any("::" in arg for arg in config.args)
    stale = sorted(name for name in SLOW_ELSEWHERE if name.split("::")[0] in files and name not in keys)
    if whole_files and stale:
        raise pytest.UsageError(f"tests/conftest.py SLOW_ELSEWHERE names tests that do not exist: {stale}")
    for item in items:
        if _key(item) in SLOW_ELSEWHERE or item.path.name in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)
