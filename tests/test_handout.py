"""The student edition (``python -m lib.handout``, ``lib.assignment``): TODO stubs in place of the solutions, a
folder and a zip with no solution, no reference output and none of the study's headline numbers, TODO texts
that name everything later cells use, and the round trip (every stub filled in from its master) running to
the end in the smoke profile with full marks on the machine-checked criteria. Bad input is one line, exit
code 2, and nothing written."""

from __future__ import annotations

import ast
import copy
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import nbformat
import pandas as pd
import pytest
from nbformat import NotebookNode
from roundtrip import executed_edition, result_of

from lib import handout
from lib.assignment import edition, stubs
from lib.paths import PROJECT_ROOT

SOLUTION_CODE = "return x * x  # the solution"
INSTRUCTION = 'define square(x), which returns x times x (use "*")'
MASTERS = sorted(edition.ASSIGNMENT_DIR.glob("*.ipynb"))
PINS = ("requirements.txt", "constraints.txt")


def _output(text: str) -> NotebookNode:
    return nbformat.v4.new_output("stream", name="stdout", text=text)


def synthetic_notebook() -> NotebookNode:
    """A markdown cell, an imports cell, a solution cell defining a function, a later cell using it; every code
    cell with an output, as a committed solution notebook has."""
    nb = nbformat.v4.new_notebook()
    solution = nbformat.v4.new_code_cell(
        f"def square(x):\n    {SOLUTION_CODE}", execution_count=2, outputs=[_output("solution output\n")]
    )
    solution.metadata = nbformat.from_dict({"tags": ["solution"], "todo": INSTRUCTION, "minutes": 5})
    nb.cells = [
        nbformat.v4.new_markdown_cell("# Squares\nWrite `square(x)` below."),
        nbformat.v4.new_code_cell("import math", execution_count=1, outputs=[_output("imported\n")]),
        solution,
        nbformat.v4.new_code_cell("print(math.sqrt(square(4)))", execution_count=3, outputs=[_output("4.0\n")]),
    ]
    return nb


def all_sources(nb: NotebookNode) -> str:
    return "\n".join(cell.source for cell in nb.cells)


# --- the stubs --------------------------------------------------------------------------------------------


def test_the_solution_cell_becomes_a_todo_stub_in_the_same_place_and_nothing_of_it_survives():
    nb = synthetic_notebook()
    student = stubs.student_version(nb)
    assert [cell.cell_type for cell in student.cells] == ["markdown", "code", "code", "code"]
    assert not any(stubs.is_solution(cell) for cell in student.cells)
    assert SOLUTION_CODE not in all_sources(student) and "def square" not in all_sources(student)
    stub = student.cells[2]
    assert stubs.tags(stub) == ["todo"]
    assert stub.source == (
        '# TODO (about 5 min): define square(x), which returns x times x (use "*")\n'
        'raise NotImplementedError("TODO: define square(x), which returns x times x (use \\"*\\")")'
    )
    assert stub.id == nb.cells[2].id
    for index in (0, 1, 3):
        assert student.cells[index].source == nb.cells[index].source
    nbformat.validate(student)


def test_a_long_instruction_is_wrapped_into_comment_lines_and_raises_its_first_sentence():
    cell = nbformat.v4.new_code_cell("secret = 42")
    text = "Write f(x) -> int. " + "It returns the answer that later cells read as `answer`. " * 4
    cell.metadata = nbformat.from_dict({"tags": ["solution"], "todo": text, "minutes": 10})
    lines = stubs.stub_cell(cell).source.splitlines()
    assert all(line.startswith("# ") and len(line) <= stubs.WIDTH for line in lines[:-1]) and len(lines) > 3
    assert lines[-1] == 'raise NotImplementedError("TODO: Write f(x) -> int")'


def test_every_output_and_execution_count_is_cleared_and_the_original_is_unchanged():
    nb = synthetic_notebook()
    before = copy.deepcopy(nb)
    student = stubs.student_version(nb)
    for cell in student.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None
    assert "solution output" not in nbformat.writes(student)
    assert nb == before


def test_the_stub_is_valid_python_that_raises_the_instruction_whatever_it_contains():
    cell = nbformat.v4.new_code_cell("secret = 42")
    cell.metadata = nbformat.from_dict({"tags": ["solution", "exercise"], "todo": 'say "hi"\n and \\ leave'})
    stub = stubs.stub_cell(cell)
    assert stubs.tags(stub) == ["todo", "exercise"]
    assert stub.source.splitlines()[0] == '# TODO: say "hi" and \\ leave'
    with pytest.raises(NotImplementedError, match=r'^TODO: say "hi" and \\ leave$'):
        exec(compile(stub.source, "stub", "exec"), {})


