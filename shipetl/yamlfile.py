"""The pipeline file as read: YAML with each key path's line, for errors to point at; ``${VAR}`` expanded."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, NamedTuple

import yaml

from .errors import ConfigError

KeyPath = tuple[str | int, ...]

# ------------------------------------------------------------------------------------------ YAML


class _Loader(yaml.SafeLoader):
    """SafeLoader whose timestamps that look like dates but are not (``2025-13-01``) stay text.

    PyYAML raises a bare ValueError for those while building the document, with no line; as text they
    reach the model, which names the file, line and key path, as it does for the quoted form.
    """

    def _timestamp(self, node: yaml.ScalarNode) -> Any:
        try:
            return self.construct_yaml_timestamp(node)
        except (ValueError, OverflowError):
            return self.construct_scalar(node)


_Loader.add_constructor("tag:yaml.org,2002:timestamp", _Loader._timestamp)


def parse_yaml(text: str, shown: str) -> tuple[Any, dict[KeyPath, int]]:
    loader = _Loader(text)
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
        if problem.startswith(("found undefined alias", "could not determine a constructor for the tag")):
            # Its name is the rest of a value, perhaps a secret written in the file: not repeated here.
            problem = ("a value starting with '*' or '!' is read as a YAML alias or tag; put the value in quotes (or "
                       "better, a secret in ${VARIABLE})")
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


class ExpandProblem(NamedTuple):
    """One bad ``${...}`` reference found by :func:`expand`."""

    path: KeyPath
    message: str  # file:line: key.path: what is wrong
    unset: bool  # an unset variable (the environment's doing), not a malformed reference (the file's)
    reference: str  # the reference as written: ${NAME}, or the malformed text


def expand(data: Any, env: Mapping[str, str], shown: str,
           lines: dict[KeyPath, int]) -> tuple[Any, list[ExpandProblem], dict[KeyPath, list[str]]]:
    """``data`` with every ``${VAR}`` expanded, every unset or malformed reference, and the variables
    behind each value that came out empty (set, but to nothing), by key path.

    A value with a problem has each bad reference replaced by an empty string; the caller decides
    whether the problems fail the whole file or only the part they are in.
    """
    problems: list[ExpandProblem] = []
    emptied: dict[KeyPath, list[str]] = {}

    def one(text: str, path: KeyPath) -> str:
        used: list[str] = []

        def sub(m: re.Match[str]) -> str:
            whole = m.group(0)
            if whole == "$${":
                return "${"
            name, default = m.group(1), m.group(2)
            if name is None:
                problems.append(ExpandProblem(path, f"{locate(shown, lines, path)}: {whole} is not a valid "
                                              "reference; use ${NAME} or ${NAME:-default} (and $${ for a literal ${)",
                                              unset=False, reference=whole))
                return ""
            value = env.get(name)
            if default is not None and not value:
                return default
            if value is None:
                problems.append(ExpandProblem(path, f"{locate(shown, lines, path)}: ${{{name}}} is unset; export it "
                                              f"or give a default with ${{{name}:-...}}", unset=True, reference=whole))
                return ""
            used.append(name)
            return value

        expanded = _VAR.sub(sub, text)
        if used and not expanded.strip():
            emptied[path] = used
        return expanded

    def walk(value: Any, path: KeyPath) -> Any:
        if isinstance(value, str):
            return one(value, path)
        if isinstance(value, dict):
            return {k: walk(v, (*path, k)) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v, (*path, i)) for i, v in enumerate(value)]
        return value

    return walk(data, ()), problems, emptied


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
