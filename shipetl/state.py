"""Each source account's cursors, stored in the warehouse and committed with the rows they describe."""

from __future__ import annotations

from typing import Any

import orjson

# One row per (source, account_id, key), kept so by ``write``. No PRIMARY KEY: DuckDB 2 stores an index in a way
# DuckDB 1.0 cannot read even in 1.0's storage format, and the warehouse is meant to open in any DuckDB from 1.0.
DDL = """CREATE TABLE IF NOT EXISTS source_state (
    source VARCHAR NOT NULL, account_id VARCHAR NOT NULL, key VARCHAR NOT NULL, value JSON,
    run_id VARCHAR, updated_at TIMESTAMPTZ)"""


def ensure(con) -> None:
    """Create ``source_state``; on a warehouse an earlier shipetl made, drop the PRIMARY KEY it has there (the table
    is copied without it, in one transaction), so DuckDB 1.0 can open the file."""
    con.execute(DDL)
    keyed = con.execute("SELECT count(*) FROM duckdb_constraints() WHERE table_name = 'source_state' "
                        "AND constraint_type = 'PRIMARY KEY'").fetchone()[0]
    if not keyed:
        return
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute("ALTER TABLE source_state RENAME TO source_state_keyed")
        con.execute(DDL)
        con.execute("INSERT INTO source_state SELECT * FROM source_state_keyed")
        con.execute("DROP TABLE source_state_keyed")
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


def read(con, source: str, account_id: str) -> dict[str, Any]:
    """Cursors of one account as the last committed run left them (empty on a first run)."""
    rows = con.execute("SELECT key, value FROM source_state WHERE source = ? AND account_id = ?", [source, account_id]).fetchall()
    return {k: orjson.loads(v) for k, v in rows}


def write(con, source: str, account_id: str, run_id: str, cursors: dict[str, Any]) -> None:
    """Upsert cursors inside the caller's transaction."""
    for key, value in cursors.items():
        con.execute("DELETE FROM source_state WHERE source = ? AND account_id = ? AND key = ?", [source, account_id, key])
        con.execute("INSERT INTO source_state VALUES (?, ?, ?, ?, ?, now())",
                    [source, account_id, key, orjson.dumps(value, default=str).decode(), run_id])


def list_all(con) -> list[tuple]:
    """Every cursor, for ``shipetl state``."""
    return con.execute("SELECT source, account_id, key, value, run_id, updated_at FROM source_state ORDER BY 1, 2, 3").fetchall()
