"""Real servers, browsers and optional packages for tests: a throwaway PostgreSQL, Debian's
chromium, and the packages of the `test` extra.

Under CI=true, a missing server, browser or package fails the test (`.ci/run` installs them);
elsewhere it skips, so a laptop without PostgreSQL can still run the rest. Tests never call
`pytest.skip` or `pytest.importorskip` themselves: they go through `unavailable` and `require`.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


def unavailable(message: str):
    if IN_CI:
        pytest.fail(f"{message} (CI=true: .ci/run must install it)")
    pytest.skip(message)


def require(module: str):
    """Import an optional package a test is about (the `test` extra installs them all): a missing
    one fails under CI=true, as a missing server does, and skips elsewhere."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as error:
        unavailable(f"{module} is not installed ({error}); pip install -e '.[test]'")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pg_bin(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(p.split("/")[4]))
    return found[-1] if found else shutil.which(name)


class Postgres:
    """A PostgreSQL server of its own in a temporary folder, on a free loopback port. As root it
    runs as the `postgres` user (initdb refuses root)."""

    def __init__(self) -> None:
        initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
        if not initdb or not pg_ctl:
            unavailable("PostgreSQL server binaries (initdb, pg_ctl) not found")
        self.pg_ctl = pg_ctl
        self.root = Path(tempfile.mkdtemp(prefix="curate-pg-"))
        self.user = None
        if os.geteuid() == 0:
            import pwd

            try:
                entry = pwd.getpwnam("postgres")
            except KeyError:
                unavailable("running as root and there is no postgres user to run the server as")
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
            self.user = "postgres"
        self.port = free_port()
        self.data = self.root / "db"
        self._run([initdb, "-D", str(self.data), "-A", "trust", "-U", "curate", "--no-sync", "-E", "UTF8"])
        self._run(
            [
                pg_ctl,
                "-D",
                str(self.data),
                "-l",
                str(self.root / "log"),
                "-w",
                "-t",
                "60",
                "-o",
                f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -F",
                "start",
            ]
        )
        self.url = f"postgresql://curate@127.0.0.1:{self.port}/postgres"

    def _run(self, cmd: list[str]) -> None:
        done = subprocess.run(cmd, user=self.user, capture_output=True, text=True, cwd=self.root, check=False)
        if done.returncode != 0:
            log = (self.root / "log").read_text() if (self.root / "log").exists() else ""
            raise RuntimeError(f"{cmd[0]} failed: {done.stderr or done.stdout}\n{log}")

    def database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            conn.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql://curate@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        subprocess.run(
            [self.pg_ctl, "-D", str(self.data), "-m", "immediate", "stop"],
            user=self.user,
            capture_output=True,
            cwd=self.root,
            check=False,
        )
        for _ in range(50):
            if not (self.data / "postmaster.pid").exists():
                break
            time.sleep(0.1)
        shutil.rmtree(self.root, ignore_errors=True)


def chromium_path() -> str:
    for candidate in ("/usr/bin/chromium", "/usr/bin/chromium-browser", shutil.which("chromium") or ""):
        if candidate and os.path.exists(candidate):
            return candidate
    unavailable("Debian's chromium is not installed")
    raise AssertionError  # unreachable
