"""``campus dashboards publish``: push the generated boards to Grafana over its HTTP API.

For campuses whose Grafana is not provisioned from ``dashboards/generated/``
(a hosted Grafana, or one run by another team). Through ``grafana-client`` it
makes sure the folder (uid ``campus``, title ``Campus``) exists, then saves
every board into it with ``overwrite`` and a version message.

Publishing is idempotent: a board whose content equals what Grafana already
holds (compared without Grafana's own ``id`` and ``version``) is left alone, so
running it again creates no new dashboard versions. An error on one board is
reported on its line and the others are still published; the exit status is
then 1. Errors that concern every board (Grafana unreachable, a refused token,
a folder that cannot be created) stop the run with one line.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import click

from campus import __version__

if TYPE_CHECKING:
    from grafana_client import GrafanaApi

GENERATED_DIR = Path(__file__).resolve().parent / "generated"
FOLDER_UID = "campus"
FOLDER_TITLE = "Campus"
TIMEOUT_S = 10.0
# Keys Grafana assigns on every save: never part of what we compare or send.
SERVER_KEYS = ("id", "version")
SUMMARY_ORDER = ("created", "updated", "would be created", "would be updated", "unchanged")
# What the 412 statuses of POST /api/dashboards/db mean, in the user's words.
PRECONDITIONS = {
    "version-mismatch": "the board was changed in Grafana meanwhile",
    "name-exists": "another board in the folder has the same title",
    "plugin-dashboard": "a plugin owns a board with this uid",
}
# Grafana refuses API saves of boards it provisions from files.
PROVISIONED = (
    "this Grafana provisions the board from files: copy dashboards/generated/ "
    "to its provisioning folder instead of publishing"
)


class PublishError(click.ClickException):
    """A failure that concerns every board: the run stops with this one line."""


@dataclass(frozen=True)
class Board:
    """One board file: its uid and dashboard model, or why it cannot be read."""

    name: str
    dashboard: dict[str, Any] | None
    problem: str = ""


@dataclass(frozen=True)
class Outcome:
    """What happened to one board: created, updated, unchanged or failed."""

    name: str
    action: str
    detail: str = ""


# ---------------------------------------------------------------- local boards


def read_board(path: Path) -> Board:
    """Read one ``<uid>.json`` file; a broken file becomes a Board with a problem."""
    name = path.stem
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        return Board(name, None, f"{path}: not UTF-8 text ({exc.reason})")
    except json.JSONDecodeError as exc:
        return Board(name, None, f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})")
    if not isinstance(doc, dict):
        return Board(name, None, f"{path}: not a dashboard model (a JSON object)")
    if doc.get("uid") != name:
        return Board(name, None, f"{path}: uid {doc.get('uid')!r} differs from the file name")
    return Board(name, doc)


def read_boards(directory: Path) -> list[Board]:
    """Every ``*.json`` board in ``directory``, sorted by uid."""
    if not directory.is_dir():
        raise PublishError(f"{directory}: no such directory (run `campus dashboards build`)")
    boards = [read_board(p) for p in sorted(directory.glob("*.json"))]
    if not boards:
        raise PublishError(f"{directory}: no boards (run `campus dashboards build`)")
    return boards


def comparable(dashboard: dict[str, Any]) -> dict[str, Any]:
    """The dashboard without the keys Grafana sets on save (``id``, ``version``)."""
    return {k: v for k, v in dashboard.items() if k not in SERVER_KEYS}


def content_hash(boards: list[Board]) -> str:
    """Short sha256 of the boards' content, to name what a version message published."""
    digest = hashlib.sha256()
    for board in boards:
        if board.dashboard is not None:
            digest.update(json.dumps(comparable(board.dashboard), sort_keys=True).encode())
    return digest.hexdigest()[:12]


def default_message(boards: list[Board]) -> str:
    """Version message naming the package version, board count and content hash."""
    good = sum(b.dashboard is not None for b in boards)
    return f"campus dashboards publish {__version__}, {good} boards, content {content_hash(boards)}"


# ---------------------------------------------------------------- Grafana


