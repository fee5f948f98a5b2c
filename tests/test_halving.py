"""lib.engine.halving: successive halving of nuisance ranges per arm, range extension, the cost, the CLI.

Most tests replace :func:`lib.engine.grid.run_trials` with a known response surface (``_Surface``), so the
best point is known in advance and nothing trains; one test keeps the real records with a fake trainer
(tags, cache); one kills a real ``python -m lib grid --halving`` process with SIGKILL and resumes it.
"""

from __future__ import annotations

import math
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lib import report
from lib.engine import grid, halving, local_backend
from lib.engine.backend import StudyError
from lib.engine.trial import TrialResult, trial_key
from lib.paths import PROJECT_ROOT
from lib.report.figures import tuning_draws

LR = halving.Range("lr", 1e-4, 1e-1, True)
WD = halving.Range("weight_decay", 1e-5, 1e-2, True)
SEEDS, TUNE_SEEDS = [0, 1, 2], [100, 101]


class _Surface:
    """A fake ``grid.run_trials``: accuracy peaks at ``optimum[arm value]`` (a distance on each range's scale),
    rises with the epochs by the same amount for every point, and has a seed effect that averages out over the
    tuning seeds 100 and 101. ``fail``: ``(lr, seed)`` pairs whose trial fails."""

    def __init__(self, optimum: dict[float, dict[str, float]], arm: str = "dropout_p", fail=None) -> None:
        self.optimum, self.arm, self.fail, self.calls = optimum, arm, fail or set(), []

    def accuracy(self, flat: dict) -> float:
        peak = self.optimum[flat[self.arm]]
        distance = sum((_scale(name, flat[name]) - _scale(name, value)) ** 2 for name, value in peak.items())
        return 0.9 - 0.01 * distance - 0.1 / flat["epochs"] + (1e-4 if flat["seed"] % 2 else -1e-4)

    def __call__(self, configs, experiment, data=None, tags=None, **options) -> list[TrialResult]:
        self.calls.append((dict(tags or {}), [c.flat() for c in configs]))
        results = []
        for config in configs:
            flat = config.flat()
            failed = (flat["lr"], flat["seed"]) in self.fail
            status, accuracy = ("failed", math.nan) if failed else ("finished", self.accuracy(flat))
            results.append(TrialResult(key=config.fingerprint(), config=flat, status=status, val_accuracy=accuracy))
        return results


def _scale(name: str, value: float) -> float:
    return 3 * value if name == "dropout_p" else math.log10(value)


def _distance(point: dict[str, float], peak: dict[str, float]) -> float:
    return sum((_scale(name, point[name]) - _scale(name, value)) ** 2 for name, value in peak.items())


def _run(surface, ranges, scientific=None, **kwargs):
    kwargs = {"rungs": [1, 3, 9], "log": None, "progress": False} | kwargs
    return halving.run_halving(
        {"epochs": 9}, scientific or {"dropout_p": [0.0]}, ranges, TUNE_SEEDS, SEEDS, "h", **kwargs
    )


def _tuning_calls(surface) -> list[tuple[dict, list[dict]]]:
    return [(tags, configs) for tags, configs in surface.calls if tags["phase"] == "tune"]


def test_halving_promotes_the_point_nearest_the_optimum_and_the_rungs_follow_eta(monkeypatch):
    optimum = {0.0: {"lr": 3e-3, "weight_decay": 3e-4}, 0.5: {"lr": 3e-4, "weight_decay": 3e-3}}
    surface = _Surface(optimum)
    monkeypatch.setattr(grid, "run_trials", surface)
    result = _run(surface, [LR, WD], {"dropout_p": [0.0, 0.5]})
    points = halving.quasi_points([LR, WD], 27)
    for arm in result.arms:
        peak = optimum[arm.value["dropout_p"]]
        nearest = min(points, key=lambda point: _distance(point, peak))
        assert arm.winner == nearest, (arm.value, arm.winner, nearest)
        assert arm.decided and not arm.extensions
        assert len(arm.remeasured) == 3 and all(r.config["lr"] == nearest["lr"] for r in arm.remeasured)
        assert all(r.config["lr"] == 1e-3 and r.config["epochs"] == 9 for r in arm.fixed)  # the base's own lr
    calls = _tuning_calls(surface)
    assert [tags["rung"] for tags, _ in calls] == ["0", "1", "2"]  # one run_trials call per rung, every arm in it
    assert [len(configs) for _, configs in calls] == [2 * n * 2 for n in (27, 9, 3)]  # arms x points x tuning seeds
    assert [{c["epochs"] for c in configs} for _, configs in calls] == [{1}, {3}, {9}]
    table = result.rung_table()
    assert list(table["points"]) == [27, 9, 3] * 2 and list(table["kept"]) == [9, 3, 3] * 2
    assert halving.rung_sizes(27, 3, 3) == [27, 9, 3]
    assert not {c["seed"] for _, configs in calls for c in configs} & set(SEEDS)
    # the trials it trained cost what halving_cost says
    spent = sum(c["epochs"] / 9 for _, configs in calls for c in configs)
    assert spent == pytest.approx(halving.halving_cost(27, [1, 3, 9], 3, 2, 3, n_arms=2).tuning)
    assert list(result.summary()["decided"]) == ["yes", "yes"] and list(result.effects()["decided"]) == ["yes"]


