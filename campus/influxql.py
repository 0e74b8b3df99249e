"""Quoting for InfluxQL: identifiers in double quotes, string literals in single quotes."""

from __future__ import annotations


def quote_ident(name: str) -> str:
    """A double-quoted identifier (measurement, tag key, field key, database)."""
    if "\n" in name or "\r" in name:
        raise ValueError(f"identifier {name!r} contains a newline")
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def quote_literal(value: str) -> str:
    """A single-quoted string literal (tag value comparisons)."""
    if "\n" in value or "\r" in value:
        raise ValueError(f"literal {value!r} contains a newline")
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
