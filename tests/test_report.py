"""lib.report and the figure fixes in lib.plots, on a small real store made by the CLI.

The store holds a tiny CLI grid (dropout x norm, two seeds) and a tiny CLI sweep, both on real
Fashion-MNIST (300 training / 200 validation images, one epoch), built once for the module through the
CLI's entry point in this process (the report command runs as a real process).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest

from lib import plots, report, stats, tracking
from lib.environ import environment
from lib.paths import PROJECT_ROOT

SMALL = ["--train-subset", "300", "--val-subset", "200", "--set", "epochs=1"]


def _cli(*args: str, uri: str, check: bool = True) -> subprocess.CompletedProcess:
    env = os.environ | {"PYTHONPATH": str(PROJECT_ROOT), "MLFLOW_TRACKING_URI": uri, "HYPERTUNE_UI_URL": ""}
    done = subprocess.run(
        [sys.executable, "-m", "lib", *args], env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300
    )
    if check:
        assert done.returncode == 0, done.stderr[-3000:]
    return done


def _cli_in_process(*args: str, uri: str) -> str:
    """``python -m lib ARGS`` through ``lib.cli.main`` in this process (what it prints on stdout); the
    report itself is also run as a real process below, so the CLI is proven end to end."""
    from lib import cli

    out = io.StringIO()
    with environment({"MLFLOW_TRACKING_URI": uri, "HYPERTUNE_UI_URL": ""}), contextlib.redirect_stdout(out):
        assert cli.main(list(args)) == 0
    return out.getvalue()


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """``(uri, grid stdout)`` of a store with experiments ``grid`` and ``search``."""
    folder = tmp_path_factory.mktemp("report_store")
    uri = f"sqlite:///{folder}/mlflow.db"
    grid = _cli_in_process(
        "grid", "--experiment", "grid", "--factor", "dropout_p=0,0.5", "--factor", "norm_type=none,batch",
        "--seeds", "0,1", "--workers", "1", *SMALL, uri=uri,
    )  # fmt: skip
    _cli_in_process("sweep", "--experiment", "search", "--name", "s", "--max-evals", "4", *SMALL, uri=uri)
    return uri, grid


@pytest.fixture
def in_store(store, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store[0])
    monkeypatch.delenv("HYPERTUNE_UI_URL", raising=False)
    return store[0]


def test_cli_report_writes_figures_table_and_markdown(store, tmp_path, in_store):
    out = tmp_path / "rep"
    done = _cli("report", "--experiment", "grid", "--experiment", "search", "--out", str(out), uri=store[0])
    assert "report.md" in done.stdout
    pngs = {p.name for p in out.glob("*.png")}
    # grid factors, sweep factors (lr, weight decay vary only there) and the scatter
    assert {"acc_vs_dropout.png", "acc_vs_norm_type.png", "acc_vs_lr.png", "lr_weight_decay_scatter.png"} <= pngs
    assert "acc_vs_dropout_p.png" not in pngs  # the assignment's name, not the parameter's
    assert "expected_max.png" in pngs  # the sweep's 4 trials: would more trials have helped?
    markdown = (out / "report.md").read_text()
    assert "## Would more trials have helped?" in markdown and "Tang et al. 2020" in markdown
    for name in pngs:
        assert f"({name})" in markdown
    assert "top_runs.csv" in markdown and "#/experiments/" in markdown and "workflowType=machine_learning" in markdown

    table = pd.read_csv(out / "top_runs.csv")
    for column in ["budget", "n", "mean_val_acc_pct", "ci_low_pct", "ci_high_pct", "recalibrate_bn", "train_subset"]:
        assert column in table
    assert {"lr", "weight_decay", "dropout_p", "norm_type", "optimizer", "batch_size"} <= set(table.columns)
    assert (table["budget"] == 300).all() and (table["train_subset"] == 300).all()  # 300 images x 1 epoch
    grid_rows = table[table["source"] == "grid"]
    # 4 configs over 2 seeds each; at 300 images x 1 epoch some seeds end at chance: counted apart as collapsed
    assert len(grid_rows) == 4 and (grid_rows["n"] + grid_rows["collapsed"] == 2).all()
    runs = tracking.runs_frame("grid")
    for _, row in grid_rows.iterrows():
        arm = runs[(runs["dropout_p"] == row["dropout_p"]) & (runs["norm_type"] == row["norm_type"])]
        kept = arm[~stats.collapsed(arm["val_accuracy"], 10)]  # the mean leaves collapsed seeds out
        expected = kept["val_accuracy"].mean() * 100 if len(kept) else float("nan")
        assert row["mean_val_acc_pct"] == pytest.approx(expected, abs=0.01, nan_ok=True)
    assert table["rank_in_budget"].tolist() == list(range(1, len(table) + 1))
    assert table["mean_val_acc_pct"].dropna().is_monotonic_decreasing


def test_cli_grid_prints_the_ui_link(store, in_store):
    line = next(line for line in store[1].splitlines() if line.startswith("MLflow UI"))
    assert f"/#/experiments/{tracking.experiment_id('grid')}/runs?workflowType=machine_learning" in line


def test_unknown_experiment_lists_the_existing_ones(store, tmp_path):
    done = _cli("report", "--experiment", "nope", "--out", str(tmp_path), uri=store[0], check=False)
    assert done.returncode != 0
    message = done.stderr.strip()
    assert len(message.splitlines()) == 1 and "'nope'" in message and "grid" in message and "search" in message
    assert not [p for p in tmp_path.iterdir() if p.suffix in (".png", ".md", ".csv")]  # no report written


def test_experiment_without_finished_runs_says_so(in_store, tmp_path):
    exp = tracking.experiment_id("unfinished")
    with pytest.raises(report.ReportError, match="no finished trial runs in 'unfinished' \\(0 trial runs"):
        report.write_report(["grid", "unfinished"], tmp_path)
    run = tracking.start_run(exp, {"lr": 0.1, "epochs": 1}, {"trial_key": "k1"})
    tracking.end_run(run, tracking.FAILED)
    with pytest.raises(report.ReportError, match="1 trial runs; all runs by status: failed: 1"):
        report.trial_runs("unfinished")


def test_runs_url_opens_a_view_with_the_varied_columns(in_store):
    url = report.runs_url("grid", base="http://127.0.0.1:5999")
    exp = tracking.client().get_experiment_by_name("grid")
    assert url == (
        f"http://127.0.0.1:5999/#/experiments/{exp.experiment_id}/runs"
        f"?workflowType=machine_learning&viewStateShareKey={report.SHARE_KEY}"
    )
    state = json.loads(exp.tags[f"mlflow.sharedViewState.{report.SHARE_KEY}"])
    columns = state["selectedColumns"]
    assert {"params.`dropout_p`", "params.`norm_type`", "params.`seed`", "metrics.`val_accuracy`"} <= set(columns)
    assert "params.`lr`" not in columns  # fixed in this grid: not a column
    assert state["orderByKey"] == "metrics.`val_accuracy`" and state["orderByAsc"] is False
    plain = report.runs_url("grid", base="http://h:1", view=False)
    assert plain.endswith("/runs?workflowType=machine_learning")


def test_ui_base_prefers_the_env_then_a_tracking_server(monkeypatch):
    monkeypatch.setenv("HYPERTUNE_UI_URL", "http://class:8080/")
    assert report.ui_base() == "http://class:8080"
    monkeypatch.delenv("HYPERTUNE_UI_URL")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://server:5000")
    assert report.ui_base() == "http://server:5000"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////tmp/x.db")
    assert report.ui_base() == report.DEFAULT_UI


def _runs(**columns) -> pd.DataFrame:
    frame = pd.DataFrame(columns)
    n = len(frame)
    defaults = {
        "status": tracking.ROW_FINISHED,
        "seed": range(n),
        "epochs": 1,
        "data_train_subset": 300,
        "data_val_subset": 200,
        "data_val_size": 5000,
        "run_id": [f"r{i}" for i in range(n)],
        "experiment": "e",
        "source": "grid",
        "lr": 1e-3,
    }
    for name, value in defaults.items():
        if name not in frame:
            frame[name] = value
    frame["train_images"] = report.runs_train_images(frame)
    frame["budget"] = frame["train_images"] * frame["epochs"]
    return frame


def test_top_configs_compare_only_at_equal_budget():
    runs = _runs(val_accuracy=[0.80, 0.82, 0.90, 0.88, 0.70], epochs=[1, 1, 2, 2, 1], lr=[1e-3] * 4 + [1e-2])
    runs["seed"] = [0, 1, 0, 1, 0]
    table = report.top_configs(runs)
    assert table[["budget", "rank_in_budget", "n"]].values.tolist() == [[600, 1, 2], [300, 1, 2], [300, 2, 1]]
    assert table.loc[0, "mean_val_acc_pct"] == pytest.approx(89.0)
    assert table.loc[1, "seeds"] == "0,1"


def test_budget_label_states_images_epochs_and_validation():
    runs = _runs(val_accuracy=[0.5, 0.6], data_train_subset=[np.nan, np.nan], epochs=[3, 3])
    runs["data_val_subset"] = np.nan
    assert report.budget_label(runs) == (
        "budget per trial: 55,000 training images × 3 epochs | validated on all 5,000 images"
    )


def test_budget_label_counts_the_images_of_each_runs_own_data_set():
    runs = _runs(val_accuracy=[0.5, 0.6], data_train_subset=[8000, np.nan], epochs=[4, 4])
    runs["data_val_subset"] = [300, np.nan]
    runs["data_val_size"] = np.nan  # the data set's default
    runs["data_dataset"] = "digits"  # 1,797 images: 359 carved off for test, 239 validation, 1,199 training
    runs = runs.drop(columns=["train_images", "budget"], errors="ignore")  # as tracking.runs_frame gives them
    assert report.budget_label(runs) == (
        "budget per trial: 1,199 training images × 4 epochs | validated on all 239 images"
    )


def test_chance_level_of_eta_squared_matches_levels_and_trials():
    rng = np.random.default_rng(1)
    n = 16
    runs = pd.DataFrame(
        {
            "val_accuracy": rng.normal(0.8, 0.02, n),
            "optimizer": ["adam", "adamw"] * (n // 2),
            "lr": np.exp(rng.uniform(-9, -4, n)),
            "signal": np.repeat([0, 1], n // 2),
        }
    )
    runs["val_accuracy"] += runs["signal"] * 0.2
    table = report.importance_table(runs, ["optimizer", "lr", "signal"], permutations=3000)
    assert table.loc["optimizer", "chance_mean"] == pytest.approx(1 / 15, abs=0.01)  # (levels-1)/(trials-1)
    assert table.loc["lr", "chance_mean"] == pytest.approx(3 / 15, abs=0.015)  # 4 bins
    for name in table.index:
        assert table.loc[name, "eta_squared"] == pytest.approx(stats.eta_squared(runs, name))
    assert table.loc["signal", "eta_squared"] > table.loc["signal", "chance_95"]
    assert table.loc["signal", "p_value"] < 0.01
    fig = plots.importance(table)
    bars = [p for p in fig.axes[0].patches if p.get_width() > 0]
    assert len(bars) == 3
    plots.plt.close(fig)


def _overlap(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def test_caption_goes_below_rotated_ticks_and_balance_states_counts(tmp_path):
    names = [f"class {i}" for i in range(10)]
    counts = pd.DataFrame(
        {"class": names * 2, "split": ["train"] * 10 + ["validation"] * 10, "images": [5500] * 10 + [500] * 10}
    )
    fig = plots.class_balance(counts)
    subtitle = " ".join(t.get_text() for t in fig.axes[0].texts)
    assert "5,500 per class" in subtitle and "500 per class" in subtitle
    plots.save_figure(fig, "balance", "A caption long enough to matter. " * 4, folder=tmp_path)
    renderer = fig.canvas.get_renderer()
    caption = fig.texts[-1].get_window_extent(renderer)
    ticks = [t.get_window_extent(renderer) for t in fig.axes[0].get_xticklabels()]
    assert all(not _overlap(caption, t) for t in ticks)
    assert caption.y1 <= min(t.y0 for t in ticks)
    assert (tmp_path / "balance.png").exists()
    plots.plt.close(fig)


def test_integer_factor_gets_integer_ticks_and_the_budget_line():
    summary = pd.DataFrame(
        {"num_conv_blocks": [0, 1, 2, 3], "norm_type": "none", "mean": 0.8, "ci_low": 0.79, "ci_high": 0.81, "n": 3}
    )
    fig = plots.accuracy_vs(summary, "num_conv_blocks", "norm_type", "t", "blocks", budget="budget per trial: X")
    fig.canvas.draw()
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert labels == ["0", "1", "2", "3"]
    assert "budget per trial: X" in [t.get_text() for t in fig.axes[0].texts]
    plots.plt.close(fig)


def test_lr_range_marks_failed_points_instead_of_plotting_them_as_measured():
    grid = pd.DataFrame(
        {
            "lr": [1e-3, 1e-3, 1e-2, 1e-2, 1e-1, 1e-1],
            "norm_type": "none",
            "seed": [0, 1] * 3,
            "val_accuracy": [0.80, 0.82, 0.79, np.nan, np.nan, np.nan],
            "status": ["finished", "finished", "finished", "failed", "failed", "failed"],
        }
    )
    fig = plots.lr_range(grid, tolerance=0.02, budget="b")
    ax_acc, ax_gap = fig.axes[:2]
    plotted = np.concatenate([line.get_ydata() for line in ax_acc.get_lines()])
    assert not np.any(np.isclose(plotted, 10.0)) and not np.any(np.isclose(plotted, 0.0))
    texts = [t.get_text() for t in ax_acc.texts]
    assert "1/2 failed" in texts  # lr=1e-2: one of two seeds failed
    assert ax_gap.get_ylim()[0] >= -7 and ax_gap.get_ylim()[1] <= 1.5  # an axis on which 2 points are visible
    plots.plt.close(fig)


def test_scatter_separates_adam_from_adamw_and_marks_the_best():
    runs = pd.DataFrame(
        {
            "lr": [1e-3, 2e-3, 3e-3, 1e-3],
            "weight_decay": [1e-4, 1e-4, 1e-3, 1e-4],
            "optimizer": ["adam", "adamw", "adamw", "adamw"],
            "val_accuracy": [0.70, 0.90, np.nan, 0.85],
        }
    )
    fig = plots.lr_weight_decay_scatter(runs, budget="b")
    titles = [ax.get_title() for ax in fig.axes[:2]]
    assert "L2" in titles[0] and "decoupled" in titles[1]
    notes = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert "best: 90.0%" in notes
    plots.plt.close(fig)


def test_separate_grids_in_one_experiment_are_not_compared_with_each_other():
    # grid 1: dropout x norm at 12 epochs (lr fixed); grid 2: lr x norm at 3 epochs (dropout fixed at 0.25)
    one = [(d, n, 1e-3, 12) for d in (0.0, 0.5) for n in ("none", "batch")]
    two = [(0.25, n, lr, 3) for lr in (1e-3, 1e-2) for n in ("none", "batch")]
    rows = [(*cell, seed) for cell in one + two for seed in (0, 1)]
    runs = _runs(val_accuracy=np.linspace(0.5, 0.9, len(rows)), **dict(zip(
        ["dropout_p", "norm_type", "lr", "epochs", "seed"], map(list, zip(*rows, strict=True)), strict=True
    )))  # fmt: skip
    assert set(report.controlled(runs, "dropout_p")["epochs"]) == {12}
    assert set(report.controlled(runs, "lr")["epochs"]) == {3}
    assert len(report.controlled(runs, "norm_type")) == len(runs)  # both grids cross norm_type
    assert report.controlled(runs, "epochs").empty  # 12 vs 3 epochs never ran with the rest fixed
    assert report.factor_figure(runs, "epochs") is None
    fig = report.factor_figure(runs, "dropout_p")
    assert "12 epochs" in " ".join(t.get_text() for t in fig.axes[0].texts)
    plots.plt.close(fig)


def test_budget_of_a_data_spec_and_the_final_runs():
    from lib.data import DataSpec

    assert report.budget_of(DataSpec(train_subset=8000), 4) == (
        "budget per trial: 8,000 training images × 4 epochs | validated on all 5,000 images"
    )
    assert report.budget_of(DataSpec(final=True), 15).endswith(
        "60,000 training images × 15 epochs | scored once on the 10,000 test images"
    )
    with pytest.raises(ValueError, match="budget_of"):
        report.budget_label(pd.DataFrame({"epochs": [1], "val_accuracy": [0.5]}))
