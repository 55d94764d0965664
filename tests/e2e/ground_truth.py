"""What the ShipEngine sandbox's world holds, and what a run loaded of it, as comparable sets."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import duckdb

from shipetl_shipengine.sandbox import DEFAULT_CLOCK, build_world


def warehouse_rows(tmp_path: Path, sql: str, params: list | None = None) -> list[tuple]:
    """Rows of ``sql`` over ``tmp_path``'s warehouse, read-only, times in UTC."""
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as con:
        con.execute("SET TimeZone = 'UTC'")
        return con.execute(sql, params or []).fetchall()


def expected_event_keys(clock: datetime = DEFAULT_CLOCK) -> set[tuple]:
    """(tracking number, UTC instant to the second, code, description) of every scan the sandbox has by ``clock``."""
    return {(e["tracking_number"], e["utc"].replace(microsecond=0), e["event_code"] or None, e["description"])
            for e in build_world(42).expected_events(clock)}


def loaded_event_keys(tmp_path: Path, account_id: str | None = None) -> set[tuple]:
    """The same keys of the scans loaded (of one account, e.g. a single-account source by its name; or all)."""
    rows = warehouse_rows(tmp_path, "SELECT tracking_number, occurred_at, status_raw, description FROM tracking_events "
                                    "WHERE ? IS NULL OR account_id = ?", [account_id, account_id])
    return {(tn, ts.replace(microsecond=0), code, text) for tn, ts, code, text in rows}
