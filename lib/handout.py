"""Student hand-outs: copies of the solution notebooks with every solution cell replaced by a TODO stub.

The notebooks in ``notebooks/`` are the solution. A cell whose ``metadata.tags`` contains ``solution`` is
solution code; in the hand-out it becomes a stub code cell tagged ``todo``::

    # TODO: <instruction>
    raise NotImplementedError("TODO: <instruction>")

The instruction is the cell's ``metadata["todo"]`` when it has one, else :data:`DEFAULT_INSTRUCTION`. A
markdown or raw cell tagged ``solution`` (a written answer) becomes a markdown cell ``**TODO:** <instruction>``,
also tagged ``todo``. Every output and execution count of the hand-out is cleared (students run it themselves).
Built on :mod:`nbformat` (cells, not text surgery on the JSON); ``make handout`` runs
``python -m lib.handout --out handout``.

What this is not: a grader, a notebook runner, or a secret: the solutions stay in ``notebooks/`` (and in git),
untouched; the hand-out is written elsewhere (``handout/`` by default), never over its source. It does not
check that the hand-out runs; ``tests/test_handout.py`` does (up to the first TODO, in the smoke profile).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import nbformat
from nbformat import NotebookNode

from lib.errors import EXIT_OK, HypertuneError
from lib.paths import PROJECT_ROOT

SOLUTION_TAG = "solution"
TODO_TAG = "todo"
DEFAULT_INSTRUCTION = "write this step yourself (see the markdown above)"
NOTEBOOKS_DIR = PROJECT_ROOT / "notebooks"
DEFAULT_OUT = PROJECT_ROOT / "handout"
# Per-cell metadata a run leaves behind (papermill's timings, JupyterLab's execution times): cleared too.
RUN_METADATA = ("execution", "papermill")


class HandoutError(HypertuneError):
    """A hand-out that cannot be built from what was given (a missing or unreadable notebook, an unwritable
    folder): one line naming the file and the fix."""


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


def stub_source(text: str) -> str:
    """The source of a code stub: a ``# TODO:`` comment, then a ``raise NotImplementedError`` with the same text."""
    message = json.dumps(f"TODO: {text}", ensure_ascii=False)  # a valid Python string literal, quotes escaped
    return f"# TODO: {text}\nraise NotImplementedError({message})"


def stub_cell(cell: NotebookNode) -> NotebookNode:
    """The ``todo`` cell that replaces solution ``cell``: same id and metadata, tag ``solution`` -> ``todo``."""
    text = instruction(cell)
    if cell.cell_type == "code":
        stub = nbformat.v4.new_code_cell(source=stub_source(text))
    else:
        stub = nbformat.v4.new_markdown_cell(source=f"**TODO:** {text}")
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


def read_notebook(path: Path) -> NotebookNode:
    """Read a notebook (nbformat 4), or raise :class:`HandoutError` naming the file and the fix."""
    if not path.is_file():
        what = "is a folder, not a notebook" if path.is_dir() else "does not exist"
        raise HandoutError(
            f"{path} {what}: give the path of an .ipynb file, or no path for every notebook in notebooks/"
        )
    try:
        return nbformat.read(path, as_version=4)
    except Exception as exc:  # nbformat raises JSON, validation, decoding and OS errors alike
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise HandoutError(
            f"{path} is not a readable notebook ({reason}): re-save it from JupyterLab or restore it from git"
        ) from exc


def _shown(path: Path) -> str:
    """``path`` relative to the project root when it lies inside it, else as given."""
    try:
        return str(path.resolve().relative_to(PROJECT_ROOT))
    except ValueError:
        return str(path)


def write_notebook(nb: NotebookNode, source: Path, out_dir: Path) -> Path:
    """Write ``nb`` as ``out_dir/<source's name>``; refuses to overwrite ``source`` itself."""
    target = out_dir / source.name
    if target.resolve() == source.resolve():
        raise HandoutError(f"--out {out_dir} would overwrite the solution notebook {source}: choose another folder")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, target)
    except OSError as exc:
        raise HandoutError(f"cannot write {target} ({exc.strerror or exc}): choose another --out folder") from exc
    return target


def build_handout(sources: Iterable[Path], out_dir: Path, log: Callable[[str], None] | None = print) -> list[Path]:
    """Write the student version of each notebook in ``sources`` into ``out_dir``; return the paths written.

    Every source is read before anything is written, so a bad path leaves ``out_dir`` as it was. ``log`` gets
    one line per notebook: how many solution cells were replaced and where the hand-out went.
    """
    notebooks = [(Path(source), read_notebook(Path(source))) for source in sources]
    written = []
    for source, nb in notebooks:
        target = write_notebook(student_version(nb), source, Path(out_dir))
        written.append(target)
        if log is not None:
            n = count_solutions(nb)
            log(f"{_shown(source)}: {n} solution cell{'s' * (n != 1)} replaced by TODO stubs -> {_shown(target)}")
    return written


def default_sources(folder: Path = NOTEBOOKS_DIR, log: Callable[[str], None] | None = print) -> list[Path]:
    """Every notebook in ``folder`` with at least one solution cell; all of them (said in ``log``) if none has."""
    every = sorted(folder.glob("*.ipynb"))
    if not every:
        raise HandoutError(f"no notebook in {folder}: run from a checkout of the project, or name the notebooks")
    with_solutions = [path for path in every if count_solutions(read_notebook(path))]
    if with_solutions:
        return with_solutions
    if log is not None:
        log(f"no notebook in {_shown(folder)}/ has a cell tagged '{SOLUTION_TAG}' yet: every notebook is copied "
            "with its outputs cleared")
    return every


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m lib.handout",
        description="Write student versions of the notebooks: each cell tagged 'solution' becomes a TODO stub "
        "(tag 'todo'), every output is cleared. The notebooks in notebooks/ are not changed.",
    )
    parser.add_argument("notebooks", nargs="*", type=Path,
                        help="notebooks to hand out (default: every notebooks/*.ipynb with a 'solution' cell)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for the hand-out (default: handout/)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m lib.handout [--out DIR] [NOTEBOOK ...]``: 0 when written, 2 (one line on stderr) on bad input."""
    args = parse_args(argv)
    try:
        sources = args.notebooks or default_sources()
        build_handout(sources, args.out)
    except HandoutError as exc:
        print(f"handout: {exc}", file=sys.stderr)
        return exc.exit_code
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
