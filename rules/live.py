"""``campus rules run``: the engine on the live stream.

It joins its own shared subscription group (``$share/{CAMPUS_RULES_GROUP}/
campus/#``), decodes each message with the ingester's decoder (so the engine
sees exactly what is stored), feeds readings and status messages to the
engine in event time, advances time-driven checks with the clock once a
second, and publishes every alert event at QoS 1 to
``ops/alerts/{severity}/{building}`` and appends it to ``var/alerts.jsonl``.
Alert state is saved every few seconds and at shutdown and taken back at
start, so a restart neither forgets a firing alert nor announces it twice.
SIGHUP reloads the rules; a bad file is reported and the old rules stay.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from campus.calendar import AcademicCalendar
from campus.errors import ConfigError
from campus.influx import InfluxClient
from campus.registry import Campus
from campus.settings import Settings, mark_ready, stream_topic, subscribe_on_connect
from ingest.decode import Decoder
from rules.engine import AlertEvent, Engine
from rules.model import load_rules

log = logging.getLogger(__name__)


class RulesService:
    """One live engine process; :meth:`run` blocks until :meth:`stop`."""

    def __init__(
        self, settings: Settings, campus: Campus, calendar: AcademicCalendar, rules_file: Path
    ) -> None:
        self.settings = settings
        self.campus = campus
        self.calendar = calendar
        self.rules_file = rules_file
        rules = load_rules(rules_file, campus)
        self.scorer = self._scorer() if any(r.kind == "anomaly" for r in rules) else None
        self.engine = Engine(rules, campus, calendar, scorer=self.scorer)
        self.decoder = Decoder(campus)
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._reload = threading.Event()
        self.connected = threading.Event()
        settings.var_dir.mkdir(parents=True, exist_ok=True)
        self._log = settings.alerts_log.open("a", encoding="utf-8")
        self.published = 0
        self._restore()
        self._prime()
        self.client = self._make_client()

    def _scorer(self) -> Any:
        """The anomaly models of the models folder, for the anomaly rules."""
        from models.registry import Registry
        from models.scorer import ModelScorer

        return ModelScorer(Registry(self.settings.models_folder))

    def _prime(self) -> None:
        """Give the anomaly models the recent past they look back over (lag
        features), read from InfluxDB, so a restarted engine scores its first
        readings as it scored its last ones."""
        if self.scorer is None or not self.engine.scored:
            return
        t0 = time.monotonic()
        devices = [d for d in self.campus if d.id in self.engine.scored]
        with InfluxClient.from_settings(self.settings) as client:
            n = self.scorer.prime_from(client, devices, int(time.time() * 1000))
        if n:
            log.info(
                "anomaly models primed with %d past readings in %.1f s",
                n,
                time.monotonic() - t0,
            )

    # ------------------------------------------------------------------ state

    def _restore(self) -> None:
        path = self.settings.rules_state_file
        if not path.exists():
            return
        try:
            snap = json.loads(path.read_text(encoding="utf-8"))
            n = self.engine.restore(snap, now_ms=int(time.time() * 1000))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("cannot read the saved alert state %s (%s); starting clean", path, exc)
            return
        pending = len(snap.get("alerts", [])) - n
        log.info("restored %d firing alerts (and %d pending) from %s", n, pending, path)

    def save(self) -> None:
        """Write the alert state atomically (a crash leaves the old file whole)."""
        path = self.settings.rules_state_file
        tmp = path.with_suffix(".tmp")
        with self.lock:
            snap = self.engine.snapshot()
        with tmp.open("w", encoding="utf-8") as fh:
            json.dump(snap, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)

    def reload(self) -> None:
        """Load the rules file again; keep the running rules if it is bad."""
        try:
            rules = load_rules(self.rules_file, self.campus)
        except ConfigError as exc:
            log.error("rules not reloaded, the running rules stay:\n%s", exc)
            return
        with self.lock:
            snap = self.engine.snapshot()
            if self.scorer is None and any(r.kind == "anomaly" for r in rules):
                self.scorer = self._scorer()
            engine = Engine(rules, self.campus, self.calendar, scorer=self.scorer)
            engine.restore(snap, now_ms=int(time.time() * 1000))
            self.engine = engine
        log.info("reloaded %d rules from %s", len(rules), self.rules_file)

    def request_reload(self) -> None:
        """Ask for a reload (safe from a signal handler)."""
        self._reload.set()

    # ------------------------------------------------------------------- mqtt

    def _make_client(self) -> mqtt.Client:
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.settings.rules_client_id,
            protocol=mqtt.MQTTv5,
        )
        target = self.settings.mqtt
        target.secure(client)
        client.max_inflight_messages_set(1000)
        client.reconnect_delay_set(min_delay=1, max_delay=10)
        client.on_message = self._on_message
        subscribe_on_connect(
            client,
            self.topic,
            self.connected,
            "rules engine",
            on_subscribed=lambda: mark_ready(self.settings, "rules"),
        )
        return client

    @property
    def topic(self) -> str:
        """The subscription: the engine's own shared group."""
        return stream_topic(self.settings.rules_group)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        now = int(time.time() * 1000)
        decoded = self.decoder.decode(msg.topic, bytes(msg.payload), now)
        events: list[AlertEvent] = []
        with self.lock:
            if decoded.readings:  # one device's: the message's topic names it
                run = [(r.ts_ms, r.metrics) for r in decoded.readings]
                events += self.engine.feed_many(decoded.readings[0].device, run, received_ms=now)
            if decoded.status is not None:
                st = decoded.status
                events += self.engine.status(st.device, st.online, now)
        self._publish(events)

    def _publish(self, events: list[AlertEvent]) -> None:
        for ev in events:
            doc = ev.to_json()
            plot = self._anomaly_plot(ev)
            if plot is not None:
                doc["plot"] = str(plot)
            text = json.dumps(doc, separators=(",", ":"))
            self.client.publish(ev.topic, text, qos=1)
            self._log.write(text + "\n")
            self.published += 1
            log.info(
                "alert %s %s %s on %s: %s%s",
                ev.state,
                ev.severity,
                ev.rule,
                ev.device,
                ev.title,
                f" (inhibited by {ev.inhibited_by['device']})" if ev.inhibited_by else "",
            )
        if events:
            self._log.flush()

    def _anomaly_plot(self, ev: AlertEvent) -> Path | None:
        """For a firing anomaly alert, the PNG of the device's last day."""
        rule = self.engine.rules.get(ev.rule)
        if self.scorer is None or ev.state != "firing" or rule is None or rule.kind != "anomaly":
            return None
        path = self.settings.var_dir / "anomaly" / f"{ev.device}-{ev.ts_ms}.png"
        try:
            plot: Path | None = self.scorer.plot(ev.device, path)
        except Exception:  # a picture must never stop an alert
            log.exception("could not draw the anomaly of %s", ev.device)
            return None
        return plot

    # -------------------------------------------------------------- lifecycle

    def run(self) -> None:
        """Connect, then advance the clock once a second until :meth:`stop`."""
        self.settings.mqtt.connect_session(self.client, 3600)
        last_save = time.monotonic()
        try:
            while not self._stop.wait(1.0):
                if self._reload.is_set():
                    self._reload.clear()
                    self.reload()
                with self.lock:
                    events = self.engine.advance(int(time.time() * 1000))
                self._publish(events)
                if time.monotonic() - last_save >= self.settings.rules_state_interval_s:
                    self.save()
                    last_save = time.monotonic()
        finally:
            self.save()
            self.client.disconnect()
            self.client.loop_stop()
            self._log.close()
            st = self.engine.stats
            log.info(
                "rules engine stopped: %d readings, %d alert events, %d late, disabled: %s",
                st.readings,
                self.published,
                st.late,
                ", ".join(st.disabled) or "none",
            )

    def stop(self) -> None:
        """Ask :meth:`run` to return (safe from a signal handler)."""
        self._stop.set()
