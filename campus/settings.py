"""Settings from the environment, a ``.env`` file and ``config/settings.yaml``.

Precedence, highest first: environment variables (``CAMPUS_*``), ``.env``,
``$CAMPUS_CONFIG_DIR/settings.yaml``, then the defaults below. Settings are
read through the cached :func:`get_settings`, never at import time.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import threading
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from dotenv import dotenv_values
from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from campus.errors import SettingsError

log = logging.getLogger(__name__)


class Settings(BaseSettings):
    """Everything a service needs to find its peers; see DESIGN.md section 5."""

    model_config = SettingsConfigDict(
        env_prefix="CAMPUS_", env_file=".env", extra="ignore", validate_default=True
    )

    mqtt_url: str = "mqtt://127.0.0.1:1883"
    # the campus CA that signed the broker's certificate, for mqtts:// (docs/security.md)
    mqtt_ca_file: Path | None = None
    influx_url: str = "http://127.0.0.1:8086"
    influx_db: str = Field("campus", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    influx_token: str | None = None
    influx_user: str | None = None
    influx_password: str | None = None
    # gzip writes: unset compresses unless InfluxDB is on this machine (loopback),
    # where compressing costs both sides CPU and saves nothing (docs/performance.md)
    influx_gzip: bool | None = None
    # `campus db init` / `campus db users`: an InfluxDB admin (else influx_user above)
    influx_admin_user: str | None = None
    influx_admin_password: str | None = None
    # how long raw readings and the hourly/daily rollups are kept (InfluxQL
    # durations such as 90d or 520w, or INF); see docs/retention.md
    influx_raw_retention: str = "90d"
    influx_rollup_retention: str = "INF"
    db_url: str = ""  # empty: sqlite:///{var_dir}/campus.db
    config_dir: Path = Path("config")
    api_port: int = Field(8000, ge=1, le=65535)
    api_host: str = "127.0.0.1"  # 0.0.0.0 to serve other machines (behind TLS: docs/api.md)
    var_dir: Path = Path("var")
    # the address people reach the API at: links in technicians' alerts, QR codes
    public_url: str = ""  # empty: http://{api_host}:{api_port}
    # signs the short-lived links in technicians' alerts; empty: a random key
    # kept in {var_dir}/api-secret (made on first use, readable by its owner only)
    api_secret: str = ""
    api_link_ttl_s: int = Field(24 * 3600, ge=60, le=30 * 86400)
    language: str = Field("zh", pattern="^(zh|en)$")  # the pages' default language
    # anonymous feedback: per-client rate limit, sizes, and when reports raise a ticket
    feedback_rate_per_hour: int = Field(10, ge=1, le=10_000)
    feedback_max_text: int = Field(2000, ge=10, le=100_000)
    feedback_max_photo_bytes: int = Field(3 * 1024 * 1024, ge=1024, le=50 * 1024 * 1024)
    feedback_ticket_threshold: int = Field(3, ge=1, le=1000)  # reports of one place and kind
    feedback_window_s: int = Field(6 * 3600, ge=60)  # ... within this long
    # reverse proxies (comma-separated networks) whose X-Forwarded-For names the
    # client (feedback rate limit) and whose single sign-on header is believed
    api_trusted_proxies: str = "127.0.0.0/8,::1"
    # single sign-on: a trusted proxy that authenticated the user puts their
    # account id in this header (docs/security.md); empty: tokens only
    api_sso_header: str = Field("", pattern=r"^[A-Za-z0-9-]{0,64}$")
    api_max_body_bytes: int = Field(4 * 1024 * 1024, ge=1024)  # larger bodies: 413 unread
    log_level: str = "INFO"

    # ingest
    ingest_client_id: str = "campus-ingest"
    # Shared-subscription group; empty: subscribe directly (one ingester; survives
    # Mosquitto restarts, which forget shared subscriptions; docs/scaling.md).
    ingest_group: str = Field("ingest", pattern=r"^[A-Za-z0-9_.-]{0,64}$")
    ingest_session_expiry_s: int = Field(86400, ge=0)
    ingest_batch_size: int = Field(5000, ge=1, le=100_000)
    ingest_flush_interval_s: float = Field(1.0, gt=0, le=60)
    ingest_flush_idle_s: float = Field(0.05, gt=0, le=60)  # store early when the stream pauses
    ingest_queue_limit: int = Field(50_000, ge=100)  # messages awaiting the writer
    ingest_max_payload_bytes: int = Field(256 * 1024, ge=1024)
    ingest_max_batch_readings: int = Field(1000, ge=1)
    ingest_future_tolerance_s: float = Field(300, ge=0)
    ingest_progress_interval_s: float = Field(10, gt=0)
    dead_letter_path: Path | None = None
    # the dead-letter file is rotated at this size (0: never), keeping this many old ones
    dead_letter_max_bytes: int = Field(100 * 1024 * 1024, ge=0)
    dead_letter_keep: int = Field(5, ge=0, le=100)
    ingest_receive_maximum: int = Field(10_000, ge=1, le=65_535)
    ingest_write_timeout_s: float = Field(10.0, gt=0)
    ingest_spool_dir: Path | None = None
    ingest_spool_max_bytes: int = Field(2 << 30, ge=1 << 20)
    ingest_gap_detection: bool = True
    ingest_metrics_port: int = Field(9108, ge=0, le=65535)  # 0: no /metrics endpoint
    log_format: str = Field("text", pattern="^(text|json)$")

    # rules engine
    rules_client_id: str = "campus-rules"
    rules_group: str = Field("rules", pattern=r"^[A-Za-z0-9_.-]{0,64}$")
    rules_state_interval_s: float = Field(5.0, gt=0)  # how often alert state is saved

    # anomaly models
    models_dir: Path | None = None  # empty: {var_dir}/models

    # tickets
    tickets_client_id: str = "campus-tickets"
    # how long a rule must stay clear after a repair; unset: oncall.yaml's verify_clear
    tickets_verify_clear_s: float | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _default_db(self) -> Settings:
        # the ticket store lives with the rest of the local data unless told otherwise
        if not self.db_url:
            self.db_url = f"sqlite:///{self.var_dir / 'campus.db'}"
        if not self.public_url:
            self.public_url = f"http://{self.api_host}:{self.api_port}"
        self.public_url = self.public_url.rstrip("/")
        return self

    def link_secret(self) -> bytes:
        """The key signing technicians' ticket links (``api_secret``, else a random
        key kept in ``{var_dir}/api-secret``, made on first use)."""
        if self.api_secret:
            return self.api_secret.encode()
        path = self.var_dir / "api-secret"
        try:
            return path.read_bytes()
        except FileNotFoundError:
            import secrets

            self.var_dir.mkdir(parents=True, exist_ok=True)
            key = secrets.token_urlsafe(32).encode()
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:  # another service made it first
                return path.read_bytes()
            with os.fdopen(fd, "wb") as f:
                f.write(key)
            return key

    @field_validator("api_trusted_proxies")
    @classmethod
    def _networks(cls, v: str) -> str:
        for part in v.split(","):
            if part.strip():
                try:
                    ipaddress.ip_network(part.strip(), strict=False)
                except ValueError as exc:
                    raise ValueError(f"{part.strip()!r} is not a network: {exc}") from None
        return v

    @property
    def trusted_proxies(self) -> list[str]:
        """The networks of ``api_trusted_proxies``, one string each."""
        return [p.strip() for p in self.api_trusted_proxies.split(",") if p.strip()]

    @field_validator("mqtt_url")
    @classmethod
    def _mqtt_scheme(cls, v: str) -> str:
        parts = urlsplit(v)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ValueError(f"must look like mqtt://host:port or mqtts://host:port, got {v!r}")
        return v

    @field_validator("influx_url")
    @classmethod
    def _http_scheme(cls, v: str) -> str:
        parts = urlsplit(v)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"must be an http(s) URL, got {v!r}")
        return v.rstrip("/")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Add ``settings.yaml`` from the config folder below the environment."""
        # The folder may itself be set in the environment or in .env.
        dotenv = dotenv_values(".env") if Path(".env").is_file() else {}
        folder = os.environ.get("CAMPUS_CONFIG_DIR") or dotenv.get("CAMPUS_CONFIG_DIR")
        config_dir = Path(folder or "config")
        yaml_source = YamlConfigSettingsSource(settings_cls, yaml_file=config_dir / "settings.yaml")
        return (init_settings, env_settings, dotenv_settings, yaml_source, file_secret_settings)

    # derived paths -------------------------------------------------------

    @property
    def campus_file(self) -> Path:
        """The campus registry."""
        return self.config_dir / "campus.yaml"

    @property
    def calendar_file(self) -> Path:
        """The academic calendar."""
        return self.config_dir / "calendar.yaml"

    @property
    def oncall_file(self) -> Path:
        """Teams, technicians, contractors, rotations and SLAs (tickets)."""
        return self.config_dir / "oncall.yaml"

    @property
    def notify_file(self) -> Path:
        """Notification channels of tickets."""
        return self.config_dir / "notify.yaml"

    @property
    def rules_file(self) -> Path:
        """The rules the engine runs."""
        return self.config_dir / "rules.yaml"

    @property
    def rules_state_file(self) -> Path:
        """Where the engine keeps its alert state across restarts."""
        return self.var_dir / "rules-state.json"

    @property
    def alerts_log(self) -> Path:
        """Every alert event, one JSON object per line."""
        return self.var_dir / "alerts.jsonl"

    @property
    def scenarios_dir(self) -> Path:
        """The rule scenarios ``campus rules test`` runs."""
        return self.config_dir / "scenarios"

    @property
    def dead_letter_file(self) -> Path:
        """Where rejected messages are appended (JSON lines)."""
        return self.dead_letter_path or self.var_dir / "dead-letter.jsonl"

    def ready_file(self, service: str) -> Path:
        """Written by a service once the broker confirmed its subscription
        (``campus up`` starts the simulated campus only after them)."""
        return self.var_dir / "run" / f"{service}.ready"

    @property
    def models_folder(self) -> Path:
        """Where trained anomaly models are kept (models/registry.py)."""
        return self.models_dir or self.var_dir / "models"

    @property
    def spool_folder(self) -> Path:
        """Where batches wait while InfluxDB cannot take them."""
        return self.ingest_spool_dir or self.var_dir / "spool"

    @property
    def mqtt(self) -> MqttTarget:
        """The broker URL, split."""
        return MqttTarget.parse(self.mqtt_url, self.mqtt_ca_file)


