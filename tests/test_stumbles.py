"""What a student scripting their own runs stumbled over: help texts whose numbers were stale, a notebook whose
outputs the study overwrote, report lines that said too little or two things at once, and the process settings
that made a sweep's trials slow beside busy programs. Every check here fails on the code before the fixes."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from lib import paths, plots, report
from lib.cli.commands import _report_outcome
from lib.cli.parser import build_parser
from lib.data import DEFAULT_VAL_SIZE
from lib.datasets import TRAIN_PART_IMAGES
from lib.engine.search import DEFAULT_MAX_EVALS, DEFAULT_SPACE, recommended_trials, searched_dimensions
from lib.paths import PROJECT_ROOT
from lib.study import runner, verdicts
from lib.study.profiles import MEASURED_SECONDS

README = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")


def _help(command: str) -> str:
    sub = build_parser()._subparsers._group_actions[0].choices[command]  # type: ignore[union-attr]
    return " ".join(sub.format_help().split())


# --- help texts: every number they quote, against its source


def test_study_help_quotes_the_measured_time_of_each_profile_as_the_readme_does():
    text = _help("study")
    quoted = dict(re.findall(r"(quick|full|deep) \([^)]*?about (\d+) min", text))
    plan = {"quick": runner.NOTEBOOKS, "full": runner.NOTEBOOKS, "deep": runner.DEEP_NOTEBOOKS}
    for profile, notebooks in plan.items():
        measured = sum(MEASURED_SECONDS[profile][name] for name in notebooks)
        assert int(quoted[profile]) == round(measured / 60), profile
    make_run = int(re.search(r"`make run` took (\d+) minutes", README).group(1))  # the README's quick time
    assert int(quoted["quick"]) == make_run
    assert int(quoted["full"]) == int(re.search(r"\*\*(\d+) minutes\*\* \(3,206 s\)", README).group(1))


def test_output_dir_help_says_where_executed_notebooks_go_by_default():
    text = _help("study")
    assert "instead of overwriting them in place" not in text
    default = runner.outputs_for("01_baseline", "quick").working.relative_to(PROJECT_ROOT).parent.as_posix()
    assert default.replace("quick", "<profile>") + "/" in text


def test_subset_help_quotes_each_data_set_s_own_sizes():
    text = _help("grid")
    train = re.search(r"--train-subset TRAIN_SUBSET .*?\(default: all of them: (.*?); `python", text).group(1)
    for size, names in re.findall(r"([\d,]+) for ([a-z_0-9, ]+?)(?:;|$)", train):
        for name in names.split(", "):
            assert int(size.replace(",", "")) == TRAIN_PART_IMAGES[name] - DEFAULT_VAL_SIZE, name
            assert int(size.replace(",", "")) == report.runs_train_images(pd.DataFrame([{"data_dataset": name}]))[0]
    assert "digits" not in train and "55k" not in text and "5k" not in text  # digits' sizes are not 55,000 / 5,000
    val = re.search(r"--val-subset VAL_SUBSET .*?\(default: all of them, ([\d,]+) for the built-in", text).group(1)
    assert int(val.replace(",", "")) == DEFAULT_VAL_SIZE


def test_the_sweep_example_asks_for_what_the_budget_rule_needs():
    example = re.search(r"python -m lib sweep .*--max-evals (\d+)", _help("sweep"))
    needed = recommended_trials(len(searched_dimensions(DEFAULT_SPACE)))
    assert int(example.group(1)) >= needed and int(example.group(1)) == DEFAULT_MAX_EVALS


# --- outputs never overwrite a student's own


def test_00_by_hand_and_the_study_write_different_folders(monkeypatch):
    monkeypatch.delenv("HYPERTUNE_FIGURES_DIR")
    for profile in ("quick", "full"):
        study = {runner.outputs_for(name, profile).figures for name in runner.NOTEBOOKS}
        by_hand = runner.outputs_for("00_by_hand", profile).figures
        assert study == {PROJECT_ROOT / "runs" / profile / "figures"}
        assert by_hand == PROJECT_ROOT / "runs" / profile / "figures" / "by_hand"
    reference = runner.outputs_for("00_by_hand", "quick", reference=True).figures
    assert reference == PROJECT_ROOT / "figures" / "by_hand"
    for name in (*runner.NOTEBOOKS, "00_by_hand"):  # everything a papermill 00 and `make run` write is ignored
        outputs = runner.outputs_for(name, "quick")
        for path in (outputs.working, outputs.figures / "x.png"):
            ignored = subprocess.run(["git", "check-ignore", "-q", str(path)], cwd=PROJECT_ROOT, check=False)
            assert ignored.returncode == 0, path


def test_00_by_hand_run_by_hand_names_its_own_folder_before_it_writes_anything(monkeypatch, tmp_path):
    import nbformat

    notebook = nbformat.read(PROJECT_ROOT / "notebooks" / "00_by_hand.ipynb", as_version=4)
    code = [cell.source for cell in notebook.cells if cell.cell_type == "code"]
    first_write = next(i for i, source in enumerate(code) if "figures_dir()" in source)
    own = next(i for i, source in enumerate(code) if 'paths.own_figures_dir("by_hand")' in source)
    assert own < first_write
    monkeypatch.delenv("HYPERTUNE_FIGURES_DIR")  # JupyterLab or papermill by hand: nothing names a folder
    monkeypatch.setenv("HYPERTUNE_PROFILE", "quick")
    monkeypatch.setattr(paths, "PROJECT_ROOT", tmp_path)  # the folders are made: a copy of the project, not ours
    assert paths.own_figures_dir("by_hand") == tmp_path / "runs" / "quick" / "figures" / "by_hand"
    assert paths.figures_dir() == tmp_path / "runs" / "quick" / "figures" / "by_hand"
    monkeypatch.setenv("HYPERTUNE_FIGURES_DIR", str(tmp_path / "figures" / "by_hand"))  # the runner's choice wins
    assert paths.own_figures_dir("by_hand") == tmp_path / "figures" / "by_hand"
    assert not (PROJECT_ROOT / "figures" / "by_hand").exists()  # the committed figures/ stays as it is


def test_a_figure_saved_over_an_earlier_run_s_removes_the_table_that_no_longer_matches(tmp_path, capsys):
    stale = tmp_path / "acc_vs_num_conv_blocks.csv"
    stale.write_text("num_conv_blocks,mean\n0,0.5\n")
    os.utime(stale, (plots._STARTED - 60, plots._STARTED - 60))  # written before this process started
    fresh = tmp_path / "other.csv"
    fresh.write_text("x\n")  # written by this run: kept
    for name in ("acc_vs_num_conv_blocks", "other"):
        fig, _ = plt.subplots()
        plots.save_figure(fig, name, "caption", folder=tmp_path)
        plt.close(fig)
    assert not stale.exists() and fresh.exists()
    assert "removed " + str(stale) in capsys.readouterr().out


# --- the report's lines


def _mixed() -> pd.DataFrame:
    """27 grid trials (dropout x blocks x 3 seeds, no role tags: before grids tagged them) at one lr and weight
    decay, and a 30-trial sweep with its role tags, as the README's study leaves them."""
    grid = pd.DataFrame([{"dropout_p": d, "num_conv_blocks": b, "seed": s, "lr": 1e-3, "weight_decay": 5e-4}
                         for d in (0.0, 0.25, 0.5) for b in (0, 1, 2) for s in (0, 1, 2)])  # fmt: skip
    grid = grid.assign(source="grid", **{"tag.sweep": np.nan})
    rng = np.random.default_rng(0)
    sweep = pd.DataFrame({"lr": 10 ** rng.uniform(-3.7, -2, 30), "weight_decay": 10 ** rng.uniform(-5, -2, 30),
                          "dropout_p": rng.uniform(0, 0.5, 30), "num_conv_blocks": 2, "seed": 0})  # fmt: skip
    sweep = sweep.assign(source="sweep", **{"tag.sweep": "search", "tag.role_scientific": "(none declared)",
                                            "tag.role_nuisance": "lr,weight_decay,dropout_p,norm_type",
                                            "tag.role_fixed": "epochs,norm_type"})  # fmt: skip
    frame = pd.concat([grid, sweep], ignore_index=True)
    frame["val_accuracy"] = np.linspace(0.9, 0.996, len(frame))
    return frame.assign(status="finished", norm_type="batch", optimizer="adamw", epochs=10, collapsed=False)


