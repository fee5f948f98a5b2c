"""The notebook runner: ``python -m lib study`` executes the numbered notebooks with papermill.

Where things go: every run writes its executed notebooks to ``runs/<profile>/notebooks/`` and its figures
and tables to ``runs/<profile>/figures/`` (an ignored folder; 00_by_hand's to ``by_hand/`` in it, since the
study writes the same file names) and says so, so a try-out never overwrites the worked example. Only the
reference refresh (``--reference``, ``make reference``) in a reference profile (``full`` for 01-04, ``deep``
for 05, 06) replaces the committed notebooks (``notebooks/``, each only when it
completes) and figures (``figures/``). ``--output-dir`` and ``HYPERTUNE_FIGURES_DIR`` override the two folders.
While it runs, each finished cell prints a progress line with the time left, estimated from the measured
times of :data:`lib.study.profiles.MEASURED_SECONDS`.

How it stops: each notebook runs in a fresh ``hypertune`` kernel (its own process group, sockets as IPC
files in a temporary folder), driven from a thread so that this process alone decides what Ctrl-C does:
it interrupts the kernel (the cell in flight closes its trial and analysis runs as KILLED), waits a few
seconds, kills the kernel's process group if it is still there and ends with one line. A small reaper
process in a session of its own outlives this one: if this process dies in any way (``kill -9`` of its
process group included), the reaper kills every kernel's process group (their trial workers with them)
and removes the socket folder. A failing cell or a dying kernel is one line that names the notebook,
the cell and where the executed notebook is (``--debug``: the traceback).

What this is not: the notebooks' content or the command line (``lib.cli``).
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lib.engine.grid import StudyError
from lib.environ import environment
from lib.errors import EXIT_NOTEBOOK_FAILED
from lib.paths import PROJECT_ROOT
from lib.study.profiles import MEASURED_SECONDS

NOTEBOOKS = ("01_baseline", "02_norm_dropout", "02b_dropout_bn", "03_conv_blocks", "04_analysis")
# `--profile deep` (after the full run): the budget and search study, then the final model and its one test reading
DEEP_NOTEBOOKS = ("05_budget_and_search", "06_final_model")
BY_HAND = ("00_by_hand",)  # the assignment by hand: its committed outputs are a quick-profile run
REFERENCE = {"full": NOTEBOOKS, "deep": DEEP_NOTEBOOKS, "quick": BY_HAND}  # whose outputs are committed, per notebook
INTERRUPT_GRACE_SECONDS = 20.0  # after Ctrl-C: how long an interrupted cell may take to close its runs


class Interrupted(Exception):
    """Raised in the notebook thread when Ctrl-C asked the study to stop before its next cell."""


@dataclass(frozen=True)
class Outputs:
    """Where one notebook's execution writes: the notebook as it runs, its final place, the figures."""

    working: Path  # papermill saves the executed notebook here after every cell
    final: Path | None  # a completed notebook is moved here (the committed copy); None: it stays in ``working``
    figures: Path

    @property
    def notebook(self) -> Path:
        return self.final or self.working


def tryout_dir(profile: str) -> Path:
    """The ignored folder of a profile's outputs: ``runs/<profile>``."""
    return PROJECT_ROOT / "runs" / profile


def notebook_source(name: str) -> Path:
    """A numbered notebook's file (``notebooks/<name>.ipynb``), or ``name`` itself if it is a ``.ipynb`` path."""
    numbered = PROJECT_ROOT / "notebooks" / f"{name}.ipynb"
    path = Path(name).expanduser().resolve() if name.endswith(".ipynb") else numbered
    if not path.is_file():
        known = ", ".join(NOTEBOOKS + DEEP_NOTEBOOKS)
        raise StudyError(f"--notebooks: no notebook {name!r} ({path}). Allowed: {known}, or the path of a .ipynb file")
    return path


def is_reference(name: str, profile: str) -> bool:
    """Whether this notebook in this profile produces the committed outputs (``full`` 01-04, ``deep`` 05, 06)."""
    return name in REFERENCE.get(profile, ())


