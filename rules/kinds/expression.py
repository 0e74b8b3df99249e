"""``expression``: a safe arithmetic and boolean expression over one device's
metrics, evaluated by simpleeval (never ``eval``), e.g. the ASHRAE Guideline 36
air-handler fault "mixed air colder than both return and outdoor air":
``mixed_temp_c < min(return_temp_c, outdoor_temp_c) - 1``.

Names are the device's metrics; ``abs``, ``min``, ``max`` and ``round`` are the
functions. A reading that lacks a name the expression uses gives no verdict.
``value`` (optional) is a second expression whose result the alert reports.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from pydantic import field_validator
from simpleeval import NameNotDefined, SimpleEval

from campus.registry import Campus, Device
from rules.kinds.base import Condition, Issue, Kind, Params, Verdict

if TYPE_CHECKING:
    from rules.model import Rule

FUNCTIONS = {"abs": abs, "min": min, "max": max, "round": round}


def names_in(expr: str) -> set[str]:
    """The variable names an expression reads."""
    tree = ast.parse(expr, mode="eval")
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} - set(FUNCTIONS)


def _check(expr: str) -> str:
    try:
        tree = ast.parse(expr, mode="eval")
    except SyntaxError as exc:
        raise ValueError(f"expression {expr!r}: {exc.msg}") from None
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute | ast.Subscript | ast.Lambda | ast.comprehension):
            raise ValueError(f"expression {expr!r}: only arithmetic, comparisons and and/or/not")
        if isinstance(node, ast.Call) and not (
            isinstance(node.func, ast.Name) and node.func.id in FUNCTIONS
        ):
            raise ValueError(f"expression {expr!r}: functions are {', '.join(FUNCTIONS)}")
    return expr


class ExpressionParams(Params):
    expr: str
    value: str | None = None

    _exprs = field_validator("expr", "value")(lambda cls, v: v if v is None else _check(v))


class ExpressionCondition(Condition):
    def __init__(self, p: ExpressionParams) -> None:
        self.evaluator = SimpleEval(functions=FUNCTIONS)
        self.expr = self.evaluator.parse(p.expr)
        self.value = self.evaluator.parse(p.value) if p.value else None
        self.text = p.expr

    def observe(self, source: str, ts_ms: int, metrics: Mapping[str, float]) -> Verdict | None:
        ev = self.evaluator
        ev.names = metrics
        try:
            result: Any = ev.eval(self.text, previously_parsed=self.expr)
            value = ev.eval("", previously_parsed=self.value) if self.value else None
        except NameNotDefined:
            return None
        except (ArithmeticError, TypeError, ValueError):
            return None
        v = float(value) if isinstance(value, int | float) else None
        return Verdict(bool(result), v, self.text if result else "")


class Expression(Kind):
    name = "expression"
    params = ExpressionParams
    needs_metric = False

    @classmethod
    def extra_checks(cls, rule: Rule, campus: Campus, devices: list[Device]) -> Iterator[Issue]:
        for key in ("expr", "value"):
            text = rule.params.get(key)
            if not isinstance(text, str):
                continue
            try:
                names = names_in(text)
            except SyntaxError:
                continue  # already reported by the parameter model
            known = set().union(*(d.metrics for d in devices))
            for name in sorted(names - known):
                yield ("params", key), f"{name!r} is not a metric of any selected device"

    @classmethod
    def applies(cls, rule: Rule, device: Device, campus: Campus) -> bool:
        if not rule.select.matches(device):
            return False
        try:
            return names_in(str(rule.params.get("expr", ""))) <= set(device.metrics)
        except SyntaxError:
            return False

    def condition(self) -> Condition:
        assert isinstance(self.p, ExpressionParams)
        return ExpressionCondition(self.p)
