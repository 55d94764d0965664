"""The pipeline file as read: YAML with each key path's line, for errors to point at; ``${VAR}`` expanded."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import yaml

from .errors import ConfigError

KeyPath = tuple[str | int, ...]

# ------------------------------------------------------------------------------------------ YAML


def parse_yaml(text: str, shown: str) -> tuple[Any, dict[KeyPath, int]]:
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, {}
        lines: dict[KeyPath, int] = {}
        _walk(node, (), lines, shown)
        return loader.construct_document(node), lines
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{shown}:{mark.line + 1}" if mark else shown
        problem = " ".join(str(p) for p in (exc.context, exc.problem) if p)
        raise ConfigError(f"{where}: invalid YAML: {problem}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{shown}: invalid YAML: {exc}") from None
    finally:
        loader.dispose()


def _walk(node: yaml.Node, path: KeyPath, lines: dict[KeyPath, int], shown: str) -> None:
    """Record the line of every key and list item, and refuse duplicate keys (YAML would keep the last)."""
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                _walk(value_node, path, lines, shown)
                continue
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node.start_mark)
            child = (*path, key)
            if key in seen:
                raise ConfigError(f"{shown}:{key_node.start_mark.line + 1}: {_fmt(child)}: duplicate key")
            seen.add(key)
            lines.setdefault(child, key_node.start_mark.line + 1)
            _walk(value_node, child, lines, shown)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            child = (*path, i)
            lines.setdefault(child, item.start_mark.line + 1)
            _walk(item, child, lines, shown)


# ------------------------------------------------------------------------------------ expansion

_VAR = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|\$\{[^}]*\}?")


def expand(data: Any, env: Mapping[str, str], shown: str, lines: dict[KeyPath, int]) -> Any:
    problems: list[str] = []

    def one(text: str, path: KeyPath) -> str:
        def sub(m: re.Match[str]) -> str:
            whole = m.group(0)
            if whole == "$${":
                return "${"
            name, default = m.group(1), m.group(2)
            if name is None:
                problems.append(f"{locate(shown, lines, path)}: {whole} is not a valid reference; "
                                "use ${NAME} or ${NAME:-default} (and $${ for a literal ${)")
                return ""
            value = env.get(name)
            if default is not None and not value:
                return default
            if value is None:
                problems.append(f"{locate(shown, lines, path)}: ${{{name}}} is unset; export it or give a "
                                f"default with ${{{name}:-...}}")
                return ""
            return value

        return _VAR.sub(sub, text)

    def walk(value: Any, path: KeyPath) -> Any:
        if isinstance(value, str):
            return one(value, path)
        if isinstance(value, dict):
            return {k: walk(v, (*path, k)) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v, (*path, i)) for i, v in enumerate(value)]
        return value

    result = walk(data, ())
    if problems:
        raise ConfigError("\n".join(problems))
    return result


# ------------------------------------------------------------------------------------ key paths


def _fmt(path: KeyPath) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def locate(shown: str, lines: Mapping[KeyPath, int], path: KeyPath) -> str:
    """``file:line: key.path`` using the nearest enclosing key YAML gave a line for."""
    line = None
    for n in range(len(path), 0, -1):
        line = lines.get(path[:n])
        if line is not None:
            break
    head = f"{shown}:{line}" if line is not None else shown
    return f"{head}: {_fmt(path)}" if path else head
