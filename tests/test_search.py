"""lib.engine.search: the plain-data search space, and TPE sweeps that nest, resume exactly and survive failures."""

from __future__ import annotations

import json
import math
import pickle
from collections import Counter

import pytest
from hyperopt import STATUS_FAIL, STATUS_OK, Trials
from hyperopt.pyll import Apply

from lib import tracking
from lib.data import DataSpec
from lib.engine import local_backend, search
from lib.engine.grid import StudyError
from lib.engine.search import build_space, run_sweep
from lib.engine.trial import execute_trial
from lib.paths import state_dir

pytestmark = pytest.mark.usefixtures("mlflow_store")

DATA = DataSpec(train_subset=400, val_subset=200)
BASE = {"epochs": 1, "conv_out_channels": 8}
SPACE = {
    "lr": {"loguniform": [1e-3, 3e-3]},
    "dropout_p": {"uniform": [0.0, 0.5]},
    "num_conv_blocks": {"quniform": [1, 2, 1]},
    "pool_kernel_size": [2],
    "norm_type": ["none", "batch"],
}


def _sweep(experiment: str, name: str, max_evals: int, space=None, seed: int = 0):
    return run_sweep(
        SPACE if space is None else space, experiment, name, max_evals, seed=seed, base=BASE, data=DATA, progress=False
    )


def _children(experiment: str, parent_run_id: str) -> list:
    return [run for run in tracking.search(experiment) if run.data.tags.get("mlflow.parentRunId") == parent_run_id]


def _forbid_training(monkeypatch) -> None:
    def forbidden(*args, **kwargs):
        raise AssertionError("execute_trial must not be called here")

    monkeypatch.setattr(local_backend, "execute_trial", forbidden)


def _saved_trials(experiment: str, name: str):
    (path,) = state_dir().glob(f"{experiment}__{name}__*.hyperopt.pkl")  # one state file per sweep identity
    return pickle.loads(path.read_bytes())


def test_single_values_and_empty_ranges_become_constants():
    space = build_space(
        {
            "pool_kernel_size": [2],
            "norm_type": ("batch",),
            "dropout_p": {"uniform": [0.3, 0.3]},
            "lr": {"loguniform": [1e-3, 1e-3]},
            "conv_out_channels": {"quniform": [16, 16, 8]},
            "optimizer": "sgd",
        }
    )
    assert space == {
        "pool_kernel_size": 2,
        "norm_type": "batch",
        "dropout_p": 0.3,
        "lr": 1e-3,
        "conv_out_channels": 16,
        "optimizer": "sgd",
    }
    assert type(space["conv_out_channels"]) is int
    assert not any(isinstance(value, Apply) for value in space.values())


def test_real_choices_and_ranges_become_hyperopt_expressions():
    space = build_space(
        {
            "norm_type": ["none", "batch"],
            "dropout_p": {"uniform": [0.0, 0.5]},
            "lr": {"loguniform": [1e-4, 1e-2]},
            "conv_out_channels": {"quniform": [8, 32, 8]},
        }
    )
    assert all(isinstance(value, Apply) for value in space.values())
    assert [space[name].name for name in ("dropout_p", "lr", "conv_out_channels")] == ["float", "float", "float"]
    assert space["norm_type"].name == "switch"  # hp.choice


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"norm_type": []}, "empty list"),
        ({"dropout_p": {"uniform": [0.5, 0.1]}}, "swap"),
        ({"lr": {"loguniform": [0.0, 1e-2]}}, "low > 0"),
        ({"lr": {"loguniform": [-1e-3, 1e-2]}}, "low > 0"),
        ({"lr": {"normal": [0.0, 1.0]}}, "unknown range type"),
        ({"learningrate": {"loguniform": [1e-4, 1e-2]}}, "learningrate"),
        ({}, "empty"),
    ],
)
def test_bad_search_spaces_raise_study_error(spec, message):
    with pytest.raises(StudyError, match=message):
        build_space(spec)


@pytest.mark.parametrize("max_evals", [0, -1, 2.0])
def test_bad_max_evals_raises_before_any_run(monkeypatch, max_evals):
    _forbid_training(monkeypatch)
    with pytest.raises(StudyError, match="max_evals"):
        run_sweep(SPACE, "bad", "bad", max_evals, base=BASE, data=DATA, progress=False)
    assert tracking.search("bad") == []


