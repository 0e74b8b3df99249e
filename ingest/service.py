"""The ingester: subscribe, decode, batch, store durably, then acknowledge.

It connects with MQTT 5, a fixed client id, ``clean_start`` off, a session
expiry and a Receive Maximum, and subscribes at QoS 1 to
``$share/{group}/campus/#``: a shared subscription so several ingesters split
the stream (DESIGN.md section 3). It subscribes to the whole ``campus/#`` tree
rather than ``campus/+/+/+`` so that status topics and wrongly shaped topics
reach the decoder too, and the latter are dead-lettered instead of silently
ignored.

Acknowledgements are manual: a message's PUBACK goes to the broker only after
the batch holding it was written to InfluxDB or fsynced to the spool. A
killed ingester therefore loses nothing: the broker redelivers what was not
acknowledged, and rewriting a point is idempotent. The Receive Maximum bounds
how many unacknowledged messages the broker sends, and so the memory in use.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from typing import cast

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from prometheus_client import start_http_server

from campus.influx import InfluxClient
from campus.lineprotocol import float_template, float_texts, point, series
from campus.reading import Reading
from campus.registry import Campus
from campus.settings import Settings, mark_ready, stream_topic
from ingest.deadletter import DeadLetter
from ingest.decode import Decoder, Limits, StatusEvent
from ingest.gaps import Filled, Gap, GapTracker
from ingest.metrics import IngestMetrics
from ingest.mqttclient import IngestClient
from ingest.spool import Spool
from ingest.writer import BatchWriter, Message

log = logging.getLogger(__name__)

UNREGISTERED_TAG = "unregistered"
SWITCH_INTERVAL_S = 0.001  # see Ingester.start
# building, kind, device and the field names in order: one line format each
TemplateKey = tuple[str, str, str, tuple[str, ...]]


class Ingester:
    """One ingest process; :meth:`run` blocks until :meth:`stop`."""

    def __init__(self, settings: Settings, campus: Campus) -> None:
        self.settings = settings
        self.campus = campus
        self.decoder = Decoder(
            campus,
            Limits(
                max_payload_bytes=settings.ingest_max_payload_bytes,
                max_batch_readings=settings.ingest_max_batch_readings,
                future_tolerance_ms=int(settings.ingest_future_tolerance_s * 1000),
            ),
        )
        self.dead = DeadLetter(
            settings.dead_letter_file,
            max_bytes=settings.dead_letter_max_bytes,
            keep=settings.dead_letter_keep,
        )
        self.influx = InfluxClient.from_settings(settings, timeout=settings.ingest_write_timeout_s)
        self.metrics = IngestMetrics()
        self.spool = Spool(settings.spool_folder, settings.ingest_spool_max_bytes)
        self.writer = BatchWriter(
            self.influx,
            spool=self.spool,
            batch_size=settings.ingest_batch_size,
            flush_interval=settings.ingest_flush_interval_s,
            flush_idle=settings.ingest_flush_idle_s,
            queue_limit=settings.ingest_queue_limit,
            ack=self._ack,
            on_rejected=lambda line, reason: self.dead.add("influxdb", line, reason),
            on_write=self.metrics.write_seconds.observe,
        )
        self.metrics.attach(self.writer)
        self.gaps = GapTracker() if settings.ingest_gap_detection else None
        self._connects = 0
        self.unknown_devices: Counter[str] = Counter()
        self._series: dict[tuple[str, str, str], str] = {}
        self._templates: dict[TemplateKey, str] = {}
        self.connected = threading.Event()
        self._stop = threading.Event()
        self._closing = False
        self.client = self._make_client()

    # ------------------------------------------------------------------ mqtt

    def _make_client(self) -> IngestClient:
        target = self.settings.mqtt
        client = IngestClient(
            CallbackAPIVersion.VERSION2,
            client_id=self.settings.ingest_client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=True,
            receiver=self._receive,
            # room for a long topic above the payload limit; larger is dropped unread
            max_publish_bytes=self.settings.ingest_max_payload_bytes + 1024,
        )
        target.secure(client)
        client.max_inflight_messages_set(1000)
        client.reconnect_delay_set(min_delay=1, max_delay=10)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = lambda *args: mark_ready(self.settings, "ingest")
        client.on_connect_fail = lambda c, u: log.warning(
            "cannot reach the broker at %s:%s; retrying", target.host, target.port
        )
        return client

    @property
    def topic(self) -> str:
        """The shared subscription this ingester joins (or, with no group, its own)."""
        return stream_topic(self.settings.ingest_group)

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.ConnectFlags,
        reason_code: object,
        properties: object,
    ) -> None:
        if getattr(reason_code, "is_failure", False):
            log.error("broker refused the connection: %s", reason_code)
            return
        self._connects += 1
        if self._connects > 1:
            self.metrics.reconnects.inc()
        log.info(
            "connected to %s:%s (session present: %s); subscribing to %s",
            self.settings.mqtt.host,
            self.settings.mqtt.port,
            flags.session_present,
            self.topic,
        )
        client.subscribe(self.topic, qos=1)
        self.connected.set()

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: object,
        reason_code: object,
        properties: object,
    ) -> None:
        self.connected.clear()
        if not self._stop.is_set():
            log.warning("disconnected from broker (%s); reconnecting", reason_code)

    def _receive(self, topic: str, payload: bytes, mid: int, qos: int, dropped: int) -> None:
        """One message from the network thread (:class:`IngestClient`'s receiver)."""
        if self._closing:
            return  # not acknowledged: the broker delivers it again after the restart
        token = (mid, qos)
        try:
            lines = self.handle(topic, payload) if not dropped else self._too_large(topic, dropped)
        except Exception:  # a bug must not kill the network thread
            log.exception("unexpected error handling a message on %r", topic)
            self.dead.add(topic, payload, "internal error while decoding")
            lines = []
        # Every message, even one wholly rejected, is acknowledged through the
        # writer so that acknowledgements leave in the order messages came.
        self.writer.put(Message(lines, token))

    def _ack(self, tokens: Sequence[object]) -> None:
        self.dead.flush()  # what was rejected is on record before the broker forgets it
        pairs = cast(Sequence[tuple[int, int]], tokens)
        self.client.ack_many([mid for mid, qos in pairs if qos > 0])

    # --------------------------------------------------------------- handling

    def handle(self, topic: str, payload: bytes, now_ms: int | None = None) -> list[str]:
        """Decode one message: dead-letter what is bad, return the lines to store."""
        now = now_ms if now_ms is not None else int(time.time() * 1000)
        decoded = self.decoder.decode(topic, payload, now)
        lines: list[str] = []
        if decoded.readings:
            self._lines(decoded.readings, lines)
        if decoded.status is not None:
            lines.append(self._status_line(decoded.status, now))
        for rej in decoded.rejections:
            self.dead.add(topic, payload, rej.reason, at_ms=now)
        counts = self.metrics.counts
        counts.received += 1
        counts.readings += len(decoded.readings)
        counts.rejected += len(decoded.rejections)
        if decoded.unknown_device and decoded.readings:
            counts.unknown += len(decoded.readings)
            parts = topic.split("/")
            self.unknown_devices["/".join(parts[1:4])] += len(decoded.readings)
        return lines

    def _lines(self, readings: list[Reading], lines: list[str]) -> None:
        """Append the line protocol of a message's readings (and seq gap points)."""
        templates = self._templates
        gaps = self.gaps
        # Decoded metrics are finite floats and ts_ms an int: the message's values
        # are formatted in one call, and one cached format per device and field
        # set writes each line.
        values: list[float] = []
        for reading in readings:
            values.extend(reading.metrics.values())
        texts = float_texts(values)
        end = 0
        for reading in readings:
            metrics = reading.metrics
            key = (reading.building, reading.kind, reading.device, tuple(metrics))
            template = templates.get(key)
            if template is None:
                template = self._template(reading, key)
            start, end = end, end + len(metrics)
            lines.append(template % (*texts[start:end], reading.ts_ms))
            if gaps is not None and reading.seq is not None:
                found = gaps.see(reading.device, reading.seq)
                # At the reading's own event time: unique per device, so two gap or
                # fill points of one device never overwrite each other.
                if found is None:
                    continue
                if isinstance(found, Gap):
                    lines.append(
                        self._gap_line(reading.building, reading.kind, found, reading.ts_ms)
                    )
                else:
                    lines.append(
                        self._fill_line(reading.building, reading.kind, found, reading.ts_ms)
                    )

    def _too_large(self, topic: str, size: int) -> list[str]:
        """Refuse a message whose payload was dropped unread for its size."""
        limit = self.settings.ingest_max_payload_bytes
        self.dead.add(topic, b"", f"payload too large: MQTT packet of {size} bytes > {limit}", size)
        self.metrics.counts.received += 1
        self.metrics.counts.rejected += 1
        return []

    def _template(self, reading: Reading, key: TemplateKey) -> str:
        """The line format of a device's readings with these fields, cached."""
        head = self._series.get((reading.building, reading.kind, reading.device))
        if head is None:
            head = self._series_head(reading)
        template = float_template(head, key[3])
        if len(self._templates) < 1_000_000:  # bounded like the series keys
            self._templates[key] = template
        return template

    def _series_head(self, reading: Reading) -> str:
        """The escaped series key of a device's readings, cached per device."""
        device = self.campus.get(reading.device)
        if device is not None:
            tags = device.influx_tags()
        else:
            tags = {
                "building": reading.building,
                "device": reading.device,
                UNREGISTERED_TAG: "true",
            }
        head = series(reading.kind, tags)
        if len(self._series) < 1_000_000:  # bounded: unknown ids cannot grow it forever
            self._series[(reading.building, reading.kind, reading.device)] = head
        return head

    def _status_line(self, st: StatusEvent, now_ms: int) -> str:
        return point(
            "device_status",
            {"building": st.building, "kind": st.kind, "device": st.device},
            {"online": 1.0 if st.online else 0.0, "status": "online" if st.online else "offline"},
            now_ms,
        )

    def _gap_line(self, building: str, kind: str, gap: Gap, now_ms: int) -> str:
        self.metrics.seq_missing.inc(gap.missing)
        log.warning(
            "seq gap: device %s skipped %d readings (seq %d -> %d); lost upstream",
            gap.device,
            gap.missing,
            gap.after,
            gap.before,
        )
        return point(
            "device_status",
            {"building": building, "kind": kind, "device": gap.device},
            {
                "seq_gap": float(gap.missing),
                "seq_after": float(gap.after),
                "seq_before": float(gap.before),
            },
            now_ms,
        )

    def _fill_line(self, building: str, kind: str, fill: Filled, now_ms: int) -> str:
        self.metrics.seq_filled.inc()
        log.info("seq gap filled: device %s seq %d arrived late", fill.device, fill.seq)
        return point(
            "device_status",
            {"building": building, "kind": kind, "device": fill.device},
            {"seq_gap": -1.0, "seq_filled": float(fill.seq)},
            now_ms,
        )

    # --------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Create the database, start the writer and metrics, connect (non-blocking)."""
        try:
            self.influx.create_database()
        except Exception as exc:  # the writer retries; do not refuse to start
            log.warning("cannot create database yet (%s); will retry on write", exc)
        if not self.spool.empty():
            log.warning("spool holds %d bytes from before; replaying", self.spool.bytes)
        # The network thread decodes without pause under load, and the writer
        # thread gives up the GIL at every socket call and gzip: at Python's 5 ms
        # switch interval each return waited up to 5 ms for it, and a batch's
        # write took a third longer than the same write alone. 1 ms keeps
        # influxd busy (batches of 60: 0.60 of influxd's ceiling -> 0.68-0.78).
        sys.setswitchinterval(SWITCH_INTERVAL_S)
        self.writer.start()
        if self.settings.ingest_metrics_port:
            try:
                start_http_server(
                    self.settings.ingest_metrics_port,
                    addr="127.0.0.1",
                    registry=self.metrics.registry,
                )
            except OSError as exc:
                log.warning("no /metrics on port %d: %s", self.settings.ingest_metrics_port, exc)
        self.settings.mqtt.connect_session(
            self.client,
            self.settings.ingest_session_expiry_s,
            receive_maximum=self.settings.ingest_receive_maximum,
        )

    def run(self) -> None:
        """Start, then log progress until :meth:`stop` is called."""
        self.start()
        interval = self.settings.ingest_progress_interval_s
        last = time.monotonic()
        last_stats = (0, 0, 0)
        while not self._stop.wait(interval):
            now = time.monotonic()
            cur = self._totals()
            rate = [(c - p) / (now - last) for c, p in zip(cur, last_stats, strict=True)]
            log.info(
                "received %d (%.0f/s)  stored %d points (%.0f/s)  rejected %d (%.0f/s)  "
                "spool %d B  unknown devices %d  queued %d",
                cur[0],
                rate[0],
                cur[1],
                rate[1],
                cur[2],
                rate[2],
                self.writer.backlog_bytes(),
                len(self.unknown_devices),
                self.writer.pending(),
                extra={"progress": dict(zip(("received", "stored", "rejected"), cur, strict=True))},
            )
            last, last_stats = now, cur
        self.shutdown()

    def stop(self) -> None:
        """Ask :meth:`run` to return (safe from a signal handler)."""
        self._stop.set()

    def shutdown(self) -> None:
        """Store and acknowledge what is queued, then disconnect and close files."""
        self._stop.set()
        self._closing = True  # take no new messages; store and acknowledge the queued ones
        self.writer.stop()
        self.client.disconnect()
        self.client.loop_stop()
        self.spool.close()
        self.influx.close()
        self.dead.close()
        log.info("ingest stopped: %d messages, %d points stored, %d rejected", *self._totals())

    def _totals(self) -> tuple[int, int, int]:
        """Messages received, points stored and rejections so far."""
        counts = self.metrics.counts
        return counts.received, self.writer.stored, counts.rejected


def status_summary(metrics_text: str) -> dict[str, float]:
    """The headline figures from a /metrics page (for ``campus ingest --status``)."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, float] = {}
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if sample.name.endswith("_created") or sample.name.endswith("_bucket"):
                continue
            key = sample.name
            if sample.labels:
                key += "{" + ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items())) + "}"
            out[key] = sample.value
    return out
