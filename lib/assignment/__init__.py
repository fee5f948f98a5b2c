"""The assignment a class takes: the student edition, declarations, the hand-in and the rubric check.

One room beside the engine: it uses the course library (``lib.tracking``, ``lib.store``, ``lib.config``) and
nothing above it. Its modules, one job each: ``stubs`` (solution cells into TODO stubs and back), ``edition``
(the student's folder and zip, ``python -m lib.handout``), ``declarations`` (a hypothesis and its rule, or the final
choice, recorded with a timestamp), ``records`` (the one reader of a study's runs), ``handin`` (pack and
import a hand-in), ``rubric`` (the criteria scored from the records, with evidence), ``class_check`` (the table and
CSV for a student, a folder of hand-ins or a class server) and ``commands`` (``python -m lib declare``,
``handin``, ``check``).

In a notebook::

    from lib import assignment
    assignment.declare(experiment, hypothesis="...", rule="...", factor="dropout_p", values=[0.0, 0.3],
                       nuisance={"lr": 3e-3}, seeds=[0, 1, 2])
    assignment.check(experiment)

What this is not: the engine that trains the trials, the worked study (``lib.study``), or a grade: a teacher
reads the report for the criteria the records cannot show.
"""

from typing import Any

__all__ = ["AssignmentError", "Declaration", "check", "declare", "declare_final"]


def __getattr__(name: str) -> Any:
    """``assignment.declare`` and the others, imported on first use: the edition's build (``python -m lib.handout``)
    needs none of them, nor MLflow and torch, which they bring."""
    if name == "check":
        from lib.assignment.class_check import check

        return check
    if name in ("Declaration", "declare", "declare_final"):
        from lib.assignment import declarations as module

        return getattr(module, name)
    if name == "AssignmentError":
        from lib.assignment.records import AssignmentError

        return AssignmentError
    raise AttributeError(f"module 'lib.assignment' has no attribute {name!r}")