def test_without_a_todo_instruction_the_stub_says_the_default():
    cell = nbformat.v4.new_code_cell("secret = 42")
    cell.metadata = nbformat.from_dict({"tags": ["solution"]})
    assert stubs.stub_cell(cell).source.startswith(f"# TODO: {stubs.DEFAULT_INSTRUCTION}\n")


def test_a_solution_markdown_cell_becomes_a_markdown_todo():
    nb = synthetic_notebook()
    answer = nbformat.v4.new_markdown_cell("The answer: dropout hurts at this budget.")
    answer.metadata = nbformat.from_dict({"tags": ["solution"], "todo": "write your conclusion", "minutes": 10})
    nb.cells.append(answer)
    student = stubs.student_version(nb)
    assert student.cells[-1].cell_type == "markdown"
    assert student.cells[-1].source == "**TODO (about 10 min):** write your conclusion"
    assert "dropout hurts" not in all_sources(student)


def test_fill_in_puts_every_solution_back_by_cell_id():
    nb = synthetic_notebook()
    filled = stubs.fill_in(stubs.student_version(nb), nb)
    assert [c.source for c in filled.cells] == [c.source for c in nb.cells]
    broken = stubs.student_version(nb)
    broken.cells[2].id = "no-such-cell"
    with pytest.raises(stubs.HandoutError, match="no solution"):
        stubs.fill_in(broken, nb)


# --- the masters: TODOs a student can complete without the solution ------------------------------------------


def _bound(statement: ast.stmt) -> set[str]:
    """Names a top-level statement binds (assignments, def, class, for, with, import)."""
    if isinstance(statement, ast.FunctionDef | ast.ClassDef | ast.AsyncFunctionDef):
        return {statement.name}
    if isinstance(statement, ast.Import | ast.ImportFrom):
        return {(a.asname or a.name).split(".")[0] for a in statement.names}
    return {n.id for n in ast.walk(statement) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}


def _loaded(statement: ast.stmt) -> set[str]:
    return {n.id for n in ast.walk(statement) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


def _strings(source: str) -> set[str]:
    return {n.value for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Constant) and isinstance(n.value, str)}


def relied_on(cells: list[NotebookNode], index: int) -> set[str]:
    """What later code cells take from the solution cell ``cells[index]``: the names it binds that a later cell
    loads before binding them again, the MLflow keys (``tags.X``, ``params.X``, ``metrics.X``) and the column or
    dictionary keys (``x["X"]``) of later cells whose text ``"X"`` the solution cell spells."""
    source = cells[index].source
    bound, spelled, needed = set().union(*map(_bound, ast.parse(source).body)), _strings(source), set()
    for cell in cells[index + 1 :]:
        if cell.cell_type != "code":
            continue
        tree = ast.parse(cell.source)
        for statement in tree.body:
            needed |= _loaded(statement) & bound
            bound -= _bound(statement)
        texts = " ".join(_strings(cell.source)) + " " + cell.source
        needed |= {key for key in re.findall(r"\b(?:tags|params|metrics)\.(\w+)", texts) if key in spelled}
        keys = {
            n.slice.value
            for n in ast.walk(tree)
            if isinstance(n, ast.Subscript) and isinstance(n.slice, ast.Constant) and isinstance(n.slice.value, str)
        }
        needed |= keys & spelled
    return needed


def missing_from_todo(nb: NotebookNode) -> dict[int, list[str]]:
    """For each code solution cell, what later cells rely on that its ``todo`` text does not name."""
    found = {}
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and stubs.is_solution(cell):
            text = stubs.instruction(cell)
            missing = sorted(
                n for n in relied_on(nb.cells, index) if not re.search(rf"(?<!\w){re.escape(n)}(?!\w)", text)
            )
            if missing:
                found[index] = missing
    return found


def test_the_static_check_finds_a_tag_a_later_cell_filters_on_when_the_todo_omits_it():
    """The defect of the old hand-out: objective's TODO never said the 'sweep' tag that a later cell filters on."""
    logged = nbformat.v4.new_code_cell('def objective(h):\n    run(tags={"sweep": sweep})\n    return h')
    logged.metadata = nbformat.from_dict({"tags": ["solution"], "todo": "Write objective(h), log a run, return h"})
    reader = nbformat.v4.new_code_cell("runs = search(filter_string=f\"tags.sweep = '{sweep}'\")\nobjective(1)")
    nb = nbformat.v4.new_notebook(cells=[logged, reader])
    assert missing_from_todo(nb) == {0: ["sweep"]}
    logged.metadata["todo"] += " with the tag sweep"
    assert missing_from_todo(nb) == {}


