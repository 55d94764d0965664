from datetime import datetime, timezone

import duckdb
import pytest

from shipetl.snapshots import BATCH_ROWS, Snapshots


def _table(sql: str):
    con = duckdb.connect()
    con.execute("SET TimeZone = 'Asia/Tokyo'")  # the session zone must not leak into the instants
    return con.sql(sql).to_arrow_table()


def test_rows_come_out_as_the_warehouse_fetch_gives_them() -> None:
    sql = ("SELECT 'SE' || i AS shipment_id, CASE WHEN i % 3 = 0 THEN NULL ELSE TIMESTAMPTZ '2024-03-10 06:59:59.5+00' "
           "+ i * INTERVAL 1 HOUR END AS shipped_at, i % 2 = 0 AS is_final, 1.25::DECIMAL(12, 2) AS amount, "
           "'{\"a\": 1}' AS extras FROM range(25) t(i)")
    con = duckdb.connect()
    expected = [dict(zip([d[0] for d in con.execute(sql).description], row)) for row in con.execute(sql).fetchall()]
    rows = Snapshots(_table(sql))
    assert len(rows) == 25
    assert list(rows) == expected
    assert rows[1]["shipped_at"] == datetime(2024, 3, 10, 7, 59, 59, 500000, tzinfo=timezone.utc)
    assert rows[1]["shipped_at"].utcoffset().total_seconds() == 0
    assert rows[-1] == expected[-1] and rows[3:5] == expected[3:5]
    assert rows == expected and rows != expected[:-1]
    with pytest.raises(IndexError):
        rows[25]


def test_iteration_crosses_batches_and_each_pass_gives_fresh_dicts() -> None:
    rows = Snapshots(_table(f"SELECT i AS n FROM range({BATCH_ROWS * 2 + 7}) t(i)"))
    first = list(rows)
    assert [r["n"] for r in first] == list(range(BATCH_ROWS * 2 + 7))
    first[0]["n"] = -1
    assert next(iter(rows))["n"] == 0


def test_an_empty_table_is_an_empty_sequence() -> None:
    rows = Snapshots(_table("SELECT 'x' AS shipment_id WHERE false"))
    assert len(rows) == 0 and list(rows) == [] and not rows