def outputs_for(name: str, profile: str, output_dir: Path | None = None, reference: bool = False) -> Outputs:
    """Where notebook ``name`` in ``profile`` writes (see the module docstring for the rules): in place only
    with ``reference`` and a reference profile for that notebook."""
    stem = Path(name).stem
    reference = reference and is_reference(name, profile)
    figures = Path(os.environ["HYPERTUNE_FIGURES_DIR"]) if os.environ.get("HYPERTUNE_FIGURES_DIR") else None
    own = "by_hand" if stem in BY_HAND else ""  # 00's own outputs apart: the study writes the same file names
    figures = figures or (PROJECT_ROOT / "figures" / own if reference else tryout_dir(profile) / "figures" / own)
    if output_dir is not None:
        return Outputs(Path(output_dir) / f"{stem}.ipynb", None, figures)
    working = tryout_dir(profile) / "notebooks" / f"{stem}.ipynb"
    return Outputs(working, PROJECT_ROOT / "notebooks" / f"{stem}.ipynb" if reference else None, figures)


def run_study(
    profile: str,
    notebooks: str | None = None,
    output_dir: Path | None = None,
    debug: bool = False,
    reference: bool = False,
) -> int:
    """Execute the notebooks in order with papermill; 0 when all completed, 1 when one failed.

    ``reference``: refresh the committed notebooks and figures (only ``full`` and ``deep`` make them).

    The profile travels as ``HYPERTUNE_PROFILE`` (which every parameters cell reads), not as an
    injected parameters cell: executed notebooks saved in place then contain no hard-coded
    ``profile = "full"`` cell, so nbval can still run them in the smoke profile. Ctrl-C raises
    :class:`KeyboardInterrupt` once the kernel is stopped (the command line turns it into one line).
    """
    _register_progress_engine()
    default = {"deep": DEEP_NOTEBOOKS}.get(profile, NOTEBOOKS)
    names = [n.strip() for n in (notebooks or ",".join(default)).split(",")]
    if reference and profile not in REFERENCE:
        raise StudyError(
            f"--reference: profile {profile!r} makes no committed outputs; use --profile full (01-04), deep (05, 06) "
            "or quick (00_by_hand), or leave --reference out for a try-out under runs/"
        )
    plans = [(notebook_source(name), outputs_for(name, profile, output_dir, reference)) for name in names if name]
    _PLAN.clear()
    _PLAN.extend(Path(str(source)).stem for source, _ in plans)
    _PLAN_PROFILE[0] = profile
    estimate = estimated_seconds(profile, _PLAN)
    if estimate:
        print(f"study ({profile}): {len(plans)} notebook(s), measured time about {_minutes(estimate)}", flush=True)
    started = time.perf_counter()
    environ = {"HYPERTUNE_PROFILE": profile, "HYPERTUNE_PROGRESS_BARS": "0"}  # saved notebooks end with summary lines
    with environment(environ), _Reaper() as reaper, tempfile.TemporaryDirectory(prefix="hypertune-kernel-") as sockets:
        reaper.remove_at_death(Path(sockets))
        for source, outputs in plans:
            code = _execute(source, profile, outputs, Path(sockets), reaper, debug)
            if code:
                return code
    print(f"study ({profile}) wall time: {time.perf_counter() - started:.0f} s", flush=True)
    if output_dir is None and any(outputs.final is None for _, outputs in plans):
        where = _shown(tryout_dir(profile))
        print(f"outputs are in {where}/ (notebooks/ and figures/, the committed reference, are untouched)", flush=True)
    return 0


_PLAN: list[str] = []  # the notebooks of the study in flight, in order (for the time-left estimate)
_PLAN_PROFILE = ["quick"]


def estimated_seconds(profile: str, notebooks: list[str]) -> float:
    """The measured seconds of these notebooks in this profile (0 for a notebook never measured)."""
    measured = MEASURED_SECONDS.get(profile, {})
    return float(sum(measured.get(name, 0.0) for name in notebooks))


