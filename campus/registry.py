"""The campus registry: buildings, device models and devices from ``campus.yaml``.

A device kind or metric differs from another only by data (unit, valid range,
reporting interval), so models are rows in a table, not classes. Loading
validates structure with pydantic (unknown keys are errors) and then checks
every reference (a device's model, its parent meter, its floor); each problem
names the file, the line and the field.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property
from pathlib import Path
from typing import Annotated

from pydantic import Field, StringConstraints, model_validator

from campus.errors import ConfigError, ConfigIssue
from campus.ids import KIND_RE, METRIC_NAME_RE, TAG_VALUE_RE
from campus.yamlconf import Located, Strict, load_located, validate

TagValue = Annotated[str, StringConstraints(pattern=f"^{TAG_VALUE_RE.pattern}$")]
MetricName = Annotated[str, StringConstraints(pattern=f"^{METRIC_NAME_RE.pattern}$")]
KindName = Annotated[str, StringConstraints(pattern=f"^{KIND_RE.pattern}$")]

CONTRACT_KINDS = ("power", "water", "hvac", "dorm")


class BuildingType(StrEnum):
    """What a building is used for; the simulator's occupancy profiles key on it."""

    dormitory = "dormitory"
    teaching = "teaching"
    laboratory = "laboratory"
    library = "library"
    canteen = "canteen"
    sports = "sports"
    admin = "admin"
    central_plant = "central_plant"


class MetricSpec(Strict):
    """One metric of a device: its unit and the range a healthy sensor can report."""

    unit: str
    min: float
    max: float
    counter: bool = Field(False, description="cumulative counter (never decreases)")

    @model_validator(mode="after")
    def _range(self) -> MetricSpec:
        if not self.min < self.max:
            raise ValueError(f"min ({self.min}) must be below max ({self.max})")
        return self


class DeviceModel(Strict):
    """A kind of hardware: which metrics it reports, and how often."""

    kind: KindName
    description: str = ""
    interval_s: float = Field(gt=0, le=86400)
    metrics: dict[MetricName, MetricSpec] = Field(min_length=1)


class DeviceConfig(Strict):
    """A device as written in campus.yaml (before its model is resolved)."""

    id: TagValue
    model: str | None = None
    kind: KindName | None = None
    interval_s: float | None = Field(None, gt=0, le=86400)
    metrics: dict[MetricName, MetricSpec] | None = None
    floor: int | None = Field(None, ge=-10, le=200)
    room: TagValue | None = None
    zone: TagValue | None = None
    parent: TagValue | None = None
    tags: dict[MetricName, TagValue] = Field(default_factory=dict)
    sim: dict[MetricName, float] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _model_or_inline(self) -> DeviceConfig:
        if self.model is None and (self.kind is None or self.metrics is None):
            raise ValueError("give either 'model' or both 'kind' and 'metrics'")
        return self


class BuildingConfig(Strict):
    """A building and the devices installed in it."""

    id: TagValue
    name: str = Field(min_length=1, max_length=120)
    name_zh: str | None = Field(None, min_length=1, max_length=120)  # the Chinese pages' name
    type: BuildingType
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    floors: int = Field(ge=1, le=200)
    devices: list[DeviceConfig] = Field(default_factory=list)


class CampusInfo(Strict):
    """Campus-wide facts."""

    name: str
    name_zh: str | None = Field(None, min_length=1, max_length=120)  # the Chinese pages' name
    timezone: str = "UTC"


class CampusConfig(Strict):
    """The whole campus.yaml file."""

    campus: CampusInfo
    kinds: list[KindName] = Field(default_factory=lambda: list(CONTRACT_KINDS))
    models: dict[str, DeviceModel] = Field(default_factory=dict)
    buildings: list[BuildingConfig] = Field(min_length=1)


@dataclass(frozen=True)
class Device:
    """A device with its model resolved: everything ingest and rules need."""

    id: str
    building: str
    kind: str
    model: str | None
    interval_s: float
    metrics: dict[str, MetricSpec]
    floor: int | None = None
    room: str | None = None
    zone: str | None = None
    parent: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    sim: dict[str, float] = field(default_factory=dict)

    @property
    def topic(self) -> str:
        """The MQTT topic this device publishes readings on."""
        return f"campus/{self.building}/{self.kind}/{self.id}"

    def influx_tags(self) -> dict[str, str]:
        """Tags written with every point of this device (InfluxDB contract)."""
        tags = {"building": self.building, "device": self.id}
        if self.floor is not None:
            tags["floor"] = str(self.floor)
        if self.room is not None:
            tags["room"] = self.room
        if self.zone is not None:
            tags["zone"] = self.zone
        return tags

    def as_json(self) -> dict[str, object]:
        """A plain dict for ``campus devices list --json`` and the API."""
        return {
            "id": self.id,
            "building": self.building,
            "kind": self.kind,
            "model": self.model,
            "interval_s": self.interval_s,
            "floor": self.floor,
            "room": self.room,
            "zone": self.zone,
            "parent": self.parent,
            "metrics": {name: spec.model_dump() for name, spec in self.metrics.items()},
        }


@dataclass(frozen=True)
class Building:
    """A building (without its devices; see :meth:`Campus.devices_in`)."""

    id: str
    name: str
    type: BuildingType
    lat: float
    lon: float
    floors: int
    name_zh: str | None = None


