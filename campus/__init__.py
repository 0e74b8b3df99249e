"""Shared core of the campus platform: settings, the campus registry, readings,
line protocol, the InfluxDB client and the ``campus`` command line."""

from campus.errors import CampusError, ConfigError, SinkError

__all__ = ["CampusError", "ConfigError", "SinkError"]
__version__ = "0.1.0"
