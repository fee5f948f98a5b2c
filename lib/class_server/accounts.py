"""Who may log in: the roster file, the kept passwords (a 0600 file) and the users on the MLflow server.

What this is not: the authentication itself (MLflow's basic-auth app checks logins and permissions);
this module only reads rosters, keeps passwords and creates or updates users through the admin API.
"""

from __future__ import annotations

import base64
import csv
import json
import os
import re
import secrets
import urllib.error
import urllib.request
from pathlib import Path

from lib.class_server.layout import ClassServerError, Layout

ADMIN = "admin"
USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
MIN_PASSWORD = 12  # MLflow's basic-auth refuses shorter passwords


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


def http_request(url: str, method: str = "GET", body: dict | None = None, auth: tuple[str, str] | None = None):
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
    return http_request(f"{url}/api/2.0/mlflow/{endpoint}", method, body, (ADMIN, admin_password))
