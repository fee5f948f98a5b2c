"""The first reader's path: the traps that gave silently wrong answers, the try-out folders, the CLI's help,
the README's size and its five-minute study, and the generated results page."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from lib import paths, plots, report, stats, tracking
from lib.cli import main
from lib.cli.parser import build_parser
from lib.report.markdown import checks_section
from lib.report.table import collapsed_trials
from lib.study import results_doc, runner, verdicts

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"


def _grid(**columns) -> pd.DataFrame:
    n = len(next(iter(columns.values())))
    defaults = {"status": "finished", "epochs": 5, "norm_type": "batch", "lr": 1e-3, "weight_decay": 5e-4,
                "dropout_p": 0.0, "num_conv_blocks": 2, "data_train_subset": 2000, "source": "grid",
                "train_images": 2000, "budget": 10_000, "run_id": [f"r{i}" for i in range(n)],
                "experiment": "e", "collapsed": False}  # fmt: skip
    return pd.DataFrame(defaults | columns)


# --- per_seed refuses to pool over a factor that varies


def test_per_seed_names_the_factor_it_would_pool_over_instead_of_mixing_two_arms():
    runs = _grid(
        seed=[0, 1, 2, 0, 1, 2],
        norm_type=["none"] * 3 + ["batch"] * 3,
        dropout_p=[0.25] * 6,
        val_accuracy=[0.80, 0.81, 0.82, 0.90, 0.91, 0.92],
    )
    with pytest.raises(stats.PoolingError, match=r"differ in norm_type \(batch, none\).*pool=True"):
        stats.per_seed(runs, dropout_p=0.25)
    one = stats.per_seed(runs, dropout_p=0.25, norm_type="batch")
    assert one.index.tolist() == [0, 1, 2] and one.tolist() == [0.90, 0.91, 0.92]
    pooled = stats.per_seed(runs, dropout_p=0.25, pool=True)  # asked for: the mean per seed
    assert pooled.tolist() == pytest.approx([0.85, 0.86, 0.87])


# --- boundary warnings only where the range can move


def test_no_warning_asks_to_widen_a_range_past_a_hard_bound_but_a_movable_edge_still_warns():
    best_at_zero = _grid(
        seed=[0, 1, 0, 1, 0, 1],
        dropout_p=[0.0, 0.0, 0.25, 0.25, 0.5, 0.5],
        val_accuracy=[0.95, 0.95, 0.90, 0.90, 0.80, 0.80],
    )
    assert not [w for w in report.boundary_warnings(best_at_zero) if "dropout_p" in w]  # p >= 0: nowhere to go
    best_at_top = best_at_zero.assign(val_accuracy=[0.80, 0.80, 0.90, 0.90, 0.95, 0.95])
    assert any("dropout_p" in w and "above" in w for w in report.boundary_warnings(best_at_top))  # p < 1: it can
    blocks = _grid(seed=[0, 1, 0, 1], num_conv_blocks=[0, 0, 2, 2], val_accuracy=[0.9, 0.9, 0.8, 0.8])
    assert not [w for w in report.boundary_warnings(blocks) if "num_conv_blocks" in w]
    rates = _grid(seed=[0, 1, 0, 1], lr=[1e-4, 1e-4, 1e-2, 1e-2], val_accuracy=[0.9, 0.9, 0.8, 0.8])
    assert any("lr" in w and "below" in w for w in report.boundary_warnings(rates))  # a log range can always move


# --- collapsed trials are flagged and counted apart


def test_collapsed_trials_are_flagged_left_out_of_means_and_counted_in_the_checks():
    runs = _grid(
        seed=[0, 1, 2, 0, 1, 2],
        dropout_p=[0.0] * 3 + [0.5] * 3,
        val_accuracy=[0.90, 0.91, 0.92, 0.10, 0.88, 0.89],
        data_dataset="digits",
    )
    runs["collapsed"] = collapsed_trials(runs)
    assert runs["collapsed"].tolist() == [False, False, False, True, False, False]
    top = report.top_configs(runs).set_index("dropout_p")
    assert top.loc[0.5, "collapsed"] == 1 and top.loc[0.5, "n"] == 2
    assert top.loc[0.5, "mean_val_acc_pct"] == pytest.approx(88.5)  # not dragged to 62.3 by the collapsed seed
    checks = "\n".join(checks_section(runs, ["e"]))
    assert "none of the 6 trials failed" not in checks
    shares = report.failure_shares(runs).set_index(["hyperparameter", "value"])
    assert shares.loc[("dropout_p", "0.5"), "collapsed"] == 1
    assert stats.collapsed(pd.Series([0.149, 0.151, np.nan]), 10).tolist() == [True, False, False]


def test_the_grid_summary_line_counts_collapsed_trials_apart(mlflow_store, capsys):
    code = main(["grid", "--experiment", "collapse", "--dataset", "digits", "--factor", "lr=3e-4,5",
                 "--set", "optimizer=sgd", "--set", "epochs=1", "--seeds", "0", "--workers", "1"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    line = next(line for line in out.splitlines() if line.startswith("2 trials:"))
    frame = report.trial_runs("collapse")
    fell = int(frame["collapsed"].sum())
    assert (f"({fell} collapsed to chance accuracy" in line) == (fell > 0)
    assert set(frame["status"]) <= {tracking.ROW_FINISHED, tracking.ROW_FAILED}


# --- one verdict vocabulary, one status vocabulary


def test_one_verdict_vocabulary_and_the_short_budget_rule():
    undecided = stats.Effect("x", 0.0, -0.01, 0.01, 0.0, 0.0, 5)
    assert stats.verdict(undecided) == stats.NOT_SHOWN == "not shown"
    assert stats.decide(0.3, 0.2) == "not shown"

    def row(budget: str, seeds: int = 5) -> dict:
        return {"hypothesis": "H9", "claim": f"c {budget} {seeds}", "budget": budget, "n_seeds": seeds,
                "effect": -2.0, "ci_low": -3.0, "ci_high": -1.0, "unit": "pp", "verdict": "contradicted",
                "family": "f", "p_value": 0.001, "margin": 0.0, "direction": "greater"}  # fmt: skip

    table = pd.DataFrame(
        [row("8,000 training images × 10 epochs | validated on all 5,000 images"),
         row("budget per trial: 3,000 training images × 2 epochs | validated on 2,000 of 5,000 images"),
         row("8,000 training images × 10 epochs", seeds=2)]
    )  # fmt: skip
    decided = verdicts.adjust(table)["decision"].tolist()
    assert decided == ["contradicted", verdicts.TOO_SHORT, verdicts.TOO_SHORT]
    assert set(verdicts.WORDS.values()) == {
        *stats.VERDICTS,
        verdicts.TOO_SHORT,
        verdicts.DESCRIBED_WORDS,
        verdicts.NOT_DECIDED_RANGE,
        verdicts.NOT_DECIDED_BUDGET,
    }
    assert verdicts.decision_words("inconclusive") == "not shown"  # how CSVs of older code are read


def test_runs_frame_speaks_the_same_status_words_as_a_grid(mlflow_store):
    exp = tracking.experiment_id("words")
    run = tracking.start_run(exp, {"seed": 0}, {"trial_key": "k"}, run_name="r")
    tracking.end_run(run, tracking.FINISHED)
    assert tracking.runs_frame("words")["status"].tolist() == ["finished"]
    assert tracking.runs_frame("words", status="finished")["status"].tolist() == ["finished"]


# --- the figures


def test_the_lr_range_accuracy_axis_stays_between_0_and_100_percent():
    grid = pd.DataFrame({"lr": [1e-3] * 3 + [1e-1] * 3, "norm_type": "none", "seed": [0, 1, 2] * 2,
                         "val_accuracy": [0.85, 0.86, 0.87, 0.10, 0.90, 0.50], "status": "finished"})  # fmt: skip
    fig = plots.lr_range(grid)
    axis = fig.axes[0]
    assert axis.get_ylim() == (0.0, 100.0)
    tops = [seg[:, 1].max() for coll in axis.collections for seg in getattr(coll, "get_segments", list)()]
    bottoms = [seg[:, 1].min() for coll in axis.collections for seg in getattr(coll, "get_segments", list)()]
    assert tops and max(tops) <= 100.0 and min(bottoms) >= 0.0
    plt.close(fig)


def test_learning_curves_use_one_colour_per_seed():
    history = pd.DataFrame([{"seed": s, "epoch": e, "train_loss": 1.0 / e, "val_loss": 1.2 / e, "val_accuracy": 0.8}
                            for s in (0, 1, 2) for e in (1, 2, 3)])  # fmt: skip
    fig = plots.learning_curves(history)
    colours = {line.get_color() for line in fig.axes[0].get_lines()}
    assert len(fig.axes[0].get_lines()) == 6 and len(colours) == 3
    plt.close(fig)


# --- try-outs never write the committed reference


def test_figures_go_under_runs_unless_a_folder_is_named(monkeypatch):
    monkeypatch.delenv("HYPERTUNE_FIGURES_DIR")
    monkeypatch.delenv("HYPERTUNE_PROFILE", raising=False)
    assert paths.figures_dir() == ROOT / "runs" / "quick" / "figures"  # JupyterLab, papermill by hand
    monkeypatch.setenv("HYPERTUNE_PROFILE", "full")
    assert paths.figures_dir() == ROOT / "runs" / "full" / "figures"
    assert paths.figures_dir() != paths.reference_figures_dir()


def test_the_time_left_comes_from_the_measured_times(monkeypatch):
    monkeypatch.setitem(runner.MEASURED_SECONDS, "quick", {"01_baseline": 60, "02_norm_dropout": 200})
    plan = ["01_baseline", "02_norm_dropout"]
    assert runner.time_left("quick", plan, "01_baseline", 20) == pytest.approx(40 + 200)
    assert runner.time_left("quick", plan, "01_baseline", 100) == pytest.approx(6 + 200)  # late: a tenth left
    assert runner.time_left("smoke", plan, "01_baseline", 1) is None


# --- the command line speaks to users


def test_help_is_for_users_with_an_example_for_every_command():
    parser = build_parser()
    text = parser.format_help()
    assert "``" not in text and ":class:" not in text and "What this is not" not in text
    assert "python -m lib grid" in text
    commands = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    for name, sub in commands.items():
        assert "example:\n  python -m lib " + name in sub.format_help(), name


# --- the README


def _five_minute_commands() -> list[list[str]]:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Your own study in 5 minutes", 1)[1].split("\n## ", 1)[0]
    block = section.split("```bash", 1)[1].split("```", 1)[0].replace("\\\n", " ")
    return [shlex.split(line) for line in block.strip().splitlines()]


def _at_the_smallest_budget(words: list[str]) -> list[str]:
    """The README's words with its budget made the smallest that still runs every step: 2 epochs a trial, and
    a sweep of 6 trials (TPE's random start-up is a third of them, so trials 4-6 are TPE's own). Every other
    word stays as written; the README's own timing is a measurement of the words as written."""
    smaller = [{"epochs=10": "epochs=2"}.get(word, word) for word in words]
    if "--max-evals" in smaller:
        at = smaller.index("--max-evals") + 1
        assert int(smaller[at]) > 6, smaller
        smaller[at] = "6"
    return smaller


