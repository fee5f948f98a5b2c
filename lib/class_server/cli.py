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

Modules: ``layout`` (the data folder), ``processes``, ``database`` (PostgreSQL), ``accounts`` (roster,
passwords, users), ``server`` (MLflow), ``loadtest``, and this one (the command line).

What it is not: TLS (plain HTTP: put a reverse proxy with HTTPS in front before opening ``HOST``
beyond a trusted network), a database administration tool, or a way to run several servers on one
data folder. MLflow does the authentication and the permission checks; this module only sets them up.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path

from lib.class_server.layout import ClassServerError, Layout, default_dir
from lib.class_server.loadtest import load_test, load_worker
from lib.class_server.server import ClassServer, add_students, backup
from lib.errors import EXIT_USAGE
from lib.paths import PROJECT_ROOT


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
            print(json.dumps(load_worker(args.experiment, args.driver, args.seconds)))
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
        return getattr(error, "exit_code", EXIT_USAGE)

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
        code = getattr(error, "exit_code", EXIT_USAGE)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        server.stop()
    print("class server stopped", flush=True)
    return code
