"""Load one YAML config file into a typed pydantic model, or fail with file, line and field.

Every component has exactly one YAML file. A bad file is rejected before anything starts, and
the message names the file, the line and the dotted field path, so an operator can fix it
without reading a stack trace.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar

import yaml
from pydantic import AfterValidator, BaseModel, ValidationError

ModelT = TypeVar("ModelT", bound=BaseModel)

PathKey = tuple[str | int, ...]


def _host_port(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected host:port, got {value!r}")
    return value


# A listen or upstream address in config files: "host:port" ("[::1]:8080" for IPv6).
HostPort = Annotated[str, AfterValidator(_host_port)]


def split_host_port(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    return host.strip("[]"), int(port)


@dataclass(frozen=True)
class ConfigProblem:
    """One thing wrong with a config file."""

    line: int | None  # 1-based; None when the file could not be located at all
    field: str  # dotted path, e.g. "routes.0.upstreams.1.weight"; "" for the whole file
    message: str


class ConfigError(Exception):
    """A config file that cannot be used. ``str()`` is the operator-facing message."""

    def __init__(self, path: Path | str, problems: list[ConfigProblem]) -> None:
        self.path = Path(path)
        self.problems = problems
        super().__init__(self.render())

    def render(self) -> str:
        lines = []
        for p in self.problems:
            where = f"{self.path}:{p.line}" if p.line is not None else str(self.path)
            field = f" {p.field}:" if p.field else ""
            lines.append(f"{where}:{field} {p.message}")
        return "\n".join(lines)


def _index_lines(node: yaml.Node, prefix: PathKey, out: dict[PathKey, int]) -> None:
    """Record the 1-based line of every mapping key and sequence item below ``node``."""
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node.value)
            path = (*prefix, key)
            out[path] = key_node.start_mark.line + 1
            _index_lines(value_node, path, out)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            path = (*prefix, i)
            out[path] = item.start_mark.line + 1
            _index_lines(item, path, out)


def _line_for(loc: PathKey, lines: dict[PathKey, int]) -> int | None:
    """Line of the deepest existing prefix of ``loc`` (a missing field points at its parent)."""
    for n in range(len(loc), 0, -1):
        found = lines.get(tuple(loc[:n]))
        if found is not None:
            return found
    return 1 if lines else None


def parse_yaml_text(text: str, path: Path | str) -> tuple[Any, dict[PathKey, int]]:
    """Parse YAML text; return the data and a path -> line index. Raises ConfigError."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = exc.problem or str(exc)
        raise ConfigError(path, [ConfigProblem(line, "", f"invalid YAML: {problem}")]) from None
    except yaml.YAMLError as exc:
        raise ConfigError(path, [ConfigProblem(None, "", f"invalid YAML: {exc}")]) from None
    lines: dict[PathKey, int] = {}
    if node is not None:
        _index_lines(node, (), lines)
    return data, lines


def validate_data(model: type[ModelT], data: Any, lines: dict[PathKey, int], path: Path | str) -> ModelT:
    """Validate parsed data against ``model``; map pydantic errors to file lines."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(path, [ConfigProblem(1, "", "the top level must be a mapping of settings")])
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False):
            loc: PathKey = tuple(p for p in err["loc"] if isinstance(p, str | int))
            field = ".".join(str(p) for p in loc)
            problems.append(ConfigProblem(_line_for(loc, lines), field, err["msg"]))
        raise ConfigError(path, problems) from None


def load_config(model: type[ModelT], path: Path | str) -> ModelT:
    """Read ``path`` and return a validated ``model``. Raises ConfigError with file:line: field."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(p, [ConfigProblem(None, "", f"cannot read config file: {exc.strerror}")]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(p, [ConfigProblem(None, "", f"config file is not UTF-8: {exc.reason}")]) from None
    data, lines = parse_yaml_text(text, p)
    return validate_data(model, data, lines, p)
