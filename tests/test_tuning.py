"""lib.engine.tuning and the report's checks: nuisance tuned per arm on tuning seeds, each winner
re-measured on fresh seeds, roles tagged on every run; boundary warnings, failures per value, the
study log and its reproduction command.

Training is replaced by a known response surface (``_surface``) so that each arm's best learning
rate is known in advance; the records, caching and tags are the real ones.
"""

from __future__ import annotations

import math
import shlex

import matplotlib

matplotlib.use("Agg")

import pytest

from lib import report, tracking
from lib.data import DataSpec
from lib.engine import local_backend, tuning
from lib.engine.backend import StudyError
from lib.engine.grid import run_grid
from lib.engine.trial import TrialResult, trial_key

pytestmark = pytest.mark.usefixtures("mlflow_store")

DATA = DataSpec(dataset="digits")
BASE = {"epochs": 2, "lr": 1e-3}
TUNE_SEEDS, SEEDS = [100, 101], [0, 1, 2]
BEST_LR = {0.0: 1e-2, 0.5: 1e-3}  # the surface's optimum per arm: each arm has its own


def _surface(config, data, progress=False, **kwargs) -> TrialResult:
    """Accuracy peaks at ``BEST_LR[dropout_p]`` (in log10 lr), with a small seed effect; a curve of two epochs."""
    flat = config.flat()
    peak = BEST_LR.get(flat["dropout_p"], 3e-3)
    accuracy = 0.9 - 0.1 * abs(math.log10(flat["lr"]) - math.log10(peak)) + 0.001 * (flat["seed"] % 7)
    history = [{"epoch": 1, "val_accuracy": accuracy - 0.05, "val_loss": 1.0, "train_loss": 1.0}]
    history.append({"epoch": 2, "val_accuracy": accuracy, "val_loss": 0.5, "train_loss": 0.5})
    return TrialResult(
        key=trial_key(config, data), config=flat, status="finished", val_accuracy=accuracy, val_loss=0.5,
        epochs_run=2, history=history,
    )  # fmt: skip


@pytest.fixture
def surface(monkeypatch):
    monkeypatch.setattr(local_backend, "execute_trial", _surface)


def _roles() -> tuning.Roles:
    return tuning.Roles({"dropout_p": [0.0, 0.5]}, {"lr": ["1e-3", 3.2e-3, "1e-2"]}, {"epochs": 2})


def _run(experiment: str = "tuned"):
    return tuning.run_tuned_grid(BASE, _roles(), TUNE_SEEDS, SEEDS, experiment, DATA, workers=1, progress=False)


def test_each_arm_gets_its_own_best_nuisance_and_is_remeasured_on_fresh_seeds_only(surface):
    result = _run()
    winners = {arm.value["dropout_p"]: arm.winner["lr"] for arm in result.arms}
    assert winners == BEST_LR  # not one shared lr: each arm its own, chosen on the tuning seeds
    for arm in result.arms:
        assert sorted(r.config["seed"] for r in arm.remeasured) == SEEDS
        assert sorted(r.config["seed"] for r in arm.fixed) == SEEDS
        assert all(r.config["lr"] == arm.winner["lr"] for r in arm.remeasured)
        assert all(r.config["lr"] == 1e-3 for r in arm.fixed)  # the base's own value: the naive line
    runs = tracking.runs_frame("tuned")
    remeasured = runs[runs["tag.phase"] == "remeasure"]
    tuned = runs[runs["tag.phase"] == "tune"]
    assert set(remeasured["seed"].astype(int)) == set(SEEDS)
    assert not set(remeasured["seed"].astype(int)) & set(TUNE_SEEDS), "a re-measure reused a tuning seed"
    assert set(tuned["seed"].astype(int)) == set(TUNE_SEEDS) and len(tuned) == 2 * 3 * 2
    assert set(runs["tag.role_scientific"]) == {"dropout_p"} and set(runs["tag.role_nuisance"]) == {"lr"}
    assert set(runs["tag.role_fixed"]) == {"epochs"} and set(runs["tag.checkpoint_rule"]) == {"last"}
    summary = result.summary()
    assert list(summary["n"]) == [3, 3]
    # the claim uses the re-measured runs: paired over the three fresh seeds
    (effect,) = result.effects().to_dict("records")
    assert effect["n_seeds"] == 3


