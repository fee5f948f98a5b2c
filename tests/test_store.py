"""lib.store: the one typed reader, on a store written by the real engine.

One experiment on scikit-learn's digits holds every kind of run: a grid (one arm fails: four conv blocks do not
fit an 8x8 image), a two-trial sweep with its parent run, a final run and a notebook's analysis run. The reader
must give every kind its word, keep the sweep's parent, the final run and the analysis run out of the trials,
and give the seed and the integer and boolean params back as ``int`` and ``bool`` (MLflow stores them as text,
and a column with a gap, like ``seed`` beside a sweep's parent, comes back as floats).
"""

from __future__ import annotations

import pandas as pd
import pytest

from lib import report, store, tracking
from lib.config import TrialConfig
from lib.data import DataSpec
from lib.engine.grid import run_grid
from lib.engine.search import run_sweep
from lib.environ import environment
from lib.store import schema

DATA = DataSpec(dataset="digits")
BASE = {"epochs": 1, "conv_out_channels": 4, "hidden_sizes": (8,), "batch_size": 64, "precision": "fp32"}
EXPERIMENT = "kinds"


@pytest.fixture(scope="module")
def _store(tmp_path_factory):
    """The store's environment and ``(grid results, sweep result, final run id, analysis run id)``: one
    experiment with every kind of run, written once for the module."""
    folder = tmp_path_factory.mktemp("store")
    env = {
        "MLFLOW_TRACKING_URI": f"sqlite:///{folder}/mlflow.db",
        "HYPERTUNE_STATE_DIR": str(folder / "state"),
        "HYPERTUNE_FIGURES_DIR": str(folder / "figures"),
    }
    with environment(env):
        grid = run_grid(BASE, {"num_conv_blocks": [1, 4]}, [0, 1], EXPERIMENT, DATA, workers=1, progress=False)
        space = {"lr": {"loguniform": [1e-3, 1e-2]}, "batch_size": [32, 64]}
        sweep = run_sweep(space, EXPERIMENT, "tiny", 2, base=BASE, data=DATA, progress=False)
        final_data = DataSpec(dataset="digits", final=True)
        final = run_grid(BASE, {}, [7], EXPERIMENT, final_data, workers=1, progress=False)
        analysis = tracking.analysis_run(EXPERIMENT, notebook="t", profile="smoke")
        analysis.log_metrics({"summary": 1.0}, last=True)
    return env, (grid, sweep, final["run_id"].iloc[0], analysis.run_id)


@pytest.fixture
def written(_store, monkeypatch):
    env, written = _store
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return written


def test_every_run_has_its_kind_and_a_status_of_the_one_vocabulary(written):
    grid, sweep, final_id, analysis_id = written
    runs = store.runs(EXPERIMENT).set_index("run_id")
    assert set(runs["status"]) <= set(schema.STATUSES)
    kinds = runs[schema.KIND]
    assert kinds[final_id] == schema.KIND_FINAL and kinds[analysis_id] == schema.KIND_ANALYSIS
    assert (kinds == schema.KIND_SWEEP).sum() == 1  # the sweep's parent
    assert set(kinds[grid["run_id"]]) == {schema.KIND_TRIAL}
    assert runs["seed"].dtype == float  # the raw frame: the parent and the analysis run have no seed


def test_trials_are_typed_and_hold_no_parent_final_or_analysis_run(written):
    grid, sweep, final_id, analysis_id = written
    trials = store.trials(EXPERIMENT)
    parent = store.runs(EXPERIMENT).query(f"{schema.KIND} == '{schema.KIND_SWEEP}'")["run_id"].iloc[0]
    assert not {parent, final_id, analysis_id} & set(trials["run_id"])
    assert set(trials["run_id"]) == set(grid["run_id"]) | {r.run_id for r in sweep.trials}
    assert trials[schema.KEY].is_unique and set(trials[schema.KIND]) == {schema.KIND_TRIAL}
    for name in ("seed", "epochs", "num_conv_blocks", "batch_size", "conv_out_channels", "data_split_seed"):
        assert trials[name].dtype == "int64", name
    for name in ("recalibrate_bn", "augment_flip", "channels_last"):
        assert trials[name].dtype == bool, name
    assert set(trials["seed"]) == {0, 1} and sorted(trials["batch_size"].unique()) <= [32, 64]
    failed = trials[trials["status"] == schema.FAILED]
    assert set(failed["num_conv_blocks"]) == {4} and failed["val_accuracy"].isna().all()
    assert set(trials["status"]) == {schema.FINISHED, schema.FAILED}


def test_the_report_reads_the_same_typed_trials(written):
    runs = report.trial_runs(EXPERIMENT)
    assert runs["seed"].dtype == "int64" and runs["budget"].dtype == "int64"
    assert set(runs["source"]) == {"grid", "sweep"}
    top = report.top_configs(runs)
    assert set(top["seeds"]) >= {"0,1"}  # ints, never "0.0,1.0"


def test_a_row_gives_back_its_config_and_its_epochs(written):
    grid, *_ = written
    trials = store.trials(EXPERIMENT).set_index("run_id")
    row = trials.loc[grid.loc[grid["num_conv_blocks"] == 1, "run_id"].iloc[0]]
    config = TrialConfig.from_flat(store.run_config(row, without=()))
    assert config == TrialConfig.from_flat(BASE | {"num_conv_blocks": 1, "seed": int(row["seed"])}).canonical()
    assert "seed" not in store.run_config(row) and "epochs" not in store.run_config(row)
    assert store.config_identity(store.run_config(row)) == store.config_identity(config.flat() | {"seed": 9})

    histories = store.epoch_histories(trials.reset_index())
    assert {"epoch", "train_loss", "val_loss", "val_accuracy", "num_conv_blocks", "run_id"} <= set(histories)
    assert set(histories["run_id"]) == set(trials.index[trials["status"] == schema.FINISHED])
    curves = store.epoch_histories(trials.reset_index(), metrics=("val_accuracy",))
    assert "val_loss" not in curves and curves["val_accuracy"].notna().all()
    assert store.epoch_histories(trials.reset_index().iloc[0:0]).columns[:2].tolist() == ["epoch", "train_loss"]


def test_typing_leaves_a_column_with_gaps_alone():
    frame = pd.DataFrame({"seed": [1.0, None], "epochs": [2.0, 3.0], "augment_flip": [True, False], "lr": [0.1, 1.0]})
    typed = store.typed(frame)
    assert typed["seed"].dtype == float and typed["epochs"].dtype == "int64"
    assert typed["augment_flip"].dtype == bool and typed["lr"].dtype == float
