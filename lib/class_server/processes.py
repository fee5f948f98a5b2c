"""Child processes of the class server: free ports, sessions, parent-death signals and group shutdown.

What this is not: PostgreSQL or MLflow specifics (``database``, ``server``); only the process plumbing
both of them share.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pwd
import signal
import socket
import subprocess

STOP_TIMEOUT_S = 20.0


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


try:  # loaded here: a preexec_fn must not import
    _LIBC = ctypes.CDLL("libc.so.6", use_errno=True)
except OSError:
    _LIBC = None


def _set_pdeathsig(sig: int) -> None:
    """Ask Linux to send ``sig`` to this (child) process when its parent dies (best effort)."""
    if _LIBC is not None:
        _LIBC.prctl(1, sig)  # PR_SET_PDEATHSIG


def as_user(account: pwd.struct_passwd | None, deathsig: int) -> dict:
    """``Popen`` arguments: a new session, ``account``'s uid/gid (when root), death with the supervisor.

    Python sets the session and the ids before it calls ``preexec_fn``, so the parent-death signal
    (cleared by a credential change) is set last.
    """
    ids = {} if account is None else {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
    return {"start_new_session": True, "preexec_fn": lambda: _set_pdeathsig(deathsig), **ids}


def stop_group(process: subprocess.Popen, signals: tuple[int, ...], timeout_s: float) -> None:
    """Send each of ``signals`` to the process group of ``process`` until it exits; SIGKILL at last."""
    for sig in (*signals, signal.SIGKILL):
        if process.poll() is not None:
            break
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            continue
    with contextlib.suppress(ProcessLookupError, PermissionError):  # stragglers left in the group
        os.killpg(process.pid, signal.SIGKILL)
