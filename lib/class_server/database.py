"""The class server's private PostgreSQL cluster: ``initdb`` once, ``postgres`` on 127.0.0.1, two databases.

What this is not: a database administration tool, or the MLflow server that uses the databases
(``server``). With ``DATABASE_URL`` set, this module is not used at all.
"""

from __future__ import annotations

import glob
import os
import pwd
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

from lib.class_server.layout import ClassServerError, Layout
from lib.class_server.processes import STOP_TIMEOUT_S, as_user, free_port, stop_group

DB_USER = "mlflow"
TRACKING_DB, AUTH_DB = "mlflow", "mlflow_auth"


def pg_binary(name: str) -> str:
    """Path of a PostgreSQL program: Debian's newest ``/usr/lib/postgresql/*/bin``, else ``PATH``."""
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(re.sub(r"\D", "", p) or 0))
    for folder in reversed(versions):
        if os.access(f"{folder}/{name}", os.X_OK):
            return f"{folder}/{name}"
    found = shutil.which(name)
    if found:
        return found
    raise ClassServerError(
        f"PostgreSQL's {name} not found. Install it (Debian: apt-get install postgresql) or set DATABASE_URL."
    )


def postgres_available() -> bool:
    try:
        pg_binary("initdb")
        pg_binary("postgres")
    except ClassServerError:
        return False
    return True


def _db_account() -> pwd.struct_passwd | None:
    """The unprivileged account PostgreSQL runs as when we are root (it refuses to run as root)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise ClassServerError("running as root, but there is no 'postgres' or 'nobody' account to run PostgreSQL as")


class Database:
    """A private PostgreSQL cluster in ``layout.pgdata`` listening on 127.0.0.1:``port``."""

    def __init__(self, layout: Layout, password: str):
        self.layout = layout
        self.password = password
        self.account = _db_account()
        self.port = 0
        self.process: subprocess.Popen | None = None

    def _chown(self, path: Path) -> None:
        if self.account is not None:
            os.chown(path, self.account.pw_uid, self.account.pw_gid)

    def _check_reach(self) -> None:
        """PostgreSQL runs as ``self.account``: it must be able to write its data folder."""
        if self.account is None:
            return
        reach = subprocess.run(["test", "-w", str(self.layout.pgdata)], user=self.account.pw_uid)
        if reach.returncode != 0:
            raise ClassServerError(
                f"the '{self.account.pw_name}' account cannot reach {self.layout.pgdata}: let it traverse the "
                "parent folders (chmod o+x) or pick another data folder with --dir"
            )

    def init(self) -> bool:
        """Create the cluster once (``initdb``, scram passwords); ``False`` when it already exists."""
        pgdata = self.layout.pgdata
        if (pgdata / "PG_VERSION").exists():
            return False
        pgdata.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._chown(pgdata)
        self._check_reach()
        pwfile = self.layout.root / ".initdb-pw"
        fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(self.password + "\n")
        self._chown(pwfile)
        try:
            command = [pg_binary("initdb"), "-D", str(pgdata), "-U", DB_USER, "--auth=scram-sha-256"]
            command += [f"--pwfile={pwfile}", "-E", "UTF8", "--locale=C"]
            with (self.layout.logs / "initdb.log").open("ab") as log:
                done = subprocess.run(
                    command, stdout=log, stderr=subprocess.STDOUT, **as_user(self.account, signal.SIGTERM)
                )
        finally:
            pwfile.unlink(missing_ok=True)
        if done.returncode != 0:
            raise ClassServerError(f"initdb failed (exit {done.returncode}); see {self.layout.logs / 'initdb.log'}")
        return True

    def start(self, timeout_s: float = 60.0) -> None:
        """Start ``postgres`` in its own session and wait until it accepts logins."""
        self._check_reach()
        self.port = free_port()
        command = [pg_binary("postgres"), "-D", str(self.layout.pgdata), "-c", "listen_addresses=127.0.0.1"]
        command += ["-c", f"port={self.port}", "-c", "unix_socket_directories=", "-c", "max_connections=200"]
        log = (self.layout.logs / "postgres.log").open("ab")
        self.process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, **as_user(self.account, signal.SIGINT)
        )
        log.close()
        deadline = time.monotonic() + timeout_s
        while True:
            if self.process.poll() is not None:
                raise ClassServerError(
                    f"PostgreSQL exited with {self.process.returncode} at start (another server on the same data "
                    f"folder?); see {self.layout.logs / 'postgres.log'}"
                )
            try:
                self.connect("postgres").close()
                return
            except Exception:  # not accepting connections yet
                if time.monotonic() > deadline:
                    self.stop()
                    raise ClassServerError(f"PostgreSQL did not accept logins within {timeout_s:.0f} s") from None
                time.sleep(0.3)

    def connect(self, database: str):
        import psycopg

        return psycopg.connect(
            host="127.0.0.1", port=self.port, user=DB_USER, password=self.password, dbname=database, connect_timeout=3
        )

    def ensure_databases(self) -> None:
        connection = self.connect("postgres")
        connection.autocommit = True  # CREATE DATABASE cannot run in a transaction
        with connection.cursor() as cursor:
            for name in (TRACKING_DB, AUTH_DB):
                cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
                if cursor.fetchone() is None:
                    cursor.execute(f'CREATE DATABASE "{name}"')
        connection.close()

    def url(self, database: str) -> str:
        """SQLAlchemy URL without the password (the server gets it as ``PGPASSWORD``)."""
        return f"postgresql://{DB_USER}@127.0.0.1:{self.port}/{database}"

    def stop(self) -> None:
        """Fast shutdown (SIGINT), then SIGQUIT, then SIGKILL of the whole group."""
        if self.process is not None:
            stop_group(self.process, (signal.SIGINT, signal.SIGQUIT), STOP_TIMEOUT_S)
            self.process = None