def subscribe_on_connect(
    client: Any,
    topic: str,
    connected: threading.Event,
    who: str,
    on_subscribed: Callable[[], None] | None = None,
) -> None:
    """Make ``client`` subscribe to ``topic`` at QoS 1 on every (re)connection,
    set ``connected``, and call ``on_subscribed`` once the broker confirmed."""

    def on_connect(client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        if getattr(rc, "is_failure", False):
            log.error("broker refused the connection: %s", rc)
            return
        client.subscribe(topic, qos=1)
        connected.set()
        log.info("%s subscribed to %s", who, topic)

    client.on_connect = on_connect
    if on_subscribed is not None:
        client.on_subscribe = lambda *args: on_subscribed()


def mark_ready(settings: Settings, service: str) -> None:
    """Say that ``service`` listens (see :meth:`Settings.ready_file`)."""
    path = settings.ready_file(service)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()


class MqttTarget:
    """Host, port, credentials and TLS (with the CA to trust) from an ``mqtt://`` URL."""

    def __init__(
        self,
        host: str,
        port: int,
        tls: bool,
        username: str | None,
        password: str | None,
        ca_file: Path | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.tls = tls
        self.username = username
        self.password = password
        self.ca_file = ca_file

    def secure(self, client: Any) -> None:
        """Put the URL's credentials and TLS on a paho-mqtt client; with
        ``ca_file`` the broker's certificate must be signed by that CA, otherwise
        by one the system trusts."""
        if self.username:
            client.username_pw_set(self.username, self.password)
        if self.tls:
            if self.ca_file is not None and not self.ca_file.is_file():
                raise SettingsError(f"CAMPUS_MQTT_CA_FILE: {self.ca_file} is not a file")
            client.tls_set(ca_certs=str(self.ca_file) if self.ca_file else None)

    def connect_session(
        self, client: Any, expiry_s: int, receive_maximum: int | None = None
    ) -> None:
        """Connect ``client`` (MQTT 5) in the background to a persistent session
        the broker keeps ``expiry_s`` after a disconnect, and start its loop."""
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = expiry_s
        if receive_maximum is not None:
            props.ReceiveMaximum = receive_maximum
        client.connect_async(
            self.host, self.port, keepalive=30, clean_start=False, properties=props
        )
        client.loop_start()

    @classmethod
    def parse(cls, url: str, ca_file: Path | None = None) -> MqttTarget:
        """Split ``mqtt[s]://[user:pass@]host[:port]``; ``ca_file`` is the CA
        trusted for ``mqtts://``."""
        p = urlsplit(url)
        tls = p.scheme == "mqtts"
        return cls(
            host=p.hostname or "127.0.0.1",
            port=p.port or (8883 if tls else 1883),
            tls=tls,
            username=unquote(p.username) if p.username else None,
            password=unquote(p.password) if p.password else None,
            ca_file=ca_file,
        )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"CAMPUS_{'_'.join(str(x) for x in e['loc']).upper()}: {e['msg']}"
            for e in exc.errors(include_url=False)
        )
        raise SettingsError(f"invalid settings: {problems}") from None


def stream_topic(group: str) -> str:
    """The whole ``campus/#`` stream through shared-subscription ``group``, or
    directly when ``group`` is empty (DESIGN.md section 3)."""
    return f"$share/{group}/campus/#" if group else "campus/#"
