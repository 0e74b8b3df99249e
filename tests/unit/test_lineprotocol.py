"""Unit tests of ``campus/lineprotocol.py`` (InfluxDB line protocol) and
``campus/influxql.py`` (InfluxQL quoting): DESIGN.md sections 4 and 7.

Covers escaping of measurements, tag keys and values, field keys and string
field values; float formatting of numbers; what must raise (non-finite values,
newline / CR / tab / trailing backslash / empty in names and tags, a point without
fields); tag ordering; and InfluxQL identifier and literal quoting. Property-style
tests feed many seeded random strings through ``point()`` and read the result
back with a small parser that follows InfluxDB 1.x's own scanner
(``models/points.go``): a line either is refused or has exactly a key, a fields
and a timestamp section, no raw newline, and round-trips.
"""

from __future__ import annotations

import itertools
import math
import random
import string

import pytest

from campus.ids import is_tag_value
from campus.influxql import quote_ident, quote_literal
from campus.lineprotocol import (
    escape_key,
    escape_measurement,
    float_template,
    float_texts,
    format_field_value,
    line,
    point,
    series,
)

# ----------------------------------------------------- a reference line parser
# Mirrors InfluxDB 1.x models/points.go: in the key (measurement and tags) a byte
# preceded by a backslash is escaped (scanMeasurement, scanTagsKey, scanTagsValue);
# in the fields a backslash skips the next byte (scanFields); the timestamp is
# an optionally negative integer.


class ParseError(ValueError):
    pass


_TAG_UNESCAPE = ((r"\,", ","), (r"\ ", " "), (r"\=", "="))
_MEAS_UNESCAPE = ((r"\,", ","), (r"\ ", " "))


def _unescape(text: str, codes: tuple[tuple[str, str], ...]) -> str:
    for esc, ch in codes:
        text = text.replace(esc, ch)
    return text


def _split_unescaped(text: str, sep: str) -> list[str]:
    """Split where ``sep`` is not preceded by a backslash (the key-section rule)."""
    parts, start = [], 0
    for i, ch in enumerate(text):
        if ch == sep and (i == 0 or text[i - 1] != "\\"):
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts


