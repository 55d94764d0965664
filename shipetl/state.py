"""Each source account's cursors, stored in the warehouse and committed with the rows they describe."""

from __future__ import annotations

from typing import Any

import orjson

DDL = """CREATE TABLE IF NOT EXISTS source_state (
    source VARCHAR NOT NULL, account_id VARCHAR NOT NULL, key VARCHAR NOT NULL, value JSON,
    run_id VARCHAR, updated_at TIMESTAMPTZ, PRIMARY KEY (source, account_id, key))"""


def read(con, source: str, account_id: str) -> dict[str, Any]:
    """Cursors of one account as the last committed run left them (empty on a first run)."""
    rows = con.execute("SELECT key, value FROM source_state WHERE source = ? AND account_id = ?", [source, account_id]).fetchall()
    return {k: orjson.loads(v) for k, v in rows}


def write(con, source: str, account_id: str, run_id: str, cursors: dict[str, Any]) -> None:
    """Upsert cursors inside the caller's transaction."""
    for key, value in cursors.items():
        con.execute(
            "INSERT OR REPLACE INTO source_state VALUES (?, ?, ?, ?, ?, now())",
            [source, account_id, key, orjson.dumps(value, default=str).decode(), run_id],
        )


def list_all(con) -> list[tuple]:
    """Every cursor, for ``shipetl state``."""
    return con.execute("SELECT source, account_id, key, value, run_id, updated_at FROM source_state ORDER BY 1, 2, 3").fetchall()