class Campus:
    """The loaded, cross-checked registry."""

    def __init__(self, config: CampusConfig, source: str = "<memory>") -> None:
        self.config = config
        self.source = source
        self.name = config.campus.name
        self.name_zh = config.campus.name_zh
        self.timezone = config.campus.timezone
        self.kinds = tuple(config.kinds)
        self.buildings: dict[str, Building] = {}
        self.devices: dict[str, Device] = {}
        for b in config.buildings:
            self.buildings[b.id] = Building(
                b.id, b.name, b.type, b.lat, b.lon, b.floors, name_zh=b.name_zh
            )
            for d in b.devices:
                model = config.models[d.model] if d.model else None
                kind = d.kind or (model.kind if model else "")
                metrics = dict(model.metrics) if model else {}
                metrics.update(d.metrics or {})
                interval = d.interval_s or (model.interval_s if model else 60.0)
                self.devices[d.id] = Device(
                    id=d.id,
                    building=b.id,
                    kind=kind,
                    model=d.model,
                    interval_s=interval,
                    metrics=metrics,
                    floor=d.floor,
                    room=d.room,
                    zone=d.zone,
                    parent=d.parent,
                    tags=dict(d.tags),
                    sim=dict(d.sim),
                )

    def __iter__(self) -> Iterator[Device]:
        return iter(self.devices.values())

    def __len__(self) -> int:
        return len(self.devices)

    def get(self, device_id: str) -> Device | None:
        """The device with this id, or None."""
        return self.devices.get(device_id)

    def devices_in(self, building: str) -> list[Device]:
        """Devices installed in ``building``."""
        return [d for d in self.devices.values() if d.building == building]

    @cached_property
    def children(self) -> dict[str, list[Device]]:
        """Sub-meters of each parent meter, by parent id."""
        out: dict[str, list[Device]] = {}
        for d in self.devices.values():
            if d.parent:
                out.setdefault(d.parent, []).append(d)
        return out


def check_references(cfg: CampusConfig, located: Located) -> list[ConfigIssue]:
    """Cross-field checks pydantic cannot do alone: ids, models, parents, floors."""
    issues: list[ConfigIssue] = []
    kinds = set(cfg.kinds)
    for name, model in cfg.models.items():
        if model.kind not in kinds:
            issues.append(
                located.issue(
                    ("models", name, "kind"),
                    f"unknown kind {model.kind!r}; "
                    f"declare it under 'kinds' ({', '.join(sorted(kinds))})",
                )
            )
    seen_buildings: dict[str, int] = {}
    seen_devices: dict[str, tuple[int, int]] = {}
    kind_of: dict[str, str] = {}
    parents: dict[str, tuple[str, tuple[str | int, ...]]] = {}
    for bi, b in enumerate(cfg.buildings):
        if b.id in seen_buildings:
            issues.append(located.issue(("buildings", bi, "id"), f"duplicate building id {b.id!r}"))
        seen_buildings[b.id] = bi
        for di, d in enumerate(b.devices):
            path: tuple[str | int, ...] = ("buildings", bi, "devices", di)
            if d.id in seen_devices:
                issues.append(located.issue((*path, "id"), f"duplicate device id {d.id!r}"))
            seen_devices[d.id] = (bi, di)
            kind = d.kind
            if d.model is not None:
                found = cfg.models.get(d.model)
                if found is None:
                    issues.append(located.issue((*path, "model"), f"unknown model {d.model!r}"))
                    kind_of[d.id] = ""  # unknown: its children are not checked against it
                    continue
                model = found
                if kind is not None and kind != model.kind:
                    issues.append(
                        located.issue(
                            (*path, "kind"),
                            f"kind {kind!r} contradicts model {d.model!r} (kind {model.kind!r})",
                        )
                    )
                kind = model.kind
            if kind is not None and kind not in kinds:
                issues.append(located.issue((*path, "kind"), f"unknown kind {kind!r}"))
            kind_of[d.id] = kind or ""
            if d.floor is not None and d.floor > b.floors:
                issues.append(
                    located.issue(
                        (*path, "floor"), f"floor {d.floor} above the building's {b.floors} floors"
                    )
                )
            if d.parent is not None:
                parents[d.id] = (d.parent, (*path, "parent"))
    for dev, (parent, ppath) in parents.items():
        if parent not in seen_devices:
            issues.append(located.issue(ppath, f"unknown parent meter {parent!r}"))
        elif kind_of[parent] and kind_of[dev] and kind_of[parent] != kind_of[dev]:
            issues.append(
                located.issue(
                    ppath,
                    f"parent {parent!r} is a {kind_of[parent]} meter, "
                    f"this device is {kind_of[dev]}",
                )
            )
    for dev, (_, ppath) in parents.items():
        seen: set[str] = set()
        cur: str | None = dev
        while cur is not None and cur in parents:
            if cur in seen:
                issues.append(located.issue(ppath, f"parent chain of {dev!r} loops"))
                break
            seen.add(cur)
            cur = parents[cur][0]
    return issues


def load_campus(path: str | Path) -> Campus:
    """Load and check ``campus.yaml``; raise :class:`ConfigError` listing every problem."""
    located = load_located(path)
    cfg = validate(CampusConfig, located)
    issues = check_references(cfg, located)
    if issues:
        raise ConfigError(issues)
    return Campus(cfg, str(path))
