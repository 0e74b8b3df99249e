"""Real servers for integration tests: influxd and Mosquitto on free ports.

Each is Debian's own binary, started as a direct child of the test process with
its data in a temporary folder, so a test may stop, kill or restart it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from campus.influx import InfluxClient
from campus.settings import Settings
from campus.stack import Influxd, Mosquitto, free_port

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def influxd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Influxd]:
    """A real influxd for the whole session."""
    server = Influxd(tmp_path_factory.mktemp("influxd"), free_port())
    server.start(timeout=60)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    """A real Mosquitto of our own (persistence on, queues sized for bursts)."""
    server = Mosquitto(tmp_path_factory.mktemp("mosquitto"), free_port())
    server.start(timeout=30)
    yield server
    server.stop()


@pytest.fixture
def settings(influxd: Influxd, broker: Mosquitto, tmp_path: Path) -> Settings:
    """Settings pointing at the test servers, a fresh database and dead-letter file."""
    name = f"t{uuid.uuid4().hex[:10]}"
    return Settings(
        mqtt_url=broker.url,
        influx_url=influxd.url,
        influx_db=name,
        var_dir=tmp_path / "var",
        config_dir=ROOT / "config",
        ingest_client_id=f"ingest-{name}",
        ingest_group=name,
        ingest_flush_interval_s=0.2,
        ingest_progress_interval_s=1,
        ingest_metrics_port=free_port(),
    )


@pytest.fixture
def influx(settings: Settings) -> Iterator[InfluxClient]:
    """A client on the test database."""
    client = InfluxClient.from_settings(settings)
    yield client
    client.close()


@pytest.fixture
def own_influxd(tmp_path: Path) -> Iterator[Influxd]:
    """An influxd for one test, which may stop, hang or kill it."""
    server = Influxd(tmp_path / "influxd", free_port())
    server.start(timeout=60)
    yield server
    server.kill(18)  # SIGCONT, in case the test left it stopped
    server.stop()


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """A Mosquitto for one test, which may restart or kill it."""
    server = Mosquitto(tmp_path / "mosquitto", free_port())
    server.start(timeout=30)
    yield server
    server.stop()


@pytest.fixture
def fault_settings(own_influxd: Influxd, own_broker: Mosquitto, tmp_path: Path) -> Settings:
    """Settings on the per-test servers, with short timeouts so faults show quickly."""
    return Settings(
        mqtt_url=own_broker.url,
        influx_url=own_influxd.url,
        influx_db="faults",
        var_dir=tmp_path / "var",
        config_dir=ROOT / "config",
        ingest_client_id="ingest-faults",
        ingest_group="faults",
        ingest_flush_interval_s=0.2,
        ingest_progress_interval_s=2,
        ingest_write_timeout_s=2.0,
        ingest_metrics_port=free_port(),
    )


@pytest.fixture
def fault_influx(fault_settings: Settings) -> Iterator[InfluxClient]:
    """A client on the fault tests' database."""
    client = InfluxClient.from_settings(fault_settings)
    yield client
    client.close()
