"""The class server (``lib.class_server``) end to end, on loopback: PostgreSQL, basic-auth, students.

One server (private PostgreSQL cluster in a temporary folder) serves the whole module. The tests
check the logins and permissions, that the CLI's grids and sweeps work unchanged against it, a load
of 8 writers, 8 CLI drivers with a server restart in the middle, and a sweep on a two-node Ray
cluster. The module's last test checks that no process it started is left. Skipped only when
PostgreSQL is not installed (``apt-get install postgresql``).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from lib.class_server.accounts import http_request, load_passwords, read_roster
from lib.class_server.database import postgres_available
from lib.class_server.layout import Layout
from lib.class_server.processes import free_port

pytestmark = pytest.mark.skipif(
    not postgres_available(), reason="PostgreSQL is not installed (Debian: apt-get install postgresql)"
)

ROOT = Path(__file__).resolve().parents[1]
STUDENTS = ("alice", "bob", "carol", "dave")
TINY = ["--set", "epochs=1", "--train-subset", "200", "--val-subset", "200"]
STARTED: list[int] = []  # pids of the supervisors this module started


def _free_port() -> int:
    return free_port()


class Server:
    """``python -m lib.class_server`` in its own session; ``start``/``stop`` reuse the same folder."""

    def __init__(self, folder: Path, port: int, extra_env: dict[str, str] | None = None):
        self.folder, self.port, self.extra_env = folder, port, extra_env or {}
        self.data = folder / "data"
        self.process: subprocess.Popen | None = None
        self.url = f"http://127.0.0.1:{port}"

    def start(self, timeout_s: float = 240) -> None:
        out = (self.folder / "server-out.txt").open("ab")
        command = [sys.executable, "-m", "lib.class_server", "--dir", str(self.data), "--port", str(self.port)]
        command += ["--roster", str(self.folder / "roster.txt"), "--workers", "2"]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_TRACKING", "DATABASE_URL", "HOST"))}
        env |= self.extra_env
        self.process = subprocess.Popen(
            command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=env
        )
        STARTED.append(self.process.pid)
        deadline = time.monotonic() + timeout_s
        try:
            while not (self.data / "server.json").exists():
                assert self.process.poll() is None, (self.folder / "server-out.txt").read_text()[-3000:]
                assert time.monotonic() < deadline, "class server did not start"
                time.sleep(0.5)
        except BaseException:  # a failed or interrupted start leaves nothing behind either
            self.stop()
            raise

    def stop(self) -> None:
        """Ctrl-C to the supervisor, as a teacher would; it must end everything within a minute."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            self.process.wait(timeout=90)
        self.process = None

    def password(self, user: str) -> str:
        return load_passwords(Layout(self.data))[user]

    def env(self, user: str) -> dict[str, str]:
        return dict(
            os.environ,
            MLFLOW_TRACKING_URI=self.url,
            MLFLOW_TRACKING_USERNAME=user,
            MLFLOW_TRACKING_PASSWORD=self.password(user),
            PYTHONPATH=str(ROOT),
            HYPERTUNE_STATE_DIR=str(self.folder / f"state-{user}"),
        )

    def call(self, path: str, user: str | None, body: dict | None = None, method: str = "POST"):
        auth = (user, self.password(user)) if user else None
        return http_request(f"{self.url}/api/2.0/mlflow/{path}", method, body, auth)


def _runs(server: Server, experiment: str) -> list[dict]:
    status, text = server.call(f"experiments/get-by-name?experiment_name={experiment}", "admin", method="GET")
    if status != 200:
        return []
    exp_id = json.loads(text)["experiment"]["experiment_id"]
    runs, token = [], None
    while True:
        body = {"experiment_ids": [exp_id], "max_results": 1000} | ({"page_token": token} if token else {})
        status, text = server.call("runs/search", "admin", body)
        assert status == 200, text
        page = json.loads(text)
        runs += page.get("runs", [])
        token = page.get("next_page_token")
        if not token:
            return runs


def _keys(run: dict, part: str) -> set[str]:
    return {item["key"] for item in run["data"].get(part, [])}


