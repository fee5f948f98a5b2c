"""The notebook runner: ``python -m lib study`` executes the numbered notebooks with papermill.

Each notebook runs in a fresh ``hypertune`` kernel whose sockets are IPC files in a temporary folder; a
line is printed as each code cell ends. The profile travels as ``HYPERTUNE_PROFILE``.

What this is not: the notebooks' content or the command line (``lib.cli``).
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

from lib.paths import PROJECT_ROOT

NOTEBOOKS = ("01_baseline", "02_norm_dropout", "02b_dropout_bn", "03_conv_blocks", "04_analysis")
DEEP_NOTEBOOKS = ("05_budget_and_search",)  # `--profile deep`: the budget and search study (after the full run)


def run_study(profile: str, notebooks: str | None = None, output_dir: Path | None = None) -> int:
    """Execute the notebooks in order with papermill.

    The profile travels as ``HYPERTUNE_PROFILE`` (which every parameters cell reads), not as an
    injected parameters cell: executed notebooks saved in place then contain no hard-coded
    ``profile = "full"`` cell, so nbval can still run them in the smoke profile.
    """
    _register_progress_engine()
    os.environ["HYPERTUNE_PROFILE"] = profile
    os.environ["HYPERTUNE_PROGRESS_BARS"] = "0"  # saved notebooks end with summary lines, not frozen bars
    started = time.perf_counter()
    names = notebooks or ",".join(DEEP_NOTEBOOKS if profile == "deep" else NOTEBOOKS)
    with tempfile.TemporaryDirectory(prefix="hypertune-kernel-") as sockets:
        for name in [n.strip() for n in names.split(",") if n.strip()]:
            _execute(name, profile, output_dir, Path(sockets))
    print(f"study ({profile}) wall time: {time.perf_counter() - started:.0f} s", flush=True)
    return 0


def _execute(name: str, profile: str, output_dir: Path | None, sockets: Path) -> None:
    """Run one notebook with papermill, saved in place or under ``--output-dir``."""
    import nbformat
    import papermill

    source = PROJECT_ROOT / "notebooks" / f"{name}.ipynb"
    target = (output_dir / source.name) if output_dir else source
    target.parent.mkdir(parents=True, exist_ok=True)
    notebook = nbformat.read(source, as_version=4)
    notebook.cells = [c for c in notebook.cells if "injected-parameters" not in c.metadata.get("tags", [])]
    began = time.perf_counter()
    print(f"== {name} ({profile})", flush=True)
    papermill.execute_notebook(
        notebook,
        str(target),
        cwd=str(source.parent),
        kernel_name="hypertune",
        engine_name="hypertune-progress",
        progress_bar=False,
        log_output=True,
        **_kernel_transport(sockets),
    )
    _tidy_metadata(target, source)
    print(f"== {name} done in {time.perf_counter() - began:.0f} s", flush=True)


def _tidy_metadata(target: Path, source: Path) -> None:
    """papermill records an in-memory input notebook as a whole copy of it in ``input_path``: name the
    file instead, so an executed notebook does not carry an old copy of itself."""
    import nbformat

    notebook = nbformat.read(target, as_version=4)
    meta = notebook.metadata.get("papermill", {})
    meta["input_path"] = f"notebooks/{source.name}"
    meta["output_path"] = f"notebooks/{target.name}" if target.parent == source.parent else str(target)
    nbformat.write(notebook, target)


def _kernel_transport(sockets: Path) -> dict[str, Any]:
    """Kernel sockets as local IPC files in ``sockets`` where the OS has them (not TCP on 127.0.0.1).

    ipykernel warns "Kernel is running over TCP without encryption" for every TCP kernel; IPC
    sockets are files only this user can open, so the warning does not apply and is not printed.
    The path is absolute: jupyter_client's default (``kernel-ipc`` relative to the kernel's working
    directory) left socket files in ``notebooks/`` that its clean-up, run from another directory,
    never found.
    """
    if os.name != "posix":
        return {}
    from traitlets.config import Config

    return {"config": Config({"KernelManager": {"transport": "ipc", "ip": str(sockets.resolve() / "kernel")}})}


def _register_progress_engine() -> None:
    """papermill engine ``hypertune-progress``: nbclient's, printing a line as each code cell ends."""
    from papermill.engines import NBClientEngine, papermill_engines

    class ProgressEngine(NBClientEngine):
        @classmethod
        def execute_managed_notebook(cls, nb_man, kernel_name, **kwargs):
            code = [i for i, cell in enumerate(nb_man.nb.cells) if cell.cell_type == "code"]
            name = Path(str(nb_man.output_path or "notebook")).stem
            began = time.perf_counter()
            original = nb_man.cell_complete

            def cell_complete(cell, cell_index=None, **kw):
                original(cell, cell_index=cell_index, **kw)
                if cell_index in code:
                    done = code.index(cell_index) + 1
                    first = next((line for line in cell.source.splitlines() if line.strip()), "")[:60]
                    elapsed = time.perf_counter() - began
                    print(f"   {name}: cell {done}/{len(code)} done, {elapsed:.0f} s  | {first}", flush=True)

            nb_man.cell_complete = cell_complete
            return super().execute_managed_notebook(nb_man, kernel_name, **kwargs)

    papermill_engines.register("hypertune-progress", ProgressEngine)
