"""The student edition: one folder and one zip a teacher puts on a course page (``python -m lib.handout``).

``build_edition(out)`` writes ``out/`` and ``out.zip`` (the same folder inside). The edition holds:

- ``README.md``: the student's README (``assignment/README.md`` with a table of the parts, their TODOs and
  minutes filled in from the masters' metadata);
- ``notebooks/``: the student version of every master in ``assignment/`` (:mod:`lib.assignment.stubs`);
- ``lib/``: the whole library, so the notebooks, ``python -m lib`` and its ``declare``, ``check`` and
  ``handin`` work; it holds code, no results;
- ``Makefile`` (``assignment/Makefile``): set-up, data, JupyterLab, check and hand-in, everything inside the
  folder (its own ``.venv``, ``data/``, MLflow store ``mlruns/`` and caches);
- ``requirements.txt``, ``constraints.txt``, ``docs/glossary.md`` and ``data/README.md``.

Not in it: the masters (solutions), ``notebooks/`` of the worked study, ``figures/``, ``docs/results.md``, the
README's findings, ``docs/answer-key.md``. A markdown link to a file the edition does not hold becomes plain
text. What this is not: the TODO stubs themselves (``stubs``), a grader, or a check that the edition runs
(``tests/test_handout.py`` and ``tests/test_by_hand.py`` do that).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shutil
import sys
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import nbformat

from lib.assignment.stubs import (
    HandoutError,
    count_solutions,
    minutes,
    read_notebook,
    student_version,
)
from lib.errors import EXIT_OK, EXIT_USAGE
from lib.paths import PROJECT_ROOT

ASSIGNMENT_DIR = PROJECT_ROOT / "assignment"
DEFAULT_OUT = PROJECT_ROOT / "handout"
MARKER = ".edition.json"  # written into every edition; only a folder holding it may be replaced
# project file -> its place in the edition
COPIED = {
    "requirements.txt": "requirements.txt",
    "constraints.txt": "constraints.txt",
    "docs/glossary.md": "docs/glossary.md",
    "data/README.md": "data/README.md",
    "assignment/Makefile": "Makefile",
}
PARTS_MARK = "<!-- parts -->"
LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")


@dataclass(frozen=True)
class Edition:
    """What :func:`build_edition` wrote: the folder, the zip and the hand-out notebooks inside the folder."""

    folder: Path
    archive: Path
    notebooks: list[Path]


def default_sources(folder: Path = ASSIGNMENT_DIR) -> list[Path]:
    """Every master notebook in ``folder`` (``assignment/*.ipynb``), in name order."""
    found = sorted(folder.glob("*.ipynb"))
    if not found:
        raise HandoutError(f"no master notebook in {folder}: run from a checkout of the project, or name notebooks")
    return found


def parts_table(masters: Sequence[tuple[Path, nbformat.NotebookNode]]) -> str:
    """The README's table: each notebook, its title, how many TODOs and their minutes (from the metadata)."""
    rows = ["| notebook | what | TODOs | minutes (TODOs) |", "|---|---|---:|---:|"]
    for path, nb in masters:
        title = next(
            (
                line.lstrip("# ").strip()
                for c in nb.cells
                for line in c.source.splitlines()
                if c.cell_type == "markdown" and line.startswith("# ")
            ),
            path.stem,
        )
        solutions = [cell for cell in nb.cells if "solution" in cell.metadata.get("tags", [])]
        total = sum(minutes(cell) or 0 for cell in solutions)
        rows.append(f"| `notebooks/{path.name}` | {title.split('·')[-1].strip()} | {len(solutions)} | {total} |")
    return "\n".join(rows)


def unlink_missing(text: str, here: Path, root: Path) -> str:
    """Markdown ``text`` of a file in folder ``here`` with every link to a file missing under ``root`` made
    plain text (web links and ``#anchors`` stay)."""

    def keep(match: re.Match) -> str:
        label, target = match.group(1), match.group(2)
        if re.match(r"^[a-z]+:", target) or target.startswith("#"):
            return match.group(0)
        path = (here / target.split("#", 1)[0]).resolve()
        inside = path == root.resolve() or root.resolve() in path.parents
        return match.group(0) if inside and path.exists() else label

    return LINK.sub(keep, text)


def _check_out(out: Path) -> None:
    """Refuse a folder that is the project, holds it, or is not empty and not an earlier edition."""
    resolved = out.resolve()
    protected = [PROJECT_ROOT, ASSIGNMENT_DIR, PROJECT_ROOT / "notebooks", PROJECT_ROOT / "lib"]
    if any(resolved == p.resolve() or resolved in p.resolve().parents for p in protected) or any(
        p.resolve() in resolved.parents for p in protected[1:]
    ):
        raise HandoutError(f"--out {out} would overwrite the project's own files: choose another folder, e.g. handout")
    if resolved.exists() and (not resolved.is_dir() or (any(resolved.iterdir()) and not (resolved / MARKER).exists())):
        raise HandoutError(f"--out {out} exists and is not an earlier edition: choose an empty or new folder")


def _copy_library(target: Path) -> None:
    shutil.copytree(PROJECT_ROOT / "lib", target / "lib", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


def _write_tree(folder: Path, masters: Sequence[tuple[Path, nbformat.NotebookNode]]) -> list[Path]:
    """Write every file of the edition into the empty ``folder``; returns the hand-out notebooks."""
    _copy_library(folder)
    for source, place in COPIED.items():
        (folder / place).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(PROJECT_ROOT / source, folder / place)
    readme = (ASSIGNMENT_DIR / "README.md").read_text()
    (folder / "README.md").write_text(readme.replace(PARTS_MARK, parts_table(masters)))
    written = []
    for source, nb in masters:
        student = student_version(nb)
        for cell in student.cells:
            if cell.cell_type == "markdown":
                cell.source = unlink_missing(cell.source, folder / "notebooks", folder)
        target = folder / "notebooks" / source.name
        target.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(student, target)
        written.append(target)
    for path in [folder / "README.md", *sorted((folder / "docs").glob("*.md"))]:
        path.write_text(unlink_missing(path.read_text(), path.parent, folder))
    stamp = {
        "built": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "notebooks": [p.name for p, _ in masters],
    }
    (folder / MARKER).write_text(json.dumps(stamp, indent=1) + "\n")
    return written


def _zip(folder: Path, archive: Path) -> None:
    """``archive`` holds ``folder`` under its own name (written next to it, then moved into place)."""
    partial = archive.with_name(f".{archive.name}.partial-{os.getpid()}")
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zf.write(path, Path(folder.name) / path.relative_to(folder))
    os.replace(partial, archive)


def build_edition(
    out: Path, sources: Sequence[Path] | None = None, log: Callable[[str], None] | None = print
) -> Edition:
    """Write the edition into ``out`` (replacing an earlier edition there) and ``out.zip``.

    Every master is read before anything is written, so a bad path leaves ``out`` as it was.
    """
    out = Path(out)
    masters = [(Path(s), read_notebook(Path(s))) for s in (sources or default_sources())]
    _check_out(out)
    building = out.parent / f".{out.name}.building-{os.getpid()}"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(building, ignore_errors=True)
        building.mkdir()
        _write_tree(building, masters)
        shutil.rmtree(out, ignore_errors=True)
        os.replace(building, out)
        archive = out.with_name(out.name + ".zip")
        _zip(out, archive)
    except OSError as exc:
        shutil.rmtree(building, ignore_errors=True)
        raise HandoutError(f"cannot write the edition at {out} ({exc.strerror or exc}): choose another --out") from exc
    notebooks = [out / "notebooks" / source.name for source, _ in masters]
    if log is not None:
        for (source, nb), target in zip(masters, notebooks, strict=True):
            n = count_solutions(nb)
            log(f"{_shown(source)}: {n} solution cell{'s' * (n != 1)} replaced by TODO stubs -> {_shown(target)}")
        log(
            f"edition: {_shown(out)}/ and {_shown(archive)} ({archive.stat().st_size / 1e6:.1f} MB); "
            "students start with its README.md"
        )
    return Edition(out, archive, notebooks)


def _shown(path: Path) -> str:
    """``path`` relative to the project root when it lies inside it, else as given."""
    try:
        return str(path.resolve().relative_to(PROJECT_ROOT))
    except ValueError:
        return str(path)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m lib.handout [--out DIR] [MASTER ...]``: 0 when written, 2 (one line on stderr) on bad input."""
    parser = argparse.ArgumentParser(
        prog="python -m lib.handout",
        description="Build the student edition: DIR/ and DIR.zip with a README, the library, the hand-out "
        "notebooks (each cell tagged 'solution' becomes a TODO stub) and the set-up. The masters are not changed.",
    )
    parser.add_argument("notebooks", nargs="*", type=Path, help="masters to hand out (default: assignment/*.ipynb)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder of the edition (default: handout/)")
    args = parser.parse_args(argv)
    try:
        build_edition(args.out, args.notebooks or None)
    except HandoutError as exc:
        print(f"handout: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK
