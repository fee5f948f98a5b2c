"""lib.engine.records: the one-line summary a progress bar closes with, and typed records read back from the store."""

from __future__ import annotations

import pytest

from lib import tracking
from lib.config import TrialConfig
from lib.data import DataSpec
from lib.engine import records
from lib.engine.trial import TrialResult


def _result(status: str, kind: str = "", cached: bool = False) -> TrialResult:
    return TrialResult(key="k", config={}, status=status, failure_kind=kind, cached=cached, val_accuracy=0.5)


def test_the_summary_line_counts_finished_cached_and_failed_trials_by_kind():
    results = (
        [_result("finished", cached=True)] * 3 + [_result("finished")] * 6 + [_result("failed", "invalid_config")] * 3
    )
    assert (
        records.summary_line("grid H1", results)
        == "grid H1: 12 trials: 9 finished (3 cached), 3 failed (invalid config)"
    )
    mixed = [_result("finished"), _result("failed", "diverged"), _result("failed", "error"), _result("failed", "error")]
    assert records.summary_line("sweep s", mixed) == "sweep s: 4 trials: 1 finished, 3 failed (2 error, 1 diverged)"
    assert records.summary_line("x", [_result("finished")]) == "x: 1 trial: 1 finished"


def test_the_progress_bar_closes_with_the_summary_only_when_the_call_completed(capsys):
    bar = records.Progress("grid H1", total=2, done=0, enabled=True)
    bar.update(_result("finished"))
    bar.close()  # interrupted: no summary
    assert "grid H1:" not in capsys.readouterr().out
    bar = records.Progress("grid H1", total=1, done=0, enabled=True)
    bar.close([_result("failed", "diverged")])
    assert capsys.readouterr().out.strip() == "grid H1: 1 trial: 0 finished, 1 failed (diverged)"
    records.Progress("quiet", total=1, done=0, enabled=False).close([_result("finished")])
    assert capsys.readouterr().out == ""


def test_a_notebook_run_for_the_record_gets_the_summary_line_and_no_frozen_bar(capsys, monkeypatch):
    monkeypatch.setenv(records.BARS_ENV, "0")  # what `python -m lib study` sets for its kernels
    bar = records.Progress("grid H1", total=1, done=0, enabled=True)
    assert bar.bar.disable
    bar.close([_result("finished")])
    captured = capsys.readouterr()
    assert captured.out.strip() == "grid H1: 1 trial: 1 finished" and "trial/s" not in captured.err


@pytest.mark.usefixtures("mlflow_store")
def test_a_logged_run_reads_back_as_a_typed_record_and_the_same_result():
    exp_id = tracking.experiment_id("typed")
    config = TrialConfig.from_flat({"epochs": 1, "seed": 3})
    data = DataSpec(train_subset=200, val_subset=200)
    recorder = records.Recorder(exp_id, data, {"experiment": "typed"}, None, records.Progress("t", 1, 0, False))
    request = records.TrialRequest("key-1", config)
    recorder.open(request)
    recorder.epoch("key-1", {"epoch": 1, "train_loss": 1.0, "val_loss": 0.9, "val_accuracy": 0.6})
    result = TrialResult(
        key="key-1",
        config=config.flat(),
        status="finished",
        val_accuracy=0.6,
        val_loss=0.9,
        epochs_run=1,
        history=[{"epoch": 1, "train_loss": 1.0, "val_loss": 0.9, "val_accuracy": 0.6}],
    )
    recorder.close("key-1", result)
    (stored,) = tracking.find_runs(exp_id)
    assert isinstance(stored, tracking.StoredRun) and stored.status == tracking.FINISHED
    assert stored.tags["trial_key"] == "key-1" and stored.params["seed"] == "3"
    assert list(tracking.metric_history(stored.run_id)["val_accuracy"]) == [0.6]  # logged once, as it ended
    back = records.result_from_run(config, "key-1", stored)
    assert (back.status, back.val_accuracy, back.epochs_run, back.cached) == ("finished", 0.6, 1, True)
    assert records.cached_runs(exp_id) == {"key-1": stored}


def test_run_names_start_with_the_role_of_the_run():
    config = TrialConfig.from_flat({"seed": 2})
    plain = records.run_name(config)
    assert plain.endswith("-s2") and not plain.startswith(("H1", "sweep", "final"))
    assert records.run_name(config, {"hypothesis": "H1"}) == f"H1-{plain}"
    assert records.run_name(config, {"sweep": "tpe"}) == f"sweep-tpe-{plain}"
    assert records.run_name(config, {"hypothesis": "H1"}, DataSpec(final=True)) == f"final-{plain}"


@pytest.mark.usefixtures("mlflow_store")
def test_a_cached_run_reused_for_another_hypothesis_lists_both():
    from lib.engine.grid import run_grid

    impossible = {"num_conv_blocks": [5]}  # fails at once as invalid_config, which is cached
    data = DataSpec(train_subset=200, val_subset=200)
    first = run_grid({"epochs": 1}, impossible, [0], "hyp", data, tags={"hypothesis": "H1"}, workers=1, progress=False)
    run_id = first.loc[0, "run_id"]
    assert tracking.get_run(run_id).tags["hypotheses"] == "H1"
    assert tracking.get_run(run_id).run_id == run_id
    for hypothesis in ("H2", "H1", "H2"):
        again = run_grid({"epochs": 1}, impossible, [0], "hyp", data, tags={"hypothesis": hypothesis}, workers=1)
        assert again.loc[0, "cached"] and again.loc[0, "run_id"] == run_id
    stored = tracking.get_run(run_id)
    assert stored.tags["hypotheses"] == "H1,H2" and stored.tags["hypothesis"] == "H1"
    assert tracking.client().get_run(run_id).info.run_name.startswith("H1-")
