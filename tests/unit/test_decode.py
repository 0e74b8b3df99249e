"""Unit tests of ``ingest/decode.py``: the MQTT contract (DESIGN.md section 3) and
what bad input gets (section 7).

Covers ``parse_ts`` (RFC 3339 strings, epoch seconds and milliseconds), and
``Decoder.decode`` on the demo registry: timestamps (now, future, before 2000),
single and batch payloads, JSON edge cases (NaN / Infinity, malformed), metric
names and values (types, model membership, valid range), topic shapes and ids,
registry cross-checks (wrong building or kind, unknown kind, unknown device),
``Limits`` (payload size, batch count), UTF-8, status topics, ``seq`` and unknown
keys. Every rejection asserts on its reason text, so a vaguer reason fails here.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ingest.decode import MIN_TS_MS, Decoded, Decoder, Limits, StatusEvent, parse_ts

NOW_MS = 1_792_454_400_000  # 2026-10-20T00:00:00Z
NOW_S = NOW_MS // 1000
MINUTE_MS = 60_000

POWER = "campus/teach-1/power/pm-teach-1-f1"
DORM = "campus/dorm-1/dorm/dorm-1-r101"
WATER = "campus/plant/water/wm-plant-f1"
UNKNOWN = "campus/teach-1/power/pm-teach-1-new"

TOPIC_REASON = "topic must be campus/{building}/{kind}/{device} or .../status"


@pytest.fixture(scope="module")
def decoder(campus) -> Decoder:
    return Decoder(campus)


def body(obj: Any) -> bytes:
    return json.dumps(obj).encode()


def decode(decoder: Decoder, topic: str, payload: Any, now_ms: int = NOW_MS) -> Decoded:
    raw = payload if isinstance(payload, bytes) else body(payload)
    return decoder.decode(topic, raw, now_ms)


def reasons(out: Decoded) -> list[str]:
    return [r.reason for r in out.rejections]


def only_reason(out: Decoded) -> str:
    """The single rejection of a fully rejected message."""
    assert out.readings == [], out.readings
    assert out.status is None
    assert len(out.rejections) == 1, reasons(out)
    return out.rejections[0].reason


def accepted(out: Decoded) -> dict[str, float]:
    """The metrics of the single stored reading of a fully accepted message."""
    assert out.rejections == [], reasons(out)
    assert len(out.readings) == 1
    return out.readings[0].metrics


# ------------------------------------------------------------------ parse_ts


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-10-19T23:59:00Z", NOW_MS - MINUTE_MS),
        ("2026-10-20T07:59:00+08:00", NOW_MS - MINUTE_MS),
        ("2026-10-19T18:59:00-05:00", NOW_MS - MINUTE_MS),
        ("2026-10-19T23:59:00.123Z", NOW_MS - MINUTE_MS + 123),
        ("2026-10-20T07:59:00.5+08:00", NOW_MS - MINUTE_MS + 500),
        ("2026-10-19T23:59:00.123999Z", NOW_MS - MINUTE_MS + 123),  # truncated to ms
        ("  2026-10-19T23:59:00Z  ", NOW_MS - MINUTE_MS),
        ("2000-01-01T00:00:00Z", MIN_TS_MS),
    ],
)
def test_parse_ts_rfc3339(value, expected):
    assert parse_ts(value, NOW_MS) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (NOW_S - 60, NOW_MS - MINUTE_MS),  # epoch seconds, int
        (NOW_S - 60.25, NOW_MS - MINUTE_MS - 250),  # epoch seconds, float
        (float(NOW_S), NOW_MS),
        (NOW_MS - 1, NOW_MS - 1),  # epoch milliseconds, int
        (float(NOW_MS - 7), NOW_MS - 7),  # epoch milliseconds, float
        (946_684_800, MIN_TS_MS),  # 2000-01-01 in seconds
        (MIN_TS_MS, MIN_TS_MS),  # ... and in milliseconds
    ],
)
def test_parse_ts_epoch_numbers(value, expected):
    got = parse_ts(value, NOW_MS)
    assert got == expected
    assert isinstance(got, int)


def test_parse_ts_missing_is_now():
    assert parse_ts(None, NOW_MS) == NOW_MS


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("2026-10-20T00:00:00", "has no time zone offset"),
        ("2026-10-20", "has no time zone offset"),
        ("yesterday", "is not an RFC 3339 time"),
        ("", "is not an RFC 3339 time"),
        ("2026-10-20T00:00:00Z" + " " * 10 + "x" * 20, "ts string too long"),
        (True, "ts must be a time, got True"),
        ([1, 2], "ts must be a string or a number, got list"),
        ({"s": 1}, "ts must be a string or a number, got dict"),
        (float("nan"), "ts is not finite"),
        (float("inf"), "ts is not finite"),
    ],
)
def test_parse_ts_rejects(value, fragment):
    with pytest.raises(ValueError, match="ts") as info:
        parse_ts(value, NOW_MS)
    assert fragment in str(info.value)


# ------------------------------------------------------- timestamps in decode


@pytest.mark.parametrize(
    "ts",
    [
        "2026-10-19T23:59:00Z",
        "2026-10-20T07:59:00+08:00",
        NOW_S - 60,
        NOW_S - 60.0,
        NOW_MS - MINUTE_MS,
    ],
)
def test_decode_every_ts_form_gives_the_same_epoch_ms(decoder, ts):
    out = decode(decoder, POWER, {"ts": ts, "metrics": {"power_kw": 12.5}})
    accepted(out)
    assert out.readings[0].ts_ms == NOW_MS - MINUTE_MS


def test_decode_fractional_seconds_kept_to_the_millisecond(decoder):
    out = decode(decoder, POWER, {"ts": "2026-10-19T23:59:00.250Z", "metrics": {"power_kw": 1}})
    accepted(out)
    assert out.readings[0].ts_ms == NOW_MS - MINUTE_MS + 250


def test_decode_missing_ts_is_now(decoder):
    out = decode(decoder, POWER, {"metrics": {"power_kw": 1.5}})
    assert accepted(out) == {"power_kw": 1.5}
    r = out.readings[0]
    assert r.ts_ms == NOW_MS
    assert (r.building, r.kind, r.device, r.seq) == ("teach-1", "power", "pm-teach-1-f1", None)


def test_decode_null_ts_is_now(decoder):
    out = decode(decoder, POWER, {"ts": None, "metrics": {"power_kw": 1.5}})
    accepted(out)
    assert out.readings[0].ts_ms == NOW_MS


def test_decode_rejects_naive_iso_time(decoder):
    out = decode(decoder, POWER, {"ts": "2026-10-20T07:59:00", "metrics": {"power_kw": 1}})
    reason = only_reason(out)
    assert "'2026-10-20T07:59:00'" in reason
    assert "has no time zone offset" in reason


def test_decode_rejects_unreadable_ts(decoder):
    out = decode(decoder, POWER, {"ts": "last tuesday", "metrics": {"power_kw": 1}})
    assert only_reason(out) == "ts 'last tuesday' is not an RFC 3339 time"


def test_decode_rejects_ts_more_than_five_minutes_ahead(decoder):
    ts = NOW_MS + 5 * MINUTE_MS + 1000
    out = decode(decoder, POWER, {"ts": ts, "metrics": {"power_kw": 1}})
    assert only_reason(out) == "ts is 301 s in the future"


def test_decode_rejects_far_future_string_ts(decoder):
    out = decode(decoder, POWER, {"ts": "2027-10-20T00:00:00Z", "metrics": {"power_kw": 1}})
    reason = only_reason(out)
    assert reason.startswith("ts is ")
    assert reason.endswith(" s in the future")


@pytest.mark.parametrize("ahead_ms", [4 * MINUTE_MS, 5 * MINUTE_MS, 1])
def test_decode_accepts_small_clock_skew(decoder, ahead_ms):
    out = decode(decoder, POWER, {"ts": NOW_MS + ahead_ms, "metrics": {"power_kw": 1}})
    accepted(out)
    assert out.readings[0].ts_ms == NOW_MS + ahead_ms


def test_decode_future_tolerance_comes_from_limits(campus):
    strict = Decoder(campus, Limits(future_tolerance_ms=1000))
    ok = strict.decode(POWER, body({"ts": NOW_MS + 1000, "metrics": {"power_kw": 1}}), NOW_MS)
    late = strict.decode(POWER, body({"ts": NOW_MS + 2000, "metrics": {"power_kw": 1}}), NOW_MS)
    accepted(ok)
    assert only_reason(late) == "ts is 2 s in the future"


@pytest.mark.parametrize(
    "ts", ["1999-12-31T23:59:59Z", "1999-12-31T23:59:59.999Z", 0, 946_684_799, MIN_TS_MS - 1, -5]
)
def test_decode_rejects_ts_before_2000(decoder, ts):
    out = decode(decoder, POWER, {"ts": ts, "metrics": {"power_kw": 1}})
    assert only_reason(out) == "ts is before 2000-01-01"


def test_decode_accepts_ts_at_2000(decoder):
    out = decode(decoder, POWER, {"ts": "2000-01-01T00:00:00Z", "metrics": {"power_kw": 1}})
    accepted(out)
    assert out.readings[0].ts_ms == MIN_TS_MS


def test_decode_rejects_boolean_ts(decoder):
    out = decode(decoder, POWER, {"ts": True, "metrics": {"power_kw": 1}})
    assert only_reason(out) == "ts must be a time, got True"


def test_decode_rejects_overflowing_ts_literal(decoder):
    out = decode(decoder, POWER, b'{"ts": 1e999, "metrics": {"power_kw": 1}}')
    assert only_reason(out) == "ts is not finite"


def test_decode_rejects_huge_integer_ts_without_raising(decoder):
    out = decode(decoder, POWER, b'{"ts": 1' + b"0" * 400 + b', "metrics": {"power_kw": 1}}')
    assert "ts" in only_reason(out)


# --------------------------------------------------------------------- batches


def test_batch_keeps_good_readings_and_names_the_bad_one(decoder):
    payload = {
        "readings": [
            {"ts": NOW_S - 180, "metrics": {"power_kw": 10.0}, "seq": 1},
            {"ts": NOW_S - 120, "metrics": {"power_kw": 11.0}, "seq": 2},
            {"ts": "2026-10-20T00:00:00", "metrics": {"power_kw": 12.0}, "seq": 3},
            {"ts": NOW_S - 60, "metrics": {"power_kw": 13.0}, "seq": 4},
        ]
    }
    out = decode(decoder, POWER, payload)
    assert [(r.ts_ms, r.metrics["power_kw"], r.seq) for r in out.readings] == [
        (NOW_MS - 3 * MINUTE_MS, 10.0, 1),
        (NOW_MS - 2 * MINUTE_MS, 11.0, 2),
        (NOW_MS - 1 * MINUTE_MS, 13.0, 4),
    ]
    assert reasons(out) == ["readings[2]: ts '2026-10-20T00:00:00' has no time zone offset"]
    assert out.status is None
    assert out.unknown_device is False


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ("not an object", "readings[1]: a reading must be a JSON object"),
        ({"metrics": {}}, "readings[1]: 'metrics' must be a non-empty object"),
        ({"ts": NOW_S}, "readings[1]: 'metrics' must be a non-empty object"),
        (
            {"metrics": {"power_kw": 1}, "seq": -1},
            "readings[1]: seq must be a non-negative integer",
        ),
        ({"metrics": {"power_kw": 1}, "id": 7}, "readings[1]: unknown keys ['id']"),
        ({"ts": 0, "metrics": {"power_kw": 1}}, "readings[1]: ts is before 2000-01-01"),
    ],
)
def test_batch_bad_reading_reasons_are_prefixed(decoder, bad, reason):
    good = {"metrics": {"power_kw": 5.0}}
    out = decode(decoder, POWER, {"readings": [good, bad, good]})
    assert len(out.readings) == 2
    assert reasons(out) == [reason]


def test_batch_metric_rejection_names_reading_and_metric(decoder):
    out = decode(
        decoder,
        POWER,
        {
            "readings": [
                {"metrics": {"power_kw": 1}},
                {"metrics": {"power_kw": -3, "voltage_v": 380}},
            ]
        },
    )
    assert [r.metrics for r in out.readings] == [{"power_kw": 1.0}, {"voltage_v": 380.0}]
    assert reasons(out) == ["readings[1]: metric 'power_kw' = -3 kW outside valid range [0, 20000]"]


def test_batch_at_the_limit_is_accepted(campus):
    dec = Decoder(campus, Limits(max_batch_readings=3))
    batch = [{"ts": NOW_S - 60 * i, "metrics": {"power_kw": i}} for i in range(3)]
    out = dec.decode(POWER, body({"readings": batch}), NOW_MS)
    assert out.rejections == []
    assert len(out.readings) == 3


def test_batch_over_the_limit_is_rejected_whole(campus):
    dec = Decoder(campus, Limits(max_batch_readings=3))
    batch = [{"ts": NOW_S - 60 * i, "metrics": {"power_kw": i}} for i in range(4)]
    out = dec.decode(POWER, body({"readings": batch}), NOW_MS)
    assert only_reason(out) == "batch of 4 readings > 3"


def test_batch_over_the_default_limit_is_rejected(decoder):
    batch = [{"metrics": {"power_kw": 1}}] * 1001
    assert (
        only_reason(decode(decoder, POWER, {"readings": batch})) == "batch of 1001 readings > 1000"
    )


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ({"readings": []}, "'readings' must be a non-empty list"),
        ({"readings": {"ts": 1}}, "'readings' must be a non-empty list"),
        ({"readings": None}, "'readings' must be a non-empty list"),
        ({"readings": [{"metrics": {"power_kw": 1}}], "seq": 1}, "a batch carries only 'readings'"),
    ],
)
def test_batch_shape_errors(decoder, payload, reason):
    assert only_reason(decode(decoder, POWER, payload)) == reason


# --------------------------------------------------------------- JSON payload


@pytest.mark.parametrize(
    "raw", [b'{"metrics": {"power_kw": 1}', b"", b"metrics=1", b'{"metrics": {power_kw: 1}}']
)
def test_malformed_json_is_rejected(decoder, raw):
    reason = only_reason(decode(decoder, POWER, raw))
    assert reason.startswith("malformed JSON: ")
    assert len(reason) > len("malformed JSON: ")


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        # what only the standard library reads still gets the reason of its content
        (b'{"metrics": {"power_kw": 1e400}}', "metric 'power_kw' is not finite"),
        (b'{"metrics": {"\\ud800": 2}}', "metric name '\\ud800' is not allowed"),
    ],
)
def test_json_orjson_refuses_is_read_by_the_standard_library(decoder, raw, reason):
    assert only_reason(decode(decoder, POWER, raw)).startswith(reason)


def test_deeply_nested_json_is_rejected_not_raised(decoder):
    raw = b"[" * 100_000 + b"]" * 100_000
    assert only_reason(decode(decoder, POWER, raw)).startswith("malformed JSON")


@pytest.mark.parametrize("raw", [b"[1, 2]", b"42", b'"online"', b"null"])
def test_non_object_json_is_rejected(decoder, raw):
    assert only_reason(decode(decoder, POWER, raw)) == "payload must be a JSON object"


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_literals_are_rejected(decoder, literal):
    raw = f'{{"metrics": {{"power_kw": {literal}, "voltage_v": 380}}}}'.encode()
    assert only_reason(decode(decoder, POWER, raw)) == (
        f"non-finite number {literal} is not allowed"
    )


def test_non_finite_literal_as_ts_is_rejected(decoder):
    raw = b'{"ts": NaN, "metrics": {"power_kw": 1}}'
    assert only_reason(decode(decoder, POWER, raw)) == "non-finite number NaN is not allowed"


def test_overflowing_float_metric_is_rejected_and_others_kept(decoder):
    out = decode(decoder, POWER, b'{"metrics": {"power_kw": 1e999, "voltage_v": 380}}')
    assert out.readings[0].metrics == {"voltage_v": 380.0}
    assert reasons(out) == ["metric 'power_kw' is not finite"]


@pytest.mark.parametrize("topic", [POWER, UNKNOWN])
def test_huge_integer_metric_is_rejected_without_raising(decoder, topic):
    raw = b'{"metrics": {"power_kw": 1' + b"0" * 400 + b', "voltage_v": 380}}'
    out = decode(decoder, topic, raw)
    assert out.readings[0].metrics == {"voltage_v": 380.0}
    assert "power_kw" in reasons(out)[0]


# --------------------------------------------------------------------- metrics


@pytest.mark.parametrize(
    ("value", "type_name"),
    [("12.5", "str"), (None, "NoneType"), ([1], "list"), ({"v": 1}, "dict")],
)
def test_non_numeric_metric_rejected_others_kept(decoder, value, type_name):
    out = decode(decoder, POWER, {"metrics": {"power_kw": value, "voltage_v": 381, "current_a": 2}})
    assert [r.metrics for r in out.readings] == [{"voltage_v": 381.0, "current_a": 2.0}]
    assert reasons(out) == [f"metric 'power_kw' is not a number ({type_name})"]


def test_all_metrics_bad_stores_nothing(decoder):
    out = decode(decoder, POWER, {"metrics": {"power_kw": "x", "voltage_v": "y"}})
    assert out.readings == []
    assert reasons(out) == [
        "metric 'power_kw' is not a number (str)",
        "metric 'voltage_v' is not a number (str)",
    ]


def test_metric_values_are_stored_as_floats(decoder):
    out = decode(decoder, POWER, {"metrics": {"power_kw": 3, "voltage_v": 380.5}})
    metrics = accepted(out)
    assert metrics == {"power_kw": 3.0, "voltage_v": 380.5}
    assert all(type(v) is float for v in metrics.values())


def test_booleans_are_accepted_as_one_and_zero(decoder):
    out = decode(decoder, DORM, {"metrics": {"occupancy": True, "smoke": False, "temp_c": 24}})
    metrics = accepted(out)
    assert metrics == {"occupancy": 1.0, "smoke": 0.0, "temp_c": 24.0}
    assert type(metrics["occupancy"]) is float
    assert type(metrics["smoke"]) is float


@pytest.mark.parametrize(
    "name",
    [
        "power kw",
        "power,kw",
        "power=kw",
        'power"kw',
        "power\nkw",
        "power\tkw",
        "1power",
        "",
        "x" * 65,
    ],
)
@pytest.mark.parametrize("topic", [POWER, UNKNOWN])
def test_bad_metric_names_rejected_others_kept(decoder, topic, name):
    out = decode(decoder, topic, {"metrics": {name: 1.0, "power_kw": 2.0}})
    assert [r.metrics for r in out.readings] == [{"power_kw": 2.0}]
    assert reasons(out) == [
        f"metric name {name[:80]!r} is not allowed (use [A-Za-z_][A-Za-z0-9_]*)"
    ]


def test_long_bad_metric_name_is_truncated_in_reason(decoder):
    name = "bad name " + "x" * 500
    out = decode(decoder, UNKNOWN, {"metrics": {name: 1.0}})
    reason = only_reason(out)
    assert repr(name[:80]) in reason
    assert len(reason) < 200


def test_metric_not_in_device_model_is_rejected(decoder):
    out = decode(decoder, POWER, {"metrics": {"flow_lpm": 3.0, "power_kw": 2.0}})
    assert [r.metrics for r in out.readings] == [{"power_kw": 2.0}]
    assert reasons(out) == ["metric 'flow_lpm' is not one of device 'pm-teach-1-f1''s metrics"]


@pytest.mark.parametrize(
    ("topic", "metric", "value", "reason"),
    [
        (POWER, "power_kw", 25000, "metric 'power_kw' = 25000 kW outside valid range [0, 20000]"),
        (POWER, "power_kw", -0.5, "metric 'power_kw' = -0.5 kW outside valid range [0, 20000]"),
        (POWER, "power_factor", 1.2, "metric 'power_factor' = 1.2 1 outside valid range [0, 1]"),
        (DORM, "temp_c", 95, "metric 'temp_c' = 95 degC outside valid range [-20, 80]"),
        (DORM, "co2_ppm", 100, "metric 'co2_ppm' = 100 ppm outside valid range [250, 10000]"),
        (
            WATER,
            "pressure_kpa",
            2000,
            "metric 'pressure_kpa' = 2000 kPa outside valid range [0, 1600]",
        ),
    ],
)
def test_out_of_range_value_names_range_and_unit(decoder, topic, metric, value, reason):
    out = decode(decoder, topic, {"metrics": {metric: value}})
    assert only_reason(out) == reason


@pytest.mark.parametrize(
    ("metric", "value"), [("power_kw", 0), ("power_kw", 20000), ("power_factor", 1)]
)
def test_range_bounds_are_inclusive(decoder, metric, value):
    assert accepted(decode(decoder, POWER, {"metrics": {metric: value}})) == {metric: float(value)}


def test_water_meter_reading_accepted(decoder):
    out = decode(
        decoder,
        WATER,
        {
            "ts": "2026-10-19T23:59:00Z",
            "seq": 9,
            "metrics": {"flow_lpm": 12.5, "volume_m3": 1234.5678, "pressure_kpa": 410.2},
        },
    )
    assert accepted(out) == {"flow_lpm": 12.5, "volume_m3": 1234.5678, "pressure_kpa": 410.2}
    r = out.readings[0]
    assert (r.building, r.kind, r.device, r.ts_ms, r.seq) == (
        "plant",
        "water",
        "wm-plant-f1",
        NOW_MS - MINUTE_MS,
        9,
    )


@pytest.mark.parametrize("metrics", [{}, [], "power_kw=1", None, 3])
def test_metrics_must_be_a_non_empty_object(decoder, metrics):
    out = decode(decoder, POWER, {"metrics": metrics})
    assert only_reason(out) == "'metrics' must be a non-empty object"


def test_metrics_missing(decoder):
    assert only_reason(decode(decoder, POWER, {"ts": NOW_S})) == (
        "'metrics' must be a non-empty object"
    )


# ---------------------------------------------------------------------- topics


@pytest.mark.parametrize(
    "topic",
    [
        "campus/teach-1/power",  # 3 levels
        "campus/teach-1/power/pm-teach-1-f1/status/extra",  # 6 levels
        "site/teach-1/power/pm-teach-1-f1",  # not under campus/
        "Campus/teach-1/power/pm-teach-1-f1",
        "ops/teach-1/power/pm-teach-1-f1",
        "campus/teach-1/power/pm-teach-1-f1/state",  # 5 levels, not .../status
        "campus/teach-1/power/pm-teach-1-f1/",  # 5 levels, empty last
        "campus",
        "",
    ],
)
def test_wrong_topic_shapes_are_rejected(decoder, topic):
    assert only_reason(decode(decoder, topic, {"metrics": {"power_kw": 1}})) == TOPIC_REASON


@pytest.mark.parametrize(
    "device",
    ["pm 1", "pm,1", "pm=1", 'pm"1', "pm\n1", "pm\r1", "pm\t1", "pm\\", "", "d" * 65, "pm+1"],
)
def test_bad_device_ids_in_topic_are_rejected(decoder, device):
    out = decode(decoder, f"campus/teach-1/power/{device}", {"metrics": {"power_kw": 1}})
    assert only_reason(out) == f"device id {device!r} is not allowed (use [A-Za-z0-9_.-], 1-64)"


@pytest.mark.parametrize("building", ["teach 1", "teach,1", "teach=1", "teach\n1", ""])
def test_bad_building_ids_in_topic_are_rejected(decoder, building):
    out = decode(decoder, f"campus/{building}/power/pm-x", {"metrics": {"power_kw": 1}})
    assert only_reason(out) == f"building id {building!r} is not allowed (use [A-Za-z0-9_.-], 1-64)"


def test_device_id_of_64_characters_is_allowed(decoder):
    out = decode(decoder, "campus/teach-1/power/" + "d" * 64, {"metrics": {"power_kw": 1}})
    assert out.rejections == []
    assert out.unknown_device is True


def test_registered_device_under_wrong_building_is_rejected(decoder):
    out = decode(decoder, "campus/teach-2/power/pm-teach-1-f1", {"metrics": {"power_kw": 1}})
    assert only_reason(out) == (
        "device 'pm-teach-1-f1' is registered as teach-1/power, not teach-2/power"
    )


def test_registered_device_under_wrong_kind_is_rejected(decoder):
    out = decode(decoder, "campus/teach-1/water/pm-teach-1-f1", {"metrics": {"flow_lpm": 1}})
    assert only_reason(out) == (
        "device 'pm-teach-1-f1' is registered as teach-1/power, not teach-1/water"
    )


@pytest.mark.parametrize("kind", ["gas", "Power", "POWER", "power ", "1power", ""])
def test_unknown_kind_is_rejected(decoder, kind):
    out = decode(decoder, f"campus/teach-1/{kind}/pm-teach-1-f1", {"metrics": {"power_kw": 1}})
    assert only_reason(out) == f"unknown kind {kind!r} (known: dorm, hvac, power, water)"


def test_unknown_device_is_accepted_and_flagged(decoder):
    out = decode(decoder, UNKNOWN, {"ts": NOW_S, "metrics": {"power_kw": 99999.0, "custom_x": -5}})
    assert out.unknown_device is True
    assert out.rejections == []
    # no model, so no model or range checks: everything well-formed is kept
    assert out.readings[0].metrics == {"power_kw": 99999.0, "custom_x": -5.0}
    assert out.readings[0].device == "pm-teach-1-new"


def test_unknown_device_still_gets_generic_checks(decoder):
    out = decode(decoder, UNKNOWN, {"ts": NOW_S, "metrics": {"a": "x", "b": 1}, "seq": 3})
    assert out.unknown_device is True
    assert [r.metrics for r in out.readings] == [{"b": 1.0}]
    assert reasons(out) == ["metric 'a' is not a number (str)"]


def test_known_device_is_not_flagged_unknown(decoder):
    out = decode(decoder, POWER, {"metrics": {"power_kw": 1}})
    assert out.unknown_device is False


# ------------------------------------------------------------ payload & bytes


def _padded(size: int) -> bytes:
    raw = body({"metrics": {"power_kw": 1}})
    return raw[:-1] + b" " * (size - len(raw)) + b"}"


def test_payload_at_the_limit_is_accepted(campus):
    dec = Decoder(campus, Limits(max_payload_bytes=1024))
    raw = _padded(1024)
    assert len(raw) == 1024
    assert accepted(dec.decode(POWER, raw, NOW_MS)) == {"power_kw": 1.0}


def test_payload_over_the_limit_is_rejected(campus):
    dec = Decoder(campus, Limits(max_payload_bytes=1024))
    out = dec.decode(POWER, _padded(1025), NOW_MS)
    assert only_reason(out) == "payload too large: 1025 bytes > 1024"


def test_payload_over_the_default_limit_is_rejected(decoder):
    out = decoder.decode(POWER, _padded(256 * 1024 + 1), NOW_MS)
    assert only_reason(out) == f"payload too large: {256 * 1024 + 1} bytes > {256 * 1024}"


@pytest.mark.parametrize(
    "raw",
    [
        b'{"metrics": {"power_kw": 1}}\xff',
        b'{"metrics": {"p\xe9": 1}}',  # latin-1, not UTF-8
        b"\xc3\x28",
    ],
)
def test_non_utf8_payload_is_rejected(decoder, raw):
    reason = only_reason(decode(decoder, POWER, raw))
    assert reason.startswith("payload is not UTF-8: ")
    assert reason.split(": ", 1)[1] in {"invalid start byte", "invalid continuation byte"}


def test_utf8_non_ascii_in_json_strings_is_fine(decoder):
    raw = json.dumps({"metrics": {"power_kw": 1}, "seq": 1}, ensure_ascii=False).encode()
    assert accepted(decode(decoder, POWER, raw)) == {"power_kw": 1.0}


def test_limits_defaults_match_settings_defaults():
    assert Limits() == Limits(
        max_payload_bytes=256 * 1024, max_batch_readings=1000, future_tolerance_ms=300_000
    )


# ---------------------------------------------------------------------- status


@pytest.mark.parametrize(
    ("payload", "online"),
    [(b"online", True), (b"offline", False), (b" online\n", True), (b"offline\r\n", False)],
)
def test_status_topic(decoder, payload, online):
    out = decoder.decode(POWER + "/status", payload, NOW_MS)
    assert out.rejections == []
    assert out.readings == []
    assert out.status == StatusEvent("teach-1", "power", "pm-teach-1-f1", online)


@pytest.mark.parametrize(
    "payload", [b"ONLINE", b"on", b"", b'{"status": "online"}', b"online offline"]
)
def test_status_topic_invalid_state(decoder, payload):
    out = decoder.decode(POWER + "/status", payload, NOW_MS)
    assert only_reason(out) == "status must be 'online' or 'offline'"


def test_status_of_unknown_device_is_accepted_and_flagged(decoder):
    out = decoder.decode(UNKNOWN + "/status", b"offline", NOW_MS)
    assert out.status == StatusEvent("teach-1", "power", "pm-teach-1-new", False)
    assert out.unknown_device is True


def test_status_under_wrong_building_is_rejected(decoder):
    out = decoder.decode("campus/dorm-2/dorm/dorm-1-r101/status", b"online", NOW_MS)
    assert only_reason(out) == "device 'dorm-1-r101' is registered as dorm-1/dorm, not dorm-2/dorm"


def test_status_non_utf8_is_rejected(decoder):
    out = decoder.decode(POWER + "/status", b"onl\xffine", NOW_MS)
    assert only_reason(out).startswith("payload is not UTF-8")


# ------------------------------------------------------------------ seq & keys


@pytest.mark.parametrize("seq", [0, 1, 2**40])
def test_seq_non_negative_int_is_kept(decoder, seq):
    out = decode(decoder, POWER, {"seq": seq, "metrics": {"power_kw": 1}})
    accepted(out)
    assert out.readings[0].seq == seq


@pytest.mark.parametrize("seq", [True, False, -1, "5", 1.0, 1.5, [1], {"n": 1}])
def test_seq_must_be_a_non_negative_int(decoder, seq):
    out = decode(decoder, POWER, {"seq": seq, "metrics": {"power_kw": 1}})
    assert only_reason(out) == "seq must be a non-negative integer"


@pytest.mark.parametrize(
    ("extra", "listed"),
    [({"device": "x"}, "['device']"), ({"unit": "kW", "value": 1}, "['unit', 'value']")],
)
def test_unknown_top_level_keys_are_rejected(decoder, extra, listed):
    out = decode(decoder, POWER, {"metrics": {"power_kw": 1}, **extra})
    assert only_reason(out) == f"unknown keys {listed}"


# ------------------------------------------------------------ never raises


def test_decode_never_raises_on_random_input(decoder):
    """Fuzz: random topics and payloads give readings, a status or rejections, never an error."""
    rng = random.Random(20261020)
    topics = [POWER, DORM, WATER, UNKNOWN, POWER + "/status", "campus/x", "campus/a b/power/c"]
    fragments = [
        b"{",
        b"}",
        b"[",
        b"]",
        b'"ts"',
        b'"metrics"',
        b'"readings"',
        b'"seq"',
        b":",
        b",",
        b"1",
        b"-1e5",
        b"NaN",
        b"true",
        b"null",
        b'"power_kw"',
        b'"x y"',
        b"\xff",
        b"1792454400",
        b'"2026-10-20T00:00:00Z"',
        b"online",
        b" ",
        b"\n",
        b"0.5",
    ]
    for _ in range(3000):
        raw = b"".join(rng.choice(fragments) for _ in range(rng.randint(0, 25)))
        out = decoder.decode(rng.choice(topics), raw, NOW_MS)
        assert out.readings or out.status is not None or out.rejections
        assert all(r.reason for r in out.rejections)


def test_decode_never_raises_on_random_valid_json(decoder):
    rng = random.Random(7)
    values: list[Any] = [
        1,
        -1,
        0.5,
        "s",
        None,
        True,
        [],
        {},
        1e308,
        -1e308,
        10**18,
        "2026-10-20T00:00:00Z",
    ]
    for _ in range(2000):
        item: dict[str, Any] = {}
        if rng.random() < 0.7:
            item["ts"] = rng.choice([*values, NOW_S, NOW_MS])
        if rng.random() < 0.9:
            item["metrics"] = {
                rng.choice(["power_kw", "voltage_v", "x", "bad name"]): rng.choice(values)
                for _ in range(rng.randint(0, 3))
            }
        if rng.random() < 0.3:
            item["seq"] = rng.choice(values)
        payload = {"readings": [item, item]} if rng.random() < 0.3 else item
        out = decode(decoder, rng.choice([POWER, UNKNOWN]), payload)
        for r in out.readings:
            assert MIN_TS_MS <= r.ts_ms <= NOW_MS + 300_000
            assert all(type(v) is float for v in r.metrics.values())


def test_now_parameter_is_the_only_clock(decoder):
    """``now_ms`` is what "now" means: the same message decodes identically at the same now."""
    msg = {"metrics": {"power_kw": 1}}
    a = decode(decoder, POWER, msg, now_ms=NOW_MS)
    b = decode(decoder, POWER, msg, now_ms=NOW_MS)
    assert a.readings == b.readings
    assert datetime.fromtimestamp(a.readings[0].ts_ms / 1000, UTC) == datetime(
        2026, 10, 20, tzinfo=UTC
    )


def test_integers_past_64_bits_still_parse_and_are_judged_by_range(decoder: Decoder) -> None:
    raw = b'{"ts": 1790000000000, "metrics": {"power_kw": 123456789012345678901234567890}}'
    out = decode(decoder, POWER, raw)
    assert not out.readings
    assert "outside valid range" in only_reason(out)


def test_dead_letter_keeps_a_reason_with_a_lone_surrogate(tmp_path: Path) -> None:
    from ingest.deadletter import DeadLetter

    dead = DeadLetter(tmp_path / "dead.jsonl")
    dead.add("campus/a/power/m", b"{}", "metric '\ud800' refused")
    dead.add("campus/a/power/m", "caf\u00e9", "plain")
    dead.close()
    rows = [json.loads(line) for line in (tmp_path / "dead.jsonl").read_text().splitlines()]
    assert [r["reason"] for r in rows] == ["metric '\ud800' refused", "plain"]
    assert rows[1]["payload"] == "caf\u00e9" and rows[1]["bytes"] == 5
