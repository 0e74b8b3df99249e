"""Unit tests of ``campus/registry.py`` and ``campus/yamlconf.py``: the campus
registry (DESIGN.md sections 2-4) and located configuration errors (section 7).

First the demo campus (config/campus.yaml): its size, building types, kinds,
the power and water metering trees (campus main -> building main -> floor), the
per-room dormitory sensors, and every device's model resolution. Then
``bad_configs/``: small YAML files, each a one-mistake copy of
``valid_baseline.yaml``; each test asserts the file, line, field path and message
of the ``ConfigError`` (both ``.issues`` and ``str()``). Last, the pieces of
``yamlconf`` (paths, nearest-ancestor lines) and inline device definitions.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from campus.errors import ConfigError, ConfigIssue
from campus.registry import CONTRACT_KINDS, BuildingType, load_campus
from campus.yamlconf import format_path, load_located, load_located_text

BAD = Path(__file__).resolve().parent / "bad_configs"

CONTRACT_METRICS = {
    "power": {"power_kw", "energy_kwh", "voltage_v", "current_a", "power_factor"},
    "water": {"flow_lpm", "volume_m3", "pressure_kpa"},
    "hvac": {"supply_temp_c", "return_temp_c", "setpoint_c", "fan_on", "power_kw"},
    "dorm": {"temp_c", "humidity_pct", "co2_ppm", "occupancy", "smoke"},
}
AHU_EXTRA = {
    "mixed_temp_c",
    "outdoor_temp_c",
    "oa_damper_pct",
    "heating_valve_pct",
    "cooling_valve_pct",
    "fan_speed_pct",
    "static_pressure_pa",
    "static_setpoint_pa",
}
MAINS = {"power": "pm-campus-main", "water": "wm-campus-main"}


# ------------------------------------------------------------ the demo campus


def test_demo_campus_size(campus):
    assert len(campus.buildings) >= 20
    assert len({b.type for b in campus.buildings.values()}) >= 6
    assert len(campus) >= 800
    assert len(campus.devices) == len(campus)
    assert campus.name
    assert campus.timezone == "Asia/Shanghai"


def test_demo_campus_has_every_contract_kind(campus):
    assert set(campus.kinds) == set(CONTRACT_KINDS)
    assert {d.kind for d in campus} == set(CONTRACT_KINDS)


def test_building_types_are_the_enum(campus):
    assert all(isinstance(b.type, BuildingType) for b in campus.buildings.values())
    types = {b.type for b in campus.buildings.values()}
    assert {BuildingType.dormitory, BuildingType.teaching, BuildingType.central_plant} <= types


def test_every_device_belongs_to_a_known_building(campus):
    assert {d.building for d in campus} <= set(campus.buildings)
    assert sum(len(campus.devices_in(b)) for b in campus.buildings) == len(campus)


@pytest.mark.parametrize("kind", ["power", "water"])
def test_metering_tree_campus_main_to_building_main_to_floor(campus, kind):
    main = campus.get(MAINS[kind])
    assert main is not None and main.kind == kind and main.parent is None
    building_mains = campus.children[main.id]
    # exactly one building main per building, all directly under the campus main
    assert sorted(d.building for d in building_mains) == sorted(campus.buildings)
    for bmain in building_mains:
        assert bmain.kind == kind
        assert bmain.tags.get("role") == "building_main"
        assert bmain.floor is None
        floors = campus.children[bmain.id]
        building = campus.buildings[bmain.building]
        # one floor meter per floor, in the same building, and they are leaves
        assert sorted(f.floor for f in floors) == list(range(1, building.floors + 1))
        for f in floors:
            assert f.building == bmain.building
            assert f.kind == kind
            assert f.id not in campus.children
    # nothing else of this kind is a sub-meter: the tree has exactly three levels
    metered = {d.id for d in campus if d.kind == kind and d.parent}
    expected = {d.id for d in building_mains} | {
        f.id for b in building_mains for f in campus.children[b.id]
    }
    assert metered == expected


def test_parents_are_same_kind_and_acyclic(campus):
    for d in campus:
        seen = {d.id}
        cur = d
        while cur.parent:
            parent = campus.get(cur.parent)
            assert parent is not None, cur.parent
            assert parent.kind == cur.kind
            assert parent.id not in seen
            seen.add(parent.id)
            cur = parent


def test_per_room_dorm_sensors(campus):
    dorm_buildings = [b for b in campus.buildings.values() if b.type == BuildingType.dormitory]
    assert len(dorm_buildings) >= 4
    for b in dorm_buildings:
        rooms = [d for d in campus.devices_in(b.id) if d.kind == "dorm"]
        assert len(rooms) >= b.floors * 5
        assert len({d.room for d in rooms}) == len(rooms)  # one sensor per room
        for d in rooms:
            assert d.room is not None and d.floor is not None
            assert 1 <= d.floor <= b.floors
            assert d.room.startswith(str(d.floor))  # room 305 is on floor 3
            assert d.interval_s == 300
    # dorm room sensors only in dormitories
    assert all(
        campus.buildings[d.building].type == BuildingType.dormitory
        for d in campus
        if d.kind == "dorm"
    )


def test_dorm_1_r101(campus):
    d = campus.get("dorm-1-r101")
    assert (d.building, d.kind, d.floor, d.room, d.model) == (
        "dorm-1",
        "dorm",
        1,
        "101",
        "dorm_room",
    )
    assert d.topic == "campus/dorm-1/dorm/dorm-1-r101"
    assert d.influx_tags() == {
        "building": "dorm-1",
        "device": "dorm-1-r101",
        "floor": "1",
        "room": "101",
        "zone": "dorm-1-f1",
    }


def test_every_device_metrics_resolved_from_its_model(campus):
    models = campus.config.models
    for d in campus:
        assert d.model in models, d.id
        model = models[d.model]
        assert d.kind == model.kind
        assert d.interval_s == model.interval_s
        assert d.metrics == dict(model.metrics)
        assert d.metrics is not model.metrics  # a copy: one device cannot alter the model


def test_devices_report_the_contract_metrics(campus):
    for d in campus:
        assert CONTRACT_METRICS[d.kind] <= set(d.metrics), d.id
        if d.model == "ahu":
            assert set(d.metrics) == CONTRACT_METRICS["hvac"] | AHU_EXTRA
        elif d.kind != "hvac":
            assert set(d.metrics) == CONTRACT_METRICS[d.kind]


def test_counters_are_flagged(campus):
    pm = campus.get("pm-teach-1-f1")
    wm = campus.get("wm-plant-f1")
    assert pm.metrics["energy_kwh"].counter and not pm.metrics["power_kw"].counter
    assert wm.metrics["volume_m3"].counter and not wm.metrics["flow_lpm"].counter


def test_every_metric_range_is_sane(campus):
    for d in campus:
        for name, spec in d.metrics.items():
            assert spec.min < spec.max, (d.id, name)
            assert spec.unit, (d.id, name)


def test_device_helpers(campus):
    d = campus.get("pm-teach-1-f1")
    assert d.topic == "campus/teach-1/power/pm-teach-1-f1"
    assert d.influx_tags() == {"building": "teach-1", "device": "pm-teach-1-f1", "floor": "1"}
    j = d.as_json()
    assert j["id"] == "pm-teach-1-f1" and j["parent"] == "pm-teach-1"
    assert j["metrics"]["power_kw"] == {"unit": "kW", "min": 0.0, "max": 20000.0, "counter": False}
    assert campus.get("no-such-device") is None
    assert campus.get("pm-campus-main").influx_tags() == {
        "building": "plant",
        "device": "pm-campus-main",
        "zone": "substation",
    }


def test_ids_are_valid_tag_values(campus):
    pattern = re.compile(r"[A-Za-z0-9_.-]{1,64}")
    for d in campus:
        for value in d.influx_tags().values():
            assert pattern.fullmatch(value), (d.id, value)


# ------------------------------------------------------------- bad configs


def test_valid_baseline_loads():
    c = load_campus(BAD / "valid_baseline.yaml")
    assert sorted(c.devices) == ["pm-f1", "pm-main", "wm-main"]
    assert c.children == {"pm-main": [c.get("pm-f1")]}
    assert c.kinds == ("power", "water")


CASES = [
    # (file, line, field path, message fragment)
    ("yaml_syntax_error.yaml", 17, "", "YAML syntax: mapping values are not allowed in this"),
    ("duplicate_key.yaml", 19, "buildings[0].name", "duplicate key 'name'"),
    ("unknown_top_level_key.yaml", 4, "colour", "Extra inputs are not permitted (got 'blue')"),
    (
        "unknown_device_key.yaml",
        24,
        "buildings[0].devices[1].colour",
        "Extra inputs are not permitted (got 'red')",
    ),
    ("missing_building_name.yaml", 16, "buildings[0].name", "Field required"),
    (
        "wrong_building_type.yaml",
        18,
        "buildings[0].type",
        "Input should be 'dormitory', 'teaching', 'laboratory', 'library', 'canteen', 'sports', "
        "'admin' or 'central_plant' (got 'castle')",
    ),
    (
        "bad_id_characters.yaml",
        25,
        "buildings[0].devices[2].id",
        "String should match pattern '^[A-Za-z0-9_.-]{1,64}$' (got 'wm main')",
    ),
    ("duplicate_building_id.yaml", 26, "buildings[1].id", "duplicate building id 'b1'"),
    ("duplicate_device_id.yaml", 26, "buildings[0].devices[3].id", "duplicate device id 'pm-f1'"),
    ("unknown_model.yaml", 25, "buildings[0].devices[2].model", "unknown model 'wm3000'"),
    (
        "device_without_model_or_kind.yaml",
        25,
        "buildings[0].devices[2]",
        "give either 'model' or both 'kind' and 'metrics'",
    ),
    ("unknown_parent.yaml", 24, "buildings[0].devices[1].parent", "unknown parent meter 'pm-mian'"),
    (
        "parent_of_another_kind.yaml",
        26,
        "buildings[0].devices[3].parent",
        "parent 'pm-main' is a power meter, this device is water",
    ),
    ("parent_loop.yaml", 23, "buildings[0].devices[0].parent", "parent chain of 'pm-main' loops"),
    (
        "floor_above_building.yaml",
        24,
        "buildings[0].devices[1].floor",
        "floor 7 above the building's 3 floors",
    ),
    (
        "metric_min_not_below_max.yaml",
        14,
        "models.wm.metrics.flow_lpm",
        "min (100.0) must be below max (100.0)",
    ),
    (
        "model_kind_not_declared.yaml",
        16,
        "models.gm.kind",
        "unknown kind 'gas'; declare it under 'kinds' (power, water)",
    ),
]


def _load_error(name: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_campus(BAD / name)
    return info.value


@pytest.mark.parametrize(
    ("name", "line", "field", "fragment"), CASES, ids=[c[0].removesuffix(".yaml") for c in CASES]
)
def test_bad_config_is_located(name, line, field, fragment):
    err = _load_error(name)
    file = str(BAD / name)
    matching = [
        i
        for i in err.issues
        if (i.file, i.line, i.field) == (file, line, field) and fragment in i.message
    ]
    assert matching, err.issues
    # the message a person reads names file, line and field too
    where = f"{file}:{line}:" + (f" {field}:" if field else "")
    assert any(text.startswith(where) and fragment in text for text in str(err).splitlines()), str(
        err
    )


@pytest.mark.parametrize("name", [c[0] for c in CASES if c[0] != "parent_loop.yaml"])
def test_one_mistake_gives_one_issue(name):
    assert len(_load_error(name).issues) == 1


def test_parent_loop_names_every_device_in_the_loop():
    issues = _load_error("parent_loop.yaml").issues
    assert {(i.line, i.field, i.message) for i in issues} == {
        (23, "buildings[0].devices[0].parent", "parent chain of 'pm-main' loops"),
        (24, "buildings[0].devices[1].parent", "parent chain of 'pm-f1' loops"),
    }


def test_several_mistakes_are_all_listed():
    err = _load_error("several_mistakes.yaml")
    file = str(BAD / "several_mistakes.yaml")
    assert sorted(err.issues, key=lambda i: (i.line, i.field)) == [
        ConfigIssue(
            file, 24, "buildings[0].devices[1].floor", "floor 9 above the building's 3 floors"
        ),
        ConfigIssue(
            file, 24, "buildings[0].devices[1].parent", "unknown parent meter 'pm-nowhere'"
        ),
        ConfigIssue(file, 25, "buildings[0].devices[2].model", "unknown model 'wm3000'"),
    ]
    assert len(str(err).splitlines()) == 3


BROKEN_LOADER = [
    pytest.param(
        "parent_with_unknown_model.yaml",
    ),
    pytest.param(
        "unhashable_key.yaml",
    ),
    pytest.param(
        "control_character.yaml",
    ),
    pytest.param(
        "not_utf8.yaml",
    ),
]


@pytest.mark.parametrize("name", BROKEN_LOADER)
def test_any_bad_file_gives_a_config_error_naming_it(name):
    err = _load_error(name)
    assert err.issues
    assert all(i.file == str(BAD / name) for i in err.issues)


def test_missing_file_is_a_config_error(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        load_campus(missing)
    assert info.value.issues == [
        ConfigIssue(str(missing), None, "", "cannot read: No such file or directory")
    ]
    assert str(info.value) == f"{missing}: cannot read: No such file or directory"


def test_empty_file_reports_required_sections(tmp_path):
    p = tmp_path / "empty.yaml"
    p.write_text("# nothing here\n")
    with pytest.raises(ConfigError) as info:
        load_campus(p)
    assert {(i.field, i.message) for i in info.value.issues} == {
        ("campus", "Field required"),
        ("buildings", "Field required"),
    }


def test_many_issues_are_summarised():
    issues = [ConfigIssue("f.yaml", n, "x", "bad") for n in range(30)]
    text = str(ConfigError(issues)).splitlines()
    assert len(text) == 26
    assert text[0] == "f.yaml:0: x: bad"
    assert text[-1] == "... and 5 more"


# ------------------------------------------------------ inline device definitions

INLINE = """\
campus: {name: Inline}
kinds: [power, gas]
models:
  pm:
    kind: power
    interval_s: 60
    metrics:
      power_kw: {unit: kW, min: 0, max: 100}
