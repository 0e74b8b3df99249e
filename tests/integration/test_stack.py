"""`campus stack start|status|stop` manages Mosquitto and influxd in the background."""

from __future__ import annotations

import pytest

from campus.stack import tcp_open

from .procs import ROOT, fresh_stack_env


def _run(env, *args):
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", "campus.cli", "stack", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.integration
def test_stack_start_status_stop(tmp_path):
    env, mqtt_port, influx_port = fresh_stack_env(tmp_path)
    try:
        out = _run(env, "status")
        assert out.returncode == 0
        assert out.stdout.count("DOWN") == 2

        out = _run(env, "start")
        assert out.returncode == 0, out.stderr
        assert f"mosquitto  started on 127.0.0.1:{mqtt_port}" in out.stdout
        assert f"influxd    started on 127.0.0.1:{influx_port}" in out.stdout
        assert tcp_open("127.0.0.1", mqtt_port) and tcp_open("127.0.0.1", influx_port)

        out = _run(env, "start")  # idempotent: nothing started twice
        assert out.stdout.count("already answering") == 2

        out = _run(env, "status")
        assert "DOWN" not in out.stdout
        assert out.stdout.count("started by campus (pid") == 2
    finally:
        out = _run(env, "stop")
    assert out.stdout.count("stopped") == 2, out.stdout
    assert not tcp_open("127.0.0.1", mqtt_port) and not tcp_open("127.0.0.1", influx_port)
    out = _run(env, "stop")
    assert out.stdout.count("was not started by campus") == 2