def connect(url: str, token: str | None) -> GrafanaApi:
    """A Grafana client for ``url``, authenticated by token or by ``user:pass@`` in the URL.

    The URL may carry a path prefix (Grafana behind a reverse proxy at ``/grafana``).
    """
    from grafana_client import GrafanaApi

    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise click.BadParameter(f"{url!r} is not an http(s) URL", param_hint="--url")
    credential: str | tuple[str, str]
    if token:
        credential = token
    elif parts.username and parts.password:
        credential = (parts.username, parts.password)
    else:
        raise click.UsageError(
            "no credentials: pass --token (or set GRAFANA_TOKEN), or put user:password@ in the URL"
        )
    prefix = parts.path.strip("/")
    try:
        port = parts.port
    except ValueError as exc:
        raise click.BadParameter(f"{url!r}: {exc}", param_hint="--url") from None
    return GrafanaApi(
        credential,
        host=parts.hostname,
        port=port,
        url_path_prefix=f"{prefix}/" if prefix else "",
        protocol=parts.scheme,
        timeout=TIMEOUT_S,
    )


def public_url(url: str) -> str:
    """The URL without a password, fit to print."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return parts._replace(netloc=netloc).geturl()


def status_of(exc: Exception) -> int:
    """The HTTP status of a grafana-client error, 0 when no answer came."""
    return int(getattr(exc, "status_code", 0) or 0)


def grafana_message(exc: Exception) -> str:
    """Grafana's own one-line explanation from an error answer."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        text = str(response.get("message") or response)
    else:
        text = str(response or exc)
    return " ".join(text.split())[:300]


def unreachable_reason(exc: Exception) -> str:
    """The root cause of a failed connection, without the HTTP library's wrapping."""
    text = " ".join(str(exc).split())
    if "timed out" in text.lower() or "timeout" in type(exc).__name__.lower():
        return f"no answer within {TIMEOUT_S:g} s"
    resolve = re.search(r"Failed to resolve '([^']+)'", text)
    if resolve:
        return f"host name {resolve.group(1)} not found"
    found = re.search(r"\[Errno -?\d+\] ([^'\")\]]+)", text) or re.search(r">: ([^'\"]+)", text)
    return found.group(1).strip() if found else text[:200]


def explain(exc: Exception, url: str) -> str:
    """One line saying what went wrong and what to do about it."""
    status = status_of(exc)
    where = public_url(url)
    if status == 0:
        return f"cannot reach Grafana at {where}: {unreachable_reason(exc)}"
    if status == 401:
        return (
            f"Grafana at {where} refused the credentials (401 Unauthorized): check --token "
            "or GRAFANA_TOKEN (a service-account token)"
        )
    if status == 403:
        return (
            f"Grafana at {where} forbids this (403: {grafana_message(exc)}): "
            "the service account needs the Editor role"
        )
    if status == 412:
        response = getattr(exc, "response", None)
        kind = response.get("status", "") if isinstance(response, dict) else ""
        why = PRECONDITIONS.get(kind, "precondition failed")
        label = f"412 {kind}" if kind else "412 Precondition Failed"
        return f"Grafana refused the save ({label}: {why}): {grafana_message(exc)}"
    return f"Grafana answered {status}: {grafana_message(exc)}"


def grafana_errors() -> tuple[type[Exception], ...]:
    """The errors a Grafana call raises: an error answer, or no answer at all."""
    from grafana_client.client import GrafanaException
    from niquests.exceptions import RequestException

    return (GrafanaException, RequestException)


def ensure_folder(api: GrafanaApi, *, uid: str, title: str, dry_run: bool) -> str:
    """Make sure the folder exists with this title; returns what was (or would be) done."""
    from grafana_client.client import GrafanaClientError

    try:
        folder = api.folder.get_folder(uid)
    except GrafanaClientError as exc:
        if status_of(exc) != 404:
            raise
        folder = None
    if folder is None:
        if not dry_run:
            try:
                api.folder.create_folder(title, uid=uid)
            except GrafanaClientError as exc:
                if status_of(exc) in (400, 409, 412):
                    raise PublishError(
                        f"cannot create folder {title!r} (uid {uid}): {grafana_message(exc)} "
                        f"({status_of(exc)}); another folder or board already uses that uid "
                        "or title: rename it in Grafana or pass --folder-uid"
                    ) from None
                raise
        return "created"
    if folder.get("title") == title:
        return "unchanged"
    if not dry_run:
        api.folder.update_folder(uid, title=title, version=folder.get("version"), overwrite=True)
    return f"renamed from {folder.get('title')!r}"


def stored_board(api: GrafanaApi, uid: str) -> dict[str, Any] | None:
    """Grafana's copy of the board (``{"dashboard", "meta"}``), or None if it has none."""
    from grafana_client.client import GrafanaClientError

    try:
        found: dict[str, Any] = api.dashboard.get_dashboard(uid)
    except GrafanaClientError as exc:
        if status_of(exc) == 404:
            return None
        raise
    return found


