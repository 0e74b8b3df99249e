"""Broker passwords never reach the logs or the console."""

from __future__ import annotations

import pytest

from campus.cli import _redacted


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("mqtt://ingest:s3cr%40t@broker.campus:1883", "mqtt://ingest:***@broker.campus:1883"),
        ("mqtts://rules:p:w@10.0.0.5:8883", "mqtts://rules:***@10.0.0.5:8883"),
        ("mqtt://127.0.0.1:1883", "mqtt://127.0.0.1:1883"),
        ("mqtt://anonymous@127.0.0.1:1883", "mqtt://anonymous@127.0.0.1:1883"),
    ],
)
def test_the_password_is_hidden(url: str, shown: str) -> None:
    assert _redacted(url) == shown