@pytest.mark.parametrize("path", MASTERS, ids=[p.stem for p in MASTERS])
def test_every_todo_names_what_later_cells_use_and_says_its_minutes(path):
    nb = nbformat.read(path, as_version=4)
    solutions = [cell for cell in nb.cells if stubs.is_solution(cell)]
    assert solutions, f"{path.name} has no solution cell"
    assert missing_from_todo(nb) == {}, "a TODO text does not name a name, tag, key or column later cells use"
    for cell in solutions:
        assert stubs.instruction(cell) != stubs.DEFAULT_INSTRUCTION and stubs.minutes(cell), cell.source[:80]
        if cell.cell_type == "code":
            defined = [s for s in ast.parse(cell.source).body if isinstance(s, ast.FunctionDef | ast.ClassDef)]
            assert len(defined) <= 1, f"one function per TODO: {[d.name for d in defined]}"
            if defined:
                assert re.search(rf"\b{defined[0].name}\(", stubs.instruction(cell)), "the TODO gives the signature"
    first = next(i for i, cell in enumerate(nb.cells) if stubs.is_solution(cell))
    assert "What you will find out" in nb.cells[0].source and "What we found" not in all_sources(nb)
    assert "package's one line" not in all_sources(nb) and "write_report" not in all_sources(nb)
    for cell in nb.cells[first:]:
        assert cell.cell_type != "code" or "import " not in cell.source, "imports after the first TODO"


# --- the edition --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> edition.Edition:
    return edition.build_edition(tmp_path_factory.mktemp("edition") / "hypertune-assignment", log=None)


def headline_numbers() -> set[str]:
    """The study's committed headline numbers: README's "What we found" (those of 1.00 and more; smaller ones
    are everyday values like 0.25), the decided effects of figures/verdicts.csv, the final model's validation
    and test accuracy (figures/final_candidates.csv, figures/test_readings.csv) and 01's baseline 86.09."""
    text = (PROJECT_ROOT / "README.md").read_text()
    found = text[text.index("## What we found") : text.index("## More")]
    numbers = {n for n in re.findall(r"\d+\.\d\d", found) if float(n) >= 1}
    verdicts = pd.read_csv(PROJECT_ROOT / "figures" / "verdicts.csv")
    decided = verdicts[verdicts["decision"].isin(["supported", "contradicted"])]
    for column in ("effect_pp", "ci_low_pp", "ci_high_pp"):
        numbers |= {f"{abs(v):.2f}" for v in decided[column].dropna() if abs(v) >= 1}
    numbers |= {f"{v * 100:.2f}" for v in pd.read_csv(PROJECT_ROOT / "figures" / "final_candidates.csv")["mean"]}
    numbers |= {f"{v * 100:.2f}" for v in pd.read_csv(PROJECT_ROOT / "figures" / "test_readings.csv")["accuracy"]}
    return numbers | {"86.09"}


def find_numbers(folder: Path, numbers: set[str]) -> list[str]:
    """Where the edition states a headline number: any text file, a Python file only for numbers of 10 and more
    (code holds constants such as 1.08); the package pins (requirements, constraints) are version numbers."""
    hits = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name not in PINS):
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        for number in numbers:
            if path.suffix == ".py" and float(number) < 10:
                continue
            if re.search(rf"(?<![\d.]){re.escape(number)}(?!\d)", text):
                hits.append(f"{path.relative_to(folder)}: {number}")
    return hits


def test_the_edition_is_a_folder_and_a_zip_with_the_readme_the_library_the_hand_outs_and_the_set_up(built):
    names = {str(p.relative_to(built.folder)) for p in built.folder.rglob("*") if p.is_file()}
    assert {
        "README.md",
        "Makefile",
        "requirements.txt",
        "constraints.txt",
        "docs/glossary.md",
        "notebooks/00_by_hand.ipynb",
        "notebooks/01_hypothesis.ipynb",
        "lib/__main__.py",
        "lib/assignment/handin.py",
        "data/README.md",
    } <= names
    assert not {n for n in names if n.startswith(("figures/", "assignment/", "docs/results", "docs/answer-key"))}
    assert not [n for n in names if n.endswith((".png", ".pyc")) or "__pycache__" in n]
    with zipfile.ZipFile(built.archive) as zf:
        assert {n.removeprefix(f"{built.folder.name}/") for n in zf.namelist()} == names
    readme = (built.folder / "README.md").read_text()
    assert edition.PARTS_MARK not in readme and "| `notebooks/01_hypothesis.ipynb` |" in readme
    assert "make setup" in readme and "make handin" in readme and "make check" in readme


