"""The InfluxDB client against a real influxd: compressed and plain writes
store the same points, and a batch with one unparsable line keeps the others
either way; and `health` says why a server is down."""

from __future__ import annotations

import uuid

import pytest

from campus.errors import PartialWriteError
from campus.influx import InfluxClient, rows
from campus.settings import Settings
from campus.stack import Influxd, free_port

GOOD = [
    f"power,building=b1,device=pm-1 power_kw={10 + i}.5,energy_kwh={i} {1_000 + i}"
    for i in range(50)
]
BAD = "power,building=b1,device=pm-1 power_kw=12..5 2000"  # influxd cannot parse it


@pytest.mark.parametrize("gzip_writes", [True, False], ids=["gzip", "plain"])
def test_writes_store_every_good_line(influxd: Influxd, gzip_writes: bool) -> None:
    with InfluxClient(influxd.url, f"c{uuid.uuid4().hex[:8]}", gzip_writes=gzip_writes) as client:
        client.create_database()
        with pytest.raises(PartialWriteError) as refused:
            client.write([*GOOD[:25], BAD, *GOOD[25:]])
        assert [line for line, _ in refused.value.bad] == [BAD]
        assert "invalid number" in refused.value.bad[0][1]
        got = rows(client.query('SELECT count("power_kw"), sum("energy_kwh") FROM "power"'))
        assert (got[0]["count"], got[0]["sum"]) == (50, sum(range(50)))


def test_compression_follows_the_server_unless_set() -> None:
    def gz(url: str, setting: bool | None = None) -> bool:
        settings = Settings(influx_url=url, influx_gzip=setting)
        with InfluxClient.from_settings(settings) as client:
            return client.gzip_writes

    # on this machine gzip only costs both sides CPU; across a network it saves bytes
    assert not gz("http://127.0.0.1:8086")
    assert not gz("http://localhost:8086")
    assert not gz("http://[::1]:8086")
    assert gz("http://10.1.2.3:8086")
    assert gz("https://influx.campus.example")
    assert gz("http://127.0.0.1:8086", True)
    assert not gz("https://influx.campus.example", False)


def test_health_says_why_the_server_is_down(influxd: Influxd) -> None:
    with InfluxClient(influxd.url, "health") as client:
        assert client.health() == "ok" and client.ping()
    with InfluxClient(f"http://127.0.0.1:{free_port()}", "health") as client:
        assert client.health() == "down: ConnectError" and not client.ping()
