"""Placeholder: replaced by the module's owner."""

import click


@click.command("check")
def check_command() -> None:
    """Not written yet."""
    raise click.ClickException("not written yet")