def test_a_point_counts_only_when_every_tuning_seed_finished(monkeypatch):
    peak = {"lr": 3e-3, "weight_decay": 3e-4}
    best = min(halving.quasi_points([LR, WD], 27), key=lambda point: _distance(point, peak))
    surface = _Surface({0.0: peak}, fail={(best["lr"], 101)})
    monkeypatch.setattr(grid, "run_trials", surface)
    (arm,) = _run(surface, [LR, WD]).arms
    assert arm.winner is not None and arm.winner != best  # the best point lost a seed: not promoted on the other
    rung0 = arm.rungs[arm.rungs["rung"] == 0]
    assert rung0.loc[rung0["lr"] == best["lr"], "score"].isna().all()
    assert not (arm.rungs[arm.rungs["rung"] == 1]["lr"] == best["lr"]).any()


def test_a_range_whose_optimum_lies_beyond_it_is_extended_and_the_winner_moves(monkeypatch):
    surface = _Surface({0.0: {"lr": 1e-1, "weight_decay": 3e-4}})
    monkeypatch.setattr(grid, "run_trials", surface)
    lines = []
    (arm,) = _run(surface, [halving.Range("lr", 1e-4, 1e-2, True), WD], log=lines.append).arms
    assert arm.ranges["lr"].high > 1e-2 and arm.ranges["lr"].low == 1e-4 and arm.ranges["weight_decay"] == WD
    assert arm.winner["lr"] > 1e-2 and arm.decided
    assert len(arm.extensions) == 1 and lines == arm.extensions and "lr's winner" in lines[0] and "upper" in lines[0]
    tagged = [tags["extension"] for tags, _ in _tuning_calls(surface)]
    assert tagged == ["0", "0", "0", "1", "1", "1"]
    new = [c for tags, configs in _tuning_calls(surface) if tags["extension"] == "1" for c in configs]
    assert all(c["lr"] > 1e-2 for c in new)  # the new points lie in the new part only


@pytest.mark.parametrize(
    ("arm", "nuisance", "optimum"),
    [
        ("dropout_p", halving.Range("weight_decay", 1e-2, 3e-1, True), 10.0),  # above weight_decay's bound 1
        ("weight_decay", halving.Range("dropout_p", 0.5, 0.9), 1.5),  # above dropout_p's bound 1 (excluded)
    ],
)
def test_an_extension_stops_at_the_hard_bound(monkeypatch, arm, nuisance, optimum):
    name = nuisance.name
    surface = _Surface({0.0: {name: optimum}}, arm=arm)
    monkeypatch.setattr(grid, "run_trials", surface)
    lines = []
    (tuned,) = _run(surface, [nuisance], {arm: [0.0]}, log=lines.append).arms
    assert tuned.ranges[name].high == 1.0 and len(tuned.extensions) == 1 == len(lines)  # to the bound, no further
    assert "-> [" in lines[0] and ", 1]" in lines[0]
    assert tuned.winner[name] >= 0.9 and tuned.decided  # at a side that cannot move: as wide as it can be
    values = [c[name] for _, configs in _tuning_calls(surface) for c in configs]
    assert max(values) <= 1.0 and (name != "dropout_p" or max(values) < 1.0)  # dropout_p < 1 is a config rule
    assert tuned.ranges[name].movable_sides() == {"lower"}


