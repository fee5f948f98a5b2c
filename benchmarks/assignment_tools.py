"""Try nbgrader and Otter-Grader on the 00_by_hand master notebook and time what each does.

Run it with a Python that has both installed (never the project's .venv: they are not project packages), e.g. an
overlay venv that sees the project's packages::

    python3 -m venv /tmp/tools && echo "$PWD/.venv/lib/python3.11/site-packages" \\
        > /tmp/tools/lib/python3.11/site-packages/shared.pth
    /tmp/tools/bin/pip install otter-grader nbgrader
    PYTHONPATH=$PWD /tmp/tools/bin/python benchmarks/assignment_tools.py --work /tmp/tools-eval

For each tool it converts the master (cells tagged ``solution``, their ``todo`` text) into the tool's own
format, builds the student version, and grades the complete solution as a submission, in the smoke profile
against a temporary MLflow store. It prints one line per step with its wall time and what came out. What this
is not: part of the package or of the tests (docs/teaching.md quotes its numbers).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
MASTER = ROOT / "assignment" / "00_by_hand.ipynb"


def solution_cells(nb: nbformat.NotebookNode) -> list[int]:
    return [i for i, cell in enumerate(nb.cells) if "solution" in cell.metadata.get("tags", [])]


def _run(command: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess]:
    started = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=1800)
    return time.perf_counter() - started, result


def _env(work: Path) -> dict[str, str]:
    store = work / "store"
    store.mkdir(parents=True, exist_ok=True)
    return dict(
        os.environ,
        HYPERTUNE_PROFILE="smoke",
        MLFLOW_TRACKING_URI=f"sqlite:///{store}/mlflow.db",
        HYPERTUNE_FIGURES_DIR=str(store / "figures"),
        HYPERTUNE_STATE_DIR=str(store / "state"),
        PYTHONPATH=str(ROOT),
    )


def _tail(result: subprocess.CompletedProcess, n: int = 6) -> str:
    return " | ".join((result.stdout + result.stderr).strip().splitlines()[-n:])


# --- Otter-Grader -------------------------------------------------------------------------------------------


def otter_master(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Otter's master format: an ASSIGNMENT CONFIG raw cell, each solution cell inside a question block whose
    solution lines sit between ``# BEGIN SOLUTION`` and ``# END SOLUTION``, with one public test each."""
    out = nbformat.v4.new_notebook(metadata=nb.metadata)
    config = "# ASSIGNMENT CONFIG\nname: by_hand\ninit_cell: true\ncheck_all_cell: false\nexport_cell: false\n"
    config += "run_tests: true\nsolutions_pdf: false\ngenerate: true\n"
    out.cells.append(nbformat.v4.new_raw_cell(config))
    for i, cell in enumerate(nb.cells):
        if "solution" not in cell.metadata.get("tags", []):
            out.cells.append(cell)
            continue
        name = f"q{i}"
        out.cells.append(nbformat.v4.new_raw_cell(f"# BEGIN QUESTION\nname: {name}\npoints: 1"))
        out.cells.append(nbformat.v4.new_markdown_cell(f"**{name}.** {cell.metadata.get('todo', '')}"))
        solution = nbformat.v4.new_code_cell(f"# BEGIN SOLUTION\n{cell.source}\n# END SOLUTION")
        # the raw SOLUTION boundaries are required: without them Otter keeps the marked lines in the student copy
        out.cells += [
            nbformat.v4.new_raw_cell("# BEGIN SOLUTION"),
            solution,
            nbformat.v4.new_raw_cell("# END SOLUTION"),
        ]
        out.cells.append(nbformat.v4.new_raw_cell("# BEGIN TESTS"))
        out.cells.append(nbformat.v4.new_code_cell("assert True  # a placeholder check: the cell ran"))
        out.cells.append(nbformat.v4.new_raw_cell("# END TESTS"))
        out.cells.append(nbformat.v4.new_raw_cell("# END QUESTION"))
    return out