def parse_line(line: str) -> tuple[str, dict[str, str], dict[str, object], int | None]:
    """(measurement, tags, fields, timestamp) of one line, or ParseError."""
    if "\n" in line:
        raise ParseError("raw newline in line")
    # --- key section: ends at the first space not preceded by a backslash
    i = 1
    while i < len(line) and not (line[i] == " " and line[i - 1] != "\\"):
        i += 1
    if i >= len(line):
        raise ParseError("missing fields")
    key, rest = line[:i], line[i + 1 :]
    parts = _split_unescaped(key, ",")
    measurement = _unescape(parts[0], _MEAS_UNESCAPE)
    if not measurement:
        raise ParseError("missing measurement")
    tags: dict[str, str] = {}
    for part in parts[1:]:
        kv = _split_unescaped(part, "=")
        if len(kv) != 2 or not kv[0] or not kv[1]:
            raise ParseError(f"bad tag {part!r}")
        tags[_unescape(kv[0], _TAG_UNESCAPE)] = _unescape(kv[1], _TAG_UNESCAPE)
    # --- fields section: backslash skips a byte; quotes matter in values
    j, quoted, equals, commas = 0, False, 0, 0
    cuts: list[int] = []
    eq_at: list[int] = []
    while j < len(rest):
        ch = rest[j]
        if ch == "\\" and j + 1 < len(rest):
            j += 2
            continue
        if ch == '"' and equals > commas:
            quoted = not quoted
        elif ch == "=" and not quoted:
            equals += 1
            eq_at.append(j)
        elif ch == "," and not quoted:
            commas += 1
            cuts.append(j)
        elif ch == " " and not quoted:
            break
        j += 1
    if quoted:
        raise ParseError("unbalanced quotes")
    if equals == 0 or commas != equals - 1:
        raise ParseError("invalid field format")
    fields_text, ts_text = rest[:j], rest[j + 1 :] if j < len(rest) else None
    fields: dict[str, object] = {}
    bounds = [-1, *cuts, len(fields_text)]
    for (a, b), eq in zip(itertools.pairwise(bounds), eq_at, strict=True):
        fkey, fval = fields_text[a + 1 : eq], fields_text[eq + 1 : b]
        if not fkey or not fval:
            raise ParseError("missing field key or value")
        name = _unescape(fkey, _TAG_UNESCAPE)
        if fval.startswith('"'):
            if not fval.endswith('"') or len(fval) < 2:
                raise ParseError("bad string field")
            fields[name] = fval[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        else:
            fields[name] = float(fval)
    # --- timestamp section
    ts: int | None = None
    if ts_text is not None:
        if not ts_text.lstrip("-").isdigit() or " " in ts_text:
            raise ParseError(f"bad timestamp {ts_text!r}")
        ts = int(ts_text)
    return measurement, tags, fields, ts


def test_reference_parser_reads_the_documented_example():
    line = (
        r"weather\ now,location\,x=us\ mid\=west,season=summer "
        r'temp=82.0,note="a \"b\" \\c" 1465839830100400200'
    )
    assert parse_line(line) == (
        "weather now",
        {"location,x": "us mid=west", "season": "summer"},
        {"temp": 82.0, "note": 'a "b" \\c'},
        1465839830100400200,
    )


# ------------------------------------------------------------------ escaping


@pytest.mark.parametrize(
    ("name", "escaped"),
    [
        ("power", "power"),
        ("cpu load", r"cpu\ load"),
        ("a,b", r"a\,b"),
        ("a=b", "a=b"),  # equals needs no escape in a measurement
        ('say "x"', r'say\ "x"'),
        ("a, b", r"a\,\ b"),
    ],
)
def test_escape_measurement(name, escaped):
    assert escape_measurement(name) == escaped


@pytest.mark.parametrize(
    ("name", "escaped"),
    [
        ("building", "building"),
        ("host name", r"host\ name"),
        ("a,b", r"a\,b"),
        ("a=b", r"a\=b"),
        ("a, b=c", r"a\,\ b\=c"),
        ('q"uote', 'q"uote'),  # quotes are literal in keys and tag values
        ("dorm-1.r101_x", "dorm-1.r101_x"),
        ("北区", "北区"),
    ],
)
def test_escape_key(name, escaped):
    assert escape_key(name) == escaped


@pytest.mark.parametrize("bad", ["a\nb", "a\rb", "a\tb", "trailing\\", "", "\n"])
def test_escape_key_refuses_what_line_protocol_cannot_carry(bad):
    with pytest.raises(ValueError, match="key or tag value"):
        escape_key(bad)


@pytest.mark.parametrize("bad", ["a\nb", "a\rb", "a\tb", "trailing\\", ""])
def test_escape_measurement_refuses_what_line_protocol_cannot_carry(bad):
    with pytest.raises(ValueError, match="measurement"):
        escape_measurement(bad)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("a\nb", "contains a newline, CR or tab"),
        ("a\rb", "contains a newline, CR or tab"),
        ("a\tb", "contains a newline, CR or tab"),
        ("end\\", "ends with a backslash"),
        ("", "empty key or tag value"),
    ],
)
def test_point_refuses_bad_tag_values(bad, message):
    with pytest.raises(ValueError, match=message):
        point("power", {"building": bad}, {"power_kw": 1.0}, 1)


@pytest.mark.parametrize("bad", ["a\nb", "end\\", ""])
def test_point_refuses_bad_tag_keys(bad):
    with pytest.raises(ValueError):
        point("power", {bad: "x"}, {"power_kw": 1.0}, 1)


@pytest.mark.parametrize("bad", ["a\nb", "end\\", ""])
def test_point_refuses_bad_field_keys(bad):
    with pytest.raises(ValueError):
        point("power", {}, {bad: 1.0}, 1)


