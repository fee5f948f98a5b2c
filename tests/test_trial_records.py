"""A finished trial's checkpoint-rule metrics and per-image results, from the trainer to the MLflow store."""

from __future__ import annotations

import numpy as np
import pytest

from lib import tracking
from lib.data import DataSpec
from lib.engine import records
from lib.engine.grid import run_grid

pytestmark = pytest.mark.usefixtures("mlflow_store")

DATA = DataSpec(dataset="digits")
BASE = {"epochs": 3, "conv_out_channels": 8, "hidden_sizes": (16,), "batch_size": 64, "lr": 3e-3, "precision": "fp32"}


def test_trial_logs_best_epoch_metrics_beside_the_last_epoch(monkeypatch):
    frame = run_grid(BASE, {"norm_type": ["none", "batch"]}, [0], "checkpoint", DATA, workers=1, progress=False)
    assert (frame["status"] == "finished").all()
    for row in frame.itertuples():
        history = tracking.metric_history(row.run_id)
        best = history["val_accuracy"].idxmax()  # earliest epoch with the highest accuracy
        assert row.best_epoch == best
        assert row.best_val_accuracy == pytest.approx(history.loc[best, "val_accuracy"])
        assert row.best_val_loss == pytest.approx(history.loc[best, "val_loss"])
        assert row.val_accuracy == pytest.approx(history["val_accuracy"].iloc[-1])  # last epoch, as before
        assert row.precision == "fp32"
        stored = tracking.get_run(row.run_id)
        assert {"best_epoch", "best_val_accuracy", "best_val_loss"} <= set(stored.metrics)
        assert stored.params["precision"] == "fp32"


def test_finished_trial_stores_which_validation_images_it_got_right():
    frame = run_grid(
        BASE | {"norm_type": "batch"},
        {"recalibrate_bn": [False, True]},
        [1],
        "per-image",
        DATA,
        workers=1,
        progress=False,
    )
    n_val = len(DATA.load().val)
    for row in frame.itertuples():
        correct = records.val_correct(row.run_id)
        assert correct.dtype == bool and correct.shape == (n_val,)
        assert correct.mean() == pytest.approx(row.val_accuracy)  # the reported score, after recalibration
    first, second = (records.val_correct(run_id) for run_id in frame["run_id"])
    assert not np.array_equal(first, second)  # two models: two patterns, pairable image by image


def test_final_run_stores_which_test_images_it_got_right():
    final = DataSpec(dataset="digits", final=True)
    frame = run_grid(BASE | {"epochs": 1}, {}, [0], "per-image-final", final, workers=1, progress=False)
    correct = records.per_image_correct(frame["run_id"].iloc[0], "test")
    assert correct.mean() == pytest.approx(frame["test_accuracy"].iloc[0])


def test_a_grids_verdicts_read_each_runs_per_image_results_and_cover_seeds_and_images():
    from lib.study import analysis

    frame = run_grid(
        BASE | {"epochs": 1}, {"dropout_p": [0.0, 0.3, 0.6]}, [0, 1], "two-sources", DATA, workers=1, progress=False
    )
    assert "val_correct" not in frame  # the frame names its runs; the verdicts fetch their per-image results
    rows = analysis.h1(frame)
    assert list(rows["uncertainty"]) == ["seeds+images", "seeds+images"]
    assert list(rows["test"]) == ["two-way t", "two-way t"]
