"""Load one YAML config file into a typed pydantic model, or fail with file, line and field.

Every component has exactly one YAML file. A bad file is rejected before anything starts, and
the message names the file, the line and the dotted field path, so an operator can fix it
without reading a stack trace.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar

import yaml
from pydantic import AfterValidator, BaseModel, ValidationError, ValidationInfo

ModelT = TypeVar("ModelT", bound=BaseModel)

PathKey = tuple[str | int, ...]

# Limits that keep a hostile or broken file from hanging or exhausting the process. Real configs
# are a few kilobytes, a few levels deep, and use an alias or two.
MAX_CONFIG_BYTES = 1024 * 1024
MAX_YAML_DEPTH = 64  # nesting, counted after aliases are expanded
MAX_YAML_VALUES = 100_000  # values (scalars, lists, mappings), counted after aliases are expanded

# A DNS name (letters, digits, '-', '_' for container names, dots) or an IPv4 literal.
_HOSTNAME = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,251}[A-Za-z0-9_])?")


def _host_port(value: str) -> str:
    host, sep, port = value.rpartition(":")
    # isdigit() alone accepts non-ASCII digits ("٩٣٠٠", "²"); a port is ASCII.
    ok = bool(sep and host and port.isascii() and port.isdigit() and 0 < int(port) < 65536)
    if ok and host.startswith("["):
        ok = host.endswith("]") and _is_ipv6(host[1:-1])
    elif ok:
        # A bare ':' in the host is an unbracketed IPv6 address: "::1:9300" is ambiguous.
        ok = _HOSTNAME.fullmatch(host) is not None
    if not ok:
        raise ValueError(f"expected host:port (IPv6 as [addr]:port), got {value!r}")
    return value


def _is_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


# A listen or upstream address in config files: "host:port" ("[::1]:8080" for IPv6).
HostPort = Annotated[str, AfterValidator(_host_port)]


# The key under which load_config passes the config file's folder to the models' validators.
CONFIG_DIR = "config_dir"


def resolve_config_path(value: Path, info: ValidationInfo) -> Path:
    """A relative path in a config file means relative to that file, as in Prometheus and nginx,
    not to wherever the process was started (the same file then works from any directory).
    Without a file (a model validated from data) it stays as given."""
    base = info.context.get(CONFIG_DIR) if isinstance(info.context, dict) else None
    if base is None or value.is_absolute():
        return value
    return Path(base) / value


ConfigPath = Annotated[Path, AfterValidator(resolve_config_path)]


def split_host_port(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    return host.strip("[]"), int(port)


@dataclass(frozen=True)
class ConfigProblem:
    """One thing wrong with a config file."""

    line: int | None  # 1-based; None when the file could not be located at all
    field: str  # dotted path, e.g. "routes.0.upstreams.1.weight"; "" for the whole file
    message: str


class FieldValueError(ValueError):
    """Raised from a model validator to blame a field below that model, so the message names its
    line: ``raise FieldValueError(("routes", 3, "name"), "route name 'a' is used twice")``."""

    def __init__(self, loc: PathKey, message: str) -> None:
        super().__init__(message)
        self.loc = loc
        self.message = message


class UnusableSetting(Exception):
    """A setting that validated but that the machine refused when the component used it at start
    (a directory that does not exist, a file that cannot be opened).

    The component raises it with the field's path; the CLI, which knows the file, turns it into
    a :class:`ConfigError` with :meth:`config_error`, so it reads like any other config problem
    (file, line, field) instead of a traceback."""

    def __init__(self, loc: PathKey, message: str) -> None:
        super().__init__(message)
        self.loc = loc
        self.message = message

    def config_error(self, path: Path | str) -> ConfigError:
        # The file was read and validated moments ago: read it again only for the field's line.
        lines: dict[PathKey, int] = {}
        try:
            with open(path, "rb") as f:
                raw = f.read(MAX_CONFIG_BYTES + 1)
            _, lines = parse_yaml_text(raw.decode("utf-8"), path)
        except (OSError, UnicodeDecodeError, ConfigError):
            pass  # changed since: the message still names the file and the field
        field = ".".join(str(p) for p in self.loc)
        line = _line_for(self.loc, lines) if lines else None
        return ConfigError(path, [ConfigProblem(line, field, self.message)])


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


class _BoundedLoader(yaml.SafeLoader):
    """A SafeLoader that refuses deep nesting and alias explosions ("billion laughs") while it
    composes, before anything is expanded: each node's expanded size and depth are computed once,
    from its children's (an alias is the very node it names, so nothing is walked twice)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._measure: dict[int, tuple[int, int]] = {}  # id(node) -> (expanded values, depth)

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                raise yaml.composer.ComposerError(
                    None, None, f"nested more than {MAX_YAML_DEPTH} levels deep", mark
                )
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        if node is None:
            return None
        size, depth = self._measured(node)
        if size > MAX_YAML_VALUES:
            raise yaml.composer.ComposerError(
                None, None, f"aliases expand to more than {MAX_YAML_VALUES:,} values", mark
            )
        if depth > MAX_YAML_DEPTH:
            raise yaml.composer.ComposerError(
                None, None, f"aliases expand to values nested more than {MAX_YAML_DEPTH} levels deep", mark
            )
        return node

    def _measured(self, node: yaml.Node) -> tuple[int, int]:
        known = self._measure.get(id(node))
        if known is not None:
            return known
        children: list[yaml.Node] = []
        if isinstance(node, yaml.SequenceNode):
            children = node.value
        elif isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        size, depth = 1, 1
        for child in children:
            # Children were composed (and measured) before their parent.
            c_size, c_depth = self._measure.get(id(child), (1, 1))
            size += c_size
            depth = max(depth, c_depth + 1)
        self._measure[id(node)] = (size, depth)
        return size, depth