def test_a_second_call_trains_nothing_and_the_report_reads_the_same_arms(surface, monkeypatch, tmp_path):
    first = _run()
    monkeypatch.setattr(local_backend, "execute_trial", lambda *a, **k: pytest.fail("a cached trial was retrained"))
    again = _run()
    assert [a.winner for a in again.arms] == [a.winner for a in first.arms]
    arms = report.tuned_arms(report.trial_runs("tuned"))
    tuned = arms[arms["kind"] == "tuned"].set_index("dropout_p")
    assert tuned.loc[0.0, "nuisance"] == "lr=0.01" and tuned.loc[0.5, "nuisance"] == "lr=0.001"
    assert set(arms["n"]) == {3}
    path = report.write_report("tuned", tmp_path / "out")
    text = path.read_text()
    assert (tmp_path / "out" / "isolation.png").exists() and (tmp_path / "out" / "validation_curves.png").exists()
    assert "scientific: dropout_p; nuisance: lr; fixed: epochs" in text
    assert "re-measured, not the tuning score" in text
    assert "dropout_p=0: the best configuration's lr = 0.01 lies in the upper 10%" in text  # arm 0's best at the edge


@pytest.mark.parametrize(
    ("tune_seeds", "seeds", "message"),
    [([0, 1], [1, 2], "both tuning and re-measure"), ([], [0], "tune seeds are empty"), ([5], [], "re-measure")],
)
def test_overlapping_or_empty_seeds_are_refused_before_anything_is_written(surface, tune_seeds, seeds, message):
    with pytest.raises(StudyError, match=message):
        tuning.run_tuned_grid(BASE, _roles(), tune_seeds, seeds, "refused", DATA, workers=1, progress=False)
    assert "refused" not in tracking.experiment_names()


@pytest.mark.parametrize(
    ("scientific", "nuisance", "fixed", "message"),
    [
        ({"lr": [1e-3]}, {"lr": [1e-2]}, {}, "both a factor and tuned"),
        ({"dropout_p": [0.0]}, {"lr": []}, {}, "no values"),
        ({"dropout_p": [0.0]}, {}, {}, "no nuisance"),
        ({"dropout_p": [0.0]}, {"lr": [1e-3]}, {"lr": 1e-3}, "fixed"),
        ({"dropoutp": [0.0]}, {"lr": [1e-3]}, {}, "dropoutp"),
        ({"dropout_p": [1.5]}, {"lr": [1e-3]}, {}, "dropout_p"),
    ],
)
def test_a_bad_role_declaration_is_one_study_error(scientific, nuisance, fixed, message):
    with pytest.raises(StudyError, match=message):
        tuning.Roles(scientific, nuisance, fixed)


def test_unknown_role_and_checkpoint_rule_are_refused():
    with pytest.raises(StudyError, match="unknown role"):
        tuning.check_role("lr", "boss")
    with pytest.raises(StudyError, match="checkpoint rule"):
        tuning.check_rule("middle")


def test_the_best_epoch_rule_scores_a_trial_at_its_best_epoch():
    history = [{"epoch": 1, "val_accuracy": 0.8}, {"epoch": 2, "val_accuracy": 0.7}]
    result = TrialResult(key="k", config={}, status="finished", val_accuracy=0.7, history=history)
    assert tuning.trial_score(result, "last") == 0.7
    assert tuning.trial_score(result, "best_epoch") == 0.8


