"""Placeholder: replaced by the module's owner."""

import click


@click.command("build")
def build_command() -> None:
    """Not written yet."""
    raise click.ClickException("not written yet")
