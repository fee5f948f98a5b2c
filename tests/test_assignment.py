"""Declare first, hand in, check (``lib.assignment``): a declaration recorded with its time, a hand-in that
carries the runs whole into a store of its own, and the rubric check on a synthetic good hand-in (2 on every
machine-checked criterion), a synthetic bad one (one seed, the test set read twice, the hypothesis declared
after the runs, two factors varied at once: 0 on each, with the evidence), a folder of hand-ins, and a class
of three users on a tracking server. Bad input is one line, exit code 2, and nothing written."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path

import nbformat
import pytest

from lib import tracking
from lib.assignment import AssignmentError, class_check, declare, declare_final, handin, rubric
from lib.assignment.records import _runs
from lib.cli import main
from lib.config import TrialConfig

T0 = 1_765_100_000_000  # 2025-12-07 09:33:20 UTC, in ms
MINUTE = 60_000
HELD = {"norm_type": "batch", "lr": 0.003, "weight_decay": 0.0001, "epochs": 3}


def _text(value: object) -> str:
    if isinstance(value, tuple | list):
        return "(" + ",".join(map(str, value)) + ("," if len(value) == 1 else "") + ")"
    return str(value)


def _run(
    n: int,
    start: int,
    params: dict,
    metrics: dict[str, float] | None = None,
    tags: dict | None = None,
    status: str = "FINISHED",
) -> dict:
    """One run in the hand-in's format (what ``tracking.export_runs`` writes)."""
    return {
        "run_id": f"run{n:03d}",
        "run_name": f"r{n}",
        "status": status,
        "start_time": start,
        "end_time": start + 20_000,
        "params": {k: _text(v) for k, v in params.items()},
        "tags": dict(tags or {}),
        "metrics": {k: [[0, v, start + 20_000]] for k, v in (metrics or {}).items()},
    }


def _trial(n: int, start: int, config: dict, metric: str = "val_accuracy", value: float = 0.9) -> dict:
    final = config.pop("final", False)
    params = TrialConfig.from_flat(config).flat() | {"data_train_subset": 2000, "data_dataset": "fashion_mnist"}
    if final:
        params["data_final"] = True
    run = _run(n, start, params, {metric: value}, {"trial_key": f"key{n}"})
    run["metrics"]["epoch_val_accuracy"] = [[e, 0.8 + e / 100, start + e * 1000] for e in (1, 2, 3)]
    return run


def _declaration(n: int, start: int, stage: str, **fields) -> dict:
    tags = {"kind": "declaration", "declaration": stage}
    tags |= {k: v if isinstance(v, str) else json.dumps(v) for k, v in fields.items()}
    return _run(n, start, {}, tags=tags)


def good_runs() -> list[dict]:
    """Declared first; dropout 0 vs 0.3 on seeds 0-2, lr and weight decay held as declared; the final choice
    declared, then one test reading on three fresh seeds."""
    runs = [
        _declaration(
            0,
            T0,
            "hypothesis",
            hypothesis="Dropout 0.3 beats 0 with BatchNorm.",
            rule="Supported if the paired 95% CI lies above 0.",
            factor="dropout_p",
            values=[0.0, 0.3],
            nuisance={"lr": 0.003, "weight_decay": 0.0001},
            seeds=[0, 1, 2],
        )
    ]
    for i, (p, seed) in enumerate((p, s) for p in (0.0, 0.3) for s in (0, 1, 2)):
        runs.append(_trial(1 + i, T0 + (2 + i) * MINUTE, HELD | {"dropout_p": p, "seed": seed}, value=0.85 + p / 10))
    final = HELD | {"dropout_p": 0.0}
    runs.append(_declaration(10, T0 + 20 * MINUTE, "final", config=final, criterion="test accuracy >= 85%"))
    for i, seed in enumerate((100, 101, 102)):
        runs.append(_trial(11 + i, T0 + (21 + i) * MINUTE, final | {"seed": seed, "final": True}, "test_accuracy"))
    return runs


