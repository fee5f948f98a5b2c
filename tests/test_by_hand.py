"""00_by_hand, the week-2 assignment written by hand, checked against the package.

Its master is ``assignment/00_by_hand.ipynb`` (the student's code tagged ``solution``); the committed
``notebooks/00_by_hand.ipynb`` is the worked solution with the saved outputs of the ``quick`` profile.
Fast checks read the files: the work is really done by hand (MLflow, hyperopt and matplotlib calls found in
the parsed code, not in comments), one papermill ``parameters`` cell reads the profile, no injected cell, the
student's code is tagged ``solution`` and the set-up cells are not, every code cell follows a markdown cell,
code lines stay within 100 characters, the master's code is the worked solution's, and the committed outputs
come from the documented ``quick`` profile. They also check docs/glossary.md, which the notebook links.

The slow tests read the one execution of the round trip (``tests/roundtrip.py``: the student edition with its
TODOs filled in from the master, smoke profile, its own MLflow store and figure folder) and compare its
outputs with what the package computes from the very same MLflow runs. The notebook logs its runs with the
package's param names and a ``trial_key`` tag, so the package's own reader (``lib.report.trial_runs``) reads
them, and the comparison is against the package's report itself, not a re-implementation:

- ``top_runs.csv`` against the ``top_runs.csv`` of ``lib.report.write_report`` on that experiment: the same
  run ids in the same order with the same accuracies and hyperparameters. The package ranks trials that did
  not collapse (within 5 points of chance) and lists collapsed ones last without a mean; the notebook marks
  the same trials ``collapsed`` and they can only come last by accuracy.
- ``acc_vs_num_conv_blocks.csv``, the numbers the notebook draws as error bars, against ``lib.stats.mean_ci``
  of the package's usable trials per block count: n, mean and both 95% bounds.
- The three figures are PNG files the notebook wrote, under the names the package's report gives them.

A figure's pixels are not compared: the package draws a search differently (points and bin means, one panel
per optimizer), so equal numbers are the honest claim. Each comparison is also run on a tampered copy (two
rows swapped, a normal-curve interval instead of the t-interval) and must fail there, so it can fail.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "assignment" / "00_by_hand.ipynb"  # the master
COMMITTED = ROOT / "notebooks" / "00_by_hand.ipynb"  # the worked solution with its saved outputs
GLOSSARY = Path(__file__).resolve().parent.parent / "docs" / "glossary.md"
EXPERIMENT = "00_by_hand"
FIGURES = ("acc_vs_dropout.png", "acc_vs_num_conv_blocks.png", "lr_weight_decay_scatter.png")
HYPERPARAMETERS = ("num_conv_blocks", "norm_type", "dropout_p", "lr", "weight_decay")


def _notebook(path: Path = NOTEBOOK) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def _tags(cell: nbformat.NotebookNode) -> list[str]:
    return list(cell.metadata.get("tags", []))


def _code_cells(path: Path = NOTEBOOK) -> list[nbformat.NotebookNode]:
    return [cell for cell in _notebook(path).cells if cell.cell_type == "code"]


def _called_names(source: str) -> set[str]:
    """Dotted names of every call in ``source`` (``mlflow.log_params``, ``fmin``, ``ax.errorbar``)."""

    def dotted(node: ast.AST) -> str:
        if isinstance(node, ast.Name):
            return node.id
        if isinstance(node, ast.Attribute):
            return f"{dotted(node.value)}.{node.attr}"
        return "?"

    return {dotted(node.func) for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Call)}


# --- the notebook file --------------------------------------------------------------------------------------


def test_the_notebook_does_the_work_by_hand_with_real_calls() -> None:
    calls = set().union(*(_called_names(cell.source) for cell in _code_cells()))
    wanted = {
        "mlflow.set_tracking_uri",
        "mlflow.set_experiment",
        "mlflow.start_run",
        "mlflow.log_params",
        "mlflow.log_metric",
        "mlflow.search_runs",
        "fmin",
        "hp.choice",
        "hp.uniform",
        "hp.loguniform",
        "space_eval",
        "Trials",
        "plt.subplots",
        "ax.scatter",
        "ax.errorbar",
        "fig.colorbar",
        "fig.savefig",
    }
    assert wanted <= calls, f"missing calls: {sorted(wanted - calls)}"
    assert not {name for name in calls if name.startswith(("report.", "plots.", "run_sweep", "run_grid"))}
    code = "\n".join(cell.source for cell in _code_cells())
    assert "algo=tpe.suggest" in code and "rstate=np.random.default_rng(SEED)" in code
    assert '"status": STATUS_OK' in code and "torch.manual_seed(SEED)" in code


def test_one_parameters_cell_first_reads_the_profile_and_nothing_is_injected() -> None:
    cells = _notebook().cells
    tagged = [cell for cell in cells if "parameters" in _tags(cell)]
    assert len(tagged) == 1
    assert tagged[0].source.splitlines()[0] == "profile = profiles.default_profile()"
    assert not [cell for cell in cells if "injected-parameters" in _tags(cell)]


def test_solution_cells_hold_the_students_code_and_the_setup_runs_without_them() -> None:
    cells = _code_cells()
    solution = [cell for cell in cells if "solution" in _tags(cell)]
    joined = "\n".join(cell.source for cell in solution)
    for piece in ("class HandCNN", "def train_and_score", "space = {", "def objective", "def mean_ci", "savefig"):
        assert piece in joined, f"{piece!r} is not in a solution cell"
    assert all(" ".join(str(cell.metadata.get("todo", "")).split()) for cell in solution), "a solution without todo"
    first = next(i for i, cell in enumerate(cells) if "solution" in _tags(cell))
    setup = "\n".join(cell.source for cell in cells[:first])
    assert "import mlflow" in setup and "load_splits(" in setup and "profiles.default_profile()" in setup
    for cell in cells[first:]:
        assert "import " not in cell.source, "imports after the first solution cell: the hand-out could not run them"


def test_every_code_cell_follows_a_markdown_cell_and_code_lines_fit() -> None:
    cells = _notebook().cells
    assert cells[0].cell_type == "markdown"
    for before, cell in zip(cells, cells[1:], strict=False):
        if cell.cell_type == "code":
            assert before.cell_type == "markdown", f"code cell without markdown before it:\n{cell.source[:200]}"
    lines = [line for cell in _code_cells() for line in cell.source.splitlines() if line.strip()]
    assert max(map(len, lines)) <= 100
    statements = sum(_logical_lines(cell.source) for cell in _code_cells())
    assert statements <= 125, f"{statements} logical lines besides imports: the notebook should stay about a hundred"


def _logical_lines(source: str) -> int:
    """Logical lines of ``source`` (a call wrapped over three lines counts once), imports left out."""
    tokens = tokenize.generate_tokens(io.StringIO(source + "\n").readline)
    imports = sum(line.startswith(("import ", "from ")) for line in source.splitlines())
    return sum(token.type == tokenize.NEWLINE for token in tokens) - imports


def test_the_first_cell_says_what_you_will_find_out_and_links_the_glossary() -> None:
    first = _notebook().cells[0].source
    assert first.startswith("# ") and "## What you will find out" in first and "What we found" not in first
    assert "[glossary](../docs/glossary.md)" in first
    assert _notebook(COMMITTED).cells[0].source.count("## What we found") == 1  # the worked solution's findings
    exercises = next(cell.source for cell in _notebook().cells if cell.source.startswith("## Exercises"))
    assert 3 <= len(re.findall(r"^\d\. ", exercises, flags=re.M)) <= 5


def test_the_masters_code_is_the_worked_solutions_but_for_the_experiment_name() -> None:
    """The committed notebook (saved outputs) and the master (the hand-out's source) must not drift apart."""

    def lines(path: Path) -> set[str]:
        return {line.strip() for cell in _code_cells(path) for line in cell.source.splitlines() if line.strip()}

    assert lines(COMMITTED) - lines(NOTEBOOK) == {'batch_size, SEED, experiment = 64, 0, "00_by_hand"'}
    assert lines(NOTEBOOK) - lines(COMMITTED) == {
        "batch_size, SEED = 64, 0",
        'experiment = profiles.experiment_name("00_by_hand")  # on a class server: <login>-00_by_hand',
    }


def test_the_saved_outputs_come_from_one_run_of_the_quick_profile() -> None:
    cells = _code_cells(COMMITTED)
    assert all(cell.execution_count for cell in cells), "save the notebook executed"
    printed = "".join(out.get("text", "") for cell in cells for out in cell.outputs if out.output_type == "stream")
    assert "profile quick:" in printed, "the markdown documents the quick profile as the saved reference"
    assert not [out for cell in cells for out in cell.outputs if out.output_type == "error"]


def test_the_glossary_defines_the_terms_alphabetically_and_briefly() -> None:
    text = GLOSSARY.read_text()
    headings = re.findall(r"^## (.+)$", text, flags=re.M)
    assert headings == sorted(headings, key=str.lower), "glossary entries in alphabetical order"
    terms = (
        "seed",
        "paired",
        "confidence interval",
        "bootstrap",
        "holm",
        "nuisance",
        "scientific",
        "fixed hyperparameter",
        "budget",
        "trial",
        "validation set",
        "test set",
        "successive halving",
        "expected maximum",
        "collapsed",
        "supported",
        "contradicted",
        "not shown",
        "budget too short",
    )
    for term in terms:
        assert any(term in heading.lower() for heading in headings), f"no glossary entry for {term!r}"
    assert len(text.split()) <= 1600


# --- executed in the smoke profile, against the package ------------------------------------------------------


@pytest.fixture(scope="module")
def executed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The round trip's one execution (smoke profile): its store ``mlflow.db`` and its ``figures/``."""
    from roundtrip import executed_edition

    return executed_edition(tmp_path_factory)


@pytest.fixture
def package_report(executed: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[pd.DataFrame, Path]:
    """The package's reading of the notebook's runs (``report.trial_runs``) and its report's folder."""
    from lib import report

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{executed}/mlflow.db")
    out = executed / "package_report"
    if not (out / "top_runs.csv").exists():
        report.write_report([EXPERIMENT], out)
    return report.trial_runs(EXPERIMENT), out


def _usable(runs: pd.DataFrame) -> pd.DataFrame:
    from lib import stats

    finished = runs["status"].str.lower() == "finished"
    collapsed = runs["collapsed"] if "collapsed" in runs else stats.collapsed(runs["val_accuracy"], 10)
    return runs[finished & ~collapsed.fillna(False).astype(bool)]


def check_top_runs(mine: pd.DataFrame, package: pd.DataFrame, runs: pd.DataFrame) -> None:
    """``mine`` (the notebook's top_runs.csv) agrees with the package's report (its top_runs.csv) on ``runs``."""
    assert len(mine) == min(10, len(runs)), "top_runs.csv: the best 10 trials, or all of them"
    collapsed = set(runs["run_id"]) - set(_usable(runs)["run_id"])
    assert set(mine.loc[mine["collapsed"], "run_id"]) == collapsed & set(mine["run_id"]), "collapsed trials"
    kept = mine[~mine["collapsed"]].reset_index(drop=True)
    ranked = package[package["mean_val_acc_pct"].notna()].reset_index(drop=True)
    assert (ranked["n"] == 1).all(), "every configuration of a search is its own trial"
    assert len(ranked) >= len(kept) and (len(mine) == 10 or len(ranked) == len(kept))
    ranked = ranked.head(len(kept))
    assert mine["collapsed"].is_monotonic_increasing, "collapsed trials come last"
    # the package rounds to 0.01 points; ties may list in either order, so compare the sequence of accuracies
    # and each run's own accuracy
    np.testing.assert_allclose(kept["val_accuracy"] * 100, ranked["mean_val_acc_pct"], atol=0.0051)
    by_id = ranked.set_index("run_ids")
    assert set(kept["run_id"]) == set(by_id.index)
    mine_by_id = kept.set_index("run_id")
    np.testing.assert_allclose(
        mine_by_id["val_accuracy"] * 100, by_id.loc[mine_by_id.index, "mean_val_acc_pct"], atol=0.0051
    )
    for name in HYPERPARAMETERS:
        theirs = by_id.loc[mine_by_id.index, name]
        if name == "norm_type":
            assert mine_by_id[name].tolist() == theirs.tolist()
        else:
            np.testing.assert_allclose(mine_by_id[name].astype(float), theirs.astype(float), rtol=1e-9)


def check_blocks(mine: pd.DataFrame, runs: pd.DataFrame) -> None:
    """``mine`` (acc_vs_num_conv_blocks.csv) holds lib.stats.mean_ci of the usable trials per block count."""
    from lib import stats

    usable = _usable(runs)
    expected = pd.DataFrame(
        [
            (blocks, len(group), *stats.mean_ci(group["val_accuracy"].tolist()))
            for blocks, group in usable.groupby("num_conv_blocks")
        ],
        columns=["num_conv_blocks", "n", "mean", "ci_low", "ci_high"],
    ).set_index("num_conv_blocks")
    mine = mine.set_index("num_conv_blocks").sort_index()
    assert mine.index.tolist() == expected.index.tolist()
    for column in expected.columns:
        np.testing.assert_allclose(
            mine[column].astype(float), expected[column].astype(float), rtol=1e-9, equal_nan=True, err_msg=column
        )


def stats_t(n: pd.Series) -> pd.Series:
    """The t quantile of a 95% interval for ``n`` values."""
    from scipy import stats

    return pd.Series(stats.t.ppf(0.975, n.astype(float) - 1), index=n.index)


@pytest.mark.slow
def test_top_runs_csv_matches_the_package_report_on_the_same_runs(executed: Path, package_report) -> None:
    runs, out = package_report
    mine = pd.read_csv(executed / "figures" / "top_runs.csv")
    package = pd.read_csv(out / "top_runs.csv")
    check_top_runs(mine, package, runs)
    assert len(_usable(runs)) >= 2, "the smoke run must rank at least two trials, or the order checks nothing"
    swapped = mine.copy()
    swapped.iloc[[0, 1]] = swapped.iloc[[1, 0]].to_numpy()
    if swapped["val_accuracy"].iloc[0] != swapped["val_accuracy"].iloc[1]:
        with pytest.raises(AssertionError):
            check_top_runs(swapped, package, runs)


@pytest.mark.slow
def test_the_conv_block_error_bars_are_the_packages_mean_and_95_percent_interval(
    executed: Path, package_report
) -> None:
    runs, _ = package_report
    mine = pd.read_csv(executed / "figures" / "acc_vs_num_conv_blocks.csv")
    check_blocks(mine, runs)
    finite = mine["ci_low"].notna()
    assert finite.any(), "the smoke run must give some block count two usable trials, or the CI check is empty"
    normal = mine.copy()  # the usual slip: 1.96 standard errors whatever the number of trials
    half = (normal["ci_high"] - normal["mean"]) * 1.96 / stats_t(normal["n"])
    normal["ci_low"], normal["ci_high"] = normal["mean"] - half, normal["mean"] + half
    with pytest.raises(AssertionError):
        check_blocks(normal, runs)


@pytest.mark.slow
def test_the_figures_are_pngs_under_the_names_the_package_report_uses(executed: Path, package_report) -> None:
    _, out = package_report
    for name in FIGURES:
        data = (executed / "figures" / name).read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 10_000, name
        assert (out / name).exists(), f"the package's report has no {name}"