def time_left(profile: str, notebooks: list[str], current: str, elapsed: float) -> float | None:
    """Seconds left: what the measured times leave of ``current`` (at least a tenth of it) plus the notebooks
    after it; ``None`` when this profile has no measured times."""
    measured = MEASURED_SECONDS.get(profile, {})
    if current not in measured or current not in notebooks:
        return None
    later = notebooks[notebooks.index(current) + 1 :]
    return max(measured[current] - elapsed, 0.1 * measured[current]) + estimated_seconds(profile, later)


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


def _shown(path: Path) -> str:
    """A path as the user reads it: relative to the project when inside it."""
    try:
        return str(path.resolve().relative_to(PROJECT_ROOT))
    except ValueError:
        return str(path)


def _execute(source: Path, profile: str, outputs: Outputs, sockets: Path, reaper: _Reaper, debug: bool) -> int:
    """Run one notebook; 0 when it completed, else the exit code after a one-line message."""
    import nbformat

    outputs.working.parent.mkdir(parents=True, exist_ok=True)
    outputs.figures.mkdir(parents=True, exist_ok=True)
    notebook = nbformat.read(source, as_version=4)
    notebook.cells = [c for c in notebook.cells if "injected-parameters" not in c.metadata.get("tags", [])]
    began = time.perf_counter()
    where = f"{_shown(outputs.notebook)}, figures in {_shown(outputs.figures)}/"
    print(f"== {source.stem} ({profile}) -> {where}", flush=True)
    kwargs = {
        "cwd": str(source.parent),
        "kernel_name": "hypertune",
        "engine_name": "hypertune-progress",
        "progress_bar": False,
        "log_output": True,
        "kernel_manager_class": _kernel_manager_class(),
        **_kernel_transport(sockets),
    }
    reaper.kernel_log = outputs.working.with_suffix(".kernel.log")
    reaper.kernel_log.unlink(missing_ok=True)
    with environment({"HYPERTUNE_FIGURES_DIR": str(outputs.figures)}):
        error = _run_in_thread(notebook, str(outputs.working), kwargs, reaper)
    if error is not None:
        if debug:
            raise error
        print(f"error: {_failure_line(error, source.stem, outputs.working)}", file=sys.stderr, flush=True)
        return EXIT_NOTEBOOK_FAILED
    _tidy_metadata(outputs.working, source, outputs.notebook)
    if outputs.final is not None:
        shutil.move(outputs.working, outputs.final)
    print(f"== {source.stem} done in {time.perf_counter() - began:.0f} s", flush=True)
    return 0


def _run_in_thread(notebook: Any, target: str, kwargs: dict[str, Any], reaper: _Reaper) -> BaseException | None:
    """papermill in a thread (so nbclient installs no signal handler of its own); its error, if any.

    Ctrl-C here stops the kernel (see :func:`_stop_kernels`) and raises :class:`KeyboardInterrupt`.
    """
    import papermill

    outcome: list[BaseException] = []
    stop, done = threading.Event(), threading.Event()
    _STOPPING.clear()

    def work() -> None:
        try:
            papermill.execute_notebook(notebook, target, **kwargs, stop_event=stop)
        except BaseException as exc:  # handed to the main thread
            outcome.append(exc)
        finally:
            done.set()

    # Waiting on an Event, not on Thread.join: a join interrupted by Ctrl-C can mark a thread that still
    # runs as stopped (CPython gh-90882), and the kernel would be left running.
    threading.Thread(target=work, name="hypertune-notebook", daemon=True).start()
    try:
        while not done.wait(0.2):
            pass
    except KeyboardInterrupt:
        stop.set()
        _STOPPING.set()
        _stop_kernels(done, reaper)
        raise KeyboardInterrupt from None
    return outcome[0] if outcome else None


def _stop_kernels(done: threading.Event, reaper: _Reaper) -> None:
    """Interrupt the running kernels, let the cell close its runs, then kill what is left (a second
    Ctrl-C kills at once)."""
    for pid in reaper.kernels():
        _signal(pid, signal.SIGINT, group=False)  # the kernel only: its trial workers ignore SIGINT anyway
    with suppress(KeyboardInterrupt):
        done.wait(INTERRUPT_GRACE_SECONDS)
    for pid in reaper.kernels():
        _signal(pid, signal.SIGKILL, group=True)
    with suppress(KeyboardInterrupt):
        done.wait(5.0)


