"""Unit tests of ``campus/settings.py``: the configuration contract (DESIGN.md section 5).

Covers the defaults, the precedence environment > ``.env`` > ``settings.yaml`` >
defaults, validation errors surfaced by ``get_settings()`` as ``SettingsError``
naming the variable, derived paths, and ``MqttTarget.parse``. Every test runs in
an empty ``tmp_path`` with every ``CAMPUS_*`` variable removed, so neither the
developer's environment nor a stray ``.env`` can leak in.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from campus.errors import SettingsError
from campus.settings import MqttTarget, Settings, get_settings


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    for name in list(os.environ):
        if name.upper().startswith("CAMPUS_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


def write_yaml(tmp_path: Path, monkeypatch, text: str) -> Path:
    conf = tmp_path / "conf"
    conf.mkdir(exist_ok=True)
    (conf / "settings.yaml").write_text(text)
    monkeypatch.setenv("CAMPUS_CONFIG_DIR", str(conf))
    return conf


# ------------------------------------------------------------------ defaults


def test_defaults_match_design_section_5():
    s = Settings()
    assert s.mqtt_url == "mqtt://127.0.0.1:1883"
    assert s.influx_url == "http://127.0.0.1:8086"
    assert s.influx_db == "campus"
    assert s.influx_token is None
    assert s.influx_user is None
    assert s.influx_password is None
    assert s.db_url == "sqlite:///var/campus.db"
    assert Settings(var_dir=Path("/srv/campus")).db_url == "sqlite:////srv/campus/campus.db"
    assert s.config_dir == Path("config")
    assert s.api_port == 8000


def test_ingest_defaults_match_decoder_limits():
    from ingest.decode import Limits

    s = Settings()
    limits = Limits()
    assert s.ingest_max_payload_bytes == limits.max_payload_bytes
    assert s.ingest_max_batch_readings == limits.max_batch_readings
    assert s.ingest_future_tolerance_s * 1000 == limits.future_tolerance_ms
    assert s.ingest_group == "ingest"


def test_derived_paths():
    s = Settings()
    assert s.campus_file == Path("config/campus.yaml")
    assert s.calendar_file == Path("config/calendar.yaml")
    assert s.dead_letter_file == Path("var/dead-letter.jsonl")


def test_derived_paths_follow_config_dir_and_dead_letter_path(monkeypatch, tmp_path):
    monkeypatch.setenv("CAMPUS_CONFIG_DIR", str(tmp_path / "cfg"))
    monkeypatch.setenv("CAMPUS_DEAD_LETTER_PATH", str(tmp_path / "dl.jsonl"))
    s = Settings()
    assert s.campus_file == tmp_path / "cfg" / "campus.yaml"
    assert s.dead_letter_file == tmp_path / "dl.jsonl"


def test_default_mqtt_target():
    m = Settings().mqtt
    assert (m.host, m.port, m.tls, m.username, m.password) == ("127.0.0.1", 1883, False, None, None)


# -------------------------------------------------------------- precedence


def test_settings_yaml_is_read(tmp_path, monkeypatch):
    write_yaml(tmp_path, monkeypatch, "influx_db: yamldb\napi_port: 9001\n")
    s = Settings()
    assert s.influx_db == "yamldb"
    assert s.api_port == 9001


def test_environment_overrides_settings_yaml(tmp_path, monkeypatch):
    write_yaml(
        tmp_path,
        monkeypatch,
        "influx_db: yamldb\napi_port: 9001\nmqtt_url: mqtt://yaml-broker:1883\n",
    )
    monkeypatch.setenv("CAMPUS_API_PORT", "9100")
    monkeypatch.setenv("CAMPUS_MQTT_URL", "mqtt://env-broker:2883")
    s = Settings()
    assert s.api_port == 9100
    assert s.mqtt_url == "mqtt://env-broker:2883"
    assert s.influx_db == "yamldb"  # not overridden, so still from the file


def test_dotenv_is_read(tmp_path):
    (tmp_path / ".env").write_text(
        "CAMPUS_INFLUX_TOKEN=secret-token\nCAMPUS_INFLUX_DB=fromdotenv\n"
    )
    s = Settings()
    assert s.influx_token == "secret-token"
    assert s.influx_db == "fromdotenv"


def test_full_precedence_env_then_dotenv_then_yaml_then_default(tmp_path, monkeypatch):
    write_yaml(
        tmp_path, monkeypatch, "influx_db: yamldb\napi_port: 9001\ndb_url: sqlite:///yaml.db\n"
    )
    (tmp_path / ".env").write_text("CAMPUS_API_PORT=9002\nCAMPUS_DB_URL=sqlite:///dotenv.db\n")
    monkeypatch.setenv("CAMPUS_DB_URL", "sqlite:///env.db")
    s = Settings()
    assert s.db_url == "sqlite:///env.db"  # environment beats .env and yaml
    assert s.api_port == 9002  # .env beats yaml
    assert s.influx_db == "yamldb"  # yaml beats the default
    assert s.influx_url == "http://127.0.0.1:8086"  # default


def test_get_settings_is_cached(monkeypatch):
    first = get_settings()
    monkeypatch.setenv("CAMPUS_API_PORT", "9999")
    assert get_settings() is first
    get_settings.cache_clear()
    assert get_settings().api_port == 9999


def test_config_dir_from_dotenv_also_locates_settings_yaml(tmp_path):
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "settings.yaml").write_text("influx_db: fromyaml\n")
    (tmp_path / ".env").write_text(f"CAMPUS_CONFIG_DIR={conf}\n")
    s = Settings()
    assert s.config_dir == conf
    assert s.influx_db == "fromyaml"


# -------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "url", ["http://broker:1883", "tcp://broker:1883", "broker:1883", "mqtt://", "mqtt:///x"]
)
def test_invalid_mqtt_url_names_the_variable(monkeypatch, url):
    monkeypatch.setenv("CAMPUS_MQTT_URL", url)
    with pytest.raises(SettingsError) as info:
        get_settings()
    text = str(info.value)
    assert text.startswith("invalid settings: CAMPUS_MQTT_URL: ")
    assert "must look like mqtt://host:port or mqtts://host:port" in text
    assert repr(url) in text


def test_invalid_mqtt_url_from_dotenv_names_the_variable(tmp_path):
    (tmp_path / ".env").write_text("CAMPUS_MQTT_URL=amqp://broker:5672\n")
    with pytest.raises(SettingsError, match="CAMPUS_MQTT_URL"):
        get_settings()


def test_several_invalid_settings_are_all_named(monkeypatch):
    monkeypatch.setenv("CAMPUS_MQTT_URL", "http://x")
    monkeypatch.setenv("CAMPUS_INFLUX_URL", "ftp://x")
    monkeypatch.setenv("CAMPUS_API_PORT", "70000")
    monkeypatch.setenv("CAMPUS_INFLUX_DB", "bad db;")
    with pytest.raises(SettingsError) as info:
        get_settings()
    text = str(info.value)
    for name in ("CAMPUS_MQTT_URL", "CAMPUS_INFLUX_URL", "CAMPUS_API_PORT", "CAMPUS_INFLUX_DB"):
        assert name in text
    assert "must be an http(s) URL, got 'ftp://x'" in text


def test_settings_error_is_not_cached(monkeypatch):
    monkeypatch.setenv("CAMPUS_MQTT_URL", "http://x")
    with pytest.raises(SettingsError):
        get_settings()
    monkeypatch.setenv("CAMPUS_MQTT_URL", "mqtt://ok:1883")
    assert get_settings().mqtt_url == "mqtt://ok:1883"


def test_influx_url_trailing_slash_is_dropped(monkeypatch):
    monkeypatch.setenv("CAMPUS_INFLUX_URL", "https://influx.example.edu:8086/")
    assert Settings().influx_url == "https://influx.example.edu:8086"


def test_mqtts_url_is_accepted(monkeypatch):
    monkeypatch.setenv("CAMPUS_MQTT_URL", "mqtts://user:pw@broker.example.edu")
    m = get_settings().mqtt
    assert (m.host, m.port, m.tls, m.username, m.password) == (
        "broker.example.edu",
        8883,
        True,
        "user",
        "pw",
    )


# -------------------------------------------------------------- MqttTarget


@pytest.mark.parametrize(
    ("url", "host", "port", "tls", "user", "password"),
    [
        ("mqtt://127.0.0.1:1883", "127.0.0.1", 1883, False, None, None),
        ("mqtt://broker", "broker", 1883, False, None, None),
        ("mqtts://broker", "broker", 8883, True, None, None),
        ("mqtts://broker:9883", "broker", 9883, True, None, None),
        ("mqtt://ingest:s3cret@broker:1884", "broker", 1884, False, "ingest", "s3cret"),
        ("mqtt://us%40er:p%3Ass%2Fw@broker:1883", "broker", 1883, False, "us@er", "p:ss/w"),
        ("mqtt://onlyuser@broker", "broker", 1883, False, "onlyuser", None),
        ("mqtt://[::1]:1883", "::1", 1883, False, None, None),
    ],
)
def test_mqtt_target_parse(url, host, port, tls, user, password):
    m = MqttTarget.parse(url)
    assert (m.host, m.port, m.tls, m.username, m.password) == (host, port, tls, user, password)