def test_the_roles_line_names_the_grid_s_factors_as_scientific_beside_the_sweep_s_roles():
    from lib.report.markdown import _roles_text

    text = _roles_text(_mixed())
    assert "grid: scientific: dropout_p, num_conv_blocks" in text
    assert "sweep search: scientific: (none declared); nuisance: dropout_p, lr, norm_type, weight_decay" in text


def test_the_scatter_counts_distinct_points_and_keeps_the_best_label_clear_of_the_colour_bar():
    frame = _mixed()
    fig = plots.lr_weight_decay_scatter(frame)
    assert "57 trials, 31 distinct points" in fig.axes[0].get_title()
    frame.loc[frame["lr"].idxmax(), "val_accuracy"] = 1.0  # the best trial at the right edge, next to the colour bar
    fig = plots.lr_weight_decay_scatter(frame)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    axes, colour_bar = fig.axes[0], fig.axes[-1]
    label = next(text for text in axes.texts if text.get_text().startswith("best: "))
    box = label.get_window_extent(renderer)
    assert box.x1 <= axes.get_window_extent(renderer).x1 and box.x1 < colour_bar.get_window_extent(renderer).x0
    plt.close("all")


def test_the_summary_line_keeps_the_cache_count_the_progress_line_shows(capsys):
    frame = pd.DataFrame({"status": ["finished"] * 3, "val_accuracy": [0.9, 0.91, 0.92], "cached": [True, True, False]})
    _report_outcome(frame, ["seed"], "digits")
    assert "3 trials: 3 finished (2 cached), 0 failed" in capsys.readouterr().out


