"""Local services: Debian's ``mosquitto`` and ``influxd`` with data under ``var/``.

Used by ``campus up`` / ``campus stack`` and by the integration tests, which start
their own servers on free ports as direct children. A service is only started
when nothing answers at the configured address, so a campus's own broker or
InfluxDB is always preferred.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from campus.errors import StackError

LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_free(port: int) -> bool:
    """True when 127.0.0.1:port can be bound now."""
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def tcp_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when something accepts TCP connections at host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _which(name: str) -> str:
    for candidate in (shutil.which(name), f"/usr/sbin/{name}", f"/usr/bin/{name}"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise StackError(
        f"{name} is not installed: run `make setup` (apt-get install mosquitto "
        f"influxdb) or point the CAMPUS_* URLs at running servers"
    )


@dataclass
class Managed:
    """A server process we started, with where it keeps its data and log."""

    name: str
    root: Path
    host: str
    port: int
    proc: subprocess.Popen[bytes] | None = None

    @property
    def pid_file(self) -> Path:
        """Where a detached server's pid is kept."""
        return self.root / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        """The server's log."""
        return self.root / f"{self.name}.log"

    def command(self) -> list[str]:  # pragma: no cover - overridden
        """The command line that runs the server."""
        raise NotImplementedError

    def prepare(self) -> None:  # pragma: no cover - overridden
        """Write the config and folders."""
        raise NotImplementedError

    def ready(self) -> bool:
        """True when the server answers."""
        return tcp_open(self.host, self.port)

    def start(self, *, detach: bool = False, timeout: float = 30.0) -> None:
        """Start the server and wait until it answers.

        With ``detach`` it survives this process (pid kept in :attr:`pid_file`);
        otherwise it is our child, in its own session so Ctrl-C reaches us first.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        self.prepare()
        log = self.log_file.open("ab")
        self.proc = subprocess.Popen(
            self.command(),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        if detach:
            self.pid_file.write_text(str(self.proc.pid))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = self.log_file.read_text(errors="replace")[-1500:]
                raise StackError(f"{self.name} exited with {self.proc.returncode}:\n{tail}")
            if self.ready():
                return
            time.sleep(0.1)
        self.stop()
        raise StackError(
            f"{self.name} did not answer on {self.host}:{self.port} "
            f"within {timeout:.0f} s (log: {self.log_file})"
        )

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the server cleanly (SIGTERM, then SIGKILL after ``timeout``)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to the running server (fault tests)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)

    def detached_pid(self) -> int | None:
        """The pid of a detached server started earlier, if it still runs."""
        try:
            pid = int(self.pid_file.read_text().strip())
            os.kill(pid, 0)
        except (OSError, ValueError):
            return None
        return pid

    def stop_detached(self, timeout: float = 15.0) -> bool:
        """Stop a server started with ``detach``; True if one was running."""
        pid = self.detached_pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except OSError:
                break
            time.sleep(0.1)
        else:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        self.pid_file.unlink(missing_ok=True)
        return True


class Mosquitto(Managed):
    """Debian's Mosquitto with persistence under ``root/data``, or started from a
    given config file (``campus broker config``) with ``config``."""

    #: Saving and queue sizes shared with ``campus broker config``.
    TUNING = (
        "autosave_interval 10\n"
        "persistent_client_expiration 14d\n"
        "max_queued_messages 1000000\n"
        "max_inflight_messages 1000\n"
        # no subscriber ever has to hold a larger message whole in memory
        "message_size_limit 8388608\n"
    )

    def __init__(
        self,
        root: Path,
        port: int,
        host: str = "127.0.0.1",
        extra_config: str = "",
        config: Path | None = None,
    ) -> None:
        super().__init__("mosquitto", root, host, port)
        self.extra_config = extra_config
        self.source_config = config

    @property
    def config_file(self) -> Path:
        """The mosquitto.conf the broker runs with."""
        return self.root / "mosquitto.conf"

    def prepare(self) -> None:
        """Write mosquitto.conf; the data folder must belong to the broker's user."""
        if self.source_config is not None:
            self._prepare_from(self.source_config)
            return
        data = self.root / "data"
        data.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(
            f"listener {self.port} {self.host}\n"
            "allow_anonymous true\n"
            "persistence true\n"
            f"persistence_location {data.resolve()}/\n"
            + self.TUNING
            + self._user_line(data)
            + "log_dest stderr\n"
            "log_type error\nlog_type warning\nlog_type notice\n" + self.extra_config
        )

    def _prepare_from(self, source: Path) -> None:
        """Run ``source`` as it is, with a ``user`` line so the broker may write the
        persistence folder it names (made here when missing)."""
        text = source.read_text()
        data: Path | None = None
        for line in text.splitlines():
            key, _, value = line.strip().partition(" ")
            if key == "persistence_location" and value.strip():
                data = Path(value.strip())
        user = ""
        if data is not None:
            data.mkdir(parents=True, exist_ok=True)
            user = self._user_line(data)
        self.config_file.write_text(user + text + self.extra_config)

    def _user_line(self, data: Path) -> str:
        """The ``user`` line that lets the broker write its persistence folder.

        Started as root, mosquitto drops to the `mosquitto` user; a folder that
        user cannot write makes every save fail silently (RELIABILITY.md). We
        hand the folder to that user when it can reach it, and otherwise (a
        checkout under /root, a 0700 temporary folder) keep the broker as root.
        """
        if os.geteuid() != 0:
            return ""
        try:
            user = pwd.getpwnam("mosquitto")
        except KeyError:
            return "user root\n"
        if not _reachable(data.resolve().parent, user.pw_uid, user.pw_gid):
            return "user root\n"
        os.chown(data, user.pw_uid, user.pw_gid)
        for f in data.iterdir():
            os.chown(f, user.pw_uid, user.pw_gid)
        return ""

    def command(self) -> list[str]:
        """mosquitto -c <config>."""
        return [_which("mosquitto"), "-c", str(self.config_file)]

    @property
    def url(self) -> str:
        """The broker's mqtt:// URL."""
        return f"mqtt://{self.host}:{self.port}"