def test_bad_space_raises_before_any_run(monkeypatch):
    _forbid_training(monkeypatch)
    with pytest.raises(StudyError):
        run_sweep({"norm_type": []}, "bad", "bad", 3, base=BASE, data=DATA, progress=False)
    assert tracking.search("bad") == []


def test_sweep_trials_are_child_runs_of_one_parent_with_decoded_values():
    result = _sweep("sweep", "small", 3)
    assert len(result.trials) == 3
    assert all(trial.ok for trial in result.trials)
    runs = tracking.search("sweep")
    (parent,) = [run for run in runs if run.info.run_id == result.parent_run_id]
    assert parent.info.status == tracking.FINISHED
    assert parent.data.tags["sweep_parent"] == "small"
    assert "mlflow.parentRunId" not in parent.data.tags
    children = _children("sweep", result.parent_run_id)
    assert len(runs) == 4 and len(children) == 3
    assert {run.info.status for run in children} == {tracking.FINISHED}
    assert {run.info.run_id for run in children} == {trial.run_id for trial in result.trials}
    assert all(run.data.tags["sweep"] == "small" for run in children)
    for trial in result.trials:
        config = trial.config
        assert config["norm_type"] in ("none", "batch")
        assert type(config["num_conv_blocks"]) is int and config["num_conv_blocks"] in (1, 2)
        assert 1e-3 <= config["lr"] <= 3e-3 and 0.0 <= config["dropout_p"] <= 0.5
        assert config["pool_kernel_size"] == 2
        assert (config["epochs"], config["conv_out_channels"]) == (1, 8)  # the base is kept
    by_id = {run.info.run_id: run for run in children}
    for trial in result.trials:
        params = by_id[trial.run_id].data.params
        assert params["norm_type"] == trial.config["norm_type"]
        assert params["num_conv_blocks"] == str(trial.config["num_conv_blocks"])
    assert result.best.val_accuracy == max(trial.val_accuracy for trial in result.trials)
    saved = _saved_trials("sweep", "small")
    assert [t["result"]["status"] for t in saved.trials] == [STATUS_OK] * 3
    assert [-t["result"]["loss"] for t in saved.trials] == [trial.val_accuracy for trial in result.trials]


