"""What a rule kind is: a parameter model, load-time checks and a condition.

A condition is fed the readings of the devices it watches, in event time, and
answers with a :class:`Verdict` (is the condition true now, the value to
report, a detail) or ``None`` when it has nothing to say yet. The engine owns
everything common to every kind: ``for``, the clear condition and its delay,
schedules, maintenance, severity, inhibition and the alerts themselves.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, NamedTuple

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError

from campus.registry import Campus, Device

if TYPE_CHECKING:
    from rules.model import Rule

Issue = tuple[tuple[str | int, ...], str]


class Verdict(NamedTuple):
    """A condition's answer for one moment (a tuple: made for every reading)."""

    active: bool
    value: float | None = None
    detail: str = ""


INACTIVE = Verdict(False)
"""The common answer, made once: a tuple built per reading costs more than the check."""


def _window(value: object) -> timedelta:
    from rules.model import duration

    d = duration(value)
    if d <= timedelta(0):
        raise ValueError("window must be longer than 0")
    return d


Window = Annotated[timedelta, BeforeValidator(_window)]
"""A kind's time window: ``15m`` style text or seconds, longer than 0."""


class Params(BaseModel):
    """Base of every kind's parameters: unknown keys are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Condition:
    """One (rule, device) condition; override what the kind reacts to."""

    def observe(self, source: str, ts_ms: int, metrics: Mapping[str, float]) -> Verdict | None:
        """A reading of ``source`` (the device or one it watches) at ``ts_ms``."""
        return None

    def at(self, now_ms: int) -> Verdict | None:
        """Time passed (the watermark in replay, the clock live)."""
        return None

    def status(self, online: bool, ts_ms: int) -> Verdict | None:
        """The device's online/offline status changed."""
        return None

    def next_check_ms(self) -> int | None:
        """For time-driven kinds: the earliest time :meth:`at` could change its answer."""
        return None


class Kind:
    """A rule kind: subclass, set ``name`` and ``params``, implement :meth:`condition`."""

    name: ClassVar[str]
    params: ClassVar[type[Params]]
    needs_metric: ClassVar[bool] = True
    time_driven: ClassVar[bool] = False

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> Params:
        """The kind's parameters (raises ``ValidationError``)."""
        return cls.params.model_validate(dict(raw))

    @classmethod
    def check(cls, rule: Rule, campus: Campus) -> Iterator[Issue]:
        """Load-time problems: parameters, clear parameters, metric, selection."""
        try:
            cls.parse(rule.params)
        except ValidationError as exc:
            for err in exc.errors(include_url=False):
                yield ("params", *err["loc"]), err["msg"]
        else:
            if rule.clear:  # the clear parameters are the params with these replaced
                try:
                    cls.parse({**rule.params, **rule.clear})
                except ValidationError as exc:
                    for err in exc.errors(include_url=False):
                        yield ("clear", *err["loc"]), err["msg"]
        devices = [d for d in campus if rule.select.matches(d)]
        if not devices:
            yield ("select",), "selects no device of the campus"
            return
        if cls.needs_metric:
            if rule.metric is None:
                yield ("metric",), f"a {cls.name} rule needs a metric"
            elif not any(rule.metric in d.metrics for d in devices):
                yield ("metric",), f"no selected device has metric {rule.metric!r}"
        yield from cls.extra_checks(rule, campus, devices)

    @classmethod
    def extra_checks(cls, rule: Rule, campus: Campus, devices: list[Device]) -> Iterator[Issue]:
        """Checks of one kind beyond the common ones."""
        return iter(())

    @classmethod
    def applies(cls, rule: Rule, device: Device, campus: Campus) -> bool:
        """Whether the rule runs for ``device`` (selected, and has what it needs)."""
        return rule.select.matches(device) and (
            not cls.needs_metric or (rule.metric is not None and rule.metric in device.metrics)
        )

    @classmethod
    def watched(cls, rule: Rule, device: Device, campus: Campus) -> list[str]:
        """Devices whose readings feed this (rule, device) condition."""
        return [device.id]

    def __init__(self, rule: Rule, params: Params, device: Device, campus: Campus) -> None:
        self.rule = rule
        self.p = params
        self.device = device
        self.campus = campus

    def condition(self) -> Condition:
        """A fresh condition for this rule on this device."""
        raise NotImplementedError
