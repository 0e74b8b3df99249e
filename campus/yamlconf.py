"""YAML loading that remembers where every value came from.

Configuration errors must name the file, the line and the field. PyYAML's
composer gives every node a start mark; we build plain Python data from the
node tree and keep a map from each value's path (``("buildings", 3, "id")``) to
its 1-based line, then turn pydantic errors and our own reference checks into
:class:`~campus.errors.ConfigIssue` objects located by that map.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from campus.errors import ConfigError, ConfigIssue

Path_ = tuple[str | int, ...]
M = TypeVar("M", bound=BaseModel)


class Strict(BaseModel):
    """Base of every configuration model: unknown keys are errors, values frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """A safe loader (no arbitrary objects) used only to compose nodes."""


def _construct(loader: _Loader, node: yaml.Node, path: Path_, lines: dict[Path_, int]) -> Any:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, str | int | float | bool) and key is not None:
                raise ConfigError(
                    [
                        ConfigIssue(
                            str(loader.name),
                            key_node.start_mark.line + 1,
                            format_path(path),
                            "mapping keys must be plain values",
                        )
                    ]
                )
            part: str | int = key if isinstance(key, str | int) else str(key)
            if key in out:
                raise ConfigError(
                    [
                        ConfigIssue(
                            str(loader.name),
                            key_node.start_mark.line + 1,
                            format_path((*path, part)),
                            f"duplicate key {key!r}",
                        )
                    ]
                )
            out[key] = _construct(loader, value_node, (*path, part), lines)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_construct(loader, child, (*path, i), lines) for i, child in enumerate(node.value)]
    return loader.construct_object(node, deep=True)


class Located:
    """Parsed YAML data plus the line of every value in it."""

    def __init__(self, file: str, data: Any, lines: dict[Path_, int]) -> None:
        self.file = file
        self.data = data
        self.lines = lines

    def line_of(self, path: Iterable[str | int]) -> int | None:
        """The line of ``path``, or of its nearest ancestor that has one."""
        p = tuple(path)
        while p:
            if p in self.lines:
                return self.lines[p]
            p = p[:-1]
        return self.lines.get((), None)

    def issue(self, path: Iterable[str | int], message: str) -> ConfigIssue:
        """A located issue for ``path``."""
        p = tuple(path)
        return ConfigIssue(self.file, self.line_of(p), format_path(p), message)


def format_path(path: Iterable[str | int]) -> str:
    """``("buildings", 3, "id")`` -> ``buildings[3].id``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def load_located(path: str | Path) -> Located:
    """Parse a YAML file, raising :class:`ConfigError` with the line on syntax errors."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([ConfigIssue(str(p), None, "", f"cannot read: {exc.strerror}")]) from exc
    except UnicodeDecodeError as exc:
        line = p.read_bytes()[: exc.start].count(b"\n") + 1
        raise ConfigError([ConfigIssue(str(p), line, "", "file is not UTF-8 text")]) from None
    return load_located_text(text, str(p))


# Far above any real campus (the demo campus is about 30,000 values), far below
# what would exhaust memory: a few hundred bytes of nested aliases expand to
# billions of values ("billion laughs") unless counted before they are built.
MAX_VALUES = 2_000_000
MAX_DEPTH = 64


def load_located_text(
    text: str, name: str, *, max_values: int = MAX_VALUES, max_depth: int = MAX_DEPTH
) -> Located:
    """Parse YAML text under the file name ``name``; refused before it is built
    when, with every alias expanded, it holds more than ``max_values`` values or
    nests deeper than ``max_depth``, or when an alias contains itself."""
    lines: dict[Path_, int] = {}
    loader: _Loader | None = None
    try:
        loader = _Loader(text)
        loader.name = name
        node = loader.get_single_node()
        if node is not None:
            _check_shape(node, name, max_values, max_depth)
        data = {} if node is None else _construct(loader, node, (), lines)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line = mark.line + 1 if mark is not None else None
        raise ConfigError([ConfigIssue(name, line, "", f"YAML syntax: {exc.problem}")]) from exc
    except yaml.reader.ReaderError as exc:
        line = text[: exc.position].count("\n") + 1
        raise ConfigError(
            [ConfigIssue(name, line, "", f"character {exc.character!r} is not allowed in YAML")]
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError([ConfigIssue(name, None, "", f"YAML: {exc}")]) from None
    finally:
        if loader is not None:
            loader.dispose()
    return Located(name, data, lines)


def _check_shape(root: yaml.Node, name: str, max_values: int, max_depth: int) -> None:
    """Refuse a node graph too large or deep once its aliases are expanded,
    counted on the composed nodes (shared by aliases) in time linear in the text."""
    memo: dict[int, tuple[int, int]] = {}  # node -> (values, depth) expanded
    path: set[int] = set()  # nodes on the current descent
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        kids = _children(node)
        if done:
            size = 1 + sum(memo[id(k)][0] for k in kids)
            depth = 1 + max((memo[id(k)][1] for k in kids), default=0)
            memo[id(node)] = (size, depth)
            path.discard(id(node))
            if size > max_values:
                why = f"more than {max_values:,} values with aliases expanded"
                raise ConfigError([ConfigIssue(name, node.start_mark.line + 1, "", why)])
            if depth > max_depth:
                why = f"nested more than {max_depth} levels deep"
                raise ConfigError([ConfigIssue(name, node.start_mark.line + 1, "", why)])
            continue
        if id(node) in memo:
            continue
        path.add(id(node))
        stack.append((node, True))
        for k in kids:
            if id(k) in path:
                why = "an alias refers to a value that contains it"
                raise ConfigError([ConfigIssue(name, k.start_mark.line + 1, "", why)])
            if id(k) not in memo:
                stack.append((k, False))


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def validate(model: type[M], located: Located, context: dict[str, Any] | None = None) -> M:
    """Validate ``located.data`` as ``model``; every error names file, line and field."""
    try:
        return model.model_validate(located.data, context=context)
    except ValidationError as exc:
        issues = []
        for err in exc.errors(include_url=False):
            loc = tuple(err["loc"])
            msg = err["msg"]
            if "input" in err and err["type"] not in ("missing",) and _short(err["input"]):
                msg += f" (got {err['input']!r})"
            issues.append(located.issue(loc, msg))
        raise ConfigError(issues) from None


def _short(value: Any) -> bool:
    return isinstance(value, str | int | float | bool) and len(repr(value)) <= 80
