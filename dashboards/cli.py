"""``campus dashboards``: build, check and publish the Grafana boards."""

from __future__ import annotations

import click

from dashboards.build import build_command
from dashboards.check import check_command
from dashboards.publish import publish_command


@click.group()
def dashboards() -> None:
    """Grafana boards as code: build the JSON, check it against InfluxDB, publish it."""


dashboards.add_command(build_command)
dashboards.add_command(check_command)
dashboards.add_command(publish_command)