def test_an_arm_still_on_a_movable_edge_after_the_last_extension_is_not_decided(monkeypatch):
    optimum = {0.0: {"lr": 3e-6, "weight_decay": 3e-4}, 0.5: {"lr": 1.0, "weight_decay": 3e-4}}
    surface = _Surface(optimum)
    monkeypatch.setattr(grid, "run_trials", surface)
    ranges = [halving.Range("lr", 1e-6, 1e-5, True), WD]
    result = _run(surface, ranges, {"dropout_p": [0.0, 0.5]}, max_extensions=1)
    decided, edge = result.arms
    assert decided.decided and decided.verdict() == "yes" and not decided.extensions
    assert not edge.decided and edge.verdict() == halving.NOT_DECIDED == "not decided: tuning range"
    assert len(edge.extensions) == 1 and edge.ranges["lr"].high == pytest.approx(1e-4)
    assert len(edge.remeasured) == 3  # re-measured all the same, so it can be described
    assert list(result.summary()["decided"]) == ["yes", halving.NOT_DECIDED]
    assert list(result.effects()["decided"]) == [halving.NOT_DECIDED]


def test_the_default_design_costs_at_most_40_percent_and_the_formula_by_hand():
    default = halving.halving_cost(halving.DEFAULT_POINTS, [1, 3, 9], halving.DEFAULT_ETA, 2, 3, n_arms=2)
    assert default.ratio <= 0.40 + 1e-12
    assert (default.tuning, default.remeasure, default.without) == (36, 12, 120)
    # 6 points, rungs 1 and 3 epochs, eta 3, 2 tuning seeds, 2 seeds, 1 arm:
    # tuning 6*2*1/3 + 2*2*3/3 = 8; re-measure 2 configs * 2 seeds = 4; without halving 6*2 + 4 = 16
    small = halving.halving_cost(6, [1, 3], 3, 2, 2)
    assert small.sizes == [6, 2] and small.halving == 12 and small.without == 16 and small.ratio == 0.75
    assert "75.0%" in small.text() and "16 without halving" in small.text()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("lr=abc", "must look like"),
        ("lr", "must look like"),
        ("lr=1e-2:1e-3:log", "LOW must be below HIGH"),
        ("lr=0:1e-2:log", "log range needs LOW > 0"),
        ("lr=1e-3:20:log", "hard bound 10"),
        ("weight_decay=-1:0.1", "hard bound 0"),
        ("learning_rat=1e-3:1e-2", "unknown hyperparameter"),
        ("epochs=1:9", "not a real-valued"),
        ("dropout_p=0:1", "not allowed"),
    ],
)
def test_a_bad_range_is_one_line(text, message):
    with pytest.raises(StudyError, match=message) as error:
        halving.parse_range(text)
    assert "\n" not in str(error.value)


def test_ranges_points_and_the_design_checks():
    assert halving.parse_range("lr=3e-4:3e-2:log") == halving.Range("lr", 3e-4, 3e-2, True)
    assert halving.parse_range("dropout_p=0:0.5") == halving.Range("dropout_p", 0.0, 0.5, False)
    assert halving.EDGE == report.EDGE
    points = halving.quasi_points([LR, WD], 27, seed=3)
    assert points == halving.quasi_points([LR, WD], 27, seed=3) != halving.quasi_points([LR, WD], 27, seed=4)
    assert all(float(f"{v:.3g}") == v and LR.contains(p["lr"]) for p in points for v in p.values())
    logs = sorted(math.log10(p["lr"]) for p in points)  # spread on the log scale: every decade is visited
    assert logs[0] < -3.5 and logs[-1] > -1.5
    base = {"epochs": 9}
    for kwargs, message in [
        ({"rungs": [1, 3, 5]}, "last rung must equal"),
        ({"rungs": [3, 1, 9]}, "rising"),
        ({"tune_seeds": [100]}, "at least 2 tuning seeds"),
        ({"eta": 1}, "eta=1"),
    ]:
        args = {"rungs": [1, 3, 9], "tune_seeds": TUNE_SEEDS} | kwargs
        with pytest.raises(StudyError, match=message):
            halving.plan_halving(base, {"dropout_p": [0.0]}, [LR], args.pop("tune_seeds"), SEEDS, **args)


def _execute(config, data, progress=False, **kwargs) -> TrialResult:
    flat = config.flat()
    accuracy = 0.9 - 0.01 * (math.log10(flat["lr"]) + 2.5) ** 2 - 0.1 / flat["epochs"] + 0.001 * (flat["seed"] % 2)
    return TrialResult(
        key=trial_key(config, data), config=flat, status="finished", val_accuracy=accuracy, val_loss=0.5,
        epochs_run=flat["epochs"], history=[{"epoch": flat["epochs"], "val_accuracy": accuracy}],
    )  # fmt: skip


