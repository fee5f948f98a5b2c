"""The MLflow tracking server of a class: basic-auth on the class database, its users, its state file.

:class:`ClassServer` starts the database (``database``, or ``DATABASE_URL``), MLflow's server with
``--app-name basic-auth`` bound to ``HOST``, and one user per student (``accounts``); :meth:`ClassServer.stop`
ends what it started. :func:`add_students` and :func:`backup` act on a running server.

What this is not: TLS (plain HTTP: put a reverse proxy with HTTPS in front before opening ``HOST`` beyond a
trusted network), the command line (``cli``) or the authentication itself (MLflow does the checks).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from lib.class_server.accounts import ADMIN, ensure_passwords, http_request, load_passwords, read_roster, sync_users
from lib.class_server.database import AUTH_DB, DB_USER, TRACKING_DB, Database, pg_binary
from lib.class_server.layout import ClassServerError, Layout
from lib.class_server.processes import STOP_TIMEOUT_S, as_user, stop_group


def _strip_password(url: str) -> tuple[str, str | None]:
    """``(url without password, password)`` of a database URL."""
    parts = urlsplit(url)
    if parts.password is None:
        return url, None
    netloc = parts.netloc.rsplit("@", 1)
    user = parts.username or ""
    clean = parts._replace(netloc=f"{user}@{netloc[1]}" if len(netloc) == 2 else parts.netloc)
    return urlunsplit(clean), parts.password


def write_auth_ini(layout: Layout, auth_db_url: str) -> None:
    """MLflow's basic-auth configuration: READ for everyone, users in ``auth_db_url`` (0600 file)."""
    text = (
        "[mlflow]\n"
        "default_permission = READ\n"
        f"database_uri = {auth_db_url}\n"
        f"admin_username = {ADMIN}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        "grant_default_workspace_access = false\n"
        "auth_cache_max_size = 10000\n"
        "auth_cache_ttl_seconds = 60\n"
    )
    fd = os.open(layout.auth_ini, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def wait_healthy(url: str, process: subprocess.Popen | None, timeout_s: float, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if process is not None and process.poll() is not None:
            raise ClassServerError(f"the MLflow server exited with {process.returncode} at start; see {log}")
        try:
            if http_request(f"{url}/health")[0] == 200:
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise ClassServerError(f"the MLflow server did not answer {url}/health within {timeout_s:.0f} s; see {log}")
        time.sleep(0.5)


def connect_host(host: str) -> str:
    """The address a client on this machine uses for a server bound to ``host``."""
    return "127.0.0.1" if host in ("0.0.0.0", "", "::") else host


class ClassServer:
    """Database + MLflow server + users; :meth:`start`, :meth:`wait`, :meth:`stop`."""

    def __init__(
        self, layout: Layout, host: str, port: int, workers: int, roster: Path | None, database_url: str | None
    ):
        self.layout = layout
        self.host, self.port, self.workers = host, port, workers
        self.roster = roster
        self.database_url = database_url
        self.database: Database | None = None
        self.mlflow: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://{connect_host(self.host)}:{self.port}"

    def start(self, timeout_s: float = 180.0) -> None:
        """Database, MLflow server and users; then ``server.json`` says where it runs."""
        self.layout.make()
        students = read_roster(self.roster) if self.roster else {}
        passwords = ensure_passwords(self.layout, students)
        env = dict(os.environ)
        tracking_url, auth_url = self._start_database(passwords, env)
        write_auth_ini(self.layout, auth_url)
        self._start_mlflow(tracking_url, passwords, env, timeout_s)
        created = sync_users(self.url, passwords[ADMIN], passwords, list(students))
        state = {
            "url": self.url,
            "host": self.host,
            "port": self.port,
            "pid": os.getpid(),
            "db_port": self.database.port if self.database else None,
        }
        self.layout.state.write_text(json.dumps(state) + "\n")
        print(
            f"MLflow class server on http://{self.host}:{self.port} (basic-auth; {len(students)} students in "
            f"the roster, {len(created)} new); passwords in {self.layout.passwords}; logs in {self.layout.logs}. "
            "Ctrl-C stops it.",
            flush=True,
        )

    def _start_database(self, passwords: dict[str, str], env: dict[str, str]) -> tuple[str, str]:
        """(tracking URL, users URL), both without password: ``DATABASE_URL``'s, or a private cluster's.

        The database password goes into ``env`` as ``PGPASSWORD``.
        """
        if self.database_url:
            tracking_url, db_password = _strip_password(self.database_url)
            auth_url = os.environ.get("AUTH_DATABASE_URL") or self.database_url
            auth_url, auth_password = _strip_password(auth_url)
            if auth_password and auth_password != db_password:
                raise ClassServerError("AUTH_DATABASE_URL must use the same password as DATABASE_URL")
            if db_password:
                env["PGPASSWORD"] = db_password
            print(f"database: {tracking_url} (DATABASE_URL)", flush=True)
            return tracking_url, auth_url
        self.database = Database(self.layout, passwords["_db"])
        fresh = self.database.init()
        self.database.start()
        self.database.ensure_databases()
        env["PGPASSWORD"] = passwords["_db"]
        print(
            f"database: PostgreSQL in {self.layout.pgdata} ({'new' if fresh else 'reused'}), port {self.database.port}",
            flush=True,
        )
        return self.database.url(TRACKING_DB), self.database.url(AUTH_DB)

    def _start_mlflow(
        self, tracking_url: str, passwords: dict[str, str], env: dict[str, str], timeout_s: float
    ) -> None:
        """``mlflow server --app-name basic-auth`` in its own session; returns once ``/health`` answers."""
        env |= {
            "MLFLOW_BACKEND_STORE_URI": tracking_url,
            "MLFLOW_AUTH_CONFIG_PATH": str(self.layout.auth_ini),
            "MLFLOW_AUTH_ADMIN_USERNAME": ADMIN,
            "MLFLOW_AUTH_ADMIN_PASSWORD": passwords[ADMIN],
            "MLFLOW_FLASK_SERVER_SECRET_KEY": passwords["_flask"],
        }
        env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")  # GenAI job consumers: 7 idle processes
        env.pop("MLFLOW_TRACKING_URI", None)
        env.pop("MLFLOW_TRACKING_PASSWORD", None)
        command = [sys.executable, "-m", "mlflow", "server", "--app-name", "basic-auth"]
        command += ["--serve-artifacts", "--artifacts-destination", str(self.layout.artifacts)]
        command += ["--host", self.host, "--port", str(self.port), "--workers", str(self.workers)]
        log_path = self.layout.logs / "mlflow.log"
        log = log_path.open("ab")
        self.mlflow = subprocess.Popen(
            command, env=env, stdout=log, stderr=subprocess.STDOUT, **as_user(None, signal.SIGTERM)
        )
        log.close()
        wait_healthy(self.url, self.mlflow, timeout_s, log_path)

    def wait(self) -> int:
        """Block until a component exits on its own; its exit status."""
        while True:
            if self.mlflow is not None and self.mlflow.poll() is not None:
                print(f"the MLflow server exited ({self.mlflow.returncode}); see {self.layout.logs}", flush=True)
                return self.mlflow.returncode or 1
            database = self.database.process if self.database else None
            if database is not None and database.poll() is not None:
                print(f"PostgreSQL exited ({database.returncode}); see {self.layout.logs}", flush=True)
                return database.returncode or 1
            time.sleep(0.5)

    def stop(self) -> None:
        if self.mlflow is not None:
            stop_group(self.mlflow, (signal.SIGTERM,), STOP_TIMEOUT_S)
            self.mlflow = None
        if self.database is not None:
            self.database.stop()
        self.layout.state.unlink(missing_ok=True)


def _running_url(layout: Layout) -> str:
    if not layout.state.exists():
        raise ClassServerError(f"no running class server found ({layout.state} is missing)")
    return json.loads(layout.state.read_text())["url"]


def add_students(layout: Layout, roster: Path) -> list[str]:
    """Add (or reset the password of) the roster's students on the running server."""
    students = read_roster(roster)
    passwords = ensure_passwords(layout, students)
    return sync_users(_running_url(layout), passwords[ADMIN], passwords, list(students))


def backup(layout: Layout, target: Path) -> list[Path]:
    """``pg_dump -Fc`` of the tracking and the users database of the running private cluster."""
    state = json.loads(layout.state.read_text()) if layout.state.exists() else {}
    if not state.get("db_port"):
        raise ClassServerError("backup needs the running private cluster (with DATABASE_URL, run pg_dump yourself)")
    env = dict(os.environ, PGPASSWORD=load_passwords(layout)["_db"])
    written = []
    for name in (TRACKING_DB, AUTH_DB):
        out = target.with_name(f"{target.stem}-{name}{target.suffix or '.dump'}")
        command = [pg_binary("pg_dump"), "-h", "127.0.0.1", "-p", str(state["db_port"]), "-U", DB_USER, "-Fc"]
        subprocess.run([*command, "-f", str(out), name], env=env, check=True)
        written.append(out)
    return written
