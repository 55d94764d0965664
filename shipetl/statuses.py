"""The canonical tracking statuses, the registered code tables, and the SQL that looks codes up in them.

A code no table knows loads as ``unknown``; the transform and the commit count such codes (``status_unmapped``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from .errors import PluginError
from .sqltext import sql_literal

STATUSES = (
    "pending",
    "info_received",
    "in_transit",
    "out_for_delivery",
    "failed_attempt",
    "available_for_pickup",
    "delivered",
    "exception",
    "returned",
    "expired",
    "unknown",
)
ALWAYS_FINAL = frozenset({"delivered", "returned", "expired"})


@dataclass(frozen=True)
class StatusEntry:
    status: str
    is_final: bool
    plugin: str


@dataclass
class StatusTables:
    """Every (namespace, raw code) -> canonical status registered by plugins, with who supplied it."""

    entries: dict[tuple[str, str], StatusEntry] = field(default_factory=dict)
    suppliers: dict[str, set[str]] = field(default_factory=dict)

    def add(self, plugin: str, namespace: str, table: Mapping[str, str | tuple[str, bool]], *, override: bool = False) -> None:
        """Merge one plugin's table; a clash without ``override`` raises PluginError naming both plugins."""
        for raw, value in table.items():
            status, is_final = value if isinstance(value, tuple) else (value, value in ALWAYS_FINAL)
            if status not in STATUSES:
                raise PluginError(f"plugin {plugin}: status map {namespace}: {raw!r} -> {status!r} is not one of {', '.join(STATUSES)}")
            key = (namespace, str(raw).strip())
            new = StatusEntry(status, bool(is_final) or status in ALWAYS_FINAL, plugin)
            old = self.entries.get(key)
            if old and not override and (old.status, old.is_final) != (new.status, new.is_final):
                raise PluginError(
                    f"status map {namespace}: code {raw!r} is {old.status!r} in plugin {old.plugin} "
                    f"but {new.status!r} in plugin {plugin}; pass override=True to refine it on purpose"
                )
            self.entries[key] = new
            self.suppliers.setdefault(namespace, set()).add(plugin)

    def lookup(self, namespace: str, raw: str | None) -> StatusEntry | None:
        """The entry for one raw code, or None when no table knows it."""
        if raw is None:
            return None
        return self.entries.get((namespace, str(raw).strip()))

    def rows(self) -> list[tuple[str, str, str, bool]]:
        """(namespace, raw, status, is_final) rows, for loading into DuckDB."""
        return [(ns, raw, e.status, e.is_final) for (ns, raw), e in sorted(self.entries.items())]


def _lookup_macro(tables: StatusTables, name: str, pick, kind: str) -> str:
    """A macro ``name(namespace, code)`` as one small MAP per namespace: constant-folded, no join per row."""
    by_ns: dict[str, list[str]] = {}
    for (ns, raw), entry in sorted(tables.entries.items()):
        by_ns.setdefault(ns, []).append(f"{sql_literal(raw)}: {pick(entry)}")
    if not by_ns:
        return f"CREATE OR REPLACE {kind}MACRO {name}(ns, code) AS NULL"
    text = "CAST(code AS VARCHAR)"
    # The characters str.strip() removes in lookup(); trimming by a character set is slow, so only codes
    # that start or end with a control character or a space take that path.
    code = f"CASE WHEN ord({text}) <= 32 OR ord(right({text}, 1)) <= 32 THEN trim({text}, {_WHITESPACE_SQL}) ELSE {text} END"
    cases = " ".join(f"WHEN {sql_literal(ns)} THEN MAP {{{', '.join(items)}}}[{code}]" for ns, items in by_ns.items())
    return f"CREATE OR REPLACE {kind}MACRO {name}(ns, code) AS CASE ns {cases} END"


_WHITESPACE_SQL = " || ".join(f"chr({c})" for c in (32, 9, 10, 11, 12, 13))


def install(con, tables: StatusTables, temp: bool = True) -> None:
    """Create the ``status_of(namespace, code)`` and ``final_of(namespace, code)`` macros in a DuckDB connection
    (TEMP, or in the current database for every cursor of the connection to see).

    Both return NULL for a code no table knows; mapping SQL calls them, core counts what stays unmapped.
    """
    kind = "TEMP " if temp else ""
    con.execute(_lookup_macro(tables, "status_of", lambda e: sql_literal(e.status), kind))
    con.execute(_lookup_macro(tables, "final_of", lambda e: "true" if e.is_final else "false", kind))
