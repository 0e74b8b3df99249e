"""``campus db``: InfluxDB database, retention, rollups and users (placeholder)."""

import click


@click.group()
def db() -> None:
    """InfluxDB: database, retention policies, rollups and users."""
