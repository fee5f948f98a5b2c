"""``python -m lib.handout --out DIR``: build the student edition (``DIR/`` and ``DIR.zip``); ``make handout`` runs it.

The command only: the edition is built by :mod:`lib.assignment.edition`, the TODO stubs by
:mod:`lib.assignment.stubs` (re-exported here for older callers). What this is not: the logic, or a grader.
"""

from __future__ import annotations

import sys

from lib.assignment.edition import ASSIGNMENT_DIR, DEFAULT_OUT, build_edition, default_sources, main
from lib.assignment.stubs import (
    DEFAULT_INSTRUCTION,
    SOLUTION_TAG,
    TODO_TAG,
    HandoutError,
    count_solutions,
    fill_in,
    is_solution,
    read_notebook,
    stub_cell,
    stub_source,
    student_version,
    tags,
)

__all__ = [
    "ASSIGNMENT_DIR",
    "DEFAULT_INSTRUCTION",
    "DEFAULT_OUT",
    "SOLUTION_TAG",
    "TODO_TAG",
    "HandoutError",
    "build_edition",
    "count_solutions",
    "default_sources",
    "fill_in",
    "is_solution",
    "main",
    "read_notebook",
    "stub_cell",
    "stub_source",
    "student_version",
    "tags",
]

if __name__ == "__main__":
    sys.exit(main())
