"""In a real browser (headless Chromium driven by Playwright): the MLflow link we print lands on the
runs table with the varied hyperparameters as columns, and JupyterLab renders 01 with our kernel.

Chromium is Debian's (``apt-get install chromium``, done by ``make test`` as root) and Playwright
comes from PyPI (``requirements-browser.txt``); Playwright's own browser download is never used.
Without either the tests skip and say what is missing. Every server runs in its own process group
on a free loopback port and is stopped as a group, whatever happens.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from lib.paths import PROJECT_ROOT

CHROMIUM = os.environ.get("HYPERTUNE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
START_TIMEOUT_S = 120
PAGE_TIMEOUT_MS = 90_000

pytestmark = pytest.mark.slow  # servers and a headless browser: not in `make test-fast`


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("no browser: Playwright is not installed (pip install -r requirements-browser.txt)")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no browser: Chromium not found at {CHROMIUM} (apt-get install chromium, as root)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"], timeout=60_000)
        try:
            yield chromium
        finally:
            chromium.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def _server(
    command_for: Callable[[int], list[str]], ready_path: str, log: Path, env: dict[str, str] | None = None
) -> Iterator[str]:
    """Run ``command_for(port)`` on a free port in its own process group until the block ends; yield its base URL
    once ``ready_path`` answers. A port that another process takes between the pick and the bind (a Ray node or
    PostgreSQL started beside the tests) is given up for another one, three times at most."""
    for _ in range(3):
        base = f"http://127.0.0.1:{_free_port()}"
        command = command_for(int(base.rsplit(":", 1)[1]))
        with log.open("w") as out:
            process = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=env, cwd=PROJECT_ROOT
            )
        try:
            if _ready(process, command, base + ready_path, log):
                yield base
                return
        finally:
            _stop(process)
    pytest.fail(f"{command[2]}: three free ports were taken by other processes before it could bind them")


def _ready(process: subprocess.Popen, command: list[str], url: str, log: Path) -> bool:
    """Whether our server answers ``url``: False when another program answers on its port or holds it."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if process.poll() is not None:
            text = log.read_text()
            if "address already in use" in text.lower():
                return False
            pytest.fail(f"{command[2]} exited with {process.returncode}:\n{text[-3000:]}")
        try:
            urllib.request.urlopen(url, timeout=2)
            return True
        except http.client.HTTPException:  # not HTTP: something else listens on the port we picked
            return False
        except OSError:
            if time.monotonic() > deadline:
                pytest.fail(f"{command[2]} did not answer {url} in {START_TIMEOUT_S} s:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)


def _stop(process: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=15)


def _cli(*args: str, env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "lib", *args], env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_printed_mlflow_link_shows_the_varied_hyperparameters(browser, mlflow_store):
    from lib import cli

    env = os.environ | {"PYTHONPATH": str(PROJECT_ROOT)}
    assert cli.main([  # in this process: the link the CLI prints (below, a real process) is what is tested
        "grid", "--experiment", "ui_grid", "--factor", "dropout_p=0,0.5", "--seeds", "0,1", "--set", "epochs=1",
        "--train-subset", "300", "--val-subset", "200", "--workers", "1",
    ]) == 0  # fmt: skip

    def mlflow_server(port: int) -> list[str]:
        command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", env["MLFLOW_TRACKING_URI"]]
        return command + ["--host", "127.0.0.1", "--port", str(port), "--workers", "1"]

    with _server(mlflow_server, "/health", mlflow_store / "mlflow_server.log", env) as base:
        printed = _cli("links", "--base", base, env=env)
        url = next(line.split(": ", 1)[1] for line in printed.splitlines() if line.startswith("ui_grid: "))
        assert url.startswith(f"{base}/#/experiments/") and "workflowType=machine_learning" in url
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.goto(url, timeout=PAGE_TIMEOUT_MS)
        headers = page.locator("[role=columnheader]")
        headers.filter(has_text="dropout_p").first.wait_for(timeout=PAGE_TIMEOUT_MS)
        texts = [t.strip() for t in headers.all_inner_texts()]
        page.close()
    assert "dropout_p" in texts and "val_accuracy" in texts and "seed" in texts, texts
    assert "optimizer" not in texts and "lr" not in texts, f"fixed hyperparameters shown as columns: {texts}"


def test_jupyterlab_renders_the_baseline_notebook_with_the_project_kernel(browser, tmp_path):
    token = "hypertune-test"
    env = os.environ | {
        "PYTHONPATH": str(PROJECT_ROOT),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
        "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
        "HOME": str(tmp_path),  # no workspace or settings of the user's own
    }

    def lab(port: int) -> list[str]:
        command = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}"]
        command += ["--ServerApp.port_retries=0"]  # a port taken: exit (and we pick another), not a port of its own
        command += [f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={PROJECT_ROOT / 'notebooks'}"]
        command += ["--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
        return command + (["--allow-root"] if os.geteuid() == 0 else [])

    with _server(lab, f"/api/status?token={token}", tmp_path / "lab.log", env) as base:
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.goto(f"{base}/lab/tree/01_baseline.ipynb?token={token}&reset", timeout=PAGE_TIMEOUT_MS)
        try:
            heading = page.locator(".jp-MarkdownOutput h1").filter(has_text="01 · Baseline")
            heading.first.wait_for(timeout=PAGE_TIMEOUT_MS)
            # the toolbar names the kernel; the status bar says it started and answers ("Idle")
            toolbar = page.locator(".jp-Toolbar-kernelName").filter(has_text="Python (hypertune)")
            toolbar.first.wait_for(timeout=PAGE_TIMEOUT_MS)
            idle = "() => document.body.innerText.includes('Python (hypertune) | Idle')"
            page.wait_for_function(idle, timeout=PAGE_TIMEOUT_MS)
            body = page.inner_text("body")
        finally:
            page.screenshot(path=str(tmp_path / "lab.png"))
            page.close()
    assert "How well does a plain CNN" in body
    assert "No Kernel" not in body and "Kernel not found" not in body