def publish_board(
    api: GrafanaApi, dashboard: dict[str, Any], *, folder_uid: str, message: str, dry_run: bool
) -> Outcome:
    """Save one board unless Grafana already holds the same content in the same folder."""
    uid = dashboard["uid"]
    stored = stored_board(api, uid)
    if stored is not None:
        meta = stored.get("meta") or {}
        same = comparable(stored.get("dashboard") or {}) == comparable(dashboard)
        if same and meta.get("folderUid", "") == folder_uid:
            return Outcome(uid, "unchanged", f"version {stored['dashboard'].get('version')}")
        if meta.get("provisioned"):
            return Outcome(uid, "failed", PROVISIONED)
    action = "created" if stored is None else "updated"
    if dry_run:
        return Outcome(uid, f"would be {action}")
    saved = api.dashboard.update_dashboard(
        {
            "dashboard": comparable(dashboard),
            "folderUid": folder_uid,
            "message": message,
            "overwrite": True,
        }
    )
    return Outcome(uid, action, f"version {saved.get('version')}")


def publish(
    api: GrafanaApi,
    boards: list[Board],
    *,
    url: str,
    folder_uid: str,
    message: str,
    dry_run: bool,
    report: Callable[[Outcome], None],
) -> list[Outcome]:
    """Publish every board, reporting each outcome as it comes; returns them all."""
    outcomes = []
    for board in boards:
        if board.dashboard is None:
            outcome = Outcome(board.name, "failed", board.problem)
        else:
            try:
                outcome = publish_board(
                    api, board.dashboard, folder_uid=folder_uid, message=message, dry_run=dry_run
                )
            except grafana_errors() as exc:
                outcome = Outcome(board.name, "failed", explain(exc, url))
        report(outcome)
        outcomes.append(outcome)
    return outcomes


def summary(outcomes: list[Outcome], *, dry_run: bool) -> str:
    """One line counting the outcomes."""
    counts: dict[str, int] = {}
    for o in outcomes:
        counts[o.action] = counts.get(o.action, 0) + 1
    parts = ", ".join(f"{n} {action}" for action, n in sorted(counts.items(), key=_in_order))
    tail = " (dry run: nothing written)" if dry_run else ""
    return f"{len(outcomes)} boards: {parts}{tail}"


def _in_order(item: tuple[str, int]) -> int:
    """Summary order: what was written first, failures last."""
    return SUMMARY_ORDER.index(item[0]) if item[0] in SUMMARY_ORDER else len(SUMMARY_ORDER)


def print_outcome(outcome: Outcome) -> None:
    """One line per board, errors to stderr."""
    line = f"{outcome.action:16} {outcome.name:18} {outcome.detail}".rstrip()
    click.echo(line, err=outcome.action == "failed")


@click.command("publish")
@click.option("--url", envvar="GRAFANA_URL", required=True, help="Grafana's URL [env GRAFANA_URL].")
@click.option(
    "--token",
    envvar="GRAFANA_TOKEN",
    help="Service-account token (Editor role) [env GRAFANA_TOKEN]; or user:pass@ in the URL.",
)
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=GENERATED_DIR,
    show_default="dashboards/generated",
    help="Folder of <uid>.json boards.",
)
@click.option("--message", help="Version message (default: package version, count, hash).")
@click.option("--folder-uid", default=FOLDER_UID, show_default=True, help="Grafana folder uid.")
@click.option("--dry-run", is_flag=True, help="Say what would change; write nothing.")
def publish_command(
    url: str,
    token: str | None,
    directory: Path,
    message: str | None,
    folder_uid: str,
    dry_run: bool,
) -> None:
    """Push the boards into Grafana's Campus folder, skipping unchanged ones."""
    boards = read_boards(directory)
    api = connect(url, token)
    try:
        folder = ensure_folder(api, uid=folder_uid, title=FOLDER_TITLE, dry_run=dry_run)
    except grafana_errors() as exc:
        raise PublishError(explain(exc, url)) from None
    verb = f"would be {folder}" if dry_run and folder != "unchanged" else folder
    click.echo(f"folder {FOLDER_TITLE} ({folder_uid}) {verb} in Grafana at {public_url(url)}")
    outcomes = publish(
        api,
        boards,
        url=url,
        folder_uid=folder_uid,
        message=message or default_message(boards),
        dry_run=dry_run,
        report=print_outcome,
    )
    click.echo(summary(outcomes, dry_run=dry_run))
    if any(o.action == "failed" for o in outcomes):
        raise SystemExit(1)