def _reachable(folder: Path, uid: int, gid: int) -> bool:
    """True when a user (uid, gid) may traverse every folder down to ``folder``."""
    for p in (folder, *folder.parents):
        st = p.stat()
        if st.st_uid == uid:
            bit = stat.S_IXUSR
        elif st.st_gid == gid:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not st.st_mode & bit:
            return False
    return True


class Influxd(Managed):
    """Debian's InfluxDB 1.x with meta, data and WAL under ``root``.

    With ``auth`` every request needs credentials (``auth-enabled``); the first
    admin is then created without any (``campus db users``)."""

    def __init__(
        self,
        root: Path,
        port: int,
        host: str = "127.0.0.1",
        rpc_port: int | None = None,
        *,
        auth: bool = False,
    ) -> None:
        super().__init__("influxd", root, host, port)
        self.rpc_port = rpc_port or free_port()
        self.auth = auth

    @property
    def config_file(self) -> Path:
        """The generated influxdb.conf."""
        return self.root / "influxdb.conf"

    def prepare(self) -> None:
        """Write influxdb.conf with every path under ``root``."""
        r = self.root.resolve()
        self.config_file.write_text(
            "reporting-disabled = true\n"
            f'bind-address = "127.0.0.1:{self.rpc_port}"\n'
            f'[meta]\n  dir = "{r}/meta"\n'
            f'[data]\n  dir = "{r}/data"\n  wal-dir = "{r}/wal"\n'
            "  query-log-enabled = false\n"
            f'[http]\n  enabled = true\n  bind-address = "{self.host}:{self.port}"\n'
            "  log-enabled = false\n"
            + ("  auth-enabled = true\n" if self.auth else "")
            + "[monitor]\n  store-enabled = false\n"
            "[subscriber]\n  enabled = false\n"
            '[logging]\n  level = "warn"\n'
        )

    def command(self) -> list[str]:
        """influxd -config <config>."""
        return [_which("influxd"), "-config", str(self.config_file)]

    def ready(self) -> bool:
        """True when ``/ping`` answers 204."""
        try:
            return httpx.get(f"{self.url}/ping", timeout=1.0).status_code == 204
        except httpx.HTTPError:
            return False

    @property
    def url(self) -> str:
        """The HTTP base URL."""
        return f"http://{self.host}:{self.port}"


def local_target(url: str, default_port: int) -> tuple[str, int, bool]:
    """Host, port and whether we could start a server for it on this machine."""
    p = urlsplit(url)
    host = p.hostname or "127.0.0.1"
    return host, p.port or default_port, host in LOCAL_HOSTS


def stack_services(mqtt_url: str, influx_url: str, var_dir: Path) -> list[Managed]:
    """The services ``campus up`` may start for these URLs, with data in ``var_dir``."""
    services: list[Managed] = []
    _host, port, local = local_target(mqtt_url, 1883)
    if local:
        services.append(Mosquitto(var_dir / "mosquitto", port, "127.0.0.1"))
    _host, port, local = local_target(influx_url, 8086)
    if local:
        # influxd also listens for backup RPC, by default 2 ports above HTTP (8088)
        rpc = port + 2 if port + 2 < 65536 and port_free(port + 2) else free_port()
        services.append(Influxd(var_dir / "influxdb", port, "127.0.0.1", rpc_port=rpc))
    return services
