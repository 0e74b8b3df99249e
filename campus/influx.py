"""A small client for InfluxDB's v1 HTTP API (``/ping``, ``/write``, ``/query``).

The v1 API is served by InfluxDB 1.x, 2.x (v1 compatibility) and 3.x, so this one
code path serves all three (DESIGN.md section 4). Every failure becomes a
:class:`~campus.errors.SinkError` whose ``retryable`` flag says whether the same
write may succeed later. InfluxDB 1.6 answers a full disk with HTTP 400, like a
parse error, so the body is read to tell them apart (RELIABILITY.md).
"""

from __future__ import annotations

import gzip
import ipaddress
import re
from collections.abc import Iterable, Sequence
from typing import Any

import httpx

from campus.errors import PartialWriteError, SinkError
from campus.influxql import quote_ident

# Bodies of a 400 that describe the server's trouble, not the data's.
_RETRYABLE_400 = (
    "no space left on device",
    "cache-max-memory-size exceeded",
    "cache maximum memory size exceeded",
    "timeout",
    "hinted handoff queue not empty",
    "engine is closed",
)
_UNPARSABLE = re.compile(r"unable to parse '((?:[^'\\]|\\.)*)': ([^\n]*?)(?=$|\nunable| dropped=)")


def is_loopback(url: str) -> bool:
    """Whether ``url`` names this machine (localhost or a loopback address).

    Writes to such a server go uncompressed: on one machine, gzip costs the
    writer about a microsecond a line and influxd as much again to undo it,
    and saves no network (batches of 60 readings: about 15 % more readings/s
    without it; docs/performance.md)."""
    host = httpx.URL(url).host
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class DatabaseNotFound(SinkError):
    """The target database does not exist (create it, then retry)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=True, status=404)


class InfluxClient:
    """Blocking client bound to one database."""

    def __init__(
        self,
        url: str,
        database: str,
        *,
        token: str | None = None,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 10.0,
        gzip_writes: bool | None = None,
    ) -> None:
        headers = {"Authorization": f"Token {token}"} if token else {}
        auth = (username, password or "") if username else None
        self.url = url.rstrip("/")
        self.database = database
        # None: compress unless the server is on this machine (see is_loopback)
        self.gzip_writes = not is_loopback(self.url) if gzip_writes is None else gzip_writes
        self._http = httpx.Client(base_url=self.url, headers=headers, auth=auth, timeout=timeout)

    @classmethod
    def from_settings(cls, settings: Any, timeout: float = 10.0) -> InfluxClient:
        """A client for the configured server and database."""
        return cls(
            settings.influx_url,
            settings.influx_db,
            token=settings.influx_token,
            username=settings.influx_user,
            password=settings.influx_password,
            timeout=timeout,
            gzip_writes=getattr(settings, "influx_gzip", None),
        )

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> InfluxClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ ping

    def ping(self) -> bool:
        """True when the server answers ``/ping``."""
        return self.health() == "ok"

    def health(self) -> str:
        """``"ok"`` when the server answers ``/ping``, else ``"down: <why>"``
        (``HTTP 503``, ``ConnectError``, ...)."""
        try:
            r = self._http.get("/ping", timeout=2.0)
        except httpx.HTTPError as exc:
            return f"down: {type(exc).__name__}"
        return "ok" if r.status_code == 204 else f"down: HTTP {r.status_code}"

    # ----------------------------------------------------------------- write

    def write(self, lines: Sequence[str], precision: str = "ms", rp: str | None = None) -> None:
        """Write ``lines`` (into retention policy ``rp``, else the default one);
        raise :class:`SinkError` (or a subclass) on failure.

        A :class:`PartialWriteError` means the valid lines were stored and the
        ones in ``error.bad`` were refused for their content.
        """
        if not lines:
            return
        body = "\n".join(lines).encode("utf-8")
        headers = {"Content-Type": "text/plain"}
        if self.gzip_writes:
            body = gzip.compress(body, compresslevel=1)
            headers["Content-Encoding"] = "gzip"
        params = {"db": self.database, "precision": precision}
        if rp is not None:
            params["rp"] = rp
        try:
            resp = self._http.post(
                "/write",
                params=params,
                content=body,
                headers=headers,
            )
        except httpx.HTTPError as exc:
            raise SinkError(f"InfluxDB unreachable: {exc!r}", retryable=True) from exc
        if resp.status_code == 204:
            return
        raise classify_write_error(resp.status_code, _error_text(resp))

    # ----------------------------------------------------------------- query

    def query(self, q: str, *, epoch: str = "ms", database: bool = True) -> list[dict[str, Any]]:
        """Run InfluxQL; return the ``series`` of every statement, flattened.

        Each series is ``{"name", "tags", "columns", "values"}`` as InfluxDB
        sends it. Build ``q`` with :mod:`campus.influxql` quoting.
        """
        params = {"q": q, "epoch": epoch}
        if database:
            params["db"] = self.database
        method = "POST" if _is_write_statement(q) else "GET"
        try:
            resp = self._http.request(method, "/query", params=params)
        except httpx.HTTPError as exc:
            raise SinkError(f"InfluxDB unreachable: {exc!r}", retryable=True) from exc
        if resp.status_code != 200:
            raise SinkError(
                f"query failed ({resp.status_code}): {_error_text(resp)}",
                retryable=resp.status_code >= 500,
                status=resp.status_code,
            )
        out: list[dict[str, Any]] = []
        for result in resp.json().get("results", []):
            if "error" in result:
                raise SinkError(f"query error: {result['error']}", retryable=False, status=200)
            out.extend(result.get("series", []))
        return out

    def create_database(self) -> None:
        """Create the database if it does not exist (idempotent)."""
        self.query(f"CREATE DATABASE {quote_ident(self.database)}", database=False)

    def count(self, measurement: str, where: str = "") -> int:
        """Number of points in ``measurement`` (max over its fields)."""
        q = f"SELECT count(*) FROM {quote_ident(measurement)}"
        if where:
            q += f" WHERE {where}"
        series = self.query(q)
        if not series:
            return 0
        row = series[0]["values"][0]
        return int(max(v for v in row[1:] if v is not None))


def rows(series: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Flatten query series into dicts (tags merged into each row)."""
    out = []
    for s in series:
        tags = s.get("tags") or {}
        for values in s.get("values", []):
            row = dict(zip(s["columns"], values, strict=True))
            row.update(tags)
            out.append(row)
    return out


