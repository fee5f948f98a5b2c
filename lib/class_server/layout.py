"""The class server's data folder and its error: where the database, artifacts, logs and secrets live.

What this is not: the database, the accounts or the server themselves (``database``, ``accounts``,
``server``); this module only names the paths and creates the folders with safe modes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from lib.errors import EXIT_ENVIRONMENT, HypertuneError
from lib.paths import mlruns_dir


class ClassServerError(HypertuneError, RuntimeError):
    """The class server cannot start or be reached; the message says why and what to do."""

    exit_code = EXIT_ENVIRONMENT


_LAYOUT = {
    "pgdata": "pgdata",
    "artifacts": "artifacts",
    "secrets": "secrets",
    "passwords": "secrets/passwords.csv",
    "auth_ini": "secrets/basic_auth.ini",
    "logs": "logs",
    "state": "server.json",
}


@dataclass(frozen=True)
class Layout:
    """Where a class server keeps its data (default ``mlruns/class-server``): ``pgdata/``,
    ``artifacts/``, ``logs/``, ``secrets/`` (``passwords.csv``, ``basic_auth.ini``) and ``server.json``
    (url, ports and pid of the running server; no secrets)."""

    root: Path
    pgdata: Path = field(init=False)
    artifacts: Path = field(init=False)
    secrets: Path = field(init=False)
    passwords: Path = field(init=False)
    auth_ini: Path = field(init=False)
    logs: Path = field(init=False)
    state: Path = field(init=False)

    def __post_init__(self) -> None:
        for name, relative in _LAYOUT.items():
            object.__setattr__(self, name, self.root / relative)

    def make(self) -> None:
        for folder in (self.root, self.artifacts, self.logs):
            folder.mkdir(parents=True, exist_ok=True)
        self.secrets.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.secrets, 0o700)


def default_dir() -> Path:
    return mlruns_dir() / "class-server"
