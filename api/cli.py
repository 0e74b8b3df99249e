"""``campus api``, ``campus users`` and ``campus tokens``."""

from __future__ import annotations

import click

from tickets.cli import StoreGroup
from tickets.enums import Role


def _store():  # type: ignore[no-untyped-def]
    from campus.settings import Settings
    from tickets.cli import open_tickets

    return open_tickets(Settings()).store  # people of oncall.yaml loaded: accounts name them


@click.command("api")
@click.option("--host", default=None, help="Address to listen on (default: CAMPUS_API_HOST).")
@click.option(
    "--port", type=click.IntRange(1, 65535), default=None, help="Default: CAMPUS_API_PORT."
)
def api(host: str | None, port: int | None) -> None:
    """Serve the HTTP API (OpenAPI at /docs) until stopped."""
    from api.app import run
    from campus.settings import Settings

    s = Settings()
    run(s, host or s.api_host, port or s.api_port)


@click.group(cls=StoreGroup)
def users() -> None:
    """API accounts: viewer, technician, engineer, admin (docs/api.md)."""


@users.command("add")
@click.argument("user_id")
@click.option(
    "--role",
    type=click.Choice([r.value for r in Role]),
    required=True,
    help="viewer reads; technician works their own and their trade's tickets; "
    "engineer and admin work every ticket.",
)
@click.option("--name", default="", help="Shown in ticket histories (default: the id).")
@click.option("--technician", default=None, help="A technician's id in oncall.yaml.")
def users_add(user_id: str, role: str, name: str, technician: str | None) -> None:
    """Create an account."""
    from api.accounts import AccountError, add_user

    try:
        add_user(_store(), user_id, name, Role(role), technician)
    except AccountError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"user {user_id} ({role}) added; make a token with: campus tokens create {user_id}")


@users.command("list")
def users_list() -> None:
    """Every account."""
    from api.accounts import list_users

    for u in list_users(_store()):
        extra = f" technician={u.technician_id}" if u.technician_id else ""
        click.echo(f"{u.id:<20} {u.role:<11}{' disabled' if u.disabled else ''}{extra}  {u.name}")


@click.group(cls=StoreGroup)
def tokens() -> None:
    """API bearer tokens (the store keeps only their digests)."""


@tokens.command("create")
@click.argument("user_id")
@click.option("--label", default="", help="What the token is for.")
@click.option("--days", type=click.IntRange(1, 3650), default=None, help="Valid this long.")
def tokens_create(user_id: str, label: str, days: int | None) -> None:
    """Make a token for USER_ID and print it (it is not shown again)."""
    from datetime import timedelta

    from api.accounts import AccountError, create_token

    try:
        token = create_token(_store(), user_id, label, timedelta(days=days) if days else None)
    except AccountError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(token)


@tokens.command("revoke")
@click.argument("user_id")
def tokens_revoke(user_id: str) -> None:
    """Revoke every token of USER_ID."""
    from api.accounts import revoke_tokens

    click.echo(f"{revoke_tokens(_store(), user_id)} token(s) of {user_id} revoked")
