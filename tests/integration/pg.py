"""The PostgreSQL the ticket tests use: ``CAMPUS_TEST_PG_URL``, else the server
on 127.0.0.1:5432 (trust auth, database ``test``, as on the dev machine and
CI), else a private cluster started from Debian's ``postgresql`` package in a
temporary folder (as the ``postgres`` user when running as root)."""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from sqlalchemy import create_engine, text

from campus.stack import free_port

DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def answers(url: str) -> bool:
    """Whether ``url`` accepts a connection."""
    engine = create_engine(url, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as c:
            c.execute(text("SELECT 1"))
        return True
    except Exception:
        return False
    finally:
        engine.dispose()


class PrivateCluster:
    """initdb + pg_ctl in a temporary folder, trust auth on 127.0.0.1."""

    def __init__(self) -> None:
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        if not found:
            raise RuntimeError(
                "no PostgreSQL answers on 127.0.0.1:5432 and Debian's postgresql package "
                "is not installed (make test installs it)"
            )
        self.bin = Path(found[-1]).parent
        self.root = Path(tempfile.mkdtemp(prefix="campus-pg-"))
        self.port = free_port()
        self.as_user: list[str] = []
        if os.geteuid() == 0:  # initdb refuses root
            shutil.chown(self.root, "postgres", "postgres")
            self.as_user = ["runuser", "-u", "postgres", "--"]
        self.data = self.root / "data"

    def _run(self, *args: str) -> None:
        subprocess.run([*self.as_user, *args], check=True, capture_output=True, timeout=120)

    def start(self) -> str:
        """initdb, start, and create the ``test`` database; its URL."""
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres")
        self._pg_ctl_start()
        url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"
        engine = create_engine(url, isolation_level="AUTOCOMMIT")
        with engine.connect() as c:
            c.execute(text("CREATE DATABASE test"))
        engine.dispose()
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/test"

    def kill(self) -> None:
        """SIGKILL the postmaster, as a crash would (its backends follow it)."""
        pid = int((self.data / "postmaster.pid").read_text().split()[0])
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.05)

    def restart(self) -> None:
        """Start again after :meth:`kill` (PostgreSQL replays its WAL first)."""
        (self.data / "postmaster.pid").unlink(missing_ok=True)
        self._pg_ctl_start()

    def _pg_ctl_start(self) -> None:
        log = str(self.root / "postgresql.log")  # the server must not hold our pipes open
        opts = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        pg_ctl = str(self.bin / "pg_ctl")
        self._run(pg_ctl, "-D", str(self.data), "-l", log, "-o", opts, "-w", "start")

    def stop(self) -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop")
        shutil.rmtree(self.root, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