def _index_lines(
    node: yaml.Node, prefix: PathKey, out: dict[PathKey, int], problems: list[ConfigProblem]
) -> None:
    """Record the 1-based line of every mapping key and sequence item below ``node``, and report
    duplicate keys (YAML says they are an error; PyYAML silently keeps the last one)."""
    if isinstance(node, yaml.MappingNode):
        seen: dict[tuple[str, str], int] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node.value)
            path = (*prefix, key)
            line = key_node.start_mark.line + 1
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                first = seen.get((key_node.tag, key))
                if first is not None:
                    field = ".".join(str(p) for p in path)
                    problems.append(ConfigProblem(line, field, f"duplicate key (first on line {first})"))
                    continue
                seen[(key_node.tag, key)] = line
            out[path] = line
            _index_lines(value_node, path, out, problems)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            path = (*prefix, i)
            out[path] = item.start_mark.line + 1
            _index_lines(item, path, out, problems)


def _line_for(loc: PathKey, lines: dict[PathKey, int]) -> int | None:
    """Line of the deepest existing prefix of ``loc`` (a missing field points at its parent)."""
    for n in range(len(loc), 0, -1):
        found = lines.get(tuple(loc[:n]))
        if found is not None:
            return found
    return 1 if lines else None


def parse_yaml_text(text: str, path: Path | str) -> tuple[Any, dict[PathKey, int]]:
    """Parse YAML text; return the data and a path -> line index. Raises ConfigError."""
    loader = _BoundedLoader(text)
    try:
        node = loader.get_single_node()
        lines: dict[PathKey, int] = {}
        problems: list[ConfigProblem] = []
        if node is not None:
            _index_lines(node, (), lines, problems)
        if problems:
            raise ConfigError(path, problems)
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = exc.problem or str(exc)
        raise ConfigError(path, [ConfigProblem(line, "", f"invalid YAML: {problem}")]) from None
    except yaml.YAMLError as exc:
        raise ConfigError(path, [ConfigProblem(None, "", f"invalid YAML: {exc}")]) from None
    finally:
        loader.dispose()
    return data, lines


def validate_data(model: type[ModelT], data: Any, lines: dict[PathKey, int], path: Path | str) -> ModelT:
    """Validate parsed data against ``model``; map pydantic errors to file lines."""
    if data is None:
        # An empty file is far more often the wrong file than a wish for every default.
        message = "the file is empty (no settings); write {} to take every default"
        raise ConfigError(path, [ConfigProblem(1, "", message)])
    if not isinstance(data, dict):
        raise ConfigError(path, [ConfigProblem(1, "", "the top level must be a mapping of settings")])
    try:
        return model.model_validate(data, context={CONFIG_DIR: Path(path).parent})
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False):
            loc: PathKey = tuple(p for p in err["loc"] if isinstance(p, str | int))
            message = err["msg"]
            blamed = err.get("ctx", {}).get("error")
            if isinstance(blamed, FieldValueError):
                loc, message = (*loc, *blamed.loc), blamed.message
            field = ".".join(str(p) for p in loc)
            problems.append(ConfigProblem(_line_for(loc, lines), field, message))
        raise ConfigError(path, problems) from None


def load_config(model: type[ModelT], path: Path | str) -> ModelT:
    """Read ``path`` and return a validated ``model``. Raises ConfigError with file:line: field."""
    p = Path(path)
    try:
        with open(p, "rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(p, [ConfigProblem(None, "", f"cannot read config file: {exc.strerror}")]) from None
    if len(raw) > MAX_CONFIG_BYTES:
        message = f"config file is larger than {MAX_CONFIG_BYTES:,} bytes; is it the right file?"
        raise ConfigError(p, [ConfigProblem(None, "", message)])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        message = f"config file is not UTF-8: {exc.reason} at byte {exc.start}"
        raise ConfigError(p, [ConfigProblem(line, "", message)]) from None
    data, lines = parse_yaml_text(text, p)
    return validate_data(model, data, lines, p)
