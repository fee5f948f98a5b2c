"""lib.tracking: the store location, a typed round trip through MLflow, and trials that raise."""

from __future__ import annotations

import pandas as pd
import pytest

import lib.model
import lib.train
from lib import tracking
from lib.data import DataSpec
from lib.engine.grid import run_grid
from lib.paths import PROJECT_ROOT

pytestmark = pytest.mark.usefixtures("mlflow_store")

DATA = DataSpec(train_subset=400, val_subset=200)
BASE = {"epochs": 1, "conv_out_channels": 8}
HISTORY = [
    {"epoch": 1, "train_loss": 1.5, "val_loss": 1.25, "val_accuracy": 0.5},
    {"epoch": 2, "train_loss": 1.0, "val_loss": 0.75, "val_accuracy": 0.75},
    {"epoch": 3, "train_loss": 0.5, "val_loss": float("nan"), "val_accuracy": 0.875},
]


def _log_run(exp_id: str, params: dict, status: str = tracking.FINISHED, **metrics) -> str:
    run_id = tracking.start_run(
        exp_id, params, {"trial_key": f"key-{params['seed']}", "seed": params["seed"]}, run_name=f"run-{params['seed']}"
    )
    tracking.log_history(run_id, HISTORY)
    tracking.log_metrics(run_id, metrics)
    tracking.end_run(run_id, status)
    return run_id


def test_round_trip_gives_typed_params_metrics_tags_and_history():
    exp_id = tracking.experiment_id("roundtrip")
    assert tracking.experiment_id("roundtrip") == exp_id  # found, not created twice
    common = {"norm_type": "batch", "hidden_sizes": (128,), "early_stopping_patience": None}
    first = _log_run(
        exp_id,
        common | {"lr": 0.001, "num_conv_blocks": 2, "recalibrate_bn": True, "seed": 0},
        val_accuracy=0.875,
        val_loss=float("nan"),
        n_parameters=1234,
    )
    second = _log_run(
        exp_id,
        common | {"lr": 0.01, "num_conv_blocks": 3, "recalibrate_bn": False, "seed": 1},
        val_accuracy=0.5,
        val_loss=0.9,
        n_parameters=99,
    )
    _log_run(
        exp_id,
        common | {"lr": 0.1, "num_conv_blocks": 1, "recalibrate_bn": False, "seed": 2},
        status=tracking.FAILED,
        val_accuracy=0.1,
    )

    frame = tracking.runs_frame("roundtrip").set_index("run_id").loc[[first, second]]
    assert list(frame["status"]) == [tracking.ROW_FINISHED] * 2  # the frames' one vocabulary, as run_grid writes it
    assert list(frame["experiment"]) == ["roundtrip"] * 2
    assert frame["recalibrate_bn"].dtype == bool and list(frame["recalibrate_bn"]) == [True, False]
    assert frame["lr"].dtype == float and list(frame["lr"]) == [0.001, 0.01]
    assert pd.api.types.is_numeric_dtype(frame["num_conv_blocks"]) and list(frame["num_conv_blocks"]) == [2, 3]
    assert pd.api.types.is_numeric_dtype(frame["seed"]) and list(frame["seed"]) == [0, 1]
    assert list(frame["norm_type"]) == ["batch", "batch"]
    assert list(frame["hidden_sizes"]) == ["(128,)", "(128,)"]
    assert frame["early_stopping_patience"].isna().all()
    assert list(frame["val_accuracy"]) == [0.875, 0.5]
    assert list(frame["n_parameters"]) == [1234, 99]
    assert pd.isna(frame.loc[first, "val_loss"]) and frame.loc[second, "val_loss"] == 0.9  # NaN is not logged
    assert list(frame["tag.trial_key"]) == ["key-0", "key-1"]
    assert list(frame["tag.seed"]) == ["0", "1"]  # tags stay strings
    assert {"tag.host", "tag.pid", "tag.git_commit"} <= set(frame.columns)
    assert not [column for column in frame.columns if column.startswith("tag.mlflow.")]
    assert "epoch_val_loss" in frame.columns  # per-epoch metrics keep their prefix

    everything = tracking.runs_frame("roundtrip", status=None)
    assert sorted(everything["status"]) == [tracking.ROW_FAILED, tracking.ROW_FINISHED, tracking.ROW_FINISHED]
    assert len(tracking.runs_frame("roundtrip", status=tracking.FAILED)) == 1
    assert tracking.runs_frame("no such experiment").empty

    history = tracking.metric_history(first)
    assert history.index.name == "epoch" and list(history.index) == [1, 2, 3]
    assert list(history["train_loss"]) == [1.5, 1.0, 0.5]
    assert list(history["val_accuracy"]) == [0.5, 0.75, 0.875]
    assert list(history["val_loss"][:2]) == [1.25, 0.75] and pd.isna(history.loc[3, "val_loss"])