def bad_runs() -> list[dict]:
    """Two factors changed at once, one run (and no seed logged) per setting, the hypothesis declared after the
    runs without a nuisance, the test set read for two configurations."""
    runs = []
    for i, (p, blocks) in enumerate(((0.0, 1), (0.5, 2))):
        run = _run(
            i,
            T0 + i * MINUTE,
            {"dropout_p": p, "num_conv_blocks": blocks, "lr": 0.003},
            {"val_accuracy": 0.8},
            {"trial_key": f"k{i}"},
        )
        runs.append(run)
    runs.append(
        _declaration(
            5, T0 + 5 * MINUTE, "hypothesis", hypothesis="Dropout helps.", rule="If it is higher.", factor="dropout_p"
        )
    )
    for i, p in enumerate((0.0, 0.5)):
        runs.append(
            _run(
                10 + i,
                T0 + (6 + i) * MINUTE,
                {"dropout_p": p, "data_final": True},
                {"test_accuracy": 0.8},
                {"trial_key": f"f{i}"},
            )
        )
    return runs


def report_notebook() -> nbformat.NotebookNode:
    figure = nbformat.v4.new_output("display_data", data={"image/png": "iVBORw0KGgo=", "text/plain": "<Figure>"})
    return nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_markdown_cell("# My study"),
            nbformat.v4.new_code_cell("plot()", outputs=[figure], execution_count=1),
        ]
    )


def write_handin(path: Path, runs: list[dict], student: str, experiment: str = "01_hypothesis") -> Path:
    """A hand-in zip in the format ``python -m lib handin`` writes."""
    manifest = {
        "format": handin.FORMAT,
        "version": handin.VERSION,
        "student": student,
        "created": "2026-12-07",
        "experiments": [{"name": experiment, "file": "runs/0.json", "runs": len(runs)}],
        "notebooks": ["notebooks/01_hypothesis.ipynb"],
    }
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(handin.MANIFEST, json.dumps(manifest))
        zf.writestr("runs/0.json", json.dumps({"experiment": experiment, "runs": runs}))
        zf.writestr("notebooks/01_hypothesis.ipynb", nbformat.writes(report_notebook()))
    return path


MACHINE = ("hypothesis_first", "controlled_comparison", "nuisance", "seeds_paired", "test_set_once", "hygiene")


def _study(runs: list[dict]) -> rubric.Study:
    """The rubric's view of exported runs, without a store (the records as ``_runs`` would read them)."""
    from lib.assignment.records import RunRecord

    records = [
        RunRecord(
            r["run_id"],
            r["run_name"],
            r["status"],
            r["start_time"],
            r["end_time"],
            r["params"],
            {k: v[-1][1] for k, v in r["metrics"].items()},
            r["tags"],
        )
        for r in runs
    ]
    return rubric.Study("x", "01_hypothesis", records, {"01_hypothesis.ipynb": report_notebook()})


# --- the rubric on synthetic records (no store) ----------------------------------------------------------------


def test_the_good_study_scores_2_on_every_machine_checked_criterion_and_says_why():
    scores = {s.key: s for s in rubric.score(_study(good_runs()))}
    assert {k: scores[k].points for k in MACHINE} == dict.fromkeys(MACHINE, 2)
    assert scores["plot"].points is None and scores["conclusions"].points is None
    assert "2 min 0 s before the first trial" in scores["hypothesis_first"].evidence
    assert "only dropout_p varied (0.0, 0.3)" in scores["controlled_comparison"].evidence
    assert "lr held at 0.003 in all 6 trials" in scores["nuisance"].evidence
    assert "dropout_p=0: seeds 0,1,2; dropout_p=0.3: seeds 0,1,2" in scores["seeds_paired"].evidence
    assert "read once" in scores["test_set_once"].evidence and "seeds 100,101,102" in scores["test_set_once"].evidence
    assert "1 figure" in scores["plot"].evidence