@pytest.mark.parametrize(("peak", "warned"), [(1e-2, True), (1e-4, True), (1e-3, False)])
def test_the_boundary_warning_fires_only_when_the_best_lies_at_an_edge(monkeypatch, peak, warned):
    monkeypatch.setitem(BEST_LR, 0.0, peak)
    monkeypatch.setattr(local_backend, "execute_trial", _surface)
    factors = {"lr": [1e-4, 3.2e-4, 1e-3, 3.2e-3, 1e-2]}
    run_grid(BASE, factors, [0, 1], "edge", DATA, workers=1, progress=False)
    warnings = report.boundary_warnings(report.trial_runs("edge"))
    assert bool(warnings) is warned, warnings
    if warned:
        side = "upper" if peak == 1e-2 else "lower"
        assert f"lr = {peak:.4g} lies in the {side} 10%" in warnings[0] and "(log scale)" in warnings[0]


def test_edge_positions_are_measured_on_a_log_scale_for_log_ranges():
    assert report.edge_position(1e-3, 1e-4, 1e-2, True) == pytest.approx(0.5)
    assert report.edge_position(1e-3, 1e-4, 1e-2, False) == pytest.approx(0.0909, abs=1e-3)


def test_the_share_of_failed_trials_is_given_per_value(monkeypatch):
    def fail_high(config, data, progress=False, **kwargs):
        result = _surface(config, data)
        if config.train.lr >= 1e-2:
            return TrialResult(key=result.key, config=result.config, status="failed", failure_kind="diverged")
        return result

    monkeypatch.setattr(local_backend, "execute_trial", fail_high)
    run_grid(BASE, {"lr": [1e-3, 1e-2]}, [0, 1], "fails", DATA, workers=1, progress=False)
    shares = report.failure_shares(report.trial_runs("fails")).set_index("value")
    assert shares.loc["0.01", "failed_pct"] == 100.0 and shares.loc["0.001", "failed_pct"] == 0.0


def test_the_study_logs_command_reproduces_the_same_configurations_on_a_fresh_store(
    surface, tmp_path, monkeypatch, capsys
):
    from lib.cli import main

    args = ["grid", "--experiment", "repro", "--dataset", "digits", "--set", "epochs=2", "--factor", "dropout_p=0,0.5"]
    args += ["--tune", "lr=1e-3,1e-2", "--tune-seeds", "7", "--seeds", "0,1", "--workers", "1", "--question", "why?"]
    assert main(args) == 0
    text = report.write_report("repro", tmp_path / "first").read_text()
    (line,) = [line for line in text.splitlines() if line.startswith("- Reproduce: `")]
    command = shlex.split(line.removeprefix("- Reproduce: `").removesuffix("`"))
    assert command[:3] == ["python", "-m", "lib"] and "- Question: why?" in text
    before = _configs("repro")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/fresh.db")
    assert main(command[3:]) == 0
    assert _configs("repro") == before and len(before) == 2 * 2 * 1 + 2 * 2 * 2 - 2  # fixed lr=1e-3 == a winner


def _configs(experiment: str) -> set[tuple]:
    runs = report.trial_runs(experiment)
    return {tuple(row[n] for n in ("dropout_p", "lr", "seed", "epochs")) for _, row in runs.iterrows()}


def test_the_remeasured_winners_carry_the_claims_name_and_nothing_else_does(surface):
    tuning.run_tuned_grid(
        BASE, _roles(), TUNE_SEEDS, SEEDS, "tuned", DATA, tags={"hypothesis": "H1-tuning"},
        winner_hypothesis="H1-tuned", workers=1, progress=False,
    )  # fmt: skip
    runs = tracking.runs_frame("tuned")
    named = runs[runs["tag.hypotheses"].fillna("").str.split(",").apply(lambda names: "H1-tuned" in names)]
    assert len(named) == 2 * len(SEEDS)  # each arm's winner on each fresh seed
    assert set(named["tag.phase"]) == {"remeasure"}
    assert {(float(r.dropout_p), float(r.lr)) for r in named.itertuples()} == set(BEST_LR.items())