@pytest.fixture(scope="module")
def server():
    folder = Path(tempfile.mkdtemp(prefix="hypertune-class-"))
    os.chmod(folder, 0o755)  # PostgreSQL runs as an unprivileged user and must reach its data folder
    (folder / "roster.txt").write_text("# test roster\n" + "\n".join(STUDENTS[:-1]) + "\ndave,dave-password-1234\n")
    result = Server(folder, _free_port())
    started = time.perf_counter()
    result.start()
    print(f"class server started in {time.perf_counter() - started:.1f} s")
    yield result
    result.stop()
    left = _left_behind(result)
    shutil.rmtree(folder, ignore_errors=True)
    assert not left, f"processes left behind: {left}"


def _left_behind(server: Server) -> list[str]:
    """Processes of this server still alive: by their command line, or a socket still listening on its port."""
    time.sleep(1)
    table = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    left = [line for line in table.splitlines() if str(server.data) in line or f"--port {server.port} " in line]
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(name).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == server.port:
                left.append(f"a socket listening on port {server.port}")
    return left


def test_roster_is_validated(tmp_path):
    roster = tmp_path / "r.txt"
    roster.write_text("ok_user\nbad user\n")
    with pytest.raises(ValueError, match=r"r.txt:2: username 'bad user'"):
        read_roster(roster)
    roster.write_text("eve,short\n")
    with pytest.raises(ValueError, match="shorter than 12"):
        read_roster(roster)
    roster.write_text("admin\n")
    with pytest.raises(ValueError, match="reserved"):
        read_roster(roster)


def test_logins_and_permissions(server):
    layout = Layout(server.data)
    assert oct(layout.passwords.stat().st_mode & 0o777) == "0o600"
    assert server.password("dave") == "dave-password-1234"  # the roster's own password is used
    search = {"max_results": 1}
    assert server.call("experiments/search", None, search)[0] == 401  # no credentials
    status, _ = http_request(
        f"{server.url}/api/2.0/mlflow/experiments/search", "POST", search, ("alice", "wrong-password-1")
    )
    assert status == 401  # wrong password
    assert server.call("experiments/search", "alice", search)[0] == 200

    status, text = server.call("experiments/create", "alice", {"name": "alice-private"})
    assert status == 200, text
    exp_id = json.loads(text)["experiment_id"]
    status, text = server.call("runs/create", "alice", {"experiment_id": exp_id})
    assert status == 200, text
    run_id = json.loads(text)["run"]["info"]["run_id"]
    # bob reads alice's runs but cannot write into her experiment or her run
    assert server.call("runs/search", "bob", {"experiment_ids": [exp_id]})[0] == 200
    assert server.call("runs/create", "bob", {"experiment_id": exp_id})[0] == 403
    assert server.call("runs/log-metric", "bob", {"run_id": run_id, "key": "x", "value": 1, "timestamp": 0})[0] == 403
    assert server.call("runs/delete", "bob", {"run_id": run_id})[0] == 403
    assert server.call("users/create", "bob", {"username": "mallory", "password": "mallory-password-1"})[0] == 403

    # bound to loopback only: the listening socket of the port is 127.0.0.1 (0100007F in /proc/net/tcp)
    listening = [
        line.split()[1]
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]
        if line.split()[3] == "0A" and int(line.split()[1].split(":")[1], 16) == server.port
    ]
    assert listening and all(address.startswith("0100007F:") for address in listening), listening
    assert not any(
        int(line.split()[1].rsplit(":", 1)[1], 16) == server.port and line.split()[3] == "0A"
        for line in Path("/proc/net/tcp6").read_text().splitlines()[1:]
    )


def test_cli_grid_and_sweep_work_unchanged(server):
    env = server.env("alice")
    base = [sys.executable, "-m", "lib"]
    grid = [*base, "grid", "--experiment", "alice-grid", "--factor", "dropout_p=0,0.25", "--seeds", "0", *TINY]
    sweep = [*base, "sweep", "--experiment", "alice-sweep", "--name", "s", "--max-evals", "2", *TINY]
    for command in (grid, sweep):
        done = subprocess.run([*command, "--workers", "1"] if "grid" in command else command, env=env, cwd=ROOT,
                              capture_output=True, text=True, timeout=300)  # fmt: skip
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    grid_runs = _runs(server, "alice-grid")
    assert sorted(r["info"]["status"] for r in grid_runs) == ["FINISHED", "FINISHED"]
    assert all({"val_accuracy", "epoch_train_loss"} <= _keys(r, "metrics") for r in grid_runs)
    children = [r for r in _runs(server, "alice-sweep") if "mlflow.parentRunId" in _keys(r, "tags")]
    assert len(children) == 2 and all(r["info"]["status"] == "FINISHED" for r in children)
    # the run as the engine wrote it (used by the Ray test for "identical in form")
    (server.folder / "local-form.json").write_text(json.dumps(children[0]))


