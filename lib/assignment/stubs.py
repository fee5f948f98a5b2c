"""Solution cells into TODO stubs and back: the student version of one master notebook, cell by cell.

A master notebook (``assignment/*.ipynb``) marks the code a student writes with the cell tag ``solution``; its
metadata ``todo`` says what to write (signature, return value, every name, tag and column later cells use) and
``minutes`` how long it takes. In the student version each such cell becomes a stub tagged ``todo``, in place::

    # TODO (about 10 min): <the cell's todo text, wrapped>
    raise NotImplementedError("TODO: <its first sentence>")

A markdown or raw cell tagged ``solution`` (a written answer) becomes a markdown cell ``**TODO (about N min):**
...``. Every output, execution count and run metadata is cleared. :func:`fill_in` puts the solutions back into a
student version (the round-trip test and a teacher's answer notebook). Built on :mod:`nbformat`, cell by cell.

What this is not: the edition around the notebooks (``lib.assignment.edition``), a grader, or a notebook runner.
"""

from __future__ import annotations

import copy
import json
import re
import textwrap
from pathlib import Path

import nbformat
from nbformat import NotebookNode

from lib.errors import HypertuneError

SOLUTION_TAG = "solution"
TODO_TAG = "todo"
DEFAULT_INSTRUCTION = "write this step yourself (see the markdown above)"
# Per-cell metadata a run leaves behind (papermill's timings, JupyterLab's execution times): cleared too.
RUN_METADATA = ("execution", "papermill")
WIDTH = 100  # the stub's comment lines, like the notebooks' code lines


class HandoutError(HypertuneError):
    """A hand-out that cannot be built from what was given (a missing or unreadable notebook, an unwritable
    folder): one line naming the file and the fix (exit code 2)."""


def tags(cell: NotebookNode) -> list[str]:
    """The cell's ``metadata.tags`` (an empty list when it has none)."""
    return list(cell.get("metadata", {}).get("tags", []))


def is_solution(cell: NotebookNode) -> bool:
    """True when the cell is tagged ``solution``."""
    return SOLUTION_TAG in tags(cell)


def count_solutions(nb: NotebookNode) -> int:
    """How many cells of ``nb`` are tagged ``solution``."""
    return sum(is_solution(cell) for cell in nb.cells)


def instruction(cell: NotebookNode) -> str:
    """The stub's instruction: ``metadata["todo"]`` on one line, else :data:`DEFAULT_INSTRUCTION`."""
    text = " ".join(str(cell.get("metadata", {}).get("todo", "")).split())
    return text or DEFAULT_INSTRUCTION


def minutes(cell: NotebookNode) -> int | None:
    """The cell's ``metadata["minutes"]`` (how long the TODO takes a student), or None."""
    value = cell.get("metadata", {}).get("minutes")
    return int(value) if isinstance(value, int | float) and value > 0 else None


def _label(cell: NotebookNode) -> str:
    """``TODO (about 10 min)`` or ``TODO`` when the cell says no time."""
    n = minutes(cell)
    return f"TODO (about {n} min)" if n else "TODO"


def headline(text: str, width: int = 60) -> str:
    """The instruction's first clause (up to ``. ``, ``; `` or ``: ``, not inside "e.g."), cut to ``width``."""
    first = re.split(r"(?<!e\.g)(?<!i\.e)\. |; |: ", text, maxsplit=1)[0].rstrip(".")
    return first if len(first) <= width else textwrap.shorten(first, width, placeholder=" …")


def stub_source(text: str, label: str = "TODO") -> str:
    """A code stub: the instruction as comment lines, then ``raise NotImplementedError`` with its headline."""
    lines = textwrap.wrap(f"{label}: {text}", WIDTH - 2, subsequent_indent="  ", break_on_hyphens=False)
    message = json.dumps(f"TODO: {headline(text)}", ensure_ascii=False)  # a valid Python string literal
    return "\n".join(f"# {line}" for line in lines) + f"\nraise NotImplementedError({message})"


def stub_cell(cell: NotebookNode) -> NotebookNode:
    """The ``todo`` cell that replaces solution ``cell``: same id and metadata, tag ``solution`` -> ``todo``."""
    text = instruction(cell)
    if cell.cell_type == "code":
        stub = nbformat.v4.new_code_cell(source=stub_source(text, _label(cell)))
    else:
        stub = nbformat.v4.new_markdown_cell(source=f"**{_label(cell)}:** {text}")
    metadata = copy.deepcopy(dict(cell.get("metadata", {})))
    metadata["tags"] = [TODO_TAG if tag == SOLUTION_TAG else tag for tag in tags(cell)]
    stub.metadata = nbformat.from_dict(metadata)
    if "id" in cell:
        stub.id = cell.id
    else:  # a notebook older than nbformat 4.5 has no cell ids and must not get one
        stub.pop("id", None)
    return stub


def clear_outputs(cell: NotebookNode) -> None:
    """Remove a cell's outputs, execution count and run metadata, in place."""
    if cell.cell_type == "code":
        cell.outputs = []
        cell.execution_count = None
    for key in RUN_METADATA:
        cell.metadata.pop(key, None)


def student_version(nb: NotebookNode) -> NotebookNode:
    """A copy of ``nb`` with every solution cell replaced by a ``todo`` stub and every output cleared.

    ``nb`` itself is not changed. The stubs keep their cells' positions, so the markdown around them reads
    as before.
    """
    out = copy.deepcopy(nb)
    out.cells = [stub_cell(cell) if is_solution(cell) else cell for cell in out.cells]
    for cell in out.cells:
        clear_outputs(cell)
    out.metadata.pop("papermill", None)
    return out


def fill_in(student: NotebookNode, master: NotebookNode) -> NotebookNode:
    """A copy of ``student`` with every ``todo`` stub replaced by the master's solution cell of the same id."""
    solutions = {cell.get("id"): cell for cell in master.cells if is_solution(cell)}
    out = copy.deepcopy(student)
    for index, cell in enumerate(out.cells):
        if TODO_TAG in tags(cell):
            if cell.get("id") not in solutions:
                raise HandoutError(f"cell {index} of the student version has no solution of id {cell.get('id')}")
            out.cells[index] = copy.deepcopy(solutions[cell.get("id")])
            clear_outputs(out.cells[index])
    return out


def read_notebook(path: Path) -> NotebookNode:
    """Read a notebook (nbformat 4), or raise :class:`HandoutError` naming the file and the fix."""
    if not path.is_file():
        what = "is a folder, not a notebook" if path.is_dir() else "does not exist"
        raise HandoutError(
            f"{path} {what}: give the path of an .ipynb file, or no path for every notebook in assignment/"
        )
    try:
        return nbformat.read(path, as_version=4)
    except Exception as exc:  # nbformat raises JSON, validation, decoding and OS errors alike
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise HandoutError(
            f"{path} is not a readable notebook ({reason}): re-save it from JupyterLab or restore it from git"
        ) from exc