@pytest.mark.parametrize(
    ("value", "formatted"),
    [
        ("plain", '"plain"'),
        ('say "hi"', r'"say \"hi\""'),
        ("C:\\dir\\", r'"C:\\dir\\"'),
        ('\\"', r'"\\\""'),
        ("a,b c=d", '"a,b c=d"'),  # nothing else is special inside quotes
        ("", '""'),
        ("line1\nline2\r\n", '"line1 line2  "'),  # free text cannot break the line
    ],
)
def test_format_string_field_value(value, formatted):
    assert format_field_value(value) == formatted


@pytest.mark.parametrize(
    ("value", "formatted"),
    [
        (3, "3.0"),
        (0, "0.0"),
        (-7, "-7.0"),
        (2.5, "2.5"),
        (True, "1.0"),
        (False, "0.0"),
        (0.1, "0.1"),
        (1e20, "1e+20"),
        (123456789012, "123456789012.0"),
    ],
)
def test_numbers_are_formatted_as_floats(value, formatted):
    out = format_field_value(value)
    assert out == formatted
    assert not out.endswith("i")  # never an integer field: the contract says floats
    assert float(out) == float(value)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_field_values_raise(value):
    with pytest.raises(ValueError, match="non-finite field value"):
        format_field_value(value)
    with pytest.raises(ValueError, match="non-finite field value"):
        point("power", {"device": "d"}, {"power_kw": value}, 1)


def test_float_formatting_round_trips_exactly():
    rng = random.Random(4)
    for _ in range(2000):
        x = rng.uniform(-1e6, 1e6) * 10 ** rng.randint(-8, 8)
        assert float(format_field_value(x)) == x


# --------------------------------------------------------------------- points


def test_point_full_line():
    line = point(
        "power",
        {"device": "pm-teach-1-f1", "building": "teach-1", "floor": "1"},
        {"power_kw": 12, "voltage_v": 380.5},
        1_792_454_400_000,
    )
    assert line == (
        "power,building=teach-1,device=pm-teach-1-f1,floor=1 "
        "power_kw=12.0,voltage_v=380.5 1792454400000"
    )


def test_tags_are_sorted_by_key():
    line = point(
        "m", {"zone": "z", "building": "b", "room": "r", "device": "d", "floor": "2"}, {"v": 1.0}, 5
    )
    assert line.startswith("m,building=b,device=d,floor=2,room=r,zone=z ")


def test_fields_keep_their_order():
    assert point("m", {}, {"b": 1, "a": 2}, None) == "m b=1.0,a=2.0"


def test_point_without_timestamp_has_two_sections():
    assert point("dorm", {"device": "x"}, {"temp_c": 21.5}, None) == "dorm,device=x temp_c=21.5"


def test_point_timestamp_is_an_integer():
    assert point("m", {}, {"v": 1}, 1_792_454_400_000.0).endswith(" 1792454400000")  # type: ignore[arg-type]


def test_point_without_tags():
    assert point("m", {}, {"v": 1}, 0) == "m v=1.0 0"


def test_point_without_fields_raises():
    with pytest.raises(ValueError, match="at least one field"):
        point("power", {"device": "d"}, {}, 1)


def test_point_escapes_everything_and_parses_back():
    tags = {"build ing": "a,b", "de=vice": "x y=z", "q": '"quoted"'}
    fields = {"power kw": 1.5, "note": 'he said "hi" \\o/', "f,x=y": 2}
    line = point("my meas,ure", tags, fields, 42)
    assert parse_line(line) == ("my meas,ure", tags, {**fields, "f,x=y": 2.0}, 42)


