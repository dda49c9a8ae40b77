"""A real PostgreSQL for tests: Debian's server binaries in a temporary cluster on 127.0.0.1, on a
port the OS picks, run as an unprivileged user (PostgreSQL refuses to run as root, and CI runs as
root: `.ci/run` makes sure the user exists).

Without the server binaries the caller's test is skipped, except when the environment says
``CI=true``: there a missing PostgreSQL is a broken build, not a skip. Nothing here sleeps to
synchronise: start-up polls the server with a deadline.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

__all__ = ["Postgres", "pg_bin", "require_postgres", "running_postgres"]

ADMIN = "admin"
"""The cluster's superuser (trust authentication on loopback only: a throwaway cluster)."""
RUN_AS = ("postgres", "schoolgate-test")
"""Unprivileged users to run the server as when the tests run as root, in order of preference."""


def pg_bin() -> Path | None:
    """The newest installed PostgreSQL's bin folder (Debian: /usr/lib/postgresql/N/bin)."""
    override = os.environ.get("SCHOOLGATE_TEST_PG_BIN")
    if override:
        return Path(override)
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"),
                      key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0)
    return versions[-1].parent if versions else None


def require_postgres() -> Path:
    found = pg_bin()
    if found is None or not (found / "initdb").exists():
        if os.environ.get("CI") == "true":
            pytest.fail("PostgreSQL's server is not installed: apt-get install postgresql "
                        "(.ci/run does)")
        pytest.skip("PostgreSQL's server is not installed (apt-get install postgresql)")
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _runner() -> list[str]:
    """The command prefix that runs a program as an unprivileged user, or [] when we are one."""
    if os.geteuid() != 0:
        return []
    for name in RUN_AS:
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return ["runuser", "-u", name, "--"]
    pytest.fail(f"running as root and none of the users {RUN_AS} exists to run PostgreSQL as "
                "(.ci/run creates one)")


@dataclass
class Postgres:
    bin: Path
    folder: Path
    port: int
    runner: list[str]

    @property
    def data(self) -> Path:
        return self.folder / "data"

    def dsn(self, database: str = "postgres", user: str = ADMIN) -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/{database}"

    def _ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run([*self.runner, str(self.bin / "pg_ctl"), "-D", str(self.data),
                               *args], capture_output=True, text=True, check=check, timeout=60)

    def start(self) -> None:
        options = (f"-h 127.0.0.1 -p {self.port} -k {self.folder} "
                   "-c fsync=on -c max_connections=200")
        self._ctl("-l", str(self.folder / "server.log"), "-o", options, "-w", "-t", "60",
                  "start")
        self.wait_ready()

    def stop(self, mode: str = "fast") -> None:
        self._ctl("-m", mode, "-w", "stop", check=False)

    def restart(self) -> None:
        self.stop()
        self.start()

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while True:
            ready = subprocess.run([str(self.bin / "pg_isready"), "-h", "127.0.0.1", "-p",
                                    str(self.port), "-U", ADMIN], capture_output=True,
                                   check=False)
            if ready.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL on port {self.port} is not ready:\n"
                                   f"{self.log_tail()}")
            time.sleep(0.05)

    def log_tail(self, lines: int = 30) -> str:
        log = self.folder / "server.log"
        return "\n".join(log.read_text().splitlines()[-lines:]) if log.exists() else ""


@contextlib.contextmanager
def running_postgres() -> Iterator[Postgres]:
    """A new cluster, started; stopped and removed afterwards."""
    binaries = require_postgres()
    runner = _runner()
    folder = Path(tempfile.mkdtemp(prefix="schoolgate-pg-"))
    try:
        if runner:
            user = runner[2]
            shutil.chown(folder, user)
            folder.chmod(0o700)
        init = subprocess.run(
            [*runner, str(binaries / "initdb"), "-D", str(folder / "data"), "-U", ADMIN,
             "--auth=trust", "-E", "UTF8", "--locale=C"],
            capture_output=True, text=True, check=False, timeout=120)
        if init.returncode != 0:
            raise RuntimeError(f"initdb failed:\n{init.stdout}\n{init.stderr}")
        server = Postgres(binaries, folder, _free_port(), runner)
        server.start()
        try:
            yield server
        finally:
            server.stop("immediate")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
