"""A tracking server a whole class can share: ``python -m lib.class_server`` (``make class-server``).

What it is: one command that starts

- a private **PostgreSQL** cluster under ``mlruns/class-server/pgdata`` (Debian's ``initdb``/``postgres``,
  run as the unprivileged ``postgres`` user when we are root, listening on 127.0.0.1 only, password
  login), or uses the database named by ``DATABASE_URL`` instead;
- the **MLflow tracking server** on it with MLflow's built-in authentication (``--app-name basic-auth``),
  serving artifacts from ``mlruns/class-server/artifacts``, bound to ``HOST`` (default 127.0.0.1);
- one **admin** and one **user per student** from a roster file (``username`` or ``username,password``
  per line). Passwords not given are generated and kept, with the admin's, in
  ``mlruns/class-server/secrets/passwords.csv`` (mode 0600). Every user reads every run (the
  server's ``default_permission`` is READ); whoever creates an experiment gets MANAGE on it, so a
  student writes only into the experiments they created.

Ctrl-C (or SIGTERM/SIGHUP) stops everything it started: the MLflow process group, then the database
(fast shutdown). A second start reuses the database, the artifacts and the passwords. Passwords
travel in environment variables, HTTP bodies and 0600 files, never on a command line (``ps``) or in
a log line of ours.

Other sub-commands: ``add-students ROSTER`` adds users to the running server, ``backup FILE`` writes
a ``pg_dump`` of both databases (tracking and users).

What it is not: TLS (plain HTTP: put a reverse proxy with HTTPS in front before opening ``HOST``
beyond a trusted network), a database administration tool, or a way to run several servers on one
data folder. MLflow does the authentication and the permission checks; this module only sets them up.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import csv
import ctypes
import glob
import json
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from lib.paths import PROJECT_ROOT, mlruns_dir

ADMIN = "admin"
DB_USER = "mlflow"
TRACKING_DB, AUTH_DB = "mlflow", "mlflow_auth"
USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
STOP_TIMEOUT_S = 20.0
MIN_PASSWORD = 12  # MLflow's basic-auth refuses shorter passwords


class ClassServerError(RuntimeError):
    """The class server cannot start or be reached; the message says why and what to do."""


# --------------------------------------------------------------------------------------------------
# Files: layout, roster, passwords


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


def read_roster(path: str | Path) -> dict[str, str | None]:
    """Students of a roster file: ``username`` or ``username,password`` per line; ``#`` starts a comment.

    Returns ``{username: password or None}``; raises ``ValueError`` naming the line of a bad or
    duplicate username (``admin`` is reserved).
    """
    students: dict[str, str | None] = {}
    for number, raw in enumerate(Path(path).read_text().splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        name, _, password = (part.strip() for part in line.partition(","))
        if not USERNAME.match(name):
            raise ValueError(f"{path}:{number}: username {name!r} must be 1-64 of letters, digits, '_.@-'")
        if name == ADMIN or name in students:
            raise ValueError(f"{path}:{number}: username {name!r} is reserved or listed twice")
        if password and len(password) < MIN_PASSWORD:
            raise ValueError(f"{path}:{number}: the password of {name!r} is shorter than {MIN_PASSWORD} characters")
        students[name] = password or None
    return students


def load_passwords(layout: Layout) -> dict[str, str]:
    if not layout.passwords.exists():
        return {}
    with layout.passwords.open(newline="") as handle:
        return {row[0]: row[1] for row in csv.reader(handle) if len(row) == 2 and row[0] != "username"}


def save_passwords(layout: Layout, passwords: dict[str, str]) -> None:
    """Write ``username,password`` rows to the 0600 passwords file (atomically)."""
    layout.make()
    tmp = layout.passwords.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["username", "password"])
        for name, password in passwords.items():
            writer.writerow([name, password])
    os.replace(tmp, layout.passwords)


def ensure_passwords(layout: Layout, students: dict[str, str | None]) -> dict[str, str]:
    """Passwords of the admin and the students: the roster's, else the kept ones, else new ones."""
    passwords = load_passwords(layout)
    admin_from_env = os.environ.get("MLFLOW_AUTH_ADMIN_PASSWORD")
    # MLflow takes the admin password only when it creates the admin (first start); a kept one wins
    passwords[ADMIN] = passwords.get(ADMIN) or admin_from_env or secrets.token_urlsafe(18)
    passwords.setdefault("_db", secrets.token_urlsafe(24))  # the database login of the server
    passwords.setdefault("_flask", secrets.token_urlsafe(32))  # the server's CSRF secret key
    for name, given in students.items():
        passwords[name] = given or passwords.get(name) or secrets.token_urlsafe(12)
    save_passwords(layout, passwords)
    return passwords


# --------------------------------------------------------------------------------------------------
# PostgreSQL


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