def test_a_student_writing_into_another_students_experiment_gets_one_line(server):
    command = [sys.executable, "-m", "lib", "grid", "--experiment", "alice-grid", "--factor", "dropout_p=0.5"]
    done = subprocess.run([*command, "--seeds", "0", "--workers", "1", *TINY], env=server.env("bob"), cwd=ROOT,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode != 0
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert "belongs to another user" in done.stderr and "alice-grid-bob" in done.stderr, done.stderr[-3000:]


def test_each_student_gets_the_notebooks_experiments_under_their_own_name(server):
    """The notebooks name what they write and read with ``profiles.experiment_name``: on a server with
    logins every student gets ``<login>-02_norm_dropout`` of their own, so nobody meets another's 403."""
    script = (
        "from lib import tracking\n"
        "from lib.study import profiles\n"
        "name = profiles.experiment_name('02_norm_dropout')\n"
        "run = tracking.start_run(tracking.experiment_id(name), {'lr': 0.001}, {'kind': 'analysis'}, run_name='t')\n"
        "tracking.end_run(run)\n"
        "print(name)\n"
    )
    for user in ("alice", "bob"):
        done = subprocess.run([sys.executable, "-c", script], env=server.env(user), cwd=ROOT,
                              capture_output=True, text=True, timeout=120)  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        assert done.stdout.strip().splitlines()[-1] == f"{user}-02_norm_dropout"
        assert [r["info"]["status"] for r in _runs(server, f"{user}-02_norm_dropout")] == ["FINISHED"]
    assert _runs(server, "02_norm_dropout") == []


def test_load_of_four_writers(server):
    """4 processes write whole runs at once: each run exactly once, all FINISHED; runs/s and p95 (the measured
    load of docs/class-server.md is the same command with 8 drivers for 15 s)."""
    env = server.env("bob")
    command = [sys.executable, "-m", "lib.class_server", "load", "--drivers", "4", "--seconds", "6"]
    done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    print("load:", report)
    assert report["runs"] >= 4 and report["exactly_once"] and report["not_finished"] == 0, report


DRIVING = STUDENTS[:2]  # 4 drivers prove the point (concurrent writers ride out a restart) at half the cost of 8


def _drivers(server: Server) -> list[tuple[str, list[str]]]:
    """4 CLI drivers: two students each run one grid (2 trials) and one sweep (2 trials)."""
    result = []
    for user in DRIVING:
        grid = ["grid", "--experiment", f"{user}-g", "--factor", "dropout_p=0,0.25", "--seeds", "0", "--workers", "1"]
        sweep = ["sweep", "--experiment", f"{user}-s", "--name", "s", "--max-evals", "2"]
        result += [
            (user, [sys.executable, "-m", "lib", *grid, *TINY]),
            (user, [sys.executable, "-m", "lib", *sweep, *TINY]),
        ]
    return result


def _trial_runs(server: Server) -> dict[str, list[dict]]:
    found = {}
    for user in DRIVING:
        found[f"{user}-g"] = _runs(server, f"{user}-g")
        found[f"{user}-s"] = [r for r in _runs(server, f"{user}-s") if "mlflow.parentRunId" in _keys(r, "tags")]
    return found


def test_drivers_with_a_server_restart(server):
    """4 CLI drivers at once; the server (database included) restarts in the middle; a re-run completes."""
    env_retry = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "7", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "2"}
    logs = server.folder / "drivers"
    logs.mkdir(exist_ok=True)
    started = time.perf_counter()
    processes = []
    for number, (user, command) in enumerate(_drivers(server)):
        out = (logs / f"{number}.txt").open("w")
        processes.append(subprocess.Popen(command, env=server.env(user) | env_retry, cwd=ROOT, stdout=out, stderr=out))
    # restart once some runs are in: Ctrl-C to the class server, then the same command again
    deadline = time.monotonic() + 240
    while sum(len(v) for v in _trial_runs(server).values()) < 3 and time.monotonic() < deadline:
        time.sleep(2)
    restart_began = time.perf_counter()
    server.stop()
    server.start()
    restart_s = time.perf_counter() - restart_began
    codes = [p.wait(timeout=400) for p in processes]
    first_pass_s = time.perf_counter() - started
    failed = [n for n, code in enumerate(codes) if code != 0]
    for number in failed:  # a failed driver must say why
        text = (logs / f"{number}.txt").read_text()
        assert "Error" in text or "error" in text, text[-2000:]
    # a re-run of the drivers that failed completes the study (finished trials come from the cache)
    drivers = _drivers(server)
    reruns = [
        subprocess.Popen(drivers[n][1], env=server.env(drivers[n][0]), cwd=ROOT, stdout=subprocess.PIPE, text=True)
        for n in failed
    ]
    for rerun in reruns:
        out, _ = rerun.communicate(timeout=300)
        assert rerun.returncode == 0, out[-3000:]
    runs = _trial_runs(server)
    for name, found in runs.items():
        statuses = [r["info"]["status"] for r in found]
        assert "RUNNING" not in statuses, (name, statuses)
        finished = [r for r in found if r["info"]["status"] == "FINISHED"]
        keys = [next(t["value"] for t in r["data"]["tags"] if t["key"] == "trial_key") for r in finished]
        assert len(keys) == len(set(keys)), f"{name}: a trial recorded twice"
        assert len(finished) == 2, (name, statuses)
    total = sum(len(v) for v in runs.values())
    print(
        f"{len(codes)} drivers: {total} trial runs; first pass {first_pass_s:.0f} s, a restart of {restart_s:.0f} s; "
        f"{len(failed)} drivers failed in the first pass and completed on the re-run"
    )


