"""An InfluxQL panel target for the Grafana foundation SDK.

The SDK ships query types for Prometheus, Loki and others but none for InfluxDB,
so this module adds one in the SDK's own shape: a model that is a
``cogvariants.Dataquery`` with ``to_json``, and a ``cogbuilder.Builder`` for it,
so panels accept it through ``.with_target(...)`` like any other query.

Targets are raw InfluxQL (``rawQuery: true``) against the provisioned datasource
``campus-influxdb``, with exactly the keys the boards' contract names:
``refId``, ``datasource``, ``query``, ``rawQuery``, ``resultFormat`` and the
optional ``alias`` and ``hide``.
"""

from __future__ import annotations

import typing

from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models import common

DATASOURCE_UID = "campus-influxdb"
DATASOURCE_TYPE = "influxdb"

ResultFormat = typing.Literal["time_series", "table"]


def datasource_ref() -> common.DataSourceRef:
    """The reference every panel, variable and annotation uses for the campus InfluxDB."""
    return common.DataSourceRef(type_val=DATASOURCE_TYPE, uid=DATASOURCE_UID)


class InfluxQLQuery(cogvariants.Dataquery):
    """One raw InfluxQL target of a panel or annotation."""

    def __init__(
        self,
        ref_id: str = "A",
        query: str = "",
        result_format: ResultFormat = "time_series",
        alias: str | None = None,
        hide: bool | None = None,
    ) -> None:
        self.ref_id = ref_id
        self.query = query
        self.result_format = result_format
        self.alias = alias
        self.hide = hide

    def to_json(self) -> dict[str, object]:
        """The target as Grafana stores it in the dashboard JSON."""
        payload: dict[str, object] = {
            "refId": self.ref_id,
            "datasource": datasource_ref().to_json(),
            "query": self.query,
            "rawQuery": True,
            "resultFormat": self.result_format,
        }
        if self.alias is not None:
            payload["alias"] = self.alias
        if self.hide is not None:
            payload["hide"] = self.hide
        return payload


class InfluxQL(cogbuilder.Builder[InfluxQLQuery]):
    """Builder of :class:`InfluxQLQuery`: ``InfluxQL(sql).ref_id("B").alias("$tag_building")``."""

    def __init__(self, query: str) -> None:
        self._internal = InfluxQLQuery(query=query)

    def build(self) -> InfluxQLQuery:
        """The built target."""
        return self._internal

    def ref_id(self, ref_id: str) -> typing.Self:
        """The target's letter within its panel (A, B, ...)."""
        self._internal.ref_id = ref_id
        return self

    def alias(self, alias: str) -> typing.Self:
        """Series name pattern, e.g. ``$tag_building`` or ``$col``."""
        self._internal.alias = alias
        return self

    def table(self) -> typing.Self:
        """Ask for a table frame (for tables, maps and joins) instead of time series."""
        self._internal.result_format = "table"
        return self

    def hide(self, hide: bool = True) -> typing.Self:
        """Run the query but do not draw it (an input to a transformation)."""
        self._internal.hide = hide
        return self


class InfluxQLAnnotationQuery(InfluxQLQuery):
    """An annotation query: which returned columns hold the event's text and tags."""

    def __init__(self, query: str, text_column: str, tags_column: str) -> None:
        super().__init__(ref_id="Anno", query=query, result_format="table")
        self.text_column = text_column
        self.tags_column = tags_column

    def to_json(self) -> dict[str, object]:
        """The target with the column mapping Grafana's InfluxDB plugin reads."""
        payload = super().to_json()
        payload["fromAnnotations"] = True
        payload["textColumn"] = self.text_column
        payload["tagsColumn"] = self.tags_column
        return payload


class InfluxQLAnnotation(cogbuilder.Builder[InfluxQLAnnotationQuery]):
    """Builder of :class:`InfluxQLAnnotationQuery`, for ``AnnotationQuery.target(...)``."""

    def __init__(self, query: str, text_column: str, tags_column: str) -> None:
        self._internal = InfluxQLAnnotationQuery(query, text_column, tags_column)

    def build(self) -> InfluxQLAnnotationQuery:
        """The built annotation target."""
        return self._internal