def test_the_bad_study_scores_0_on_each_machine_checked_criterion_with_the_evidence():
    scores = {s.key: s for s in rubric.score(_study(bad_runs()))}
    assert {k: scores[k].points for k in MACHINE} == dict.fromkeys(MACHINE, 0)
    assert "5 min 0 s AFTER the first trial" in scores["hypothesis_first"].evidence
    assert "never changed alone: it changed together with num_conv_blocks" in scores["controlled_comparison"].evidence
    assert "no nuisance hyperparameter named" in scores["nuisance"].evidence
    assert "one run per setting" in scores["seeds_paired"].evidence
    assert "read 2 times" in scores["test_set_once"].evidence
    assert "4 of 4 trials log no seed" in scores["hygiene"].evidence


@pytest.mark.parametrize(
    "change, key, points, words",
    [
        ("drop the rule", "hypothesis_first", 1, "without a decision rule"),
        ("two seeds", "seeds_paired", 1, "fewer than 3 seeds"),
        ("lr differs", "nuisance", 1, "declared held at 0.003, but the trials used 0.003, 0.01"),
        ("no final declaration", "test_set_once", 1, "no final choice was declared"),
        ("a trial after the reading", "test_set_once", 1, "validation trials ran after it"),
        ("a missing hyperparameter", "hygiene", 1, "trials lack 1 hyperparameters"),
    ],
)
def test_each_half_done_criterion_scores_1_and_says_what_is_missing(change, key, points, words):
    runs = good_runs()
    if change == "drop the rule":
        del runs[0]["tags"]["rule"]
    elif change == "two seeds":
        runs = [r for r in runs if r["params"].get("seed") != "2" or "data_final" in r["params"]]
    elif change == "lr differs":
        runs[4]["params"]["lr"] = "0.01"
    elif change == "no final declaration":
        runs = [r for r in runs if r["tags"].get("declaration") != "final"]
    elif change == "a trial after the reading":
        runs.append(_trial(50, T0 + 60 * MINUTE, HELD | {"dropout_p": 0.3, "seed": 0}))
    else:
        del runs[3]["params"]["activation"]
    score = next(s for s in rubric.score(_study(runs)) if s.key == key)
    assert (score.points, words in score.evidence) == (points, True), score.evidence


# --- declare ----------------------------------------------------------------------------------------------------


def test_a_declaration_is_a_run_with_its_time_and_a_later_one_is_flagged(mlflow_store, capsys):
    found = declare(
        "mine",
        hypothesis="Dropout 0.3 beats 0.",
        rule="CI above 0.",
        factor="dropout_p",
        values=[0.0, 0.3],
        nuisance={"lr": 0.003},
        seeds=[0, 1, 2],
    )
    assert "declared the hypothesis and rule (dropout_p) in 'mine'" in str(found)
    [run] = _runs("mine")
    assert run.is_declaration and not run.is_trial and abs(run.start - time.time() * 1000) < 60_000
    assert json.loads(run.tags["nuisance"]) == {"lr": 0.003} and run.tags["rule"] == "CI above 0."
    for name in ("mine", "late"):
        tracking.end_run(tracking.start_run(tracking.experiment_id(name), {"seed": 0}, {"trial_key": "k"}))
    declare("mine", hypothesis="Dropout 0.3 beats 0.", rule="CI above 0.")  # a rerun of the notebook
    assert capsys.readouterr().err == ""
    declare("late", hypothesis="Dropout hurts.", rule="CI below 0.")
    assert "1 trials were already in 'late'" in capsys.readouterr().err
    final = declare_final("mine", config={"dropout_p": 0.3, "lr": 0.003}, criterion="test accuracy >= 85%")
    assert final.stage == "final" and final.config == {"dropout_p": 0.3, "lr": 0.003}


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"hypothesis": " ", "rule": "r"}, "hypothesis is empty"),
        ({"hypothesis": "h", "rule": "r", "factor": "dropout"}, "'dropout' is not a hyperparameter"),
        ({"hypothesis": "h", "rule": "r", "nuisance": {"learning_rate": 1}}, "'learning_rate' is not"),
        ({"hypothesis": "h", "rule": "r", "seeds": [0, -1]}, "seeds [0, -1]"),
    ],
)
def test_a_bad_declaration_names_the_field_and_writes_nothing(mlflow_store, kwargs, words):
    with pytest.raises(AssignmentError, match=words.replace("[", r"\[").replace("]", r"\]")):
        declare("mine", **kwargs)
    assert "mine" not in tracking.experiment_names()