buildings:
  - id: b1
    name: B
    type: admin
    lat: 0
    lon: 0
    floors: 2
    devices:
      - id: gas-1
        kind: gas
        interval_s: 900
        metrics:
          gas_m3: {unit: m3, min: 0, max: 1.0e9, counter: true}
      - id: pm-1
        model: pm
        interval_s: 30
        floor: 0
        metrics:
          power_kw: {unit: kW, min: 0, max: 500}
          voltage_v: {unit: V, min: 0, max: 500}
"""


def test_inline_kind_and_metrics_and_model_overrides(tmp_path):
    p = tmp_path / "campus.yaml"
    p.write_text(INLINE)
    c = load_campus(p)
    gas = c.get("gas-1")
    assert (gas.kind, gas.model, gas.interval_s) == ("gas", None, 900)
    assert set(gas.metrics) == {"gas_m3"} and gas.metrics["gas_m3"].counter
    pm = c.get("pm-1")
    assert (pm.kind, pm.model, pm.interval_s, pm.floor) == ("power", "pm", 30, 0)
    assert pm.metrics["power_kw"].max == 500  # device overrides its model's range
    assert set(pm.metrics) == {"power_kw", "voltage_v"}
    assert c.config.models["pm"].metrics["power_kw"].max == 100  # model untouched
    assert c.source == str(p)


def test_inline_kind_must_be_declared(tmp_path):
    p = tmp_path / "campus.yaml"
    p.write_text(INLINE.replace("kinds: [power, gas]", "kinds: [power]"))
    with pytest.raises(ConfigError) as info:
        load_campus(p)
    assert [(i.line, i.field, i.message) for i in info.value.issues] == [
        (18, "buildings[0].devices[0].kind", "unknown kind 'gas'")
    ]


def test_kind_contradicting_model(tmp_path):
    p = tmp_path / "campus.yaml"
    p.write_text(INLINE.replace("        model: pm\n", "        model: pm\n        kind: gas\n"))
    with pytest.raises(ConfigError) as info:
        load_campus(p)
    assert [(i.line, i.field, i.message) for i in info.value.issues] == [
        (24, "buildings[0].devices[1].kind", "kind 'gas' contradicts model 'pm' (kind 'power')")
    ]


# ----------------------------------------------------------------- yamlconf


@pytest.mark.parametrize(
    ("path", "text"),
    [
        ((), ""),
        (("buildings",), "buildings"),
        (("buildings", 3, "id"), "buildings[3].id"),
        (("models", "pm", "metrics", "power_kw"), "models.pm.metrics.power_kw"),
        ((0, "a", 1, 2), "[0].a[1][2]"),
    ],
)
def test_format_path(path, text):
    assert format_path(path) == text


def test_located_lines_and_nearest_ancestor():
    located = load_located_text("a: 1\nb:\n  - x: 2\n    y: [3,\n        4]\n", "t.yaml")
    assert located.data == {"a": 1, "b": [{"x": 2, "y": [3, 4]}]}
    assert located.line_of(("a",)) == 1
    assert located.line_of(("b", 0, "x")) == 3
    assert located.line_of(("b", 0, "y", 1)) == 5
    assert located.line_of(("b", 0, "missing")) == 3  # nearest ancestor: the mapping
    assert located.line_of(("nope", 1)) == 1  # the document itself
    assert located.issue(("b", 0, "z"), "m") == ConfigIssue("t.yaml", 3, "b[0].z", "m")


def test_duplicate_key_in_nested_flow_mapping():
    with pytest.raises(ConfigError) as info:
        load_located_text("a:\n  b: {x: 1, y: 2, x: 3}\n", "dup.yaml")
    assert info.value.issues == [ConfigIssue("dup.yaml", 2, "a.b.x", "duplicate key 'x'")]


def test_yaml_merge_keys_are_allowed():
    located = load_located_text("base: &b {u: 1}\nthing:\n  <<: *b\n  v: 2\n", "m.yaml")
    assert located.data["thing"] == {"u": 1, "v": 2}


def _plain(value: object) -> bool:
    if isinstance(value, dict):
        return all(_plain(k) and _plain(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_plain(v) for v in value)
    return value is None or isinstance(value, str | int | float | bool)


@pytest.mark.parametrize(
    "text",
    [
        "campus: !!python/object/apply:os.system ['true']\n",
        "campus: !!python/object/new:dict {a: 1}\n",
    ],
)
def test_safe_loader_never_builds_python_objects_from_collections(tmp_path, text):
    p = tmp_path / "evil.yaml"
    p.write_text(text)
    assert _plain(load_located(p).data)


def test_safe_loader_refuses_python_tags_on_scalars(tmp_path):
    p = tmp_path / "evil.yaml"
    p.write_text("name: ok\ncampus: !!python/name:os.system ''\n")
    with pytest.raises(ConfigError) as info:
        load_located(p)
    issue = info.value.issues[0]
    assert (issue.file, issue.line, issue.field) == (str(p), 2, "")
    assert issue.message.startswith("YAML syntax: could not determine a constructor")
