"""In a real browser (headless Chromium driven by Playwright): the MLflow link we print lands on the
runs table with the varied hyperparameters as columns, and JupyterLab renders 01 with our kernel.

Chromium is Debian's (``apt-get install chromium``, done by ``make test`` as root) and Playwright
comes from PyPI (``requirements-browser.txt``); Playwright's own browser download is never used.
Without either the tests skip and say what is missing. Every server runs in its own process group
on a free loopback port and is stopped as a group, whatever happens.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
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
def _server(command: list[str], ready_url: str, log: Path, env: dict[str, str] | None = None) -> Iterator[None]:
    """Run ``command`` in its own process group until the block ends; wait until ``ready_url`` answers."""
    with log.open("w") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=env, cwd=PROJECT_ROOT
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if process.poll() is not None:
                pytest.fail(f"{command[2]} exited with {process.returncode}:\n{log.read_text()[-3000:]}")
            try:
                urllib.request.urlopen(ready_url, timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(
                        f"{command[2]} did not answer {ready_url} in {START_TIMEOUT_S} s:\n{log.read_text()[-3000:]}"
                    )
                time.sleep(0.5)
        yield
    finally:
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
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    printed = _cli("links", "--base", base, env=env)
    url = next(line.split(": ", 1)[1] for line in printed.splitlines() if line.startswith("ui_grid: "))
    assert url.startswith(f"{base}/#/experiments/") and "workflowType=machine_learning" in url
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", env["MLFLOW_TRACKING_URI"]]
    command += ["--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    with _server(command, f"{base}/health", mlflow_store / "mlflow_server.log", env):
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.goto(url, timeout=PAGE_TIMEOUT_MS)
        headers = page.locator("[role=columnheader]")
        headers.filter(has_text="dropout_p").first.wait_for(timeout=PAGE_TIMEOUT_MS)
        texts = [t.strip() for t in headers.all_inner_texts()]
        page.close()
    assert "dropout_p" in texts and "val_accuracy" in texts and "seed" in texts, texts
    assert "optimizer" not in texts and "lr" not in texts, f"fixed hyperparameters shown as columns: {texts}"


def test_jupyterlab_renders_the_baseline_notebook_with_the_project_kernel(browser, tmp_path):
    port, token = _free_port(), "hypertune-test"
    env = os.environ | {
        "PYTHONPATH": str(PROJECT_ROOT),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
        "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
        "HOME": str(tmp_path),  # no workspace or settings of the user's own
    }
    command = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}"]
    command += [f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={PROJECT_ROOT / 'notebooks'}"]
    command += ["--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    command += ["--allow-root"] if os.geteuid() == 0 else []
    base = f"http://127.0.0.1:{port}"
    with _server(command, f"{base}/api/status?token={token}", tmp_path / "lab.log", env):
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