def test_float_template_writes_the_same_point_as_line():
    """The ingester's cached format and bulk float texts give a line that parses
    to exactly what ``line`` gives, escapes and percent signs included, for any
    finite float."""
    rng = random.Random(7)
    head = series("power", {"building": "b%d", "device": "pm 1,x=y"})
    keys = ["kw", "a b", "c,d", "e=f", "g%s"]
    template = float_template(head, keys)
    specials = [0.0, -0.0, 5e-324, 1e-5, 1e16, 1e300, -1.5, 0.1, 230.0, 1.7976931348623157e308]
    for i in range(2000):
        values = [specials[i % len(specials)]] + [
            rng.uniform(-1e6, 1e6) * 10 ** rng.randint(-12, 12) for _ in keys[1:]
        ]
        ts = 1_700_000_000_000 + i
        got = parse_line(template % (*float_texts(values), ts))
        want = parse_line(line(head, dict(zip(keys, values, strict=True)), ts))
        assert got == want
        assert [float(v) for v in got[2].values()] == values


def test_float_texts_refuse_non_finite_values():
    for bad in (math.nan, math.inf, -math.inf):
        with pytest.raises(ValueError, match="non-finite"):
            float_texts([1.0, bad])
    assert float_texts([]) == []


def test_float_template_needs_a_field():
    with pytest.raises(ValueError, match="at least one field"):
        float_template("m", [])


def test_string_field_with_newline_stays_on_one_line():
    line = point("tickets", {"building": "dorm-1"}, {"text": "room 3-402\nis freezing"}, 1)
    assert "\n" not in line
    assert parse_line(line)[2] == {"text": "room 3-402 is freezing"}


# ------------------------------------------------------ property-style tests

_ALPHABET = (
    string.ascii_letters
    + string.digits
    + "_.-"  # the allowlist
    + " ,=\"'\\"  # line-protocol specials
    + "\n\r\t"  # what line protocol cannot carry in a tag
    + "#{}[]/:;é北\u2028\x00"
)


_ALLOWLIST = string.ascii_letters + string.digits + "_.-"


def _random_text(rng: random.Random, max_len: int = 12) -> str:
    # a third allowlist-only, a third anything, a third biased to the specials
    pool = rng.choice([_ALLOWLIST, _ALPHABET, ' ,=\\"\n\tab'])
    return "".join(rng.choice(pool) for _ in range(rng.randint(0, max_len)))


def _unrepresentable(value: str) -> bool:
    return value == "" or any(c in value for c in "\n\r\t") or value.endswith("\\")


def test_property_allowlisted_or_rejected_tag_values():
    """A random tag value is either allowlisted (and then lands verbatim, unescaped) or
    refused by the allowlist; a refused value that reaches ``point()`` anyway is either
    refused there too (newline, CR, tab, trailing backslash, empty) or escaped so the
    line still has exactly three sections and reads back as the same value."""
    rng = random.Random(20261020)
    seen_ok = seen_refused = 0
    for _ in range(5000):
        value = _random_text(rng, 70)
        if is_tag_value(value):
            line = point("power", {"device": value, "building": "teach-1"}, {"power_kw": 1.0}, 7)
            assert line == f"power,building=teach-1,device={value} power_kw=1.0 7"
            assert parse_line(line) == (
                "power",
                {"building": "teach-1", "device": value},
                {"power_kw": 1.0},
                7,
            )
            seen_ok += 1
        else:
            # The allowlist refuses it; if someone passes it anyway, point() either
            # refuses it too or escapes it so the line still has three sections.
            try:
                line = point("power", {"device": value}, {"power_kw": 1.0}, 7)
            except ValueError:
                assert _unrepresentable(value), repr(value)
                seen_refused += 1
                continue
            assert not _unrepresentable(value), repr(value)
            assert "\n" not in line and "\r" not in line
            measurement, tags, fields, ts = parse_line(line)
            assert (measurement, tags, fields, ts) == (
                "power",
                {"device": value},
                {"power_kw": 1.0},
                7,
            )
    assert seen_ok > 100 and seen_refused > 500  # the generator reached both branches


