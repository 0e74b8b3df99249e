"""Placeholder: replaced by the module's owner."""

import click


@click.command("publish")
def publish_command() -> None:
    """Not written yet."""
    raise click.ClickException("not written yet")
