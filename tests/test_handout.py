"""The student hand-out (lib.handout): solution cells become TODO stubs in place, nothing of the solution
survives, outputs are cleared, the hand-out runs up to its first TODO and fails there, and bad input is one
line with exit code 2."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat import NotebookNode

from lib import handout
from lib.paths import PROJECT_ROOT

SOLUTION_CODE = "return x * x  # the solution"
INSTRUCTION = 'define square(x), which returns x times x (use "*")'


def _output(text: str) -> NotebookNode:
    return nbformat.v4.new_output("stream", name="stdout", text=text)


def synthetic_notebook() -> NotebookNode:
    """A markdown cell, an imports cell, a solution cell defining a function, a later cell using it; every code
    cell with an output, as a committed solution notebook has."""
    nb = nbformat.v4.new_notebook()
    solution = nbformat.v4.new_code_cell(
        f"def square(x):\n    {SOLUTION_CODE}", execution_count=2, outputs=[_output("solution output\n")]
    )
    solution.metadata = nbformat.from_dict({"tags": ["solution"], "todo": INSTRUCTION})
    nb.cells = [
        nbformat.v4.new_markdown_cell("# Squares\nWrite `square(x)` below."),
        nbformat.v4.new_code_cell("import math", execution_count=1, outputs=[_output("imported\n")]),
        solution,
        nbformat.v4.new_code_cell("print(math.sqrt(square(4)))", execution_count=3, outputs=[_output("4.0\n")]),
    ]
    return nb


def execute_until_todo(nb: NotebookNode, kernel_name: str, cwd: Path, timeout: int = 300):
    """Execute ``nb``'s code cells in order, one by one, up to and including its first ``todo`` cell.

    Returns ``(index of that cell, the CellExecutionError it raised or None)``, or ``(None, None)`` when the
    notebook has no ``todo`` cell and ran to the end. An error in any cell before the first TODO fails the test.
    """
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    client = NotebookClient(nb, kernel_name=kernel_name, timeout=timeout, resources={"metadata": {"path": str(cwd)}})
    with client.setup_kernel():
        for index, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            todo = handout.TODO_TAG in handout.tags(cell)
            try:
                client.execute_cell(cell, index)
            except CellExecutionError as exc:
                if todo:
                    return index, exc
                pytest.fail(f"cell {index} failed before the first TODO cell: {str(exc).strip()[-2000:]}")
            if todo:
                return index, None
    return None, None


def all_sources(nb: NotebookNode) -> str:
    return "\n".join(cell.source for cell in nb.cells)


# --- the student version --------------------------------------------------------------------------------


def test_the_solution_cell_becomes_a_todo_stub_in_the_same_place_and_nothing_of_it_survives():
    nb = synthetic_notebook()
    student = handout.student_version(nb)

    assert [cell.cell_type for cell in student.cells] == ["markdown", "code", "code", "code"]
    assert not any(handout.is_solution(cell) for cell in student.cells)
    assert SOLUTION_CODE not in all_sources(student) and "def square" not in all_sources(student)
    stub = student.cells[2]
    assert handout.tags(stub) == ["todo"]
    assert stub.source == (
        '# TODO: define square(x), which returns x times x (use "*")\n'
        'raise NotImplementedError("TODO: define square(x), which returns x times x (use \\"*\\")")'
    )
    assert stub.id == nb.cells[2].id
    for index in (0, 1, 3):
        assert student.cells[index].source == nb.cells[index].source
    nbformat.validate(student)


def test_every_output_and_execution_count_is_cleared_and_the_original_is_unchanged():
    nb = synthetic_notebook()
    before = copy.deepcopy(nb)
    student = handout.student_version(nb)
    for cell in student.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None
    assert "solution output" not in nbformat.writes(student)
    assert nb == before


def test_the_stub_is_valid_python_that_raises_the_instruction_whatever_it_contains():
    cell = nbformat.v4.new_code_cell("secret = 42")
    cell.metadata = nbformat.from_dict({"tags": ["solution", "exercise"], "todo": 'say "hi"\n and \\ leave'})
    stub = handout.stub_cell(cell)
    assert handout.tags(stub) == ["todo", "exercise"]
    assert stub.source.splitlines()[0] == '# TODO: say "hi" and \\ leave'
    with pytest.raises(NotImplementedError, match=r'^TODO: say "hi" and \\ leave$'):
        exec(compile(stub.source, "stub", "exec"), {})


def test_without_a_todo_instruction_the_stub_says_the_default():
    cell = nbformat.v4.new_code_cell("secret = 42")
    cell.metadata = nbformat.from_dict({"tags": ["solution"]})
    assert handout.stub_cell(cell).source.startswith(f"# TODO: {handout.DEFAULT_INSTRUCTION}\n")


def test_a_solution_markdown_cell_becomes_a_markdown_todo():
    nb = synthetic_notebook()
    answer = nbformat.v4.new_markdown_cell("The answer: dropout hurts at this budget.")
    answer.metadata = nbformat.from_dict({"tags": ["solution"], "todo": "write your conclusion"})
    nb.cells.append(answer)
    student = handout.student_version(nb)
    assert student.cells[-1].cell_type == "markdown"
    assert student.cells[-1].source == "**TODO:** write your conclusion"
    assert handout.tags(student.cells[-1]) == ["todo"]
    assert "dropout hurts" not in all_sources(student)


# --- files and the command line ---------------------------------------------------------------------------


def test_build_handout_writes_each_notebook_and_says_how_many_cells_it_replaced(tmp_path):
    source = tmp_path / "solutions" / "00_squares.ipynb"
    source.parent.mkdir()
    nbformat.write(synthetic_notebook(), source)
    lines = []
    written = handout.build_handout([source], tmp_path / "out", log=lines.append)
    assert written == [tmp_path / "out" / "00_squares.ipynb"]
    assert handout.count_solutions(nbformat.read(written[0], as_version=4)) == 0
    assert handout.count_solutions(nbformat.read(source, as_version=4)) == 1  # the solution stays as it was
    assert len(lines) == 1 and "1 solution cell replaced" in lines[0] and str(written[0]) in lines[0]


def test_by_default_only_notebooks_with_solution_cells_are_handed_out_else_all_and_it_says_so(tmp_path):
    plain = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1")])
    nbformat.write(plain, tmp_path / "01_plain.ipynb")
    lines = []
    assert handout.default_sources(tmp_path, log=lines.append) == [tmp_path / "01_plain.ipynb"]
    assert len(lines) == 1 and "solution" in lines[0]
    nbformat.write(synthetic_notebook(), tmp_path / "00_squares.ipynb")
    assert handout.default_sources(tmp_path, log=lines.append) == [tmp_path / "00_squares.ipynb"]


@pytest.mark.parametrize("case", ["missing", "not json", "a folder"])
def test_bad_input_is_one_line_naming_the_file_and_exit_code_2_and_nothing_is_written(tmp_path, capsys, case):
    bad = tmp_path / "bad.ipynb"
    if case == "not json":
        bad.write_text("{this is not a notebook")
    elif case == "a folder":
        bad.mkdir()
    good = tmp_path / "good.ipynb"
    nbformat.write(synthetic_notebook(), good)
    out = tmp_path / "out"
    assert handout.main(["--out", str(out), str(good), str(bad)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert len(captured.err.strip().splitlines()) == 1 and str(bad) in captured.err
    assert not out.exists()


def test_the_hand_out_never_overwrites_its_solution_notebook(tmp_path, capsys):
    source = tmp_path / "00_squares.ipynb"
    nbformat.write(synthetic_notebook(), source)
    assert handout.main(["--out", str(tmp_path), str(source)]) == 2
    assert "overwrite" in capsys.readouterr().err
    assert handout.count_solutions(nbformat.read(source, as_version=4)) == 1


@pytest.mark.slow
def test_a_missing_notebook_in_a_real_process_is_one_line_exit_2_and_no_traceback(tmp_path):
    missing = tmp_path / "nope.ipynb"
    result = subprocess.run(
        [sys.executable, "-m", "lib.handout", "--out", str(tmp_path / "out"), str(missing)],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"handout: {missing} does not exist: give the path of an .ipynb "
                                                  "file, or no path for every notebook in notebooks/"]
    assert "Traceback" not in result.stderr + result.stdout


# --- executing the hand-out ------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_hand_out_runs_up_to_the_todo_and_fails_exactly_there_while_the_solution_runs_through(tmp_path):
    solution = synthetic_notebook()
    assert execute_until_todo(copy.deepcopy(solution), "python3", tmp_path) == (None, None)  # the harness passes it

    index, error = execute_until_todo(handout.student_version(solution), "python3", tmp_path)
    assert index == 2
    assert error is not None and error.ename == "NotImplementedError"
    assert INSTRUCTION.split('"')[0] in error.evalue


# --- the real notebooks ----------------------------------------------------------------------------------

REAL = sorted(handout.NOTEBOOKS_DIR.glob("*.ipynb"))
WITH_SOLUTIONS = [path for path in REAL if handout.count_solutions(nbformat.read(path, as_version=4))]
NONE_YET = pytest.param(
    None, marks=pytest.mark.skip(reason="no notebook in notebooks/ has a cell tagged 'solution' yet")
)
CASES = [pytest.param(path, id=path.stem) for path in WITH_SOLUTIONS] or [NONE_YET]


@pytest.mark.parametrize("path", CASES)
def test_the_hand_out_of_a_real_notebook_has_no_solution_left(path):
    nb = nbformat.read(path, as_version=4)
    student = handout.student_version(nb)
    assert not any(handout.is_solution(cell) for cell in student.cells)
    assert len(student.cells) == len(nb.cells)
    for original, stub in zip(nb.cells, student.cells, strict=True):
        if handout.is_solution(original):
            assert handout.TODO_TAG in handout.tags(stub)
            assert original.source.strip() == "" or original.source not in stub.source
    nbformat.validate(student)


@pytest.fixture(scope="module")
def smoke_store(tmp_path_factory):
    """One temporary store for the real hand-outs, run in order (a later notebook may read earlier runs)."""
    return tmp_path_factory.mktemp("handout_smoke")


@pytest.mark.slow
@pytest.mark.parametrize("path", CASES)
def test_the_hand_out_of_a_real_notebook_runs_in_the_smoke_profile_up_to_its_first_todo(path, smoke_store, monkeypatch):
    from jupyter_client.kernelspec import KernelSpecManager

    assert "hypertune" in KernelSpecManager().find_kernel_specs(), "the kernel 'hypertune' is missing: run make setup"
    monkeypatch.setenv("HYPERTUNE_PROFILE", "smoke")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{smoke_store}/mlflow.db")
    monkeypatch.setenv("HYPERTUNE_FIGURES_DIR", str(smoke_store / "figures"))
    monkeypatch.setenv("HYPERTUNE_STATE_DIR", str(smoke_store / "state"))
    student = handout.student_version(nbformat.read(path, as_version=4))
    index, error = execute_until_todo(student, "hypertune", handout.NOTEBOOKS_DIR)
    assert index is not None, f"{path.name}: the hand-out has no TODO cell"
    assert error is not None and error.ename == "NotImplementedError", f"{path.name}: the first TODO did not stop it"