def try_otter(work: Path, bin_dir: Path) -> dict[str, object]:
    folder = work / "otter"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    nb = nbformat.read(MASTER, as_version=4)
    nbformat.write(otter_master(nb), folder / "00_by_hand.ipynb")
    env = _env(folder)
    seconds, result = _run([str(bin_dir / "otter"), "assign", "-v", "00_by_hand.ipynb", "dist"], folder, env)
    found: dict[str, object] = {"assign_s": round(seconds, 1), "assign_rc": result.returncode, "assign": _tail(result)}
    student = folder / "dist" / "student" / "00_by_hand.ipynb"
    if student.exists():
        snb = nbformat.read(student, as_version=4)
        found["student_cells"] = len(snb.cells)
        code = [c.source for c in snb.cells if c.cell_type == "code"]
        found["student_stub_example"] = next(s for s in code if s.strip().endswith("...") or "\n..." in s)[:200]
        found["student_imports_otter"] = any("import otter" in c.source for c in snb.cells)
    zips = sorted((folder / "dist" / "autograder").glob("*.zip"))
    if zips:
        (folder / "run").mkdir()
        solution = folder / "dist" / "autograder" / "00_by_hand.ipynb"
        seconds, result = _run(
            [str(bin_dir / "otter"), "run", "-a", str(zips[0]), "-o", str(folder / "run"), str(solution)], folder, env
        )
        found |= {"run_s": round(seconds, 1), "run_rc": result.returncode, "run": _tail(result)}
        results = folder / "run" / "results.json"
        if results.exists():
            found["run_score"] = json.loads(results.read_text()).get("score", "?")
    return found


# --- nbgrader ---------------------------------------------------------------------------------------------------


def nbgrader_master(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """nbgrader's format: solution cells carry ``metadata.nbgrader`` (solution: true, a grade_id); one autograded
    test cell after each."""
    out = nbformat.v4.new_notebook(metadata=nb.metadata)
    for i, cell in enumerate(nb.cells):
        out.cells.append(cell)
        if "solution" not in cell.metadata.get("tags", []):
            continue
        cell.metadata["nbgrader"] = {
            "solution": True,
            "grade": False,
            "locked": False,
            "grade_id": f"q{i}",
            "schema_version": 3,
        }
        test = nbformat.v4.new_code_cell("assert True  # a placeholder check: the cell ran")
        test.metadata["nbgrader"] = {
            "solution": False,
            "grade": True,
            "locked": True,
            "points": 1,
            "grade_id": f"t{i}",
            "schema_version": 3,
        }
        out.cells.append(test)
    return out


def try_nbgrader(work: Path, bin_dir: Path) -> dict[str, object]:
    course = work / "nbgrader"
    shutil.rmtree(course, ignore_errors=True)
    (course / "source" / "by_hand").mkdir(parents=True)
    nb = nbformat.read(MASTER, as_version=4)
    nbformat.write(nbgrader_master(nb), course / "source" / "by_hand" / "00_by_hand.ipynb")
    config = "c = get_config()\nc.CourseDirectory.course_id = 'hypertune'\nc.CourseDirectory.db_students = ['alice']\n"
    config += "c.ExecutePreprocessor.timeout = 1800\nc.Execute.timeout = 1800\n"
    (course / "nbgrader_config.py").write_text(config)
    env = _env(course)
    nbgrader = str(bin_dir / "nbgrader")
    seconds, result = _run([nbgrader, "db", "student", "add", "alice"], course, env)
    seconds, result = _run([nbgrader, "generate_assignment", "by_hand", "--force", "--create"], course, env)
    found: dict[str, object] = {
        "generate_s": round(seconds, 1),
        "generate_rc": result.returncode,
        "generate": _tail(result),
    }
    release = course / "release" / "by_hand" / "00_by_hand.ipynb"
    if release.exists():
        rnb = nbformat.read(release, as_version=4)
        found["student_stub_example"] = next(c.source for c in rnb.cells if "YOUR CODE HERE" in c.source)[:200]
    submitted = course / "submitted" / "alice" / "by_hand"
    submitted.mkdir(parents=True)
    shutil.copy(course / "source" / "by_hand" / "00_by_hand.ipynb", submitted / "00_by_hand.ipynb")
    (submitted / "timestamp.txt").write_text("2026-12-07 12:00:00\n")
    seconds, result = _run([nbgrader, "autograde", "by_hand", "--force"], course, env)
    found |= {"autograde_s": round(seconds, 1), "autograde_rc": result.returncode, "autograde": _tail(result)}
    found["course_files"] = sorted(str(p.relative_to(course)) for p in course.iterdir())
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/assignment-tools"))
    parser.add_argument("--only", choices=["otter", "nbgrader"], default=None)
    args = parser.parse_args(argv)
    bin_dir = Path(sys.executable).parent
    load = os.getloadavg()[0]
    print(f"load average before: {load:.1f}; python {sys.executable}")
    if args.only in (None, "otter"):
        print("otter:", json.dumps(try_otter(args.work, bin_dir), indent=1))
    if args.only in (None, "nbgrader"):
        print("nbgrader:", json.dumps(try_nbgrader(args.work, bin_dir), indent=1))
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