def test_tracking_uri_honours_the_environment(monkeypatch, mlflow_store):
    assert tracking.tracking_uri() == f"sqlite:///{mlflow_store}/mlflow.db"
    assert tracking.artifact_root() == str(mlflow_store / "artifacts")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////somewhere/else/store.db")
    assert tracking.tracking_uri() == "sqlite:////somewhere/else/store.db"
    assert tracking.artifact_root() == "/somewhere/else/artifacts"


def test_a_tracking_server_chooses_where_artifacts_go(monkeypatch, mlflow_store):
    assert tracking.artifact_location("exp") == (mlflow_store / "artifacts" / "exp").as_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert tracking.artifact_location("exp") is None  # the server's --artifacts-destination, not our disk


def test_default_tracking_uri_is_the_project_store(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert tracking.tracking_uri() == f"sqlite:///{PROJECT_ROOT / 'mlruns' / 'mlflow.db'}"
    assert tracking.artifact_root() == str(PROJECT_ROOT / "mlruns" / "artifacts")


def _check_error_is_recorded_and_retried(monkeypatch, module, name: str) -> None:
    """``module.name`` raises on its first call (the first trial); everything else is real."""
    real = getattr(module, name)
    calls: list[int] = []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("boom")
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, failing)
    factors = {"lr": [1e-3, 2e-3]}
    frame = run_grid(BASE, factors, [0], "errors", DATA, workers=1, progress=False)
    assert len(calls) == 2
    assert list(frame["status"]) == ["failed", "finished"]  # the study goes on after the error
    assert list(frame["failure_kind"]) == ["error", ""]
    run = tracking.client().get_run(frame.loc[0, "run_id"])
    assert run.info.status == tracking.FAILED
    assert run.data.tags["failure_kind"] == "error"
    assert "RuntimeError: boom" in run.data.tags["failure_reason"]

    monkeypatch.setattr(module, name, real)  # errors are not cached: the next call retries the trial
    again = run_grid(BASE, factors, [0], "errors", DATA, workers=1, progress=False)
    assert list(again["status"]) == ["finished", "finished"]
    assert list(again["cached"]) == [False, True]
    assert again.loc[0, "run_id"] != frame.loc[0, "run_id"]
    assert again.loc[1, "run_id"] == frame.loc[1, "run_id"]
    statuses = sorted(run.info.status for run in tracking.search("errors"))
    assert statuses == [tracking.FAILED, tracking.FINISHED, tracking.FINISHED]


@pytest.mark.slow
def test_an_exception_while_training_is_a_failed_trial_that_is_retried(monkeypatch):
    _check_error_is_recorded_and_retried(monkeypatch, lib.train, "fit")


@pytest.mark.slow
def test_an_exception_while_building_the_model_is_a_failed_trial_that_is_retried(monkeypatch):
    _check_error_is_recorded_and_retried(monkeypatch, lib.model, "build_model")