@pytest.mark.slow
def test_runs_carry_the_rung_and_phase_tags_and_a_second_call_trains_nothing(mlflow_store, monkeypatch):
    from lib import tracking
    from lib.data import DataSpec

    monkeypatch.setattr(local_backend, "execute_trial", _execute)
    kwargs = {"rungs": [1, 2], "n_points": 6, "log": None, "workers": 1, "progress": False}
    args = ({"epochs": 2}, {"dropout_p": [0.0, 0.5]}, [LR], TUNE_SEEDS, [0, 1], "tags", DataSpec(dataset="digits"))
    first = halving.run_halving(*args, **kwargs)
    monkeypatch.setattr(local_backend, "execute_trial", lambda *a, **k: pytest.fail("a cached trial was retrained"))
    again = halving.run_halving(*args, **kwargs)
    assert [a.winner for a in again.arms] == [a.winner for a in first.arms]
    runs = tracking.runs_frame("tags")
    tune, remeasure = runs[runs["tag.phase"] == "tune"], runs[runs["tag.phase"] == "remeasure"]
    assert len(tune) == 2 * (6 + 2) * 2 and len(remeasure) == 2 * 2 * 2
    assert set(tune["tag.rung"]) == {"0", "1"} and set(tune.loc[tune["tag.rung"] == "0", "epochs"].astype(int)) == {1}
    assert set(runs["tag.role_nuisance"]) == {"lr"} and runs["tag.tuning_id"].nunique() == 1
    winners = remeasure[remeasure["lr"].astype(float) != 1e-3]
    assert set(winners["tag.tuning_decided"]) == {"yes"}
    assert len(report.tuned_arms(report.trial_runs("tags"))) == 4  # the report reads the arms back


@pytest.mark.slow
def test_the_report_reads_back_the_winner_of_the_last_rung(mlflow_store, monkeypatch):
    from lib.data import DataSpec

    monkeypatch.setattr(local_backend, "execute_trial", _execute)
    kwargs = {"rungs": [1, 2], "n_points": 6, "log": None, "workers": 1, "progress": False}
    args = ({"epochs": 2}, {"dropout_p": [0.0]}, [LR], TUNE_SEEDS, [0, 1], "read", DataSpec(dataset="digits"))
    (arm,) = halving.run_halving(*args, **kwargs).arms
    runs = report.trial_runs("read")
    arms = report.tuned_arms(runs)
    tuned = arms[arms["kind"] == "tuned"]
    assert list(tuned["nuisance"]) == [f"lr={arm.winner['lr']:.3g}"]
    assert list(tuned["n"]) == [2]
    assert tuned["tune_mean"].iloc[0] == pytest.approx(arm.tuning["score"].max())  # the winner's score, last rung
    assert tuned["curse_pp"].iloc[0] == pytest.approx(100 * (tuned["tune_mean"].iloc[0] - tuned["mean"].iloc[0]))
    assert arms.loc[arms["kind"] == "fixed", "curse_pp"].isna().all()
    draws = tuning_draws(runs)  # rung 0: every quasi-random point, one row each
    points = runs.loc[runs["tag.phase"] == "tune", "lr"].nunique()
    assert len(draws) == points and set(draws["arm"]) == {"dropout_p=0.0"}
    assert report.tuning_expected_max_figure(runs) is not None  # would more points have helped this arm?


# --- the command line ------------------------------------------------------------------------------

HALVING = ["grid", "--experiment", "hv", "--dataset", "digits", "--factor", "dropout_p=0,0.25", "--workers", "1"]
HALVING += ["--tune-seeds", "100,101", "--seeds", "0,1", "--set", "conv_out_channels=4"]


def _in_process(args: list[str]) -> subprocess.CompletedProcess:
    import contextlib
    import io

    from lib import cli

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.main(args)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 2
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


