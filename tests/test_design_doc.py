"""docs/design.md's "How to add" table: every file it names exists, and every name it gives a hypothesis's
place is what the code calls it; so the table cannot drift from the code it describes."""

from __future__ import annotations

import re

from lib.paths import PROJECT_ROOT
from lib.study import analysis, contrast, hypotheses, registry

DESIGN = PROJECT_ROOT / "docs" / "design.md"
HEADING = "## How to add a search algorithm, a hypothesis, a data set or a model option"
# The engine's algorithm package arrives with its own branch: until lib/engine/algorithms exists, the two paths
# the table gives for it are left out of the check (and checked as soon as the package is there).
ENGINE_ALGORITHMS = "lib/engine/algorithms"


def how_to_add_table() -> str:
    text = DESIGN.read_text(encoding="utf-8")
    assert HEADING in text, f"docs/design.md has no section {HEADING!r}"
    section = text.split(HEADING, 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|")]
    assert len(rows) == 6, f"expected a header, a rule and four rows (algorithm, hypothesis, data set, option): {rows}"
    return section


def named_paths(section: str) -> list[str]:
    """Every `code` span of the table that names a file or folder (it has a slash or a file suffix)."""
    spans = re.findall(r"`([^`]+)`", section)
    return [s for s in spans if re.fullmatch(r"[\w./<>-]+", s) and ("/" in s or re.search(r"\.(py|md|ipynb)$", s))]


def test_the_table_sits_right_after_the_first_section():
    text = DESIGN.read_text(encoding="utf-8")
    headings = re.findall(r"^## .+$", text, flags=re.MULTILINE)
    assert headings[1] == HEADING, f"the table should follow '{headings[0]}', not {headings[:3]}"
    how_to_add_table()


def test_every_path_the_table_names_exists():
    section = how_to_add_table()
    paths = named_paths(section)
    assert {"lib/study/registry.py", "lib/datasets.py", "lib/config.py", "lib/model.py"} <= set(paths)
    engine_merged = (PROJECT_ROOT / ENGINE_ALGORITHMS).is_dir()
    missing = []
    for path in paths:
        if path.startswith(ENGINE_ALGORITHMS) and not engine_merged:
            continue
        target = PROJECT_ROOT / path.split("<", 1)[0]  # lib/engine/algorithms/<name>.py: its folder must exist
        if not target.exists():
            missing.append(path)
    assert missing == [], f"docs/design.md's how-to-add table names paths that do not exist: {missing}"


def test_the_hypothesis_row_names_at_most_three_places_and_the_codes_own_names():
    section = how_to_add_table()
    row = next(line for line in section.splitlines() if line.startswith("| a hypothesis"))
    assert re.findall(r"\b([123])\. ", row) == ["1", "2", "3"]  # the record, a rule if none fits, the cell
    for name in ("Hypothesis", "Family", "GridInput"):
        assert f"`{name}`" in row or f"`{name}:" in row, name
        assert isinstance(getattr(registry, name), type), name
    assert "`RULES`" in row and hypotheses.RULES["contrast"] is contrast.contrast_rows
    assert "`fixed_input`" in row and "fixed_input" in registry.Hypothesis.__dataclass_fields__
    assert "`analysis.grid_verdicts`" in row and callable(analysis.grid_verdicts)
