"""The canonical schemas: common columns, docs, keys, types, and DuckDB DDL that round-trips to Arrow."""

from __future__ import annotations

import duckdb
import pyarrow as pa
import pytest

from shipetl import schema
from shipetl.schema import COMMON, DATA_TABLES, MONEY, TABLES, UTC
from shipetl.warehouse import table_ddl

ALL = list(TABLES.values())
IDS = list(TABLES)


def test_tables() -> None:
    assert set(TABLES) == {"orders", "order_items", "shipments", "tracking_events", "rejects"}
    assert set(DATA_TABLES) == set(TABLES) - {"rejects"}
    assert all(name == t.name for name, t in TABLES.items())


@pytest.mark.parametrize("table", ALL, ids=IDS)
def test_common_columns_first_and_not_null(table) -> None:
    assert [f.name for f in table.columns[:4]] == ["provider", "account_id", "run_id", "extracted_at"]
    for f in COMMON:
        assert table.field(f.name).type == f.type
        assert not table.field(f.name).nullable


@pytest.mark.parametrize("table", ALL, ids=IDS)
def test_every_field_has_a_doc(table) -> None:
    for f in table.columns:
        assert f.metadata and f.metadata.get(b"doc"), f"{table.name}.{f.name} has no doc"
        assert "\n" not in f.metadata[b"doc"].decode(), f"{table.name}.{f.name}: doc is one line"
    assert table.description


@pytest.mark.parametrize("table", ALL, ids=IDS)
def test_keys_name_real_columns(table) -> None:
    names = set(table.column_names)
    assert len(names) == len(table.column_names), "duplicate column"
    assert table.key and set(table.key) <= names
    assert table.entity_key and set(table.entity_key) <= names
    assert set(table.entity_key) <= set(table.key)
    assert table.partition_time in names
    assert table.field(table.partition_time).type == UTC


@pytest.mark.parametrize("table", ALL, ids=IDS)
def test_types(table) -> None:
    for f in table.columns:
        if f.name.endswith("_at"):
            assert f.type == pa.timestamp("us", tz="UTC"), f.name
        if pa.types.is_timestamp(f.type):
            assert f.type == UTC and f.name.endswith("_at"), f.name
        if pa.types.is_decimal(f.type):
            assert f.type == pa.decimal128(18, 4) == MONEY, f.name
    if any(pa.types.is_decimal(f.type) for f in table.columns):
        assert "currency" in table.column_names


def test_raw_beside_canonical() -> None:
    for table in ALL:
        if "status" in table.column_names:
            assert "status_raw" in table.column_names, table.name


def test_key_columns_are_not_null() -> None:
    for table in ALL:
        for name in table.key:
            assert not table.field(name).nullable, f"{table.name}.{name}"


def test_schema_metadata() -> None:
    s = TABLES["shipments"].schema
    assert s.metadata == {b"table": b"shipments", b"version": str(schema.SCHEMA_VERSION).encode()}
    assert s.names == TABLES["shipments"].column_names


def test_ddl_round_trips_through_duckdb(tmp_path) -> None:
    con = duckdb.connect(str(tmp_path / "wh.duckdb"))
    try:
        con.execute("SET TimeZone = 'UTC'")
        for table in ALL:
            con.execute(table_ddl(table))
        for table in ALL:
            arrow = con.sql(f"SELECT * FROM {table.name} LIMIT 0").to_arrow_table()
            assert arrow.schema.names == table.column_names
            assert [f.type for f in arrow.schema] == [f.type for f in table.columns], table.name
            notnull = {r[0] for r in con.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = ? AND is_nullable = 'NO'",
                [table.name]).fetchall()}
            assert notnull == {f.name for f in table.columns if not f.nullable}, table.name
    finally:
        con.close()


def test_ddl_is_idempotent(tmp_path) -> None:
    con = duckdb.connect(str(tmp_path / "wh.duckdb"))
    try:
        for _ in range(2):
            con.execute(table_ddl(TABLES["orders"]))
        assert con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = 'orders'").fetchone() == (1,)
    finally:
        con.close()