def test_the_edition_holds_no_solution_no_output_and_no_headline_number(built):
    for path in built.notebooks:
        nb = nbformat.read(path, as_version=4)
        assert not [c for c in nb.cells if stubs.is_solution(c)]
        assert not [c for c in nb.cells if c.cell_type == "code" and (c.outputs or c.execution_count)]
        assert "What we found" not in all_sources(nb)
    text = "\n".join(p.read_text() for p in built.folder.rglob("*") if p.suffix in (".ipynb", ".md", ".py"))
    masters = [nbformat.read(master, as_version=4) for master in MASTERS]
    given = "\n".join(
        c.source if not stubs.is_solution(c) else stubs.instruction(c) for nb in masters for c in nb.cells
    )
    for cell in (c for nb in masters for c in nb.cells if stubs.is_solution(c)):
        for line in (line.strip() for line in cell.source.splitlines()):
            if len(line) >= 30 and line not in given:  # a line the TODO or a given cell spells anyway is no leak
                assert line not in text, f"solution line in the edition: {line}"
    numbers = headline_numbers()
    assert {"93.88", "94.38", "86.09", "3.37", "1.46"} <= numbers
    assert find_numbers(built.folder, numbers) == []


def test_the_scan_finds_a_planted_headline_number(built, tmp_path):
    copy_ = tmp_path / "copy"
    (copy_ / "docs").mkdir(parents=True)
    (copy_ / "docs" / "notes.md").write_text("One or two conv blocks beat none by 3.37 points.")
    (copy_ / "x.py").write_text("SCALE = 1.46  # a constant\nBEST = 94.38\n")
    assert find_numbers(copy_, headline_numbers()) == ["docs/notes.md: 3.37", "x.py: 94.38"]


def test_links_to_files_the_edition_does_not_hold_become_plain_text(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "glossary.md").write_text("x")
    text = "See [the glossary](docs/glossary.md#seed), [results](docs/results.md) and [web](https://a.b/c)."
    assert edition.unlink_missing(text, tmp_path, tmp_path) == (
        "See [the glossary](docs/glossary.md#seed), results and [web](https://a.b/c)."
    )


def test_a_second_build_replaces_an_edition_but_never_a_folder_that_is_not_one(tmp_path, capsys):
    out = tmp_path / "edition"
    edition.build_edition(out, log=None)
    (out / "notebooks" / "stale.ipynb").write_text("{}")
    edition.build_edition(out, log=None)
    assert not (out / "notebooks" / "stale.ipynb").exists()
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("keep me")
    assert handout.main(["--out", str(mine)]) == 2
    assert "not an earlier edition" in capsys.readouterr().err and (mine / "thesis.tex").read_text() == "keep me"
    assert handout.main(["--out", str(edition.ASSIGNMENT_DIR / "x")]) == 2
    assert "overwrite the project's own files" in capsys.readouterr().err


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
    assert not out.exists() and not (tmp_path / "out.zip").exists()


@pytest.mark.slow
def test_a_missing_notebook_in_a_real_process_is_one_line_exit_2_and_no_traceback(tmp_path):
    missing = tmp_path / "nope.ipynb"
    result = subprocess.run(
        [sys.executable, "-m", "lib.handout", "--out", str(tmp_path / "out"), str(missing)],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"handout: {missing} does not exist: give the path of an .ipynb "
        "file, or no path for every notebook in assignment/"
    ]
    assert "Traceback" not in result.stderr + result.stdout


# --- the round trip: every stub filled in, run to the end in the smoke profile ------------------------------------


@pytest.fixture(scope="module")
def roundtrip(tmp_path_factory) -> Path:
    return executed_edition(tmp_path_factory)


@pytest.mark.slow
def test_the_filled_in_edition_runs_to_the_end_with_the_editions_own_library(roundtrip):
    for name in ("00_by_hand.ipynb", "01_hypothesis.ipynb"):
        nb = nbformat.read(roundtrip / "executed" / name, as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert all(c.execution_count for c in code), f"{name} did not run to the end"
        assert not [o for c in code for o in c.outputs if o.output_type == "error"]
    assert result_of(roundtrip)["lib"] == str(roundtrip / "edition" / "lib" / "__init__.py"), "not the edition's lib"
    assert (roundtrip / "figures" / "hypothesis_arms.png").stat().st_size > 10_000


@pytest.mark.slow
def test_the_solution_earns_2_on_every_machine_checked_criterion(roundtrip, monkeypatch):
    from lib.assignment import class_check

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{roundtrip}/mlflow.db")
    [(study, scores)] = class_check.rows(class_check.from_store(["01_hypothesis-digits"]))
    assert {s.key: s.points for s in scores if s.points is not None} == {
        "hypothesis_first": 2,
        "controlled_comparison": 2,
        "nuisance": 2,
        "seeds_paired": 2,
        "test_set_once": 2,
        "hygiene": 2,
    }, class_check.table([(study, scores)])
    printed = "".join(
        o.get("text", "")
        for c in nbformat.read(roundtrip / "executed" / "01_hypothesis.ipynb", as_version=4).cells
        if c.cell_type == "code"
        for o in c.outputs
    )
    assert "12/12 on the checked criteria" in printed, "the notebook's own check printed its table"
