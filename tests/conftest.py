"""Shared fixtures: a small real Fashion-MNIST split and an isolated MLflow/figures/state location."""

from __future__ import annotations

import os
import shutil

# OpenMP threads that wait for work sleep instead of spinning, in this process and every process a test starts
# (CLI runs, kernels, worker pools). Set before torch is imported: OpenMP reads it once, when it loads. The tests
# train beside each other (two pytest-xdist processes, a kernel, a server), so the threads of one trial outnumber
# the cores it gets; spinning threads then burn the other's time: one digits trial at 2 threads took 88 s and
# 21 CPU-seconds spinning, 2.7 s and 1.3 CPU-seconds passive (same accuracy; 2 cores at load 12, 2026-12-07).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402

from lib.data import DataSplits, load_splits  # noqa: E402


@pytest.fixture(scope="session")
def small_splits() -> DataSplits:
    """2000 training and 500 validation images of the real Fashion-MNIST (stratified)."""
    return load_splits(train_subset=2000, val_subset=500)


@pytest.fixture(autouse=True)
def isolated_outputs(tmp_path, monkeypatch):
    """Point MLflow, figures and sweep state at a temporary folder so tests never touch the repo."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    monkeypatch.setenv("HYPERTUNE_FIGURES_DIR", str(tmp_path / "figures"))
    monkeypatch.setenv("HYPERTUNE_STATE_DIR", str(tmp_path / "state"))
    return tmp_path


@pytest.fixture(scope="session")
def _mlflow_template(tmp_path_factory):
    """An empty, fully migrated MLflow SQLite store, created once per session (a fresh one costs seconds)."""
    from lib import tracking

    path = tmp_path_factory.mktemp("mlflow_template") / "mlflow.db"
    tracking._client(f"sqlite:///{path}")
    return path


@pytest.fixture
def mlflow_store(isolated_outputs, _mlflow_template):
    """The test's own MLflow store (at ``MLFLOW_TRACKING_URI``), pre-migrated: a copy of the template."""
    shutil.copyfile(_mlflow_template, isolated_outputs / "mlflow.db")
    return isolated_outputs


# --- the fast tier (`make test-fast` = `pytest -m "not slow"`) ---------------------------------------
# A test is `slow` when it starts a process (the CLI, a kernel, a server, a pool of workers) or trains
# beyond a second. The files that carry `@pytest.mark.slow` mark their own; the files below do not yet,
# so their slow tests are named here ("file::function", every parametrization included; in test_report.py
# every test that uses the module fixture `store`, two CLI runs of some 40 s).
SLOW_ELSEWHERE: frozenset[str] = frozenset(
    {
        "test_cli_errors.py::test_a_bad_input_in_a_real_process_is_one_or_two_lines_and_nothing_written",
        "test_cli_errors.py::test_failed_trials_are_listed_with_their_reason_and_a_summary",
        "test_cli_errors.py::test_a_sweep_whose_every_trial_diverges_exits_3_with_the_reason",
        "test_cli_errors.py::test_a_store_that_cannot_be_written_is_one_line",
        "test_cli_errors.py::test_a_store_that_cannot_be_created_is_one_line",
        "test_cli_errors.py::test_a_store_that_is_not_a_database_is_one_line",
        "test_cli_errors.py::test_a_data_folder_that_cannot_be_used_is_one_line_and_nothing_written",
        "test_cli_errors.py::test_debug_flag_and_environment_variable_show_the_traceback",
        "test_report.py::test_cli_report_writes_figures_table_and_markdown",
        "test_report.py::test_cli_grid_prints_the_ui_link",
        "test_report.py::test_unknown_experiment_lists_the_existing_ones",
        "test_report.py::test_experiment_without_finished_runs_says_so",
        "test_report.py::test_runs_url_opens_a_view_with_the_varied_columns",
        "test_report.py::test_budget_of_a_data_spec_and_the_final_runs",
        "test_search.py::test_a_quasi_random_sweep_killed_hard_resumes_to_the_same_points",
        "test_stop_anywhere.py::test_ctrl_c_during_training_marks_the_trial_killed_prints_one_line_and_the_rerun_resumes",
        "test_stop_anywhere.py::test_ctrl_c_during_an_analysis_step_closes_the_analysis_run_killed",
        "test_stop_anywhere.py::test_kill_9_of_the_process_group_takes_the_kernel_and_its_children_and_the_rerun_closes_the_stale_run",
        "test_stop_anywhere.py::test_a_notebook_run_half_way_and_closed_leaves_no_open_run_and_the_rerun_completes",
        "test_search.py::test_resumed_sweeps_sample_exactly_what_an_uninterrupted_sweep_samples",
        "test_search.py::test_random_search_draws_tpes_start_up_points_and_is_its_own_sweep",
        "test_search.py::test_sweep_trials_are_child_runs_of_one_parent_with_decoded_values",
        "test_search.py::test_sweeps_with_different_seeds_draw_different_points",
        "test_search.py::test_an_empty_state_file_is_rebuilt_from_the_store_and_the_sweep_goes_on",
        "test_search.py::test_a_sweep_started_under_other_training_code_is_not_resumed",
        "test_train.py::test_same_seed_gives_identical_history_and_weights",
        "test_train.py::test_recalibration_also_happens_when_early_stopping_ends_the_run",
        "test_train.py::test_fit_with_recalibration_records_before_and_after",
        "test_train.py::test_early_stopping_restores_the_best_epoch",
        # over 2 CPU-seconds each (measured 2026-12-07): simulations, trainings, a kernel, a store's migrations
        "test_stop_anywhere.py::test_a_try_out_writes_under_runs_and_says_where_and_a_full_run_refreshes_notebooks",
        "test_intervals.py::test_the_old_percentile_bootstrap_covered_too_rarely_where_seeds_dominate",
        "test_intervals.py::test_an_interaction_of_two_source_effects_covers_and_keeps_the_shared_image_term",
        "test_trial_records.py::test_trial_logs_best_epoch_metrics_beside_the_last_epoch",
        "test_trial_records.py::test_a_grids_verdicts_read_each_runs_per_image_results_and_cover_seeds_and_images",
        "test_tuning.py::test_the_study_logs_command_reproduces_the_same_configurations_on_a_fresh_store",
        "test_tuning.py::test_a_second_call_trains_nothing_and_the_report_reads_the_same_arms",
        "test_tuning.py::test_each_arm_gets_its_own_best_nuisance_and_is_remeasured_on_fresh_seeds_only",
        "test_front_door.py::test_the_grid_summary_line_counts_collapsed_trials_apart",
        "test_search.py::test_quasi_random_points_cover_the_space_differ_between_seeds_and_repeat_for_one_seed",
        "test_train.py::test_recalibrated_curves_leave_training_unchanged",
        "test_failsafe.py::test_a_store_with_runs_and_leftover_migration_tables_is_repaired_and_keeps_its_runs",
    }
)
SLOW_MODULES = frozenset({"test_class_server.py"})