def _as_user(account: pwd.struct_passwd | None, deathsig: int) -> dict:
    """``Popen`` arguments: a new session, ``account``'s uid/gid (when root), death with the supervisor.

    Python sets the session and the ids before it calls ``preexec_fn``, so the parent-death signal
    (cleared by a credential change) is set last.
    """
    ids = {} if account is None else {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
    return {"start_new_session": True, "preexec_fn": lambda: _set_pdeathsig(deathsig), **ids}


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
                    command, stdout=log, stderr=subprocess.STDOUT, **_as_user(self.account, signal.SIGTERM)
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
            command, stdout=log, stderr=subprocess.STDOUT, **_as_user(self.account, signal.SIGINT)
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


# --------------------------------------------------------------------------------------------------
# MLflow


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


def _request(url: str, method: str = "GET", body: dict | None = None, auth: tuple[str, str] | None = None):
    """``(status, text)`` of one HTTP request (no retries)."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if auth is not None:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")


def wait_healthy(url: str, process: subprocess.Popen | None, timeout_s: float, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if process is not None and process.poll() is not None:
            raise ClassServerError(f"the MLflow server exited with {process.returncode} at start; see {log}")
        try:
            if _request(f"{url}/health")[0] == 200:
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise ClassServerError(f"the MLflow server did not answer {url}/health within {timeout_s:.0f} s; see {log}")
        time.sleep(0.5)


def sync_users(url: str, admin_password: str, passwords: dict[str, str], names) -> list[str]:
    """Create each user of ``names`` (or set the password it has in ``passwords``); returns the new ones."""
    created = []
    for name in names:
        body = {"username": name, "password": passwords[name]}
        status, text = _admin_call(url, "users/create", "POST", body, admin_password)
        if status == 200:
            created.append(name)
            continue
        if "RESOURCE_ALREADY_EXISTS" in text or "already exists" in text:
            status, text = _admin_call(url, "users/update-password", "PATCH", body, admin_password)
            if status == 200:
                continue
        raise ClassServerError(f"could not create or update user {name!r}: HTTP {status} {text[:200]}")
    return created


def _admin_call(url: str, endpoint: str, method: str, body: dict, admin_password: str) -> tuple[int, str]:
    return _request(f"{url}/api/2.0/mlflow/{endpoint}", method, body, (ADMIN, admin_password))


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
        self.layout.make()
        students = read_roster(self.roster) if self.roster else {}
        passwords = ensure_passwords(self.layout, students)
        env = dict(os.environ)
        if self.database_url:
            tracking_url, db_password = _strip_password(self.database_url)
            auth_url = os.environ.get("AUTH_DATABASE_URL") or self.database_url
            auth_url, auth_password = _strip_password(auth_url)
            if auth_password and auth_password != db_password:
                raise ClassServerError("AUTH_DATABASE_URL must use the same password as DATABASE_URL")
            if db_password:
                env["PGPASSWORD"] = db_password
            print(f"database: {tracking_url} (DATABASE_URL)", flush=True)
        else:
            self.database = Database(self.layout, passwords["_db"])
            fresh = self.database.init()
            self.database.start()
            self.database.ensure_databases()
            tracking_url, auth_url = self.database.url(TRACKING_DB), self.database.url(AUTH_DB)
            env["PGPASSWORD"] = passwords["_db"]
            print(
                f"database: PostgreSQL in {self.layout.pgdata} ({'new' if fresh else 'reused'}), "
                f"port {self.database.port}",
                flush=True,
            )
        write_auth_ini(self.layout, auth_url)
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
            command, env=env, stdout=log, stderr=subprocess.STDOUT, **_as_user(None, signal.SIGTERM)
        )
        log.close()
        wait_healthy(self.url, self.mlflow, timeout_s, log_path)
        created = sync_users(self.url, passwords[ADMIN], passwords, list(students))
        self.layout.state.write_text(
            json.dumps(
                {
                    "url": self.url,
                    "host": self.host,
                    "port": self.port,
                    "pid": os.getpid(),
                    "db_port": self.database.port if self.database else None,
                }
            )
            + "\n"
        )
        print(
            f"MLflow class server on http://{self.host}:{self.port} (basic-auth; {len(students)} students in "
            f"the roster, {len(created)} new); passwords in {self.layout.passwords}; logs in {self.layout.logs}. "
            "Ctrl-C stops it.",
            flush=True,
        )

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


# --------------------------------------------------------------------------------------------------
# Command line


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


def _load_worker(experiment: str, driver: int, seconds: float) -> dict:
    """One writer: whole runs (params, a metric, a short history, end) for ``seconds``; times each log call."""
    from lib import tracking

    exp_id = tracking.experiment_id(experiment)
    latencies, runs = [], 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        run_id = tracking.start_run(exp_id, {"driver": driver, "seq": runs}, {"load_driver": driver, "load_seq": runs})
        began = time.perf_counter()
        tracking.log_metrics(run_id, {"val_accuracy": 0.5 + 0.001 * runs})
        latencies.append(time.perf_counter() - began)
        tracking.log_history(run_id, [{"epoch": e, "train_loss": 1.0 / e} for e in (1, 2, 3)])
        tracking.end_run(run_id)
        runs += 1
    return {"driver": driver, "runs": runs, "latencies": latencies}


def load_test(drivers: int, seconds: float, experiment: str | None = None) -> dict:
    """``drivers`` processes write whole runs at once for ``seconds`` against ``MLFLOW_TRACKING_URI``.

    Returns runs, runs/s (over the writing window), the median and p95 latency of a ``log_metrics``
    call, and the check that every run is in the store exactly once and FINISHED.
    """
    from lib import tracking

    experiment = experiment or f"load-{os.environ.get('MLFLOW_TRACKING_USERNAME', 'anon')}-{int(time.time())}"
    tracking.experiment_id(experiment)  # created once, before the writers race for it
    command = [sys.executable, "-m", "lib.class_server", "load-worker", experiment, "--seconds", str(seconds)]
    started = time.perf_counter()
    workers = [
        subprocess.Popen([*command, "--driver", str(d)], stdout=subprocess.PIPE, cwd=PROJECT_ROOT, text=True)
        for d in range(drivers)
    ]
    reports = []
    for worker in workers:
        out, _ = worker.communicate(timeout=seconds + 300)
        if worker.returncode != 0:
            raise ClassServerError(f"load worker exited with {worker.returncode}")
        reports.append(json.loads(out.strip().splitlines()[-1]))
    wall = time.perf_counter() - started
    runs = tracking.search(experiment)
    seen: dict[tuple[str, str], int] = {}
    for run in runs:
        key = (run.data.tags.get("load_driver"), run.data.tags.get("load_seq"))
        seen[key] = seen.get(key, 0) + 1
    expected = {(str(r["driver"]), str(i)) for r in reports for i in range(r["runs"])}
    latencies = sorted(x for r in reports for x in r["latencies"])
    total = sum(r["runs"] for r in reports)

    def quantile(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] if latencies else float("nan")

    return {
        "experiment": experiment,
        "drivers": drivers,
        "seconds": seconds,
        "wall_s": round(wall, 1),
        "runs": total,
        "runs_per_s": round(total / seconds, 2),
        "log_p50_ms": round(1000 * quantile(0.50), 1),
        "log_p95_ms": round(1000 * quantile(0.95), 1),
        "exactly_once": set(seen) == expected and all(n == 1 for n in seen.values()),
        "not_finished": sum(run.info.status != "FINISHED" for run in runs),
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m lib.class_server", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dir", type=Path, default=None, help="data folder (default mlruns/class-server)")
    commands = parser.add_subparsers(dest="command")
    serve = commands.add_parser("serve", help="start the database, the server and the users (the default)")
    for target in (parser, serve):
        target.add_argument(
            "--host", default=os.environ.get("HOST", "127.0.0.1"), help="bind address (HOST; 127.0.0.1)"
        )
        target.add_argument("--port", type=int, default=int(os.environ.get("PORT", 5000)), help="port (PORT; 5000)")
        target.add_argument("--workers", type=int, default=2, help="MLflow server worker processes (default 2)")
        target.add_argument(
            "--roster",
            type=Path,
            default=Path(os.environ["ROSTER"]) if os.environ.get("ROSTER") else None,
            help="roster file: 'username' or 'username,password' per line (ROSTER; default roster.txt if present)",
        )
    add = commands.add_parser("add-students", help="add the roster's students to the running server")
    add.add_argument("roster", type=Path)
    load = commands.add_parser("load", help="measure: N writers of whole runs at once (MLFLOW_TRACKING_URI + login)")
    load.add_argument("--drivers", type=int, default=8)
    load.add_argument("--seconds", type=float, default=15.0)
    worker = commands.add_parser("load-worker", help=argparse.SUPPRESS)
    worker.add_argument("experiment")
    worker.add_argument("--driver", type=int, required=True)
    worker.add_argument("--seconds", type=float, required=True)
    dump = commands.add_parser("backup", help="pg_dump both databases of the running server")
    dump.add_argument("target", type=Path, help="file name stem, e.g. backup.dump -> backup-mlflow.dump, ...")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    layout = Layout((args.dir or default_dir()).resolve())
    try:
        if args.command == "add-students":
            created = add_students(layout, args.roster)
            print(f"{len(created)} new users; passwords in {layout.passwords}")
            return 0
        if args.command == "load":
            print(json.dumps(load_test(args.drivers, args.seconds)))
            return 0
        if args.command == "load-worker":
            print(json.dumps(_load_worker(args.experiment, args.driver, args.seconds)))
            return 0
        if args.command == "backup":
            for path in backup(layout, args.target):
                print("wrote", path)
            return 0
        roster = args.roster
        if roster is None and (PROJECT_ROOT / "roster.txt").exists():
            roster = PROJECT_ROOT / "roster.txt"
        server = ClassServer(layout, args.host, args.port, args.workers, roster, os.environ.get("DATABASE_URL"))
    except (ClassServerError, ValueError) as error:
        print(f"class server: {error}", file=sys.stderr)
        return 2

    stopping = []

    def on_signal(signum, frame):
        stopping.append(signum)
        raise KeyboardInterrupt

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    code = 0
    try:
        server.start()
        code = server.wait()
    except KeyboardInterrupt:
        print("stopping the class server ...", flush=True)
    except (ClassServerError, ValueError) as error:
        print(f"class server: {error}", file=sys.stderr, flush=True)
        code = 2
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        server.stop()
    print("class server stopped", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