@pytest.mark.parametrize(
    ("extra", "names"),
    [
        (["--tune", "lr=3e-4:3e-2:log", "--set", "epochs=2"], ["--tune", "--halving"]),
        (["--tune", "lr=3e-4:abc", "--halving", "1,2", "--set", "epochs=2"], ["--tune", "lr=3e-4:abc"]),
        (["--tune", "lr=3e-4:3e-2:log", "--halving", "1,3", "--set", "epochs=2"], ["--halving", "epochs=2"]),
        (["--tune", "lr=1e-3,1e-2", "--halving", "1,2", "--set", "epochs=2"], ["--tune", "range"]),
        (["--tune", "lr=3e-4:3e-2:log", "--halving", "2,1", "--set", "epochs=2"], ["--halving", "rise"]),
        (["--tune", "lr=1e-3,1e-2", "--points", "9", "--set", "epochs=2"], ["--points", "--halving"]),
        (["--tune", "lr=3e-4:3e-2:log", "--halving", "1,2", "--eta", "1", "--set", "epochs=2"], ["--eta"]),
        (["--halving", "1,2", "--set", "epochs=2"], ["--halving", "--tune"]),
    ],
)
def test_cli_errors_are_one_line_with_exit_2_and_nothing_written(extra, names):
    done = _in_process([*HALVING, *extra])
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    for name in names:
        assert name in done.stderr, done.stderr
    assert not Path(os.environ["MLFLOW_TRACKING_URI"].removeprefix("sqlite:///")).exists()


def _finished(store: Path) -> list[tuple]:
    """(phase, rung, dropout_p, lr, epochs, seed) of every FINISHED run in a store, read with sqlite3."""
    if not store.exists():
        return []
    with sqlite3.connect(store) as db:
        try:
            ids = [row[0] for row in db.execute("select run_uuid from runs where status = 'FINISHED'")]
        except sqlite3.OperationalError:  # the store is still being created
            return []
        rows = []
        for run in ids:
            params = dict(db.execute("select key, value from params where run_uuid = ?", (run,)).fetchall())
            tags = dict(db.execute("select key, value from tags where run_uuid = ?", (run,)).fetchall())
            rows.append(
                (tags.get("phase"), tags.get("rung"), *(params[k] for k in ("dropout_p", "lr", "epochs", "seed")))
            )
    return sorted(rows)


