"""The local back-end: trials train in worker processes on this machine (or in this process).

- **One trial at a time** (``workers=1``, and every sweep) trains in this process with one thread, as each
  of a grid's workers does, and reports each epoch as it ends. A team of threads waits at every step for
  its slowest member: on cores that other programs use, one of them is always waiting for the system, and a
  sweep's trials trained with two threads took 3 to 8 times as long as a grid's one-thread trials beside busy
  processes (``benchmarks/sweep_vs_grid.py``). ``threads_per_trial`` asks for more (an idle machine with
  many cores).
- **Several** train in a process pool with one thread each by default (two 1-thread trainings beat
  one 2-thread training on a 2-core machine). Workers fork from a preloaded server, so they start
  without importing torch again. They send each epoch's row to this process on a queue as it ends,
  so the records show a trial's epochs while it trains (this process stays the only MLflow writer).
  The pool is checked at start-up: workers that die while starting
  (most often a script without an ``if __name__ == "__main__":`` guard, which every worker imports
  again) stop the study with a one-line :class:`StudyError` instead of a retry loop.
- **A worker that dies** (out of memory, killed) fails the trials in flight in its pool (Python
  breaks the whole pool); they are reported failed with the reason and the remaining trials go on in
  a new pool. A worker that dies between two trials (after one ended, before the next was handed
  to the pool) fails nothing: the next trial waits for the new pool. A broken pool either fails a
  trial or hands one on to the next pool, which takes it first, so the loop ends after at most
  ``2 * feed.size + 1`` pools.

What this is not: the records (the feed records every trial) or the choice of trials.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import signal
import threading
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from lib.config import TrialConfig
from lib.data import DataSpec
from lib.engine.backend import Feed, RunOptions, StudyError, TrialRequest, check_count
from lib.engine.trial import TrialResult, execute_trial

# Workers are forked from a server process that has already imported torch and the trainer, so a
# grid's workers start in a fraction of a second instead of each importing torch (about 3 s here).
# The server starts once per Python session and computes nothing, so forking it is thread-safe.
# torch._dynamo (with sympy, triton, torch.distributed: about 870 modules) is imported lazily by the
# first optimizer.step(); preloading it saves every worker of every pool 1.2-2.3 s (measured).
_WORKER_PRELOAD = ["torch", "torch._dynamo", "tqdm.auto", "lib.engine.trial", "lib.train", "lib.model", "lib.data"]
STARTUP_SECONDS = 300  # a worker answers its first call within this time, or the pool is given up
MAIN_GUARD_HINT = (
    "the worker processes died while starting. In a script, put the code that runs the study under "
    '`if __name__ == "__main__":` (each worker imports the script again), or use workers=1.'
)
WORKER_DIED = "worker process died (out of memory or killed)"
EPOCH_POLL_SECONDS = 0.5  # how often the parent logs the epochs that workers have finished
STOP_SECONDS = 10.0  # a terminated worker is waited for this long


def _worker_context() -> multiprocessing.context.BaseContext:
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")  # Windows
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(_WORKER_PRELOAD)
    _start_forkserver()
    return context


def _start_forkserver() -> None:
    """Start the fork server (once per process) deaf to Ctrl-C, so that its workers are too.

    A terminal's Ctrl-C reaches every process of its group. The server imports torch for seconds before it
    protects itself, and its workers inherit its handler until their initializer runs: either would print a
    ``KeyboardInterrupt`` traceback under the parent's one line. Started with SIGINT ignored (inherited through
    ``exec``), neither ever sees it; this process alone decides what Ctrl-C does. SIGINT is blocked meanwhile,
    so a Ctrl-C pressed in those milliseconds reaches this process afterwards instead of being lost.
    """
    from multiprocessing import forkserver

    if threading.current_thread() is not threading.main_thread():
        forkserver.ensure_running()  # signals can be neither changed nor received off the main thread
    else:
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            forkserver.ensure_running()
        finally:
            if previous is not None:  # None: a handler installed outside Python, which SIG_IGN left untouched
                signal.signal(signal.SIGINT, previous)
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
    # Wait here, with a process that holds nothing, until the server has imported torch: a pool worker whose
    # start a Ctrl-C cut short is forked later all the same, and would find the pool's queues gone (a traceback).
    probe = multiprocessing.get_context("forkserver").Process(target=os.getpid, daemon=True)
    probe.start()
    probe.join()


_epochs: Any = None  # in a worker: the queue on which it sends (trial key, epoch row) to the parent


def _init_worker(threads: int, environ: dict[str, str], cwd: str, epochs: Any = None) -> None:
    """Worker set-up: the parent's environment and folder now (not the server's), fixed thread
    count, Ctrl-C handled by the parent only, and the queue for epoch rows."""
    global _epochs
    _epochs = epochs
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # tqdm's default lock is a multiprocessing semaphore that a worker terminated on Ctrl-C never releases (a
    # "leaked semaphore" warning at exit); a worker draws no bars, so a thread lock does
    from tqdm import tqdm

    tqdm.set_lock(threading.RLock())
    os.environ.clear()
    os.environ.update(environ)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    os.chdir(cwd)
    import torch

    torch.set_num_threads(threads)
    torch.set_num_interop_threads(1)


def _in_process(
    config: TrialConfig, data: DataSpec, threads: int, progress: bool = False, on_epoch=None
) -> TrialResult:
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return execute_trial(config, data, progress=progress, on_epoch=on_epoch)
    finally:
        torch.set_num_threads(previous)


def _train(config: TrialConfig, data: DataSpec, key: str) -> TrialResult:
    """In a worker: one trial, each epoch sent to the parent as it ends (the parent logs it)."""

    def on_epoch(stats) -> None:
        if _epochs is not None:
            _epochs.put((key, stats.as_dict()))

    return execute_trial(config, data, on_epoch=on_epoch)


def resolve_workers(workers: int | str, n_todo: int) -> int:
    check_count("workers", workers)
    cores = os.cpu_count() or 1
    if workers == "auto":
        return max(1, min(cores, n_todo))
    return min(int(workers), max(n_todo, 1))


class LocalBackend:
    """Runs a feed's trials in this process (one worker) or in a process pool (several)."""

    def run(self, feed: Feed, options: RunOptions) -> None:
        if options.early_stopping:
            raise StudyError("early_stopping needs engine='ray' (ASHA); the local engine runs every trial to its end")
        n_workers = resolve_workers(options.workers, feed.size)
        if n_workers == 1:  # one thread, as a grid's worker (module docstring)
            _run_in_process(feed, options.data, options.threads_per_trial or 1)
        else:
            _run_pool(feed, options.data, n_workers, options.threads_per_trial or max(1, _cores() // n_workers))


def _cores() -> int:
    return os.cpu_count() or 1


def _run_in_process(feed: Feed, data: DataSpec, threads: int) -> None:
    import torch._dynamo  # noqa: F401  (what a grid's workers preload: else the first trial imports it, 1-2 s)

    while (request := feed.next()) is not None:
        feed.started(request)

        def on_epoch(stats, request: TrialRequest = request) -> None:
            feed.epoch(request, stats.as_dict())

        feed.finished(request, _in_process(request.config, data, threads, on_epoch=on_epoch))


def _run_pool(feed: Feed, data: DataSpec, n_workers: int, threads: int) -> None:
    """Pools until the feed is empty: each pool that breaks fails a trial or hands one on to the next."""
    context = _worker_context()
    held: list[TrialRequest] = []  # a request a broken pool refused: the next pool takes it first
    for _ in range(2 * feed.size + 1):
        epochs = context.Queue()
        pool = _start_pool(context, n_workers, threads, epochs)
        try:
            complete = _drain(pool, feed, data, n_workers, epochs, held)
        except BaseException:
            _stop(pool)
            raise
        finally:
            epochs.close()
        pool.shutdown(wait=True)
        if complete:
            return
    raise RuntimeError(f"the worker pool broke more than twice per trial ({feed.size} trials)")  # unreachable


def _start_pool(context, n_workers: int, threads: int, epochs: Any) -> ProcessPoolExecutor:
    """A pool whose first worker has answered a call: a pool that cannot start is a StudyError."""
    initargs = (threads, dict(os.environ), os.getcwd(), epochs)
    pool = ProcessPoolExecutor(n_workers, mp_context=context, initializer=_init_worker, initargs=initargs)
    try:
        pool.submit(os.getpid).result(timeout=STARTUP_SECONDS)
    except BrokenProcessPool:
        _stop(pool)
        raise StudyError(f"workers={n_workers}: {MAIN_GUARD_HINT}") from None
    except BaseException:
        _stop(pool)
        raise
    return pool


def _drain(
    pool: ProcessPoolExecutor, feed: Feed, data: DataSpec, n_workers: int, epochs: Any, held: list[TrialRequest]
) -> bool:
    """Keep ``n_workers`` trials in flight until the feed is empty (True) or the pool broke (False).

    ``held`` carries a request between pools: one that a pool refused because it broke after the
    last poll (a worker died between two trials) is started in the next pool, before the feed's next.
    Every future that is done leaves ``in_flight`` in the pass that sees it, every future of a live
    or broken pool gets done, and the feed hands out finitely many requests, so the loop ends.
    """
    in_flight: dict[Future, TrialRequest] = {}
    more = True
    while True:
        refused = False
        while more and len(in_flight) < n_workers:
            request = held.pop() if held else feed.next()
            if request is None:
                more = False
                break
            try:
                future = pool.submit(_train, request.config, data, request.key)
            except BrokenProcessPool:
                held.append(request)
                refused = True
                break
            feed.started(request)
            in_flight[future] = request
        if not in_flight:
            return not refused
        done, _ = wait(in_flight, timeout=EPOCH_POLL_SECONDS, return_when=FIRST_COMPLETED)
        _forward_epochs(epochs, feed, in_flight)
        broken = refused or any(isinstance(future.exception(), BrokenProcessPool) for future in done)
        if broken:  # a dead worker fails every future of its pool: report them all, then a new pool
            done, _ = wait(in_flight)
        for future in done:
            request = in_flight.pop(future)
            feed.finished(request, _outcome(future, request))
        if broken:
            return False


def _forward_epochs(epochs: Any, feed: Feed, in_flight: dict[Future, TrialRequest]) -> None:
    """Hand the epoch rows the workers have sent so far to the feed (rows of ended trials are dropped:
    their results carry the whole history)."""
    by_key = {request.key: request for request in in_flight.values()}
    while True:
        try:
            key, row = epochs.get_nowait()
        except (queue.Empty, OSError, ValueError):
            return
        if key in by_key:
            feed.epoch(by_key[key], row)


def _outcome(future: Future, request: TrialRequest) -> TrialResult:
    try:
        return future.result()
    except Exception as exc:  # the worker died, or the call could not be sent or returned
        reason = WORKER_DIED if isinstance(exc, BrokenProcessPool) else f"worker error: {exc!r}"
        return TrialResult(
            key=request.key, config=request.config.flat(), status="failed", failure_kind="error", failure_reason=reason
        )


def _stop(pool: ProcessPoolExecutor) -> None:
    """Shut a pool down now: queued calls cancelled, workers terminated, and waited for, so that the pool's
    queues are closed and their semaphores released before this process goes on (or exits: a semaphore
    still registered then is a "leaked semaphore" warning on the terminal)."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    terminate = getattr(pool, "terminate_workers", None)  # Python >= 3.14
    if terminate:
        terminate()
    else:
        for process in processes:
            process.terminate()
    for process in processes:
        process.join(timeout=STOP_SECONDS)
    pool.shutdown(wait=True)  # the manager thread sees the dead workers and closes the queues