def classify_write_error(status: int, text: str) -> SinkError:
    """Turn a failed ``/write`` answer into the right error (see the module doc)."""
    low = text.lower()
    if status == 404 or "database not found" in low:
        return DatabaseNotFound(f"database not found: {text}")
    if status in (401, 403):
        # The data is fine; the credentials are not. Keep it and retry loudly.
        return SinkError(
            f"InfluxDB refused the credentials ({status}): {text}", retryable=True, status=status
        )
    if status == 400 and any(marker in low for marker in _RETRYABLE_400):
        return SinkError(f"InfluxDB cannot store now (400): {text}", retryable=True, status=400)
    if status == 400 and "partial write" in low:
        bad = [(m.group(1), m.group(2).strip()) for m in _UNPARSABLE.finditer(text)]
        return PartialWriteError(f"partial write: {text}", bad)
    if status == 400:
        return PartialWriteError(f"write refused (400): {text}", [])
    if status == 413:
        return SinkError(f"batch too large (413): {text}", retryable=False, status=413)
    return SinkError(f"InfluxDB write failed ({status}): {text}", retryable=True, status=status)


def _error_text(resp: httpx.Response) -> str:
    try:
        data = resp.json()
        if isinstance(data, dict) and "error" in data:
            return str(data["error"])
    except ValueError:
        pass
    return resp.text[:500]


def _is_write_statement(q: str) -> bool:
    head = q.lstrip().split(None, 1)[0].upper() if q.strip() else ""
    return head in {"CREATE", "DROP", "ALTER", "DELETE", "GRANT", "REVOKE", "KILL", "SELECT"} and (
        head != "SELECT" or " INTO " in q.upper()
    )