def _signal(pid: int, signum: int, group: bool) -> None:
    with suppress(OSError):  # already gone
        os.killpg(pid, signum) if group else os.kill(pid, signum)


def _failure_line(error: BaseException, name: str, working: Path) -> str:
    """One line for a notebook that stopped: a failing cell, a kernel that died, anything else."""
    where = f"the executed notebook, with the traceback: {_shown(working)}"
    again = "run the same command again to resume (finished trials are not trained again)"
    cell = getattr(error, "exec_count", None)
    if type(error).__name__ == "PapermillExecutionError":
        message = " ".join(f"{error.ename}: {error.evalue}".split())[:300]  # type: ignore[attr-defined]
        return f"{name} stopped in cell [{cell}] with {message}. Fix it and {again}; {where}"
    if type(error).__name__ == "DeadKernelError" or "dead" in str(error).lower():
        log = _shown(working.with_suffix(".kernel.log"))
        return f"the kernel running {name} died (out of memory, or killed; its log: {log}): {again}; {where}"
    return f"{name} could not run: {type(error).__name__}: {' '.join(str(error).split())[:300]}; {where}"


def _tidy_metadata(target: Path, source: Path, final: Path) -> None:
    """papermill records an in-memory input notebook as a whole copy of it in ``input_path``: name the
    file instead, so an executed notebook does not carry an old copy of itself."""
    import nbformat

    notebook = nbformat.read(target, as_version=4)
    meta = notebook.metadata.get("papermill", {})
    meta["input_path"] = _shown(source)
    meta["output_path"] = _shown(final)
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


# The reaper: a process of its own session that kills the kernels' process groups when this process
# ends in any way. It reads commands on its stdin ("+PID", "-PID", "rm PATH"); end of file (this process
# has exited or died) means: kill every group still listed, remove the folders, exit.
_REAPER_PROGRAM = """
import os, shutil, signal, sys
groups, folders = set(), []
for line in sys.stdin:
    command, _, argument = line.rstrip("\\n").partition(" ")
    if command == "+":
        groups.add(int(argument))
    elif command == "-":
        groups.discard(int(argument))
    elif command == "rm":
        folders.append(argument)
for group in groups:
    try:
        os.killpg(group, signal.SIGKILL)
    except OSError:
        pass
for folder in folders:
    shutil.rmtree(folder, ignore_errors=True)
"""


class _Reaper:
    """Kernels die with this process: a watcher in its own session kills their process groups (see above)."""

    current: _Reaper | None = None  # the reaper of the study in progress (kernel managers report to it)

    def __init__(self) -> None:
        self.kernel_log: Path | None = None  # where the next kernel writes its own stdout and stderr
        self._pids: list[int] = []
        self._process: subprocess.Popen | None = None

    def __enter__(self) -> _Reaper:
        if os.name == "posix":
            self._process = subprocess.Popen(
                [sys.executable, "-c", _REAPER_PROGRAM],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,  # neither Ctrl-C nor a kill of our process group reaches it
                text=True,
            )
        _Reaper.current = self
        return self

    def __exit__(self, *exc: Any) -> None:
        for pid in self.kernels():  # normally gone already: nbclient shut them down
            _signal(pid, signal.SIGKILL, group=True)
        _Reaper.current = None
        if self._process is not None and self._process.stdin is not None:
            with suppress(OSError):
                self._process.stdin.close()  # the reaper kills what is left, removes the folders and exits
            self._process.wait(timeout=10)

    def _send(self, line: str) -> None:
        if self._process is not None and self._process.stdin is not None:
            try:
                self._process.stdin.write(line + "\n")
                self._process.stdin.flush()
            except OSError:  # the reaper is gone (killed by hand): the kernels' own parent check remains
                self._process = None

    def watch(self, pid: int) -> None:
        """A kernel started as the leader of process group ``pid``."""
        self._pids.append(pid)
        self._send(f"+ {pid}")

    def release(self, pid: int) -> None:
        """The kernel has ended (its group must not be killed later: the number may be reused)."""
        if pid in self._pids:
            self._pids.remove(pid)
            self._send(f"- {pid}")

    def kernels(self) -> list[int]:
        """The kernels started and not yet released."""
        return list(self._pids)

    def remove_at_death(self, folder: Path) -> None:
        self._send(f"rm {folder}")