def test_sweep_on_a_two_node_ray_cluster(server, monkeypatch):
    """A sweep on two Ray nodes (one CPU each) logs to the class server; trials run on both nodes."""
    ray = pytest.importorskip("ray")
    from ray import tune
    from ray.cluster_utils import Cluster

    from lib import tracking
    from lib.data import DataSpec
    from lib.engine import search

    node_args = {
        "num_cpus": 1,
        "object_store_memory": 80 * 2**20,
        "include_dashboard": False,
    }
    cluster = Cluster(initialize_head=True, head_node_args=node_args)
    try:
        cluster.add_node(**{k: v for k, v in node_args.items() if k != "include_dashboard"})
        cluster.wait_for_nodes()
        for key, value in server.env("carol").items():
            if key.startswith(("MLFLOW_", "HYPERTUNE_")):
                monkeypatch.setenv(key, value)
        monkeypatch.setenv("RAY_ADDRESS", cluster.address)
        tracking._client.cache_clear()

        seen: list[dict] = []

        class WhereTrialsRan(tune.Callback):  # test-only: records the worker pid of each trial's results
            def on_trial_result(self, iteration, trials, trial, result, **info):
                seen.append({"trial": trial.trial_id, "pid": result.get("pid")})

        original = tune.Tuner.__init__

        def with_callback(self, *args, run_config=None, **kwargs):
            run_config = run_config or tune.RunConfig()
            run_config.callbacks = [*(run_config.callbacks or []), WhereTrialsRan()]
            original(self, *args, run_config=run_config, **kwargs)

        monkeypatch.setattr(tune.Tuner, "__init__", with_callback)
        result = search.run_sweep(
            None, "carol-ray", "two-nodes", 4, base={"epochs": 1}, data=DataSpec(train_subset=200, val_subset=200),
            engine="ray", progress=False,
        )  # fmt: skip
        assert len(result.trials) == 4
        ray.init(address=cluster.address, log_to_driver=False)
        pid_node = {a["Pid"]: a["Address"]["NodeID"] for a in ray._private.state.actors().values() if a.get("Pid")}
        ray.shutdown()
        nodes = {seen_trial["trial"]: pid_node.get(seen_trial["pid"]) for seen_trial in seen}
        print("trial -> node:", nodes)
        assert len(set(nodes.values()) - {None}) >= 2, nodes
    finally:
        tracking._client.cache_clear()
        cluster.shutdown()
    children = [r for r in _runs(server, "carol-ray") if "mlflow.parentRunId" in _keys(r, "tags")]
    assert len(children) == 4 and all(r["info"]["status"] == "FINISHED" for r in children)
    local_path = server.folder / "local-form.json"
    if local_path.exists():  # same params, metrics and tags as a run of the local engine
        local = json.loads(local_path.read_text())
        cli_only = {"study_command", "role_scientific", "role_nuisance", "role_fixed"}  # the CLI's study tags
        for part in ("params", "metrics", "tags"):  # the local form came from the CLI, this sweep from Python
            assert _keys(children[0], part) - cli_only == _keys(local, part) - cli_only, part


