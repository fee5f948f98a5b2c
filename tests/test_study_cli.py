"""``python -m lib study``: a progress line per code cell, and kernels that do not warn about TCP."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from lib import cli
from lib.study import runner


@pytest.mark.slow
def test_study_prints_cell_progress_without_the_tcp_warning(tmp_path, monkeypatch, capfd):
    folder = tmp_path / "notebooks"
    folder.mkdir()
    cells = [
        nbformat.v4.new_markdown_cell("# a tiny study"),
        nbformat.v4.new_code_cell("import os\nprofile = os.environ['HYPERTUNE_PROFILE']"),
        nbformat.v4.new_code_cell("print('profile', profile)"),
        nbformat.v4.new_code_cell("import ipykernel, json\nprint(json.loads(ipykernel.get_connection_info())['ip'])"),
    ]
    notebook = nbformat.v4.new_notebook(cells=cells)
    notebook.metadata["kernelspec"] = {"name": "hypertune", "display_name": "Python (hypertune)", "language": "python"}
    nbformat.write(notebook, folder / "tiny.ipynb")
    monkeypatch.setattr(runner, "PROJECT_ROOT", tmp_path)
    monkeypatch.delenv("HYPERTUNE_PROFILE", raising=False)

    assert cli.main(["study", "--profile", "smoke", "--notebooks", "tiny", "--output-dir", str(tmp_path / "out")]) == 0
    out, err = capfd.readouterr()
    lines = (out + err).splitlines()
    assert any("tiny: cell 1/3 done" in line for line in lines), out
    assert any("tiny: cell 2/3 done" in line and "print('profile'" in line for line in lines), out
    assert "without encryption" not in out + err  # the kernel's sockets are IPC files, not TCP
    assert sorted(p.name for p in folder.iterdir()) == ["tiny.ipynb"]  # and none is left beside the notebook
    executed = nbformat.read(tmp_path / "out" / "tiny.ipynb", as_version=4)
    assert executed.cells[2].outputs[0]["text"].strip() == "profile smoke"
    # the sockets live in a temporary folder named by an absolute path, which the parent removes even
    # when the kernel is killed (jupyter_client's default, relative to the kernel's folder, was left in
    # notebooks/ after every killed kernel)
    sockets = Path(executed.cells[3].outputs[0]["text"].strip())
    assert sockets.is_absolute() and folder not in sockets.parents and not sockets.parent.exists()