def _kernel_manager_class() -> type:
    """jupyter_client's kernel manager, reporting each kernel it starts and ends to the reaper."""
    from jupyter_client.manager import AsyncKernelManager

    class ReapedKernelManager(AsyncKernelManager):
        async def _async_launch_kernel(self, kernel_cmd: list[str], **kw: Any) -> None:
            log = _Reaper.current.kernel_log if _Reaper.current is not None else None
            if log is None:
                return await super()._async_launch_kernel(kernel_cmd, **kw)
            with open(log, "a") as stream:  # the kernel's own messages, not the notebook's outputs
                await super()._async_launch_kernel(kernel_cmd, **kw, stdout=stream, stderr=stream)

        async def _async_post_start_kernel(self, **kw: Any) -> None:
            await super()._async_post_start_kernel(**kw)
            pid = getattr(self.provisioner, "pid", None)
            if _Reaper.current is not None and pid:
                _Reaper.current.watch(int(pid))

        async def _async_cleanup_resources(self, restart: bool = False) -> None:
            pid = getattr(self.provisioner, "pid", None)
            await super()._async_cleanup_resources(restart=restart)
            if _Reaper.current is not None and pid:
                _Reaper.current.release(int(pid))

    return ReapedKernelManager


# Set while a Ctrl-C stops the kernel: what the interrupted cell still prints (IPython can fail to format
# a KeyboardInterrupt raised deep inside an import and print its own traceback) stays in the notebook.
_STOPPING = threading.Event()


def _quiet_kernel_death(record: logging.LogRecord) -> bool:
    """Drops nbclient's "Kernel died while waiting for execute reply." line (the runner says it in its own
    line) and the cell outputs papermill would echo while a Ctrl-C stops the kernel."""
    return not (str(record.msg).startswith("Kernel died") or _STOPPING.is_set())


def _register_progress_engine() -> None:
    """papermill engine ``hypertune-progress``: nbclient's, printing a line as each code cell ends and
    starting no cell once ``stop_event`` is set (Ctrl-C between two cells)."""
    from papermill.engines import NBClientEngine, papermill_engines

    if _quiet_kernel_death not in logging.getLogger("papermill").filters:
        logging.getLogger("papermill").addFilter(_quiet_kernel_death)

    class ProgressEngine(NBClientEngine):
        @classmethod
        def execute_managed_notebook(cls, nb_man, kernel_name, stop_event=None, **kwargs):
            code = [i for i, cell in enumerate(nb_man.nb.cells) if cell.cell_type == "code"]
            name = Path(str(nb_man.output_path or "notebook")).stem
            began = time.perf_counter()
            start, complete = nb_man.cell_start, nb_man.cell_complete

            def cell_start(cell, cell_index=None, **kw):
                if stop_event is not None and stop_event.is_set():
                    raise Interrupted(f"{name}: stopped before cell {cell_index}")
                start(cell, cell_index=cell_index, **kw)

            def cell_complete(cell, cell_index=None, **kw):
                complete(cell, cell_index=cell_index, **kw)
                if cell_index in code and not (stop_event is not None and stop_event.is_set()):
                    done = code.index(cell_index) + 1
                    first = next((line for line in cell.source.splitlines() if line.strip()), "")[:60]
                    elapsed = time.perf_counter() - began
                    left = time_left(_PLAN_PROFILE[0], _PLAN, name, elapsed)
                    eta = f", about {_minutes(left)} left" if left is not None else ""
                    print(f"   {name}: cell {done}/{len(code)} done, {elapsed:.0f} s{eta}  | {first}", flush=True)

            nb_man.cell_start, nb_man.cell_complete = cell_start, cell_complete
            return super().execute_managed_notebook(nb_man, kernel_name, **kwargs)

    papermill_engines.register("hypertune-progress", ProgressEngine)
