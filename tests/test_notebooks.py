"""The notebooks' structure: one papermill parameters cell, nothing that pins a profile for nbval."""

from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))


def test_all_numbered_notebooks_exist():
    names = [path.stem for path in NOTEBOOKS]
    assert names == [
        "00_by_hand",
        "01_baseline",
        "02_norm_dropout",
        "02b_dropout_bn",
        "03_conv_blocks",
        "04_analysis",
        "05_budget_and_search",
        "06_final_model",
    ]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_one_parameters_cell_that_reads_the_profile_from_the_environment(path):
    notebook = nbformat.read(path, as_version=4)
    tagged = [cell for cell in notebook.cells if "parameters" in cell.metadata.get("tags", [])]
    assert len(tagged) == 1
    assert "profile = profiles.default_profile()" in tagged[0].source
    injected = [cell for cell in notebook.cells if "injected-parameters" in cell.metadata.get("tags", [])]
    assert injected == [], "a papermill-injected cell would pin the profile and make nbval run the full study"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_committed_notebooks_have_no_error_outputs(path):
    notebook = nbformat.read(path, as_version=4)
    errors = [out for cell in notebook.cells for out in cell.get("outputs", []) if out.get("output_type") == "error"]
    assert errors == []


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_two_layers_what_we_found_first_exercises_last_glossary_linked(path):
    """A student's first screen says what the notebook found; the end asks them to change something."""
    notebook = nbformat.read(path, as_version=4)
    first = notebook.cells[0]
    assert first.cell_type == "markdown" and "## What we found" in first.source
    assert "docs/glossary.md" in first.source
    last_markdown = [cell for cell in notebook.cells if cell.cell_type == "markdown"][-1]
    assert "## Exercises" in last_markdown.source


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_every_code_cell_has_a_sentence_of_why_and_short_lines(path):
    notebook = nbformat.read(path, as_version=4)
    cells = notebook.cells
    bare = [i for i, cell in enumerate(cells) if cell.cell_type == "code" and cells[i - 1].cell_type != "markdown"]
    assert bare == [], f"code cells with no markdown cell right before them: {bare}"
    code = [line for cell in cells if cell.cell_type == "code" for line in cell.source.splitlines()]
    long = [line for line in code if len(line) > 100]
    assert long == [], f"code lines over 100 characters: {long[:3]}"
