"""lib.errors: every error class of the package is a HypertuneError with its exit code, and the command line
turns each into one line and that code.

The classes are found by importing every module of lib/ and collecting the exception classes defined there,
so a new error class without a base or an exit code fails here.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import io
import pkgutil

import pytest

import lib
from lib import errors
from lib.errors import EXIT_ENVIRONMENT, EXIT_USAGE, HypertuneError

# The exit code each error class of lib/ must give: 2 for input the user can correct, 4 for a machine, data or
# store problem. A new error class needs a line here (and the right base).
EXPECTED = {
    "ConfigError": EXIT_USAGE,
    "UsageError": EXIT_USAGE,
    "StudyError": EXIT_USAGE,
    "RayNotInstalledError": EXIT_USAGE,  # a StudyError: `run_sweep(engine="ray")` without Ray installed
    "PoolingError": EXIT_USAGE,
    "HandoutError": EXIT_USAGE,
    "TemplateError": EXIT_USAGE,
    "ReportError": EXIT_USAGE,
    "MissingRunsError": EXIT_USAGE,
    "AssignmentError": EXIT_USAGE,  # a hand-in, experiment or class server that cannot be checked: one line, exit 2
    "RunsError": EXIT_USAGE,  # runs delete/restore: an unknown experiment or filter
    "DataError": EXIT_ENVIRONMENT,
    "StoreError": EXIT_ENVIRONMENT,
    "ClassServerError": EXIT_ENVIRONMENT,
}
# Exceptions of lib/ that are not errors: control flow, never shown to a user.
NOT_ERRORS = {"lib.study.runner.Interrupted": "the notebook thread's signal that Ctrl-C asked the study to stop"}


def _modules():
    for info in pkgutil.walk_packages(lib.__path__, "lib."):
        if info.name.endswith("__main__"):
            continue  # running it is what importing it does
        try:
            yield importlib.import_module(info.name)
        except ModuleNotFoundError as exc:
            if exc.name != "ray":  # the Ray back-end is optional
                raise


@functools.cache
def error_classes() -> dict[str, type[BaseException]]:
    """Every exception class defined in a module of lib/, by dotted name."""
    found = {}
    for module in _modules():
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, BaseException) and value.__module__ == module.__name__:
                found[f"{value.__module__}.{value.__qualname__}"] = value
    return found


def test_every_error_class_of_lib_is_a_hypertune_error_with_an_expected_exit_code():
    from lib.engine import trial

    classes = {name: cls for name, cls in error_classes().items() if name not in NOT_ERRORS}
    classes.pop("lib.errors.HypertuneError")
    assert {name.rsplit(".", 1)[1] for name in classes} >= set(EXPECTED)
    for name, cls in classes.items():
        short = name.rsplit(".", 1)[1]
        assert short in EXPECTED, f"{name}: a new error class; give it a base and add its exit code to EXPECTED"
        assert issubclass(cls, HypertuneError), f"{name} is not a HypertuneError"
        if HypertuneError not in cls.__mro__:  # a subclass by name: only where the source is the cache key
            assert name in errors.BY_NAME, name
            assert f"{cls.__module__.replace('.', '/')}.py" in trial._CODE_FILES, name
        assert errors.exit_code_of(cls("x")) == EXPECTED[short], name


def test_an_error_keeps_the_python_base_code_catches_it_by():
    from lib.config import ConfigError
    from lib.datasets import DataError
    from lib.engine.backend import StudyError
    from lib.tracking import StoreError

    assert issubclass(ConfigError, ValueError) and issubclass(StudyError, ValueError)
    assert issubclass(DataError, RuntimeError) and issubclass(StoreError, RuntimeError)
    assert not issubclass(KeyError, HypertuneError) and not isinstance(ValueError("x"), HypertuneError)
    assert errors.exit_code_of(ValueError("a bug")) == errors.EXIT_BUG


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_error_is_one_line_and_its_exit_code_through_the_command_line(name, monkeypatch):
    """``python -m lib`` in this process, with the command replaced by one that raises the error."""
    from lib import cli

    (cls,) = [cls for full, cls in error_classes().items() if full.rsplit(".", 1)[1] == name]

    def raises(args, debug=False):
        raise cls(f"{name} names the field\nand the fix")

    monkeypatch.setattr(cli, "run", raises)
    monkeypatch.delenv("HYPERTUNE_DEBUG", raising=False)
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = cli.main(["links"])
    assert code == EXPECTED[name]
    assert err.getvalue().splitlines() == [f"error: {name} names the field and the fix"]