# `make test` runs the unit tests in two pytest-xdist processes, one file at a time each (`--dist loadfile`),
# handed out in collection order: the files that take longest go first, so no long file starts last while the
# other process idles. Ranked by the CPU-seconds per file this conftest prints (two idle runs, 2026-12-08:
# stop_anywhere 110-128, cli_errors 67-76, failsafe 56-64, ctrl_c 50-59, halving 41-49, handout 31-37, browser
# 28-34, report 28-32, front_door 20-25, search 22-23, assignment 19-21, tuning 16-21, store_page 17-19; every
# other file under 18), then the files that start processes (engine_concurrency, by_hand); the rest after.
LONGEST_FIRST = (
    "test_stop_anywhere.py", "test_cli_errors.py", "test_failsafe.py", "test_ctrl_c.py", "test_halving.py",
    "test_handout.py", "test_browser.py", "test_report.py", "test_front_door.py", "test_search.py",
    "test_assignment.py", "test_tuning.py", "test_store_page.py", "test_engine_concurrency.py", "test_by_hand.py",
)  # fmt: skip


def _key(item) -> str:
    return f"{item.path.name}::{getattr(item, 'originalname', item.name)}"


@pytest.hookimpl(tryfirst=True)  # before -k and -m deselect anything, so a stale name is seen
def pytest_collection_modifyitems(config, items):
    files = {item.path.name for item in items}
    keys = {_key(item) for item in items}
    whole_files = not any("::" in arg for arg in config.args)
    stale = sorted(name for name in SLOW_ELSEWHERE if name.split("::")[0] in files and name not in keys)
    if whole_files and stale:
        raise pytest.UsageError(f"tests/conftest.py SLOW_ELSEWHERE names tests that do not exist: {stale}")
    for item in items:
        if _key(item) in SLOW_ELSEWHERE or item.path.name in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)
    rank = {name: place for place, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: each file keeps its own order


# --- CPU seconds per test file, printed at the end of a run -------------------------------------------------
# Wall times (--durations) depend on what runs beside a test; CPU seconds (this process and every process it
# started and waited for: CLI runs, kernels, pools) say what a file costs the machine, wherever it runs.
_CPU_START = pytest.StashKey[float]()
_CPU_BY_FILE: dict[str, float] = {}


def _cpu_seconds() -> float:
    import resource

    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    item.stash[_CPU_START] = _cpu_seconds()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    if call.when == "teardown" and _CPU_START in item.stash:
        outcome.get_result().user_properties.append(("cpu_s", _cpu_seconds() - item.stash[_CPU_START]))


def pytest_runtest_logreport(report):
    for name, value in report.user_properties:
        if name == "cpu_s" and report.when == "teardown":
            file = report.nodeid.split("::", 1)[0]
            _CPU_BY_FILE[file] = _CPU_BY_FILE.get(file, 0.0) + value


def pytest_terminal_summary(terminalreporter):
    if not _CPU_BY_FILE:
        return
    ranked = sorted(_CPU_BY_FILE.items(), key=lambda pair: -pair[1])
    terminalreporter.write_sep("=", f"CPU seconds per test file (all {sum(_CPU_BY_FILE.values()):.0f} s; top 15)")
    for file, seconds in ranked[:15]:
        terminalreporter.write_line(f"{seconds:8.1f}  {file}")