@pytest.mark.slow
def test_a_halving_study_killed_hard_resumes_to_the_same_trials(tmp_path, monkeypatch):
    """``kill -9`` of a real ``python -m lib grid --halving`` process once its first trial has finished (mid
    rung 0), then the same command again: the same trials as a study never interrupted (run in this process),
    each finished once, and the same winners and range extension. The smallest study that has every phase:
    one arm, 3 points on 2 tuning seeds (rung 0: 6 trials), rung 1, an extension and the re-measure."""
    one_arm = [part if part != "dropout_p=0,0.25" else "dropout_p=0" for part in HALVING]
    args = [*one_arm, "--tune", "lr=3e-4:3e-2:log", "--halving", "1,2", "--points", "3", "--set", "epochs=2"]
    args += ["--max-extensions", "1"]

    def env(name: str) -> dict[str, str]:
        return {
            "PYTHONPATH": str(PROJECT_ROOT), "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / name / 'mlflow.db'}",
            "HYPERTUNE_STATE_DIR": str(tmp_path / name / "state"),
        }  # fmt: skip

    (tmp_path / "killed").mkdir()
    (tmp_path / "straight").mkdir()
    command = [sys.executable, "-m", "lib", *args]
    process = subprocess.Popen(command, env=os.environ | env("killed"), cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None and not _finished(tmp_path / "killed/mlflow.db"):
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    done = len(_finished(tmp_path / "killed/mlflow.db"))
    resumed = subprocess.run(command, env=os.environ | env("killed"), cwd=PROJECT_ROOT, capture_output=True,
                             text=True, timeout=900)  # fmt: skip
    for name, value in env("straight").items():
        monkeypatch.setenv(name, value)
    straight = _in_process(args)
    assert resumed.returncode == 0 and straight.returncode == 0, resumed.stderr[-2000:] + straight.stderr[-2000:]
    trials = _finished(tmp_path / "killed/mlflow.db")
    assert 1 <= done < len(trials), f"the kill came too late to test a resume ({done} trials finished)"
    assert trials == _finished(tmp_path / "straight/mlflow.db")  # the same trials, each finished once
    assert len(set(trials)) == len(trials)
    assert {phase for phase, *_ in trials} == {"tune", "remeasure"} and {rung for _, rung, *_ in trials} >= {"0", "1"}
    winners = [line for line in resumed.stdout.splitlines() if line.startswith(("arm ", "extension "))]
    assert any(line.startswith("extension ") for line in winners) and winners == [
        line for line in straight.stdout.splitlines() if line.startswith(("arm ", "extension "))
    ]


def test_the_fixed_nuisance_remeasure_runs_on_its_own_seeds_or_not_at_all(monkeypatch):
    surface = _Surface({0.0: {"lr": 3e-3, "weight_decay": 3e-4}})
    monkeypatch.setattr(grid, "run_trials", surface)
    (arm,) = _run(surface, [LR, WD], fixed_seeds=[0]).arms
    assert [r.config["seed"] for r in arm.fixed] == [0] and len(arm.remeasured) == 3
    surface.calls.clear()
    (arm,) = _run(surface, [LR, WD], fixed_seeds=[]).arms
    remeasure = [configs for tags, configs in surface.calls if tags["phase"] == "remeasure"]
    assert arm.fixed == [] and [len(c) for c in remeasure] == [3]  # the winner only
    assert all(tags["tune_seeds"] == "100,101" for tags, _ in surface.calls)  # every run names its tuning seeds


# --- the last rung, the extension cap, the winner's curse, the replication ---------------------------------


def test_the_last_rung_rule_and_the_profiles_that_declare_it():
    assert halving.points_for_last_rung(3, 3, 3) == 19 and halving.rung_sizes(19, 3, 3) == [19, 7, 3]
    assert halving.rung_sizes(18, 3, 3)[-1] == 2 and halving.points_for_last_rung(3, 2, 3) == 7
    assert halving.rung_sizes(6, 3, 3) == [6, 2, 1]  # v4's design: the winner never met a rival at the budget
    from lib.study.profiles import PROFILES

    for name in ("full", "deep"):  # the rule is a declared property of the profiles that decide
        knobs = PROFILES[name]
        assert knobs["tune_last_rung"] >= halving.LAST_RUNG_RULE == 3 and len(set(knobs["tune_seeds"])) >= 2
        for rungs, budget in ((knobs["h1_rungs"], knobs["dropout_epochs"]), (knobs["h3_rungs"], knobs["epochs"])):
            assert rungs[-1] == budget
            assert halving.rung_sizes(knobs["tune_points"], len(rungs), knobs["tune_eta"])[-1] >= 3
        assert knobs["tune_extensions"] >= 2
        assert not set(knobs["replicate_seeds"]) & (set(knobs["tune_seeds"]) | set(knobs["seeds"]))
    assert PROFILES["smoke"]["tune_last_rung"] == PROFILES["quick"]["tune_last_rung"] == 1  # exempt, declared


def test_a_design_whose_last_rung_is_too_small_is_one_line_naming_the_knob_and_the_fix():
    from lib.errors import HypertuneError
    from lib.study import profiles

    design = {"rungs": [2, 4, 12], "n_points": 6, "min_last_rung": 3}
    with pytest.raises(StudyError, match=r"n_points=6 .* compares 1 configuration.* give n_points=19") as error:
        halving.plan_halving({"epochs": 12}, {"dropout_p": [0.0]}, [LR, WD], TUNE_SEEDS, SEEDS, **design)
    assert "\n" not in str(error.value) and isinstance(error.value, HypertuneError)
    halving.plan_halving({"epochs": 12}, {"dropout_p": [0.0]}, [LR, WD], TUNE_SEEDS, SEEDS, **design | {"n_points": 19})
    with pytest.raises(StudyError, match=r"tune_points=6 with tune_eta=3 and h1_rungs .* give tune_points=19") as error:
        profiles.resolve("full", tune_points=6)
    assert "\n" not in str(error.value)
    profiles.resolve("quick", tune_points=2)  # exempt: no error


def test_the_summary_names_the_design_and_the_size_of_the_last_rung(monkeypatch):
    surface = _Surface({0.0: {"lr": 3e-3, "weight_decay": 3e-4}, 0.5: {"lr": 3e-4, "weight_decay": 3e-3}})
    monkeypatch.setattr(grid, "run_trials", surface)
    result = _run(surface, [LR, WD], {"dropout_p": [0.0, 0.5]}, n_points=19, min_last_rung=3)
    summary = result.summary()
    assert list(summary["last_rung"]) == [3, 3] and set(summary["last_rung_epochs"]) == {9}
    assert set(summary["design"]) == {result.design()}
    assert result.design() == (
        "halving 19 points, eta 3, rungs 1/3/9 epochs (19/7/3 configurations), 2 tuning seeds, <= 2 range extensions"
    )
    assert list(summary["edge"]) == ["", ""] and set(summary["max_extensions"]) == {2}
    effects = result.effects()
    assert list(effects["last_rung"]) == [3] and list(effects["design"]) == [result.design()]
    assert result.cost.last_rung == 3 and "the last rung compares 3 at 9 epochs" in result.cost.text()
    last = [configs for tags, configs in _tuning_calls(surface) if tags["rung"] == "2"]
    assert [{(c["dropout_p"], c["epochs"]) for c in configs} for configs in last] == [{(0.0, 9), (0.5, 9)}]
    assert len(last[0]) == 2 * 3 * 2  # arms x 3 configurations x 2 tuning seeds, all at the claim's budget
    old = _run(surface, [LR, WD], n_points=6, rungs=[1, 3, 9]).summary()
    assert list(old["last_rung"]) == [1]  # the v4 design, shown for what it is


def test_a_range_is_widened_until_its_winner_leaves_the_edge_and_the_cap_is_reported(monkeypatch):
    surface = _Surface({0.0: {"lr": 1e-1, "weight_decay": 3e-4}})
    monkeypatch.setattr(grid, "run_trials", surface)
    narrow = [halving.Range("lr", 1e-6, 1e-5, True), WD]
    capped = _run(surface, narrow, max_extensions=2)
    (arm,) = capped.arms
    assert len(arm.extensions) == 2 and arm.ranges["lr"].high == pytest.approx(1e-2) and not arm.decided
    row = capped.summary().iloc[0]
    assert row["extensions"] == row["max_extensions"] == 2 and row["decided"] == halving.NOT_DECIDED
    assert row["edge"].startswith("lr upper 10% of [1e-06, 0.01]")  # still on a movable edge: said, not hidden
    (arm,) = _run(surface, narrow, max_extensions=4).arms
    assert len(arm.extensions) == 3 and arm.decided and arm.edge() == ""  # stops once off the edge, below the cap
    assert arm.ranges["lr"].high == 10.0 and 1e-2 < arm.winner["lr"] < 1.0


def test_the_winners_curse_per_arm_and_in_total_by_hand(monkeypatch):
    from lib.engine.tuning import winners_curse

    frame = halving.pd.DataFrame(
        {"dropout_p": [0.0, 0.3, 0.6, 0.9], "tune_score_pct": [90.0, 89.5, 88.0, 80.0]}
        | {"remeasured_pct": [89.5, 89.7, 87.0, math.nan]}
    )
    table = winners_curse(frame, ["dropout_p"])
    assert list(table["arm"]) == ["dropout_p=0.0", "dropout_p=0.3", "dropout_p=0.6", "dropout_p=0.9", "all arms"]
    assert table["curse_pp"].iloc[:3].tolist() == pytest.approx([0.5, -0.2, 1.0]) and math.isnan(table["curse_pp"][3])
    total = table.iloc[-1]
    assert total["curse_pp"] == pytest.approx(1.3 / 3) and total["max_curse_pp"] == 1.0  # the unscored arm left out
    assert (total["n_arms"], total["n_positive"]) == (3, 2)
    assert total["tune_score_pct"] == pytest.approx(89.1667, abs=1e-4)
    surface = _Surface({0.0: {"lr": 3e-3, "weight_decay": 3e-4}})
    monkeypatch.setattr(grid, "run_trials", surface)
    result = _run(surface, [LR, WD])
    curse, summary = result.curse(), result.summary()
    assert curse["curse_pp"].iloc[0] == pytest.approx(summary["tune_score_pct"][0] - summary["remeasured_pct"][0])


class _Better(_Surface):
    """:class:`_Surface` whose arm 0.5 is 1 point better at its optimum, with a seed effect of its own (so the
    paired interval against arm 0 has a width), its verdict "higher"; ``moving``: arm 0.5's optimum lies
    elsewhere (at arm 9.0's) for the replica's tuning seeds 102 and 103."""

    def __init__(self, optimum: dict[float, dict[str, float]], moving: bool = False) -> None:
        super().__init__(optimum)
        self.moving = moving

    def accuracy(self, flat: dict) -> float:
        if flat["dropout_p"] != 0.5:
            return super().accuracy(flat)
        bonus = 0.01 + 0.001 * (flat["seed"] % 3 - 1)
        if self.moving and flat["seed"] in (102, 103):
            flat = flat | {"dropout_p": 9.0}
        return super().accuracy(flat) + bonus


def test_a_replication_on_fresh_tuning_seeds_reports_how_often_the_same_decision_results(monkeypatch):
    from lib.engine import replication

    peaks = {0.0: {"lr": 3e-3, "weight_decay": 3e-4}, 0.5: {"lr": 1e-3, "weight_decay": 1e-4}}
    peaks[9.0] = {"lr": 1e-1, "weight_decay": 1e-2}
    for surface, same in ((_Better(peaks), True), (_Better(peaks, moving=True), False)):
        monkeypatch.setattr(grid, "run_trials", surface)
        scientific = {"dropout_p": [0.0, 0.5]}
        original = _run(surface, [LR, WD], scientific)
        kwargs = {"rungs": [1, 3, 9], "log": None, "progress": False, "winner_hypothesis": "H1", "fixed_seeds": [0]}
        replica = replication.run_replication(
            {"epochs": 9}, scientific, [LR, WD], TUNE_SEEDS, SEEDS, "h", replicate_seeds=[102, 103],
            replicate_arms=[0.5], **kwargs,
        )  # fmt: skip
        tuned = {c["seed"] for tags, configs in surface.calls[-4:] if tags["phase"] == "tune" for c in configs}
        assert tuned == {102, 103} and all(not arm.fixed for arm in replica.arms)  # fresh seeds, no fixed arm
        table = replication.agreement(original, replica)
        assert list(table["arm"]) == ["dropout_p=0.0", "dropout_p=0.5"] and table["same_winner"][0]
        assert list(table["verdict"]) == ["reference", "higher"] and table["same_verdict"][0] is None
        assert bool(table["same_winner"][1]) == bool(table["same_region"][1]) == bool(table["same_verdict"][1]) == same
        assert table["replica_verdict"][1] == ("higher" if same else "lower")
        summary = replication.agreement_summary(table).iloc[0]
        assert summary["arms"] == 2 and summary["verdicts"] == 1
        assert summary["same_winner"] == (1.0 if same else 0.5) and summary["same_verdict"] == (1.0 if same else 0.0)


@pytest.mark.parametrize(
    ("seeds", "arms", "message"),
    [([100, 102], None, r"replicate_seeds \[100, 102\]: \[100\] already"), ([102], None, "at least 2 fresh"),
     ([102, 103], [0.7], r"replicate_arms \[0.7\]"), ([102, 103], [], "replicate_arms")],
)  # fmt: skip
def test_a_bad_replication_is_one_line(seeds, arms, message):
    from lib.engine import replication

    with pytest.raises(StudyError, match=message) as error:
        replication.check_replication({"dropout_p": [0.0, 0.5]}, TUNE_SEEDS, SEEDS, seeds, arms)
    assert "\n" not in str(error.value)
    assert replication.check_replication({"dropout_p": [0.0, 0.5, 0.6]}, TUNE_SEEDS, SEEDS, [7, 8], [0.6]) == {
        "dropout_p": [0.0, 0.6]
    }


@pytest.mark.slow
def test_a_replica_reuses_a_repeated_winners_runs_and_claims_nothing(mlflow_store, monkeypatch):
    """With the real records (digits, a known response instead of training): the original's winner runs carry
    its design and last rung; the replica trains its tuning on fresh seeds only, reuses the re-measured runs of
    a winner it repeats (nothing retrained) and adds no verdict tag and no hypothesis to them."""
    from lib import tracking
    from lib.data import DataSpec
    from lib.engine import replication

    monkeypatch.setattr(local_backend, "execute_trial", _execute)
    kwargs = {"rungs": [1, 2], "n_points": 7, "min_last_rung": 3, "log": None, "workers": 1, "progress": False}
    args = ({"epochs": 2}, {"dropout_p": [0.0, 0.5]}, [LR], TUNE_SEEDS, [0, 1], "rep", DataSpec(dataset="digits"))
    original = halving.run_halving(*args, winner_hypothesis="H1", **kwargs)
    before = tracking.runs_frame("rep")
    replica = replication.run_replication(*args, replicate_seeds=[102, 103], winner_hypothesis="H1", **kwargs)
    runs = tracking.runs_frame("rep")
    new = runs[~runs["run_id"].isin(before["run_id"])]
    assert set(new["tag.phase"]) == {"tune"} and set(new["seed"].astype(int)) == {102, 103}
    assert len(new) == 2 * (7 + 3) * 2  # arms x (rung 0 + rung 1 points) x fresh tuning seeds
    table = replication.agreement(original, replica)
    assert table["same_winner"].all() and list(table["same_verdict"][1:]) == [True]
    winners = runs[(runs["tag.phase"] == "remeasure") & (runs["lr"].astype(float) != 1e-3)]
    assert set(winners["tag.tuning_last_rung"]) == {"3"} and set(winners["tag.tuning_design"]) == {original.design()}
    assert "halving 7 points, eta 3, rungs 1/2 epochs (7/3 configurations)" in original.design()
    assert set(winners["tag.hypotheses"]) == {"H1"} and set(winners["tag.tuning_id"]) == {original.tuning_id}
