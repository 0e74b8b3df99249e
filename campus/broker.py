"""``campus broker``: Mosquitto password, ACL and TLS configuration (placeholder)."""

import click


@click.group()
def broker() -> None:
    """Mosquitto: accounts, topic ACLs and TLS from the registry."""