def test_property_random_measurement_tags_and_string_fields_split_into_three_sections():
    rng = random.Random(1234)
    produced = 0
    for _ in range(5000):
        measurement = _random_text(rng)
        tags = {_random_text(rng, 6): _random_text(rng) for _ in range(rng.randint(0, 3))}
        text = _random_text(rng, 30)
        ts = rng.randint(-(2**40), 2**62)
        inputs = [measurement, *tags, *tags.values()]
        try:
            line = point(measurement, tags, {"value": rng.uniform(-1e9, 1e9), "text": text}, ts)
        except ValueError:
            assert any(_unrepresentable(s) for s in inputs), inputs
            continue
        assert not any(_unrepresentable(s) for s in inputs), inputs
        produced += 1
        assert "\n" not in line and "\r" not in line
        got_measurement, got_tags, got_fields, got_ts = parse_line(line)
        assert got_measurement == measurement
        assert got_tags == tags
        assert got_fields["text"] == text.replace("\r", " ").replace("\n", " ")
        assert got_ts == ts
    assert produced > 500


@pytest.mark.parametrize("key", ["a\\ b", "a\\,b", "a\\=b"])
def test_field_key_with_backslash_before_special_is_refused_or_parses(key):
    try:
        line = point("m", {}, {key: 1.0}, 1)
    except ValueError:
        return
    assert parse_line(line) == ("m", {}, {key: 1.0}, 1)


# ----------------------------------------------------------------- InfluxQL


def _influxql_unquote(quoted: str) -> str:
    """Read one quoted InfluxQL string/identifier as influxql/scanner.go ScanString does,
    and check it ends exactly at the closing quote (nothing can be smuggled after it)."""
    quote, out, i = quoted[0], [], 1
    while True:
        if i >= len(quoted):
            raise ParseError("unterminated")
        ch = quoted[i]
        if ch == quote:
            if i != len(quoted) - 1:
                raise ParseError(f"string closed early at {i}: {quoted!r}")
            return "".join(out)
        if ch == "\n":
            raise ParseError("newline in string")
        if ch == "\\":
            nxt = quoted[i + 1]
            mapping = {"n": "\n", "\\": "\\", '"': '"', "'": "'"}
            if nxt not in mapping:
                raise ParseError(f"bad escape \\{nxt}")
            out.append(mapping[nxt])
            i += 2
            continue
        out.append(ch)
        i += 1


@pytest.mark.parametrize(
    ("name", "quoted"),
    [
        ("power", '"power"'),
        ("my meas", '"my meas"'),
        ('a"b', r'"a\"b"'),
        ("a\\b", r'"a\\b"'),
        ("it's", '"it\'s"'),
        ('"; DROP DATABASE campus; --', r'"\"; DROP DATABASE campus; --"'),
        ("", '""'),
    ],
)
def test_quote_ident(name, quoted):
    assert quote_ident(name) == quoted
    assert _influxql_unquote(quoted) == name


@pytest.mark.parametrize(
    ("value", "quoted"),
    [
        ("pm-teach-1-f1", "'pm-teach-1-f1'"),
        ("it's", r"'it\'s'"),
        ("a\\b", r"'a\\b'"),
        ("x\\'", r"'x\\\''"),
        ('say "x"', "'say \"x\"'"),
        ("' OR 1=1 --", r"'\' OR 1=1 --'"),
    ],
)
def test_quote_literal(value, quoted):
    assert quote_literal(value) == quoted
    assert _influxql_unquote(quoted) == value


@pytest.mark.parametrize("bad", ["a\nb", "a\rb", "\n"])
def test_influxql_quoting_refuses_newlines(bad):
    with pytest.raises(ValueError, match="newline"):
        quote_ident(bad)
    with pytest.raises(ValueError, match="newline"):
        quote_literal(bad)


def test_property_influxql_quoting_round_trips():
    rng = random.Random(99)
    for _ in range(5000):
        text = _random_text(rng, 20)
        if "\n" in text or "\r" in text:
            with pytest.raises(ValueError):
                quote_literal(text)
            with pytest.raises(ValueError):
                quote_ident(text)
            continue
        assert _influxql_unquote(quote_literal(text)) == text
        assert _influxql_unquote(quote_ident(text)) == text
