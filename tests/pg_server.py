"""A real PostgreSQL server for the tests: Debian's ``postgresql`` binaries, ``initdb`` in a temporary
directory, listening on 127.0.0.1 (a free port) and on a unix socket in that directory.

``initdb`` and ``postgres`` refuse to run as root, so as root (CI) the server runs as the package's
``postgres`` user (or ``nobody``) through ``runuser``; the data directory is made theirs. Trust
authentication on loopback only: nothing outside this machine can reach it, and it lives as long as
the test session. `PostgresServer.create_database` gives each test a database of its own.

`find_bin_dir` returns None where the binaries are not installed (``make setup`` installs them
through scripts/ensure-system-deps.sh); the fixtures then skip with that reason.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

__all__ = ["PostgresServer", "find_bin_dir", "unavailable_reason"]


def find_bin_dir() -> Path | None:
    """The newest ``/usr/lib/postgresql/*/bin`` that has initdb, pg_ctl and psql."""
    found = []
    for d in glob.glob("/usr/lib/postgresql/*/bin"):
        p = Path(d)
        if all((p / b).is_file() for b in ("initdb", "pg_ctl", "postgres", "psql")):
            try:
                found.append((int(p.parent.name), p))
            except ValueError:
                continue
    return max(found)[1] if found else None


def _run_user() -> str | None:
    """The user the server runs as: None (ourselves) unless we are root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    return None


def unavailable_reason() -> str | None:
    """Why no server can be started here, or None."""
    if find_bin_dir() is None:
        return (
            "PostgreSQL binaries not found under /usr/lib/postgresql/*/bin:"
            " install Debian's postgresql package (make setup does it where apt-get is allowed)"
        )
    if os.geteuid() == 0 and (_run_user() is None or shutil.which("runuser") is None):
        return "running as root without a 'postgres' or 'nobody' user and runuser to run the server as"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresServer:
    """One PostgreSQL cluster in a temporary directory (`start`, `stop`)."""

    def __init__(self) -> None:
        bin_dir = find_bin_dir()
        if bin_dir is None:
            raise RuntimeError(unavailable_reason() or "no PostgreSQL")
        self.bin = bin_dir
        self.user = _run_user()
        self.tmp = Path(tempfile.mkdtemp(prefix="owf-pg-"))
        self.data = self.tmp / "data"
        self.socket_dir = self.tmp / "sock"
        self.port = _free_port()
        self.superuser = self.user or pwd.getpwuid(os.geteuid()).pw_name
        self.url = f"postgresql://{self.superuser}@127.0.0.1:{self.port}/postgres"

    def _cmd(self, *args: str) -> list[str]:
        return ["runuser", "-u", self.user, "--", *args] if self.user else list(args)

    def start(self) -> PostgresServer:
        self.socket_dir.mkdir(parents=True)
        if self.user:
            info = pwd.getpwnam(self.user)
            os.chmod(self.tmp, 0o755)
            for p in (self.tmp, self.socket_dir):
                os.chown(p, info.pw_uid, info.pw_gid)
        subprocess.run(
            self._cmd(
                str(self.bin / "initdb"),
                "-D",
                str(self.data),
                "-U",
                self.superuser,
                "--auth=trust",
                "--encoding=UTF8",
                "--no-sync",
            ),
            check=True,
            capture_output=True,
            cwd=self.tmp,
        )
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories={self.socket_dir}"
            " -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        subprocess.run(
            self._cmd(
                str(self.bin / "pg_ctl"),
                "-D",
                str(self.data),
                "-o",
                options,
                "-l",
                str(self.tmp / "server.log"),
                "-w",
                "-t",
                "60",
                "start",
            ),
            check=True,
            capture_output=True,
            cwd=self.tmp,
        )
        deadline = time.monotonic() + 30
        while self.psql("SELECT 1", check=False).returncode != 0:
            if time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL did not start: {(self.tmp / 'server.log').read_text()[-2000:]}")
            time.sleep(0.1)
        return self

    def psql(self, sql: str, *, database: str = "postgres", check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run SQL through psql over the unix socket."""
        return subprocess.run(
            [
                str(self.bin / "psql"),
                "-h",
                str(self.socket_dir),
                "-p",
                str(self.port),
                "-U",
                self.superuser,
                "-d",
                database,
                "-v",
                "ON_ERROR_STOP=1",
                "-Atqc",
                sql,
            ],
            check=check,
            capture_output=True,
            text=True,
        )

    def create_database(self, name: str | None = None) -> str:
        """A new empty database; returns its URL (TCP on 127.0.0.1)."""
        name = name or f"owf_{uuid.uuid4().hex[:12]}"
        self.psql(f'CREATE DATABASE "{name}"')
        return f"postgresql://{self.superuser}@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        subprocess.run(
            self._cmd(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"),
            check=False,
            capture_output=True,
            cwd=self.tmp,
        )
        shutil.rmtree(self.tmp, ignore_errors=True)