def test_the_readme_is_a_front_door():
    assert README.stat().st_size <= 10_000
    text = README.read_text(encoding="utf-8")
    assert "{{" not in text, "a placeholder was left in the README"
    for target in re.findall(r"\]\(((?:docs|notebooks)/[^)#]+)", text):
        assert (ROOT / target).exists(), target


@pytest.mark.slow
def test_the_readme_five_minute_study_runs_as_written_and_makes_the_four_outputs(mlflow_store, monkeypatch):
    monkeypatch.chdir(mlflow_store)  # --out runs/first lands in the test's folder, not the repository
    commands = _five_minute_commands()
    assert [c[:4] for c in commands] == [[".venv/bin/python", "-m", "lib", w] for w in ("grid", "sweep", "report")]
    for words in commands:
        assert main(_at_the_smallest_budget(words)[3:]) == 0, words
    out = mlflow_store / "runs" / "first"
    wanted = {"acc_vs_dropout.png", "acc_vs_num_conv_blocks.png", "lr_weight_decay_scatter.png", "top_runs.csv"}
    assert wanted <= {p.name for p in out.iterdir()}
    # docs/usage.md's five functions, on the same runs, as written there
    usage = (ROOT / "docs" / "usage.md").read_text(encoding="utf-8").split("## Replace your own plotting script", 1)[1]
    blocks = re.findall(r"```python\n(.*?)```", usage, flags=re.S)
    assert len(blocks) == 5
    for block in blocks:
        exec(compile(block, "docs/usage.md", "exec"), {})
    made = {"my_acc_vs_dropout.png", "my_lr_weight_decay_scatter.png", "my_top_runs.csv"}
    assert made <= {p.name for p in out.iterdir()} and (mlflow_store / "runs" / "first-again" / "report.md").is_file()
    check_the_store_page_script(mlflow_store, epochs=2)