def test_declare_from_the_command_line(mlflow_store, capsys):
    code = main(
        [
            "declare",
            "--experiment",
            "cli",
            "--hypothesis",
            "Dropout 0.3 beats 0.",
            "--rule",
            "CI above 0",
            "--factor",
            "dropout_p",
            "--values",
            "0,0.3",
            "--nuisance",
            "lr=0.003",
            "--seeds",
            "0,1,2",
        ]
    )
    assert code == 0 and "declared the hypothesis and rule (dropout_p) in 'cli'" in capsys.readouterr().out
    assert json.loads(_runs("cli")[0].tags["values"]) == [0, 0.3]
    assert main(["declare", "--experiment", "cli", "--final", "--config", "dropout_p=0.3", "--criterion", "x"]) == 0
    assert main(["declare", "--experiment", "cli", "--final", "--config", "dropout=0.3", "--criterion", "x"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("declare: config:") and "dropout" in err[0]


# --- the hand-in: pack, read, import ----------------------------------------------------------------------------


def test_a_hand_in_carries_every_run_whole_into_a_store_of_its_own(mlflow_store, tmp_path):
    exp_id = tracking.experiment_id("mine")
    declare("mine", hypothesis="h", rule="r")
    parent = tracking.start_run(exp_id, {}, {"sweep": "s"})
    child = tracking.start_run(exp_id, {"seed": 1, "lr": 0.003}, {"trial_key": "k1"}, parent_run_id=parent)
    tracking.log_history(child, [{"epoch": 1, "val_accuracy": 0.5}, {"epoch": 2, "val_accuracy": 0.7}])
    tracking.log_metrics(child, {"val_accuracy": 0.7})
    tracking.end_run(child, tracking.FAILED)
    tracking.end_run(parent)
    nb = tmp_path / "report.ipynb"
    nbformat.write(report_notebook(), nb)
    assert handin.pack(["mine"], [nb], tmp_path / "alice.zip") == []
    before = tracking.export_runs("mine")
    got = handin.read(tmp_path / "alice.zip")
    assert got.student == "alice" and list(got.notebooks) == ["report.ipynb"] and got.experiments["mine"] == before
    uri = handin.import_into(got, tmp_path / "store")
    with tracking.using_store(uri):
        after = tracking.export_runs("mine")
    assert tracking.tracking_uri() != uri, "the current store is untouched"
    ids = {b["run_id"]: a["run_id"] for b, a in zip(before, after, strict=True)}
    for b, a in zip(before, after, strict=True):
        assert (a["status"], a["start_time"], a["end_time"], a["params"], a["metrics"]) == (
            b["status"],
            b["start_time"],
            b["end_time"],
            b["params"],
            b["metrics"],
        )
        if "mlflow.parentRunId" in b["tags"]:
            assert a["tags"]["mlflow.parentRunId"] == ids[b["tags"]["mlflow.parentRunId"]]
    child_after = next(a for a in after if a["params"].get("seed") == "1")
    assert child_after["metrics"]["epoch_val_accuracy"] == [
        [1, 0.5, child_after["metrics"]["epoch_val_accuracy"][0][2]],
        [2, 0.7, child_after["metrics"]["epoch_val_accuracy"][1][2]],
    ]


def _bad_archives(tmp_path: Path) -> dict[str, Path]:
    good = write_handin(tmp_path / "good.zip", good_runs(), "alice")
    data = good.read_bytes()
    cases = {
        "not a zip": tmp_path / "notes.zip",
        "truncated": tmp_path / "truncated.zip",
        "corrupt": tmp_path / "corrupt.zip",
        "partial": tmp_path / "partial.zip",
        "no manifest": tmp_path / "x.zip",
    }
    cases["not a zip"].write_text("my report, as text")
    cases["truncated"].write_bytes(data[: len(data) // 2])
    with zipfile.ZipFile(good) as zf:
        info = zf.getinfo("runs/0.json")
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    cases["corrupt"].write_bytes(data[: start + 5] + bytes([data[start + 5] ^ 0xFF]) + data[start + 6 :])
    with zipfile.ZipFile(good) as zf, zipfile.ZipFile(cases["partial"], "w") as out:
        for name in zf.namelist():
            if name != "runs/0.json":
                out.writestr(name, zf.read(name))
    with zipfile.ZipFile(cases["no manifest"], "w") as out:
        out.writestr("notebooks/a.ipynb", nbformat.writes(report_notebook()))
    return cases


@pytest.mark.parametrize("case", ["not a zip", "truncated", "corrupt", "partial", "no manifest"])
def test_a_file_that_is_not_a_usable_hand_in_is_one_line_exit_2_and_nothing_written(tmp_path, case, capsys):
    bad = _bad_archives(tmp_path)[case]
    args = ["check", "--handin", str(bad), "--csv", str(tmp_path / "class.csv"), "--stores", str(tmp_path / "s")]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(bad) in err[0] and "not a usable hand-in" in err[0], err
    assert not (tmp_path / "class.csv").exists() and not (tmp_path / "s").exists()


@pytest.mark.parametrize(
    "args, words",
    [
        (["check", "--experiment", "nope"], "experiment 'nope' is not in"),
        (["check"], "give one of --experiment"),
        (["handin", "--experiment", "nope", "--notebook", "nb.ipynb", "--out", "h.zip"], "experiment 'nope'"),
        (["handin", "--experiment", "e", "--notebook", "missing.ipynb", "--out", "h.zip"], "missing.ipynb does not"),
        (["handin", "--experiment", "e", "--notebook", "nb.ipynb", "--out", "h.tar"], "NAME.zip"),
    ],
)
def test_bad_check_and_hand_in_input_is_one_line_exit_2_and_nothing_written(
    mlflow_store, tmp_path, monkeypatch, capsys, args, words
):
    monkeypatch.chdir(tmp_path)
    nbformat.write(report_notebook(), tmp_path / "nb.ipynb")
    declare("e", hypothesis="h", rule="r")
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0], err
    assert not list(tmp_path.glob("h.*"))


def test_a_class_server_that_is_down_is_one_line(tmp_path, capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # free: nothing listens there
    assert (
        main(["check", "--server", f"http://127.0.0.1:{port}", "--users", "alice", "--csv", str(tmp_path / "c.csv")])
        == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not answer" in err[0] and not (tmp_path / "c.csv").exists()


@pytest.mark.slow  # two new stores: migrating each takes seconds
def test_a_folder_of_hand_ins_is_one_row_each_a_csv_and_stores_apart_from_the_teachers(mlflow_store, tmp_path, capsys):
    folder = tmp_path / "handins"
    folder.mkdir()
    write_handin(folder / "alice.zip", good_runs(), "alice")
    write_handin(folder / "bob.zip", bad_runs(), "bob")
    code = main(
        ["check", "--handin", str(folder), "--csv", str(tmp_path / "class.csv"), "--stores", str(tmp_path / "stores")]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "12/12" in out and "0/12" in out and "AFTER the first trial" in out
    rows = {r["who"]: r for r in __import__("csv").DictReader((tmp_path / "class.csv").open())}
    assert rows["alice"]["hygiene"] == "2" and rows["bob"]["test_set_once"] == "0"
    assert rows["alice"]["plot"] == "-" and rows["alice"]["machine_points"] == "12"
    assert "read 2 times" in rows["bob"]["test_set_once_evidence"]
    assert (tmp_path / "stores" / "alice" / "mlflow.db").exists() and (
        tmp_path / "stores" / "bob" / "mlflow.db"
    ).exists()
    assert tracking.experiment_names() == [], "nothing was imported into the teacher's own store"
    print(out)


# --- a class on a tracking server: one experiment per user, named <user>-... -----------------------------------


@pytest.fixture
def tracking_server(tmp_path):
    """``mlflow server`` on a free loopback port with its own SQLite store, stopped (process group) afterwards."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        f"sqlite:///{tmp_path}/server.db",
        "--artifacts-destination",
        str(tmp_path / "artifacts"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    log = (tmp_path / "server.log").open("w")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    try:
        while True:
            try:
                urllib.request.urlopen(f"{url}/health", timeout=5)
                break
            except OSError:
                assert process.poll() is None and time.monotonic() < deadline, (tmp_path / "server.log").read_text()
                time.sleep(0.5)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=60)


@pytest.mark.slow
def test_a_class_of_three_users_on_a_tracking_server_is_checked_by_user(tracking_server, tmp_path, capsys):
    with tracking.using_store(tracking_server):
        tracking.import_runs("alice-01_hypothesis", good_runs())
        tracking.import_runs("bob-01_hypothesis", bad_runs())
        tracking.import_runs("bobby-01_hypothesis", good_runs())  # another user: not bob's
    roster = tmp_path / "roster.txt"
    roster.write_text("# the class\nalice\nbob,a-password-of-bob\ncarol\n")
    code = main(["check", "--server", tracking_server, "--roster", str(roster), "--csv", str(tmp_path / "c.csv")])
    out = capsys.readouterr().out
    assert code == 0, out
    rows = {(r["who"], r["experiment"]): r for r in __import__("csv").DictReader((tmp_path / "c.csv").open())}
    assert set(rows) == {
        ("alice", "alice-01_hypothesis"),
        ("bob", "bob-01_hypothesis"),
        ("carol", "(no carol-... experiment)"),
    }
    assert rows[("alice", "alice-01_hypothesis")]["machine_points"] == "12"
    assert rows[("bob", "bob-01_hypothesis")]["machine_points"] == "0"
    assert rows[("carol", "(no carol-... experiment)")]["hypothesis_first"] == "0"
    assert "declared at 2025-12-07 09:33:20 UTC, 2 min 0 s before the first trial" in out
    print(out)


def test_the_roster_gives_the_logins_in_the_class_servers_format(tmp_path):
    roster = tmp_path / "roster.txt"
    roster.write_text("# one student per line\nalice\n\nbob,a-password-bob-chose  # comment\n")
    assert class_check.roster_users(roster) == ["alice", "bob"]
    with pytest.raises(AssignmentError, match="--roster"):
        class_check.roster_users(tmp_path / "missing.txt")


def test_a_nuisance_tuned_per_arm_is_controlled_and_earns_2_when_every_arm_was_tuned():
    """Declared ``"tune"``: each arm's tuning phase tries several learning rates, the winners differ between the
    arms on the re-measured seeds, and that is not a second factor."""
    runs = [
        _declaration(
            0,
            T0,
            "hypothesis",
            hypothesis="h",
            rule="r",
            factor="dropout_p",
            values=[0.0, 0.3],
            nuisance={"lr": "tune"},
            seeds=[0, 1, 2],
        )
    ]
    n = 1
    for p, winner in ((0.0, 0.003), (0.3, 0.01)):
        for lr in (0.001, 0.003, 0.01):
            runs.append(_trial(n, T0 + n * MINUTE, {"dropout_p": p, "lr": lr, "seed": 100}))
            runs[-1]["tags"]["phase"] = "tune"
            n += 1
        for seed in (0, 1, 2):
            runs.append(_trial(n, T0 + n * MINUTE, {"dropout_p": p, "lr": winner, "seed": seed}))
            n += 1
    scores = {s.key: s for s in rubric.score(_study(runs))}
    assert (scores["controlled_comparison"].points, scores["nuisance"].points) == (2, 2)
    assert "tuned per arm: lr" in scores["controlled_comparison"].evidence
    assert "lr tuned per arm (2 arms)" in scores["nuisance"].evidence
    untuned = [r for r in runs if not (r["tags"].get("phase") == "tune" and r["params"]["dropout_p"] == "0.3")]
    assert next(s for s in rubric.score(_study(untuned)) if s.key == "nuisance").points == 1