def test_resumed_sweeps_sample_exactly_what_an_uninterrupted_sweep_samples(monkeypatch):
    straight = _sweep("X", "A", 5)
    assert len(straight.trials) == 5

    partial = _sweep("Y", "B", 3)
    assert len(partial.trials) == 3
    resumed = _sweep("Y", "B", 5)
    assert resumed.parent_run_id == partial.parent_run_id
    assert len(resumed.trials) == 5
    assert [t.config for t in resumed.trials] == [t.config for t in straight.trials]
    assert [t.val_accuracy for t in resumed.trials] == [t.val_accuracy for t in straight.trials]
    assert [t.cached for t in resumed.trials] == [True] * 3 + [False] * 2  # the first call trained three
    children = _children("Y", resumed.parent_run_id)
    assert Counter(run.info.status for run in children) == {tracking.FINISHED: 5}
    assert len({run.data.tags["trial_key"] for run in children}) == 5
    assert tracking.client().get_run(resumed.parent_run_id).info.status == tracking.FINISHED

    _forbid_training(monkeypatch)  # a complete sweep trains nothing more
    again = _sweep("Y", "B", 5)
    assert len(again.trials) == 5 and all(t.cached for t in again.trials)
    assert [t.run_id for t in again.trials] == [t.run_id for t in resumed.trials]
    assert len(_children("Y", resumed.parent_run_id)) == 5

    # Ctrl-C on the second trial: it is KILLED, and the resumed sweep still samples the same points.
    calls: list[int] = []

    def interrupt_second(config, data, progress=False, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return execute_trial(config, data, progress=progress, **kwargs)

    monkeypatch.setattr(local_backend, "execute_trial", interrupt_second)
    with pytest.raises(KeyboardInterrupt):
        _sweep("Z", "C", 3)
    (parent_id,) = [r.info.run_id for r in tracking.search("Z") if r.data.tags.get("sweep_parent") == "C"]
    children = _children("Z", parent_id)
    assert Counter(run.info.status for run in children) == {tracking.FINISHED: 1, tracking.KILLED: 1}
    (killed,) = [run for run in children if run.info.status == tracking.KILLED]
    assert len(_saved_trials("Z", "C").trials) == 1

    monkeypatch.setattr(local_backend, "execute_trial", execute_trial)
    continued = _sweep("Z", "C", 3)
    assert continued.parent_run_id == parent_id
    assert len(continued.trials) == 3
    assert [t.config for t in continued.trials] == [t.config for t in straight.trials[:3]]
    children = _children("Z", parent_id)
    assert Counter(run.info.status for run in children) == {tracking.FINISHED: 3, tracking.KILLED: 1}
    finished_keys = [run.data.tags["trial_key"] for run in children if run.info.status == tracking.FINISHED]
    assert len(set(finished_keys)) == 3
    assert killed.data.tags["trial_key"] == continued.trials[1].key  # the interrupted point was retrained
    assert tracking.client().get_run(killed.info.run_id).info.status == tracking.KILLED


def test_diverging_points_do_not_stop_the_sweep():
    # With seed 9, TPE's start-up draws lr = 0.01 (trains) first and lr = 10 (diverges) afterwards.
    space = {"optimizer": ["sgd"], "norm_type": ["none"], "lr": [0.01, 10.0]}
    result = _sweep("diverge", "mix", 3, space=space, seed=9)
    assert len(result.trials) == 3
    statuses = [trial.status for trial in result.trials]
    assert statuses[0] == "finished" and "failed" in statuses
    for trial in result.trials:
        if trial.ok:
            assert trial.config["lr"] == 0.01
        else:
            assert trial.config["lr"] == 10.0 and trial.failure_kind == "diverged" and math.isnan(trial.val_accuracy)
    saved = _saved_trials("diverge", "mix")
    expected = [STATUS_OK if trial.ok else STATUS_FAIL for trial in result.trials]
    assert [t["result"]["status"] for t in saved.trials] == expected
    assert result.best.config["lr"] == 0.01
    children = _children("diverge", result.parent_run_id)
    assert Counter(run.info.status for run in children) == {tracking.FINISHED: 1, tracking.FAILED: 1}
    assert tracking.client().get_run(result.parent_run_id).info.status == tracking.FINISHED


def test_a_sweep_whose_first_trials_fail_still_completes():
    space = {"optimizer": ["sgd"], "norm_type": ["none"], "lr": [10.0]}  # every point diverges
    result = _sweep("allfail", "diverging", 2, space=space)
    assert [(t.status, t.failure_kind) for t in result.trials] == [("failed", "diverged")] * 2
    assert [t["result"]["status"] for t in _saved_trials("allfail", "diverging").trials] == [STATUS_FAIL] * 2
    with pytest.raises(RuntimeError, match="no trial of this sweep finished"):
        _ = result.best
    assert tracking.client().get_run(result.parent_run_id).info.status == tracking.FINISHED


def test_a_sweep_started_under_other_training_code_is_not_resumed(monkeypatch):
    first = _sweep("versions", "v", 2)
    monkeypatch.setattr(search, "code_version", lambda: "another-version")
    second = _sweep("versions", "v", 2)
    assert second.parent_run_id != first.parent_run_id
    assert len(list(state_dir().glob("versions__v__*.hyperopt.pkl"))) == 2


def test_an_empty_state_file_is_rebuilt_from_the_store_and_the_sweep_goes_on(monkeypatch, capsys):
    first = _sweep("empty", "state", 3)
    (path,) = state_dir().glob("empty__state__*.hyperopt.pkl")
    path.write_bytes(b"")  # a crash while writing it (before the writes were atomic)
    _forbid_training(monkeypatch)  # the same seed redraws the same three points, which hit the cache
    again = _sweep("empty", "state", 3)
    assert "unreadable" in capsys.readouterr().err
    assert again.parent_run_id == first.parent_run_id
    assert [t.run_id for t in again.trials] == [t.run_id for t in first.trials]
    assert len(_saved_trials("empty", "state").trials) == 3
    assert tracking.client().get_run(first.parent_run_id).info.status == tracking.FINISHED

    monkeypatch.setattr(local_backend, "execute_trial", execute_trial)
    more = _sweep("empty", "state", 4)
    assert [t.run_id for t in more.trials[:3]] == [t.run_id for t in first.trials]
    children = _children("empty", first.parent_run_id)
    assert Counter(run.info.status for run in children) == {tracking.FINISHED: 4}
    assert tracking.client().get_run(first.parent_run_id).info.status == tracking.FINISHED


def test_the_sweep_state_is_written_atomically(tmp_path, monkeypatch):
    (tmp_path / "state").mkdir()
    path = tmp_path / "state" / "sweep.hyperopt.pkl"
    search.save_state(Trials(), path)
    before = path.read_bytes()

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(search.pickle, "dump", crash)
    with pytest.raises(OSError, match="disk full"):
        search.save_state(Trials(), path)
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left behind


def test_the_parent_run_ends_with_the_best_trial_and_a_summary_is_printed(capsys):
    result = run_sweep(SPACE, "best", "b", 3, base=BASE, data=DATA, progress=True)
    parent = tracking.client().get_run(result.parent_run_id)
    assert parent.data.metrics["val_accuracy"] == result.best.val_accuracy
    assert parent.data.tags["best_run_id"] == result.best.run_id
    assert json.loads(parent.data.tags["best_config"])["lr"] == result.best.config["lr"]
    assert capsys.readouterr().out.strip().splitlines()[-1] == "sweep b: 3 trials: 3 finished"
    run_sweep(SPACE, "best", "b", 3, base=BASE, data=DATA, progress=True)
    assert capsys.readouterr().out.strip().splitlines()[-1] == "sweep b: 3 trials: 3 finished (3 cached)"


def test_random_search_draws_tpes_start_up_points_and_is_its_own_sweep():
    tpe_sweep = _sweep("R", "S", 4)  # 3 random start-up points, then one TPE point
    random_sweep = run_sweep(SPACE, "R", "S", 4, base=BASE, data=DATA, progress=False, algo="random")
    assert random_sweep.parent_run_id != tpe_sweep.parent_run_id  # another state, another parent
    assert [t.config for t in random_sweep.trials[:3]] == [t.config for t in tpe_sweep.trials[:3]]
    assert all(t.cached for t in random_sweep.trials[:3])  # the shared points come from the store
    parent = tracking.client().get_run(random_sweep.parent_run_id)
    assert parent.data.params["algo"] == "random"
    with pytest.raises(StudyError, match="algo='grid'"):
        run_sweep(SPACE, "R", "S", 4, base=BASE, data=DATA, progress=False, algo="grid")


def test_sweeps_with_different_seeds_draw_different_points():
    # seeding each step with seed + step made seed 1 replay seed 0 shifted by one step
    first = run_sweep(SPACE, "seeds", "s0", 3, seed=0, base=BASE, data=DATA, progress=False, algo="random")
    second = run_sweep(SPACE, "seeds", "s1", 3, seed=1, base=BASE, data=DATA, progress=False, algo="random")
    lrs = [t.config["lr"] for t in first.trials], [t.config["lr"] for t in second.trials]
    assert not set(lrs[0]) & set(lrs[1]), lrs
    assert not any(t.cached for t in first.trials + second.trials)  # each trained its own points


def test_a_negative_sweep_seed_is_a_study_error_before_anything_is_logged():
    with pytest.raises(StudyError, match="seed=-1"):
        run_sweep(SPACE, "negative", "s", 2, seed=-1, base=BASE, data=DATA, progress=False)
    assert tracking.client().get_experiment_by_name("negative") is None


# ---- quasi-random search, TPE's start-up points, the budget rule, the default space ----------------

QUASI = {"lr": {"loguniform": [1e-4, 1e-2]}, "num_conv_blocks": {"quniform": [1, 3, 1]}, "norm_type": ["none", "batch"]}
TINY = DataSpec(dataset="digits")


def test_quasi_random_values_follow_the_space_log_ranges_on_a_log_scale_choices_by_index_integers_rounded():
    assert search.quasi_value("lr", {"loguniform": [1e-4, 1e-2]}, 0.5) == pytest.approx(1e-3)
    assert search.quasi_value("p", {"uniform": [0.0, 0.6]}, 0.5) == pytest.approx(0.3)
    assert search.quasi_value("n", {"quniform": [1, 3, 1]}, 0.99) == 3.0
    assert [search.quasi_value("c", ["a", "b", "c"], u) for u in (0.0, 0.4, 0.99)] == [0, 1, 2]
    with pytest.raises(StudyError, match="quasirandom cannot map a 'normal' range"):
        search.check_quasirandom({"lr": {"normal": [0, 1]}})


def _fake(config, data, progress=False, **kwargs):
    return search.TrialResult(
        key=search.trial_key(config, data), config=config.flat(), status="finished", val_accuracy=config.train.lr
    )


def test_quasi_random_points_cover_the_space_differ_between_seeds_and_repeat_for_one_seed(monkeypatch):
    monkeypatch.setattr(local_backend, "execute_trial", _fake)
    run = lambda exp, seed, n: run_sweep(  # noqa: E731
        QUASI, exp, "q", n, seed=seed, base=BASE, data=TINY, progress=False, algo="quasirandom"
    )
    first, other = run("qa", 0, 8), run("qb", 1, 8)
    points = [(t.config["lr"], t.config["num_conv_blocks"], t.config["norm_type"]) for t in first.trials]
    assert not {p[0] for p in points} & {t.config["lr"] for t in other.trials}  # another seed, other points
    assert {p[2] for p in points} == {"none", "batch"} and {p[1] for p in points} == {1, 2, 3}
    logs = sorted(math.log10(p[0]) for p in points)  # low-discrepancy on the log scale: one per eighth of it
    assert all(-4 + 2 * i / 8 <= value < -4 + 2 * (i + 1) / 8 for i, value in enumerate(logs)), logs
    partial = run("qc", 0, 3)
    resumed = run("qc", 0, 8)
    assert [t.config for t in partial.trials] == [t.config for t in first.trials[:3]]
    assert [t.config for t in resumed.trials] == [t.config for t in first.trials]


def test_a_quasi_random_sweep_killed_hard_resumes_to_the_same_points(tmp_path):
    """``kill -9`` in the middle of a real sweep (a subprocess), then the same call: the same points as a
    sweep that was never interrupted."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from lib.paths import PROJECT_ROOT

    base = {"epochs": 3, "conv_out_channels": 4}  # 3 epochs: CI saw five 1-epoch trials end between two polls
    args = ["sweep", "--experiment", "killed", "--name", "q", "--algo", "quasirandom", "--max-evals", "5"]
    args += ["--dataset", "digits", "--space", str(tmp_path / "s.yaml")]
    args += [part for key, value in base.items() for part in ("--set", f"{key}={value}")]
    (tmp_path / "s.yaml").write_text("lr: {loguniform: [1e-4, 1e-2]}\nnorm_type: [none, batch]\n")
    env = os.environ | {"PYTHONPATH": str(PROJECT_ROOT)}
    process = subprocess.Popen([sys.executable, "-m", "lib", *args], env=env, cwd=PROJECT_ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None:
        files = list(state_dir().glob("killed__q__*.pkl"))
        if files and len(pickle.loads(files[0].read_bytes()).trials) >= 1:
            break
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    done = len(_saved_trials("killed", "q").trials)
    assert 1 <= done < 5, f"the kill came too late to test a resume ({done} trials saved)"
    space = {"lr": {"loguniform": [1e-4, 1e-2]}, "norm_type": ["none", "batch"]}
    kwargs = {"base": base, "data": TINY, "progress": False, "algo": "quasirandom"}
    resumed = run_sweep(space, "killed", "q", 5, **kwargs)
    straight = run_sweep(space, "straight", "q", 5, **kwargs)
    assert [t.config for t in resumed.trials] == [t.config for t in straight.trials]
    assert [t.cached for t in resumed.trials] == [True] * done + [False] * (5 - done)  # saved points not retrained


def test_tpe_start_up_points_are_settable_and_checked():
    with pytest.raises(StudyError, match="n_startup=0"):
        run_sweep(SPACE, "startup", "s", 2, base=BASE, data=DATA, progress=False, n_startup=0)
    assert tracking.find_experiment_id("startup") is None


def test_the_budget_rule_warns_for_too_few_trials_and_the_default_space_fits_its_default_trials():
    assert "batch_size" not in search.DEFAULT_SPACE  # a throughput knob: at equal epochs it changes the steps
    assert search.budget_warning(search.DEFAULT_SPACE, search.DEFAULT_MAX_EVALS) is None
    warning = search.budget_warning(search.DEFAULT_SPACE, 16)
    assert warning and "16 trials for 4 searched dimensions" in warning and ">= 30" in warning
    assert search.budget_warning({"lr": {"loguniform": [1e-4, 1e-2]}, "pool_kernel_size": [2]}, 3) is None
    assert search.searched_dimensions(SPACE) == ["lr", "dropout_p", "num_conv_blocks", "norm_type"]


def test_integer_fields_come_from_the_config():
    decoded = search._decode({"conv_out_channels": 16.0, "epochs": 3.0, "lr": 0.5, "early_stopping_patience": 2.0})
    assert decoded == {"conv_out_channels": 16, "epochs": 3, "lr": 0.5, "early_stopping_patience": 2}
    assert isinstance(decoded["epochs"], int)