def test_a_row_too_short_to_decide_says_only_that():
    row = {"hypothesis": "H1a", "claim": "c", "budget": "budget per trial: 1,500 training images × 2 epochs",
           "n_seeds": 3, "effect": 2.0, "ci_low": 1.0, "ci_high": 3.0, "unit": "pp", "verdict": "supported",
           "family": "f", "p_value": 0.001, "margin": 0.0, "direction": "greater"}  # fmt: skip
    table = verdicts.adjust(pd.DataFrame([row]))
    assert table["decision"].tolist() == [verdicts.TOO_SHORT]
    text = verdicts.summary_markdown(table)
    assert verdicts.TOO_SHORT in text and "supported" not in text
    wide = verdicts.display(table, full=True)
    assert "supported" not in wide.astype(str).to_numpy().ravel().tolist()


# --- the process settings a sweep trains with


@pytest.mark.slow
@pytest.mark.parametrize("preset", [None, "ACTIVE"])
def test_import_lib_makes_openmp_threads_sleep_while_they_wait_unless_told_otherwise(preset):
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"} | {"PYTHONPATH": str(PROJECT_ROOT)}
    if preset:
        env["OMP_WAIT_POLICY"] = preset
    code = "import os, lib, sys; print(os.environ['OMP_WAIT_POLICY'], 'torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert done.stdout.split() == [preset or "PASSIVE", "False"]  # set before anything has imported torch


def test_a_sweep_small_on_purpose_says_why_in_a_note_instead_of_a_warning(capsys):
    from lib.engine.search import SweepDesign, _checked_space
    from lib.study.profiles import PROFILES, SWEEP_SPACE

    why = "on purpose: it explores for the final model's candidates"
    need = recommended_trials(len(searched_dimensions(SWEEP_SPACE)))
    for profile in ("quick", "full"):
        evals = PROFILES[profile]["sweep_evals"]
        _checked_space(SweepDesign("s", evals, SWEEP_SPACE, budget_note=why))
        line = capsys.readouterr().err.strip()
        assert line.startswith(f"note: {evals} trials for 10 searched dimensions")
        assert f"below the budget rule's {need}: on purpose" in line and "warning" not in line
    _checked_space(SweepDesign("s", 4, SWEEP_SPACE))  # without a reason it is still the warning
    assert capsys.readouterr().err.startswith("warning: 4 trials")


@pytest.mark.slow  # imports torch._dynamo, as a lone trial's start does (seconds)
def test_a_trial_trained_alone_uses_one_thread_as_each_of_a_grid_s_workers(mlflow_store, monkeypatch):
    """A sweep trains one trial at a time in its own process: with a team of threads on shared cores it took
    3 to 8 times as long as a grid's one-thread trials (benchmarks/sweep_vs_grid.py)."""
    import torch

    from lib.config import TrialConfig
    from lib.data import DataSpec
    from lib.engine import local_backend
    from lib.engine.grid import run_trials
    from lib.engine.trial import TrialResult

    threads = []

    def train(config, data, progress=False, on_epoch=None):
        threads.append(torch.get_num_threads())
        return TrialResult(key="", config=config.flat(), status="failed", failure_kind="error", failure_reason="t")

    monkeypatch.setattr(local_backend, "execute_trial", train)
    monkeypatch.setattr(local_backend.os, "cpu_count", lambda: 4)  # a machine with cores to spare
    configs = [TrialConfig.from_flat({"epochs": 1, "seed": seed}) for seed in (0, 1)]
    run_trials(configs, "alone", DataSpec(dataset="digits"), workers=1, progress=False)
    assert threads == [1, 1]
    run_trials(configs, "alone-asked", DataSpec(dataset="digits"), workers=1, threads_per_trial=2, progress=False)
    assert threads[2:] == [2, 2]


def test_a_ctrl_c_during_a_write_to_the_store_waits_for_the_write_to_end():
    import signal
    import time

    from lib import tracking

    steps = []

    @tracking.whole_write
    def write() -> None:
        steps.append("begun")
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C in the middle of the write
        time.sleep(0.05)
        steps.append("ended")

    with pytest.raises(KeyboardInterrupt):
        write()
    assert steps == ["begun", "ended"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