def test_database_url_instead_of_the_private_cluster(server):
    """``DATABASE_URL`` (here: a database of the first server's cluster) replaces the private cluster."""
    import psycopg

    state = json.loads((server.data / "server.json").read_text())
    db_password = server.password("_db")
    with psycopg.connect(
        host="127.0.0.1", port=state["db_port"], user="mlflow", password=db_password, dbname="postgres", autocommit=True
    ) as connection:
        connection.execute('CREATE DATABASE "by_url"')
    folder = Path(tempfile.mkdtemp(prefix="hypertune-class-url-"))
    (folder / "roster.txt").write_text("erin\n")
    url = f"postgresql://mlflow:{db_password}@127.0.0.1:{state['db_port']}/by_url"
    other = Server(folder, _free_port(), {"DATABASE_URL": url})
    try:
        other.start()
        assert not (other.data / "pgdata").exists()
        assert other.call("experiments/create", "erin", {"name": "erin-exp"})[0] == 200
        assert other.call("experiments/search", None, {"max_results": 1})[0] == 401
        table = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
        assert [line for line in table.splitlines() if db_password in line] == []  # the URL travels in the environment
    finally:
        other.stop()
        left = _left_behind(other)
        shutil.rmtree(folder, ignore_errors=True)
    assert not left, left


def test_backup_dumps_both_databases(server):
    target = server.folder / "backup" / "class.dump"
    target.parent.mkdir()
    command = [sys.executable, "-m", "lib.class_server", "--dir", str(server.data), "backup", str(target)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    dumps = sorted(p.name for p in target.parent.iterdir())
    assert dumps == ["class-mlflow.dump", "class-mlflow_auth.dump"], dumps
    assert all((target.parent / name).read_bytes().startswith(b"PGDMP") for name in dumps)


def test_passwords_stay_secret(server):
    """No password in a command line (ps), the server's logs, or any param or tag of any run."""
    passwords = [v for v in load_passwords(Layout(server.data)).values() if len(v) >= 12]
    assert len(passwords) >= len(STUDENTS) + 2
    table = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    texts = {"ps": table} | {p.name: p.read_text(errors="replace") for p in (server.data / "logs").glob("*.log")}
    texts |= {str(p): p.read_text(errors="replace") for p in server.folder.rglob("*.txt") if p.name != "roster.txt"}
    status, text = server.call("experiments/search", "admin", {"max_results": 1000})
    assert status == 200, text
    for experiment in json.loads(text)["experiments"]:
        for run in _runs(server, experiment["name"]):
            values = [item["value"] for part in ("params", "tags") for item in run["data"].get(part, [])]
            texts[f"run {run['info']['run_id']}"] = "\n".join(values)
    assert {"ps", "mlflow.log", "postgres.log"} <= set(texts)
    leaks = [(where, "password of " + name) for where, body in texts.items() for name, pw in
             load_passwords(Layout(server.data)).items() if len(pw) >= 12 and pw in body]  # fmt: skip
    assert not leaks, leaks


def test_no_process_left_behind(server):
    assert server.call("experiments/create", "alice", {"name": "alice-before-restart"})[0] == 200
    server.stop()
    assert not _left_behind(server)
    server.start()  # a second start reuses the data and the passwords
    status, _ = server.call("experiments/get-by-name?experiment_name=alice-before-restart", "alice", method="GET")
    assert status == 200, "the data of the first start is gone"