def check_the_store_page_script(folder: Path, epochs: int = 10) -> None:
    """docs/store.md's plain-MLflow script, as written, draws acc_vs_dropout.png from exactly the grid's trials."""
    page = (ROOT / "docs" / "store.md").read_text(encoding="utf-8")
    for block in re.findall(r"```python\n(.*?)```", page.split("## Draw", 1)[0], flags=re.S):  # the snippets
        exec(compile(block, "docs/store.md", "exec"), {})
    script = page.split("## Draw `acc_vs_dropout.png` yourself", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    assert 10 <= len([line for line in script.splitlines() if line.strip()]) <= 15
    assert "params.epochs = '10'" in script  # the README's budget; the test ran it at the smallest one
    script = script.replace("params.epochs = '10'", f"params.epochs = '{epochs}'")
    names: dict = {}
    exec(compile(script, "docs/store.md", "exec"), names)
    assert (folder / "runs" / "mine" / "acc_vs_dropout.png").is_file()
    trials = report.trial_runs("first")
    grid = trials[(trials["source"] == "grid") & (trials["status"] == tracking.ROW_FINISHED)]
    assert sorted(names["grid"]["run_id"]) == sorted(grid["run_id"])  # no sweep trial, no sweep parent
    drawn = {line.get_label(): dict(zip(*line.get_data(), strict=True)) for line in names["ax"].get_lines()}
    for blocks, part in grid.groupby("num_conv_blocks"):
        means = (part.groupby("dropout_p")["val_accuracy"].mean() * 100).to_dict()
        assert drawn[f"{int(blocks)} conv blocks"] == pytest.approx(means)
    plt.close("all")


# --- the results page is generated


def test_docs_results_regenerates_byte_identical_from_the_committed_csvs():
    expected = results_doc.render(results_doc.TEMPLATE.read_text(encoding="utf-8"))
    assert results_doc.OUTPUT.read_text(encoding="utf-8") == expected, "run `make results` and commit docs/results.md"
    assert "inconclusive" not in expected and "{{" not in expected


def test_a_placeholder_naming_a_missing_claim_is_one_clear_error(tmp_path):
    (tmp_path / "verdicts.csv").write_text((ROOT / "figures" / "verdicts.csv").read_text())
    with pytest.raises(results_doc.TemplateError, match="no claim 'nothing like this'"):
        results_doc.render("{{effect | verdicts.csv | H1 | nothing like this}}", tmp_path)
    with pytest.raises(results_doc.TemplateError, match="no such table"):
        results_doc.render("{{table | missing.csv | H1}}", tmp_path)


def test_every_relative_link_in_the_readme_and_docs_points_at_a_file():
    broken = []
    for page in [README, *sorted((ROOT / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text(encoding="utf-8")):
            if not target.startswith(("http:", "https:", "mailto:")) and not (page.parent / target).exists():
                broken.append(f"{page.name}: {target}")
    assert broken == []
