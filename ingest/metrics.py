"""The ingester's Prometheus metrics, in a registry of its own.

Served on ``/metrics`` (``CAMPUS_INGEST_METRICS_PORT``) and read back by
``campus ingest --status``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from ingest.writer import BatchWriter


class Counts:
    """What the network thread counts per message: plain integers, written by
    that thread alone and read by the scrape and the progress line (a
    Prometheus counter takes a lock per increment, which was a tenth of the
    cost of a refused message)."""

    __slots__ = ("readings", "received", "rejected", "unknown")

    def __init__(self) -> None:
        self.received = 0  # MQTT messages
        self.readings = 0  # readings decoded
        self.rejected = 0  # rejections written to the dead-letter file
        self.unknown = 0  # readings of devices not in the registry


class IngestMetrics:
    """Every figure the ingester exposes."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.counts = Counts()
        r.register(_CountsCollector(self.counts))
        self.write_seconds = Histogram(
            "campus_ingest_write_seconds",
            "Duration of one InfluxDB write",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.reconnects = Counter(
            "campus_ingest_broker_reconnects", "Broker connections after the first", registry=r
        )
        self.seq_filled = Counter(
            "campus_ingest_seq_filled",
            "Readings that arrived late into a reported seq gap (subtract from missing)",
            registry=r,
        )
        self.seq_missing = Counter(
            "campus_ingest_seq_missing",
            "Readings missing by the devices' seq (lost upstream)",
            registry=r,
        )

    def attach(self, writer: BatchWriter) -> None:
        """Expose the writer's figures, read live at every scrape."""
        self.registry.register(_WriterCollector(writer))


class _CountsCollector(Collector):
    def __init__(self, counts: Counts) -> None:
        self.counts = counts

    def collect(self) -> Iterator[Metric]:
        c = self.counts
        yield CounterMetricFamily(
            "campus_ingest_messages_received", "MQTT messages received", value=c.received
        )
        yield CounterMetricFamily("campus_ingest_readings", "Readings decoded", value=c.readings)
        yield CounterMetricFamily(
            "campus_ingest_rejected",
            "Rejections written to the dead-letter file (messages, readings or metrics)",
            value=c.rejected,
        )
        yield CounterMetricFamily(
            "campus_ingest_unknown_readings",
            "Readings from devices not in the registry (stored, flagged)",
            value=c.unknown,
        )


class _WriterCollector(Collector):
    def __init__(self, writer: BatchWriter) -> None:
        self.writer = writer

    def collect(self) -> Iterator[Metric]:
        st = self.writer.stats
        stored = CounterMetricFamily(
            "campus_ingest_points_stored", "Points durably stored, by path", labels=["path"]
        )
        stored.add_metric(["direct"], st.stored)
        stored.add_metric(["spool"], st.spooled)
        stored.add_metric(["replay"], st.replayed)
        yield stored
        yield CounterMetricFamily(
            "campus_ingest_points_refused",
            "Points InfluxDB refused for their content",
            value=st.refused,
        )
        yield CounterMetricFamily(
            "campus_ingest_spool_full",
            "Times a batch found the spool full",
            value=st.spool_full_events,
        )
        yield GaugeMetricFamily(
            "campus_ingest_spool_backlog_bytes",
            "Bytes waiting in the spool",
            value=self.writer.backlog_bytes(),
        )
        yield GaugeMetricFamily(
            "campus_ingest_queue_messages",
            "Messages waiting for the writer",
            value=self.writer.pending(),
        )
        yield GaugeMetricFamily(
            "campus_ingest_influx_healthy",
            "1 while InfluxDB takes writes",
            value=1.0 if self.writer.healthy else 0.0,
        )
