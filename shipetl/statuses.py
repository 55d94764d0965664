"""The canonical tracking statuses, the registered code tables, and the tally of codes nobody mapped."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from .errors import PluginError

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


def install(con, tables: StatusTables) -> None:
    """Create the ``status_map`` table and the ``status_of`` / ``final_of`` macros in a DuckDB connection."""
    con.execute("CREATE OR REPLACE TEMP TABLE status_map (namespace VARCHAR, raw VARCHAR, status VARCHAR, is_final BOOLEAN)")
    rows = tables.rows()
    if rows:
        con.executemany("INSERT INTO status_map VALUES (?, ?, ?, ?)", rows)
    con.execute(
        "CREATE OR REPLACE TEMP MACRO status_of(ns, code) AS "
        "(SELECT s.status FROM status_map s WHERE s.namespace = ns AND s.raw = trim(CAST(code AS VARCHAR)))"
    )
    con.execute(
        "CREATE OR REPLACE TEMP MACRO final_of(ns, code) AS "
        "(SELECT s.is_final FROM status_map s WHERE s.namespace = ns AND s.raw = trim(CAST(code AS VARCHAR)))"
    )
