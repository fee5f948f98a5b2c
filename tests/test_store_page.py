"""docs/store.md against the store the package really writes: the kinds of runs, every param, metric and tag
the page lists, a plain ``mlflow`` call that finds the project's store, and ``runs delete`` / ``runs restore``.

The page's own script runs in ``test_front_door.py``'s five-minute study (it needs that study's runs).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lib import report, tracking
from lib.cli import main
from lib.data import DataSpec
from lib.engine import records
from lib.engine.grid import run_trials
from lib.paths import PROJECT_ROOT
from lib.store.schema import KIND_ANALYSIS, KIND_FINAL, KIND_SWEEP, KIND_TRIAL, TAG_KIND

PAGE = PROJECT_ROOT / "docs" / "store.md"
TINY = ["--dataset", "digits", "--set", "epochs=2", "--set", "num_conv_blocks=1"]


def listed(section: str) -> set[str]:
    """The names the page lists between ``<!-- section -->`` and ``<!-- /section -->`` (the backticked words
    outside parentheses)."""
    text = PAGE.read_text(encoding="utf-8").split(f"<!-- {section} -->", 1)[1].split(f"<!-- /{section} -->", 1)[0]
    text = re.sub(r"\([^)]*\)", "", text)
    return set(re.findall(r"`([^`]+)`", text))


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory) -> Path:
    """A CLI grid (2 trials), a CLI sweep (2 trials), a final run and an analysis run on digits, in one store."""
    folder = tmp_path_factory.mktemp("store_page")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{folder}/mlflow.db")
        patch.setenv("HYPERTUNE_STATE_DIR", str(folder / "state"))
        patch.setenv("HYPERTUNE_PROGRESS_BARS", "0")
        grid = ["grid", "--experiment", "page", *TINY, "--factor", "dropout_p=0,0.5", "--seeds", "0", "--workers", "1"]
        assert main(grid) == 0
        assert main(["sweep", "--experiment", "page", *TINY, "--name", "s", "--max-evals", "2"]) == 0
        final = DataSpec(dataset="digits", final=True)
        from lib.config import TrialConfig

        run_trials([TrialConfig.from_flat({"epochs": 1, "num_conv_blocks": 1})], "page", final, progress=False)
        analysis = tracking.analysis_run("page", notebook="nb", profile="smoke")
        analysis.complete()
    return folder


@pytest.fixture
def page_runs(tiny_store, monkeypatch) -> list[tracking.StoredRun]:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tiny_store}/mlflow.db")
    return tracking.find_runs(tracking.find_experiment_id("page"))


@pytest.mark.slow
def test_every_run_carries_its_kind_and_a_grid_its_roles(page_runs):
    kinds = sorted(run.tags.get(TAG_KIND, "none") for run in page_runs)
    assert kinds == sorted([KIND_TRIAL] * 4 + [KIND_SWEEP, KIND_FINAL, KIND_ANALYSIS])
    grid = [run for run in page_runs if run.tags.get(TAG_KIND) == KIND_TRIAL and "sweep" not in run.tags]
    assert len(grid) == 2
    for run in grid:  # the grid's factor is its scientific hyperparameter, the --set values are fixed
        roles = (run.tags["role_scientific"], run.tags["role_nuisance"], run.tags["role_fixed"])
        assert roles == ("dropout_p", "(none)", "epochs,num_conv_blocks")
    parent = next(run for run in page_runs if run.tags.get(TAG_KIND) == KIND_SWEEP)
    children = [run for run in page_runs if run.tags.get("mlflow.parentRunId") == parent.run_id]
    assert len(children) == 2 and all(run.tags["sweep"] == "s" for run in children)


@pytest.mark.slow
def test_the_page_lists_every_param_metric_and_tag_a_trial_run_carries(page_runs):
    trials = [run for run in page_runs if run.tags.get(TAG_KIND) in (KIND_TRIAL, KIND_FINAL)]
    validation = {"val_accuracy", "val_loss", "best_epoch", "best_val_accuracy", "best_val_loss"}
    for run in trials:
        final = run.tags[TAG_KIND] == KIND_FINAL  # no validation data: test scores instead (the page says so)
        assert set(run.params) == listed("params")
        epoch = {name for name in run.metrics if name.startswith("epoch_")}
        assert epoch == listed("epoch metrics") - ({"epoch_val_loss", "epoch_val_accuracy"} if final else set())
        once = set(run.metrics) - epoch
        wanted = listed("metrics") - validation | {"test_accuracy", "test_loss"} if final else listed("metrics")
        assert wanted <= once, sorted(wanted - once)
        text = PAGE.read_text(encoding="utf-8")
        assert all(f"`{name}`" in text for name in once), sorted(n for n in once if f"`{n}`" not in text)
        assert listed("trial tags") <= set(run.tags), sorted(listed("trial tags") - set(run.tags))
        unlisted = set(run.tags) - listed("trial tags") - listed("optional tags")
        assert unlisted == set(), f"tags a trial run carries that docs/store.md does not list: {sorted(unlisted)}"


def test_every_optional_name_the_page_lists_is_one_the_package_writes():
    source = "\n".join(path.read_text(encoding="utf-8") for path in (PROJECT_ROOT / "lib").rglob("*.py"))
    for name in listed("optional tags") - {"mlflow.parentRunId"}:
        assert f'"{name}"' in source or f"'{name}'" in source or f"TAG_{name.upper()} = " in source, name


def test_the_page_is_linked_from_the_five_minute_study_and_usage():
    readme = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    five_minutes = readme.split("## Your own study in 5 minutes", 1)[1].split("\n## ", 1)[0]
    assert "(docs/store.md)" in five_minutes
    assert "(store.md)" in (PROJECT_ROOT / "docs" / "usage.md").read_text(encoding="utf-8")


# --- a plain mlflow call in the project folder


def _plain_python(code: str, cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip()


def _env_without_store() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "PYTHONPATH")}
    return env | {"MLFLOW_ENABLE_TELEMETRY": "false"}


@pytest.mark.slow
def test_the_project_folder_links_mlflow_s_default_store_to_the_project_store():
    link = PROJECT_ROOT / "mlflow.db"
    assert link.is_symlink() and os.readlink(link) == "mlruns/mlflow.db"
    tracked = subprocess.run(["git", "ls-files", "-s", "mlflow.db"], cwd=PROJECT_ROOT, capture_output=True, text=True)
    assert tracked.stdout.startswith("120000 "), "mlflow.db must be committed as a link"
    # MLflow's default, asked from a folder without any setting: ./mlflow.db (nothing is opened or written)
    default = _plain_python("import mlflow; print(mlflow.get_tracking_uri())", PROJECT_ROOT, _env_without_store())
    assert default == f"sqlite:///{PROJECT_ROOT / 'mlflow.db'}"


@pytest.mark.slow
def test_a_plain_search_in_a_copy_of_the_project_folder_reads_the_store_and_leaves_git_clean(tmp_path):
    """The project's layout (the link, mlruns/, .gitignore) in a fresh repository: a run written by the package
    is found by a plain ``mlflow.search_runs`` there, and ``git status --porcelain`` stays empty."""
    (tmp_path / "mlruns").mkdir()
    shutil.copy(PROJECT_ROOT / ".gitignore", tmp_path / ".gitignore")
    shutil.copy(PROJECT_ROOT / "mlruns" / "README.md", tmp_path / "mlruns" / "README.md")
    os.symlink("mlruns/mlflow.db", tmp_path / "mlflow.db")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    for command in (["init", "-q"], ["add", "-A", "-f"], ["commit", "-q", "-m", "layout"]):
        subprocess.run([*git, *command], cwd=tmp_path, check=True, capture_output=True)
    store = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    exp = tracking._client(store).create_experiment("first")
    tracking._client(store).create_run(exp, tags={"kind": "trial"})
    code = "import mlflow; print(len(mlflow.search_runs(experiment_names=['first'])))"
    assert _plain_python(code, tmp_path, _env_without_store()) == "1"
    status = subprocess.run(["git", "status", "--porcelain"], cwd=tmp_path, capture_output=True, text=True)
    assert status.stdout == ""
    (tmp_path / "notebooks").mkdir()  # a plain call in another folder makes a stray, empty store there: ignored
    assert _plain_python(code, tmp_path / "notebooks", _env_without_store()) == "0"
    assert (tmp_path / "notebooks" / "mlflow.db").exists()
    status = subprocess.run(["git", "status", "--porcelain"], cwd=tmp_path, capture_output=True, text=True)
    assert status.stdout == ""


@pytest.mark.slow
def test_import_lib_points_plain_mlflow_at_the_project_store_from_any_folder(tmp_path):
    code = "import lib, mlflow; print(mlflow.get_tracking_uri())"
    env = _env_without_store() | {"PYTHONPATH": str(PROJECT_ROOT)}
    assert _plain_python(code, tmp_path, env) == f"sqlite:///{PROJECT_ROOT / 'mlruns' / 'mlflow.db'}"
    assert _plain_python(code, tmp_path, env | {"MLFLOW_TRACKING_URI": "sqlite:///x.db"}) == "sqlite:///x.db"


# --- runs delete / restore


def _trial(exp_id: str, key: str, epochs: int, accuracy: float) -> str:
    run = tracking.start_run(exp_id, {"epochs": epochs, "lr": 0.001}, {"trial_key": key, "kind": "trial"}, f"r{key}")
    tracking.log_metrics(run, {"val_accuracy": accuracy})
    tracking.end_run(run, tracking.FINISHED)
    return run


def test_runs_delete_lists_first_then_moves_to_the_trash_and_restore_brings_back(mlflow_store, capsys):
    exp_id = tracking.experiment_id("first")
    keep = [_trial(exp_id, f"k{i}", 10, 0.9) for i in range(3)]
    mistakes = [_trial(exp_id, f"m{i}", 1, 0.5) for i in range(2)]
    assert main(["runs", "delete", "--experiment", "first", "--where", "epochs=1"]) == 0
    out = capsys.readouterr().out
    assert "2 runs of 'first' would move to the trash" in out and "nothing deleted yet" in out
    assert len(tracking.find_runs(exp_id)) == 5  # a dry run: nothing moved
    assert main(["runs", "delete", "--experiment", "first", "--where", "epochs=1", "--yes"]) == 0
    assert "runs restore --experiment first --where epochs=1" in capsys.readouterr().out
    assert sorted(run.run_id for run in tracking.find_runs(exp_id)) == sorted(keep)
    assert sorted(run.run_id for run in tracking.deleted_runs(exp_id)) == sorted(mistakes)
    # the cache and the report leave the trash out
    assert set(records.cached_runs(exp_id)) == {"k0", "k1", "k2"}
    assert sorted(report.trial_runs("first")["run_id"]) == sorted(keep)
    assert main(["runs", "restore", "--experiment", "first", "--where", "epochs=1"]) == 0
    assert "restored 2 runs" in capsys.readouterr().out
    assert len(tracking.find_runs(exp_id)) == 5 and tracking.deleted_runs(exp_id) == []


def test_a_sweep_parent_goes_with_its_last_trial_and_comes_back_with_it(mlflow_store, capsys):
    exp_id = tracking.experiment_id("first")
    parent = tracking.start_run(exp_id, {"max_evals": 2}, {"kind": "sweep"}, "sweep-s")
    children = [tracking.start_run(exp_id, {"epochs": 1}, {"sweep": "s"}, f"c{i}", parent) for i in range(2)]
    assert main(["runs", "delete", "--experiment", "first", "--where", "sweep=s", "--yes"]) == 0
    assert {run.run_id for run in tracking.deleted_runs(exp_id)} == {parent, *children}
    assert main(["runs", "restore", "--experiment", "first", "--where", "sweep=s"]) == 0
    assert {run.run_id for run in tracking.find_runs(exp_id)} == {parent, *children}


@pytest.mark.parametrize(
    ("words", "message"),
    [
        (["--experiment", "first"], "--where: give at least one NAME=VALUE"),
        (["--experiment", "first", "--where", "epochs"], "must look like NAME=VALUE"),
        (["--experiment", "nope", "--where", "epochs=1"], "--experiment 'nope': no such experiment"),
        (["--experiment", "first", "--where", "epoch=1"], "no run in this experiment has a param or tag 'epoch'"),
    ],
)
def test_a_runs_command_that_cannot_be_done_is_one_line_and_changes_nothing(mlflow_store, capsys, words, message):
    exp_id = tracking.experiment_id("first")
    _trial(exp_id, "k", 1, 0.9)
    assert main(["runs", "delete", *words, "--yes"]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert len(tracking.find_runs(exp_id)) == 1
