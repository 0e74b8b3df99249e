"""One error hierarchy for the platform.

Third-party errors are wrapped where they enter our code, so callers only ever
catch :class:`CampusError` and its children. Sink errors carry a ``retryable``
flag: the caller decides between retrying and dead-lettering from the flag, not
from the status code.
"""

from __future__ import annotations

from dataclasses import dataclass


class CampusError(Exception):
    """Base class of every error the platform raises on purpose."""


@dataclass(frozen=True)
class ConfigIssue:
    """One problem in a configuration file, located as precisely as we can."""

    file: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        field = f" {self.field}:" if self.field else ""
        return f"{where}:{field} {self.message}"


class ConfigError(CampusError):
    """A configuration file is invalid; ``issues`` lists every problem found."""

    def __init__(self, issues: list[ConfigIssue]) -> None:
        self.issues = issues
        lines = [str(i) for i in issues[:25]]
        if len(issues) > 25:
            lines.append(f"... and {len(issues) - 25} more")
        super().__init__("\n".join(lines))


class SettingsError(CampusError):
    """An environment setting is invalid."""


class RejectedReading(CampusError):
    """A reading (or a whole message) failed validation; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class SinkError(CampusError):
    """Writing to a sink (InfluxDB) failed.

    ``retryable`` is true when the same write may succeed later (connection
    refused, timeouts, 5xx, a full disk); false when the data itself is bad.
    """

    def __init__(self, message: str, *, retryable: bool, status: int | None = None) -> None:
        self.retryable = retryable
        self.status = status
        super().__init__(message)


class PartialWriteError(SinkError):
    """InfluxDB stored part of a batch and refused the lines listed in ``bad``."""

    def __init__(self, message: str, bad: list[tuple[str, str]]) -> None:
        self.bad = bad  # (line, reason)
        super().__init__(message, retryable=False, status=400)


class StackError(CampusError):
    """A local service (Mosquitto, influxd) could not be started or stopped."""
