"""transform: raw pages -> typed canonical rows in temp tables, with UTC times, statuses, keys and rejects."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pytest

from shipetl import raw_pages, transform
from shipetl.errors import PluginError
from shipetl.provider import Page, Stream, TableMapping
from shipetl.rawzone import RawZoneWriter
from shipetl.statuses import StatusTables

EXTRACTED = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
_runs = itertools.count(1)

# Pages are JSON objects {"items": [...]}; each item is one record, read with ->> as text.
ITEMS = "(SELECT unnest(CAST(body->'items' AS JSON[])) AS e FROM pages)"

SHIPMENTS_SQL = f"""
SELECT e->>'id' AS shipment_id, e->>'tn' AS tracking_number, e->>'carrier' AS carrier_code,
       status_of('acme', e->>'code') AS status, e->>'code' AS status_raw,
       e->>'created' AS created_at, e->>'shipped' AS shipped_at, e->>'eta' AS estimated_delivery_at,
       e->>'delivered' AS delivered_at, e->>'dest' AS destination_country, e->>'origin' AS origin_country,
       e->'more' AS extras
FROM {ITEMS}
"""
SHIPMENT_TIMES = {"created_at": "iso", "shipped_at": "epoch_s", "estimated_delivery_at": "epoch_ms", "delivered_at": "local"}

EVENTS_SQL = f"""
SELECT e->>'tn' AS shipment_id, e->>'tn' AS tracking_number, e->>'at' AS occurred_at, e->>'at' AS occurred_at_local,
       e->>'code' AS status_raw, status_of('acme', e->>'code') AS status, e->>'text' AS description,
       e->>'country' AS country, e->>'lat' AS latitude
FROM {ITEMS}
"""


def status_tables() -> StatusTables:
    t = StatusTables()
    t.add("acme-plugin", "acme", {"DE": "delivered", "IT": "in_transit", "EX": "exception"})
    return t


def write_raw(root: Path, pages: list[tuple[str, Any]], run_id: str, rotate_bytes: int = 64 << 20) -> dict[str, list[Path]]:
    with RawZoneWriter(root, "acme", "acct-1", run_id, EXTRACTED, rotate_bytes=rotate_bytes) as raw:
        for stream, body in pages:
            raw.write(Page(stream, body))
        return raw.close()


_shared: list[duckdb.DuckDBPyConnection] = []


def shared_con() -> duckdb.DuckDBPyConnection:
    """One connection for most tests (connect() costs about half a second); staged tables dropped per run."""
    if not _shared:
        _shared.append(transform.connect(status_tables=status_tables()))
    return _shared[0]


def drop_staged(con: duckdb.DuckDBPyConnection) -> None:
    for (name,) in con.execute("SELECT view_name FROM duckdb_views() WHERE temporary AND view_name LIKE 'staged_%'").fetchall():
        con.execute(f"DROP VIEW temp.main.{name}")


def run(tmp_path: Path, mappings: list[TableMapping] | Stream, pages: list[Any], *, zone: str | None = "Asia/Hong_Kong",
        con: duckdb.DuckDBPyConnection | None = None, run_id: str | None = None,
        rotate_bytes: int = 64 << 20, status_map: dict | None = None) -> transform.TransformResult:
    """Write ``pages`` (dicts or bytes) of one stream to a raw zone in tmp_path and transform them."""
    stream = mappings if isinstance(mappings, Stream) else Stream("parcels", "JSON", tuple(mappings))
    run_id = run_id or f"run-{next(_runs)}"
    files = write_raw(tmp_path / "raw", [(stream.name, p) for p in pages], run_id, rotate_bytes)
    con = con or shared_con()
    drop_staged(con)
    return transform.transform(con, [stream], files, provider="acme", account_id="acct-1", run_id=run_id,
                               extracted_at=EXTRACTED, timezone=zone, status_map=status_map)


def rows(result: transform.TransformResult, table: str, order: str | None = None) -> list[dict[str, Any]]:
    """Staged rows of one table as dicts; [] when nothing was staged."""
    con = result.con
    if table not in result.staged:
        return []
    rel = con.execute(f"SELECT * FROM {transform.staged_table(table)}" + (f" ORDER BY {order}" if order else ""))
    names = [d[0] for d in rel.description]
    return [dict(zip(names, r)) for r in rel.fetchall()]


def rejects(result) -> list[str]:
    return sorted(r["reason"] for r in rows(result, "rejects"))


def shipments(tmp_path, *items, zone="Asia/Hong_Kong", times=SHIPMENT_TIMES, sql=SHIPMENTS_SQL, status_map=None):
    result = run(tmp_path, [TableMapping("shipments", sql, times)], [{"items": list(items)}], zone=zone,
                 status_map=status_map)
    return result, rows(result, "shipments", "shipment_id")


# ----------------------------------------------------------------------------------------- times


def test_times_converted_to_utc(tmp_path) -> None:
    result, (row,) = shipments(tmp_path, {
        "id": "A1", "code": "IT",
        "created": "2024-05-01T12:00:00+08:00",       # iso with offset
        "shipped": 1607930885,                          # epoch seconds (Shopee)
        "eta": "1739928180000",                         # epoch milliseconds as text (AliExpress)
        "delivered": "2025-12-09 17:37:09",             # naive local, read in Asia/Hong_Kong
    })
    assert row["created_at"] == datetime(2024, 5, 1, 4, 0, tzinfo=UTC)
    assert row["shipped_at"] == datetime(2020, 12, 14, 7, 28, 5, tzinfo=UTC)
    assert row["estimated_delivery_at"] == datetime(2025, 2, 19, 1, 23, tzinfo=UTC)
    assert row["delivered_at"] == datetime(2025, 12, 9, 9, 37, 9, tzinfo=UTC)
    assert rejects(result) == []


def test_local_time_uses_the_given_zone(tmp_path) -> None:
    _, (row,) = shipments(tmp_path, {"id": "A1", "delivered": "2024-07-01 12:00:00"}, zone="America/New_York")
    assert row["delivered_at"] == datetime(2024, 7, 1, 16, 0, tzinfo=UTC)


ROW_ZONE_SQL = SHIPMENTS_SQL.replace("e->'more' AS extras", "e->>'tz' AS time_zone")


def test_a_time_zone_per_row_overrides_the_source_zone(tmp_path) -> None:
    result, got = shipments(tmp_path,
                            {"id": "A1", "delivered": "2024-03-10 01:30:00", "tz": "Pacific/Auckland"},  # NZDT, +13
                            {"id": "A2", "delivered": "2024-07-01 12:00:00", "tz": " america/new_york "},
                            {"id": "A3", "delivered": "2024-07-01 12:00:00", "tz": ""},               # the source's
                            zone="Asia/Hong_Kong", sql=ROW_ZONE_SQL)
    assert [r["delivered_at"] for r in got] == [datetime(2024, 3, 9, 12, 30, tzinfo=UTC),
                                                datetime(2024, 7, 1, 16, 0, tzinfo=UTC),
                                                datetime(2024, 7, 1, 4, 0, tzinfo=UTC)]
    assert rejects(result) == []
    assert "time_zone" not in got[0]


def test_a_scan_in_an_unknown_zone_has_that_reason_alone_not_also_missing_time(tmp_path) -> None:
    sql = EVENTS_SQL.replace("e->>'at' AS occurred_at_local,", "e->>'tz' AS time_zone,")
    result = run(tmp_path, [TableMapping("tracking_events", sql, {"occurred_at": "local"})],
                 [{"items": [{"tn": "1Z", "at": "2024-03-10 01:30:00", "tz": "Mars/Olympus", "code": "IT"}]}], zone=None)
    assert rejects(result) == ["time_zone: Mars/Olympus is not a time zone name (IANA, e.g. Europe/Paris)"]


def test_an_unknown_time_zone_in_a_row_rejects_that_row_only(tmp_path) -> None:
    result, got = shipments(tmp_path,
                            {"id": "A1", "delivered": "2024-03-10 01:30:00", "tz": "Mars/Olympus"},
                            {"id": "A2", "delivered": "2024-03-10 01:30:00", "tz": "Pacific/Auckland"},
                            zone=None, sql=ROW_ZONE_SQL)
    assert [r["shipment_id"] for r in got] == ["A2"]
    assert rejects(result) == ["time_zone: Mars/Olympus is not a time zone name (IANA, e.g. Europe/Paris)"]


def test_local_times_with_a_row_zone_column_need_no_source_zone(tmp_path) -> None:
    result, got = shipments(tmp_path, {"id": "A1", "delivered": "2024-07-01 12:00:00", "tz": None},
                            zone=None, sql=ROW_ZONE_SQL)
    assert got == []
    assert rejects(result) == ["delivered_at: '2024-07-01 12:00:00' is a local time but the source has no timezone"]


def test_iso_fraction_kept_to_the_microsecond(tmp_path) -> None:
    _, (row,) = shipments(tmp_path, {"id": "A1", "created": "2024-05-01T12:00:00.123456Z"})
    assert row["created_at"] == datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)


def test_absent_times_are_null_never_1970(tmp_path) -> None:
    absent = [0, "0", "", None, "  ", "0.0"]
    items = [{"id": f"A{i}", "created": v, "shipped": v, "eta": v, "delivered": v} for i, v in enumerate(absent)]
    result, got = shipments(tmp_path, *items)
    assert len(got) == len(absent)
    for row in got:
        assert (row["created_at"], row["shipped_at"], row["estimated_delivery_at"], row["delivered_at"]) == (None,) * 4
    assert rejects(result) == []


BAD_TIMES = [
    ("created_at", "created", "2025-13-40T10:00:00Z"),
    ("created_at", "created", "yesterday"),
    ("created_at", "created", "2024-05-01 12:00:00"),  # iso without an offset is not an instant
    ("shipped_at", "shipped", "1607930885000"),         # milliseconds given as seconds
    ("estimated_delivery_at", "eta", "soon"),
    ("delivered_at", "delivered", "2025-13-40 10:00"),
]


def test_unparseable_time_is_a_reject_naming_column_and_value(tmp_path) -> None:
    items = [{"id": f"A{i}", key: value} for i, (_, key, value) in enumerate(BAD_TIMES)]
    result, good = shipments(tmp_path, *items, {"id": "OK"})
    assert [r["shipment_id"] for r in good] == ["OK"]
    by_id = {r["record"].split('"shipment_id":"')[1].split('"')[0]: r["reason"] for r in rows(result, "rejects")}
    for i, (column, _, value) in enumerate(BAD_TIMES):
        assert by_id[f"A{i}"].startswith(f"{column}: "), by_id[f"A{i}"]
        assert f"'{value}'" in by_id[f"A{i}"]
    assert result.tables["shipments"].mapped == len(BAD_TIMES) + 1
    assert result.tables["shipments"].rejected == len(BAD_TIMES)


def test_reject_row_keeps_the_record_and_context(tmp_path) -> None:
    result, _ = shipments(tmp_path, {"id": "A1", "created": "nope", "tn": "1Z"})
    (rej,) = rows(result, "rejects")
    assert rej["provider"] == "acme" and rej["account_id"] == "acct-1" and rej["table_name"] == "shipments"
    assert rej["run_id"].startswith("run-") and rej["extracted_at"] == EXTRACTED
    assert '"shipment_id":"A1"' in rej["record"] and '"created_at":"nope"' in rej["record"]


def test_several_reasons_are_joined(tmp_path) -> None:
    result, _ = shipments(tmp_path, {"created": "nope", "shipped": "later"})
    (reason,) = rejects(result)
    assert "created_at: 'nope'" in reason and "shipped_at: 'later'" in reason and "shipment_id: missing" in reason


def test_local_time_without_zone_is_a_plugin_error(tmp_path) -> None:
    with pytest.raises(PluginError, match="shipments.*local.*timezone"):
        shipments(tmp_path, {"id": "A1"}, zone=None)


def test_no_local_times_needs_no_zone(tmp_path) -> None:
    times = {k: v for k, v in SHIPMENT_TIMES.items() if v != "local"}
    _, (row,) = shipments(tmp_path, {"id": "A1", "created": "2024-05-01T00:00:00Z"}, zone=None, times=times)
    assert row["created_at"] == datetime(2024, 5, 1, tzinfo=UTC)


def test_unknown_time_kind_is_a_plugin_error(tmp_path) -> None:
    with pytest.raises(PluginError, match="epoch_ns"):
        shipments(tmp_path, {"id": "A1"}, times={"created_at": "epoch_ns"})


def test_a_page_that_does_not_fit_the_body_type_is_a_reject_of_each_table_and_the_other_pages_load(tmp_path) -> None:
    item = "SELECT i.id AS shipment_id, i.id AS {col} FROM (SELECT unnest(body.items) AS i FROM pages)"
    typed = Stream("parcels", "STRUCT(items STRUCT(id VARCHAR, n BIGINT)[])", (
        TableMapping("shipments", item.format(col="tracking_number")),
        TableMapping("tracking_events", item.format(col="description") + " WHERE false")))
    # Keys the body type does not list, as every real reply has, are no misfit; "soon" and "" for a number are.
    pages = [{"items": [{"id": "A1", "n": 1, "extra": True}], "request_id": "r1"},
             {"items": [{"id": "A2", "n": "soon"}], "request_id": "r2"},
             {"items": [{"id": "A3", "n": 3}], "request_id": "r3"},
             {"items": [{"id": "A4", "n": ""}]},
             {"items": [{"id": "A5"}], "request_id": "r5"}]
    result = run(tmp_path, typed, pages)
    assert [r["shipment_id"] for r in rows(result, "shipments", "shipment_id")] == ["A1", "A3", "A5"]
    got = rows(result, "rejects", "table_name, reason")
    assert [r["table_name"] for r in got] == ["shipments", "shipments", "tracking_events", "tracking_events"]
    soon = next(r for r in got if "soon" in r["reason"])
    assert soon["reason"].startswith("page does not fit the body type of stream parcels ("), soon["reason"]
    assert "read such a field as VARCHAR" in soon["reason"], soon["reason"]
    assert "line 2 of parcels-00001.ndjson.zst" in soon["reason"], soon["reason"]
    assert json.loads(soon["record"]) == pages[1]
    assert any("line 4 of parcels-00001.ndjson.zst" in r["reason"] for r in got)  # its number in the raw file
    assert (result.tables["shipments"].mapped, result.tables["shipments"].rejected) == (5, 2)


def test_more_misfits_in_a_file_than_a_few_pages_mean_the_body_type_is_wrong(tmp_path) -> None:
    typed = Stream("parcels", "STRUCT(items STRUCT(id VARCHAR, n BIGINT)[])",
                   (TableMapping("shipments", "SELECT i.id AS shipment_id FROM (SELECT unnest(body.items) AS i FROM pages)"),))
    pages = [{"items": [{"id": f"A{i}", "n": "later"}]} for i in range(raw_pages.MAX_MISFITS_PER_FILE + 1)]
    with pytest.raises(PluginError, match=rf"stream parcels: more than {raw_pages.MAX_MISFITS_PER_FILE} pages of "
                                          r"parcels-00001.ndjson.zst do not fit the stream's body type \(JSON transform"):
        run(tmp_path, typed, pages)


def test_a_page_that_is_not_json_is_a_plugin_error_saying_so(tmp_path) -> None:
    with pytest.raises(PluginError, match=r"stream parcels: a page is not JSON .*Malformed JSON.*the plugin yielded a body that is not JSON"):
        run(tmp_path, [TableMapping("shipments", SHIPMENTS_SQL, SHIPMENT_TIMES)], [{"items": []}, b"<html>busy</html>"])


def test_a_time_given_as_text_but_not_listed_is_read_as_iso_never_as_utc(tmp_path) -> None:
    times = {k: v for k, v in SHIPMENT_TIMES.items() if k != "delivered_at"}
    result, good = shipments(tmp_path, {"id": "A1", "delivered": "2024-07-01T12:00:00-04:00"},
                             {"id": "A2", "delivered": "2024-07-01 12:00:00"}, times=times)
    assert [(r["shipment_id"], r["delivered_at"]) for r in good] == [("A1", datetime(2024, 7, 1, 16, tzinfo=UTC))]
    (reason,) = rejects(result)
    assert reason.startswith("delivered_at: '2024-07-01 12:00:00'") and "offset" in reason, reason


def test_a_time_mapped_as_a_bare_null_needs_no_kind(tmp_path) -> None:
    sql = SHIPMENTS_SQL.replace("e->>'delivered' AS delivered_at", "NULL AS delivered_at")
    times = {k: v for k, v in SHIPMENT_TIMES.items() if k != "delivered_at"}
    result, (row,) = shipments(tmp_path, {"id": "A1"}, sql=sql, times=times)
    assert row["delivered_at"] is None and rejects(result) == []


def test_a_time_of_another_type_not_listed_is_a_plugin_error(tmp_path) -> None:
    sql = SHIPMENTS_SQL.replace("e->>'delivered' AS delivered_at", "CAST(e->>'delivered' AS TIMESTAMP) AS delivered_at")
    times = {k: v for k, v in SHIPMENT_TIMES.items() if k != "delivered_at"}
    with pytest.raises(PluginError, match="gives delivered_at as TIMESTAMP: give a time as text and list it in "
                                          "TableMapping.times"):
        shipments(tmp_path, {"id": "A1"}, sql=sql, times=times)


# --------------------------------------------------------------------------- columns and values


ORDERS_SQL = f"""
SELECT e->>'id' AS order_id, e->>'total' AS total_amount, e->>'fee' AS shipping_fee, e->>'currency' AS currency,
       e->>'n' AS item_count, pii(e->>'name') AS recipient_name, pii(e->>'phone') AS recipient_phone,
       e->>'why' AS reject_reason
FROM {ITEMS}
"""


def orders(tmp_path, *items, con=None):
    result = run(tmp_path, [TableMapping("orders", ORDERS_SQL)], [{"items": list(items)}], con=con)
    return result, rows(result, "orders", "order_id")


def test_money_is_decimal(tmp_path) -> None:
    from decimal import Decimal

    result, (row,) = orders(tmp_path, {"id": "O1", "total": "12.5", "fee": " 3.0001 ", "n": "2", "currency": "HKD"})
    assert row["total_amount"] == Decimal("12.5000") and row["shipping_fee"] == Decimal("3.0001")
    assert row["item_count"] == 2 and row["currency"] == "HKD"
    assert rejects(result) == []
    typ = result.con.execute(f"SELECT typeof(total_amount), typeof(item_count) FROM {transform.staged_table('orders')}").fetchone()
    assert typ == ("DECIMAL(18,4)", "INTEGER")


def test_non_numeric_money_is_a_reject(tmp_path) -> None:
    result, good = orders(tmp_path, {"id": "O1", "total": "12,50 HKD"}, {"id": "O2", "total": "7"})
    assert [r["order_id"] for r in good] == ["O2"]
    (reason,) = rejects(result)
    assert reason.startswith("total_amount: ") and "12,50 HKD" in reason


def test_non_numeric_count_is_a_reject(tmp_path) -> None:
    result, good = orders(tmp_path, {"id": "O1", "n": "two"})
    assert good == []
    assert rejects(result)[0].startswith("item_count: ")


def test_reject_reason_column_is_honoured(tmp_path) -> None:
    result, good = orders(tmp_path, {"id": "O1", "why": "order_id: test order, not real"}, {"id": "O2", "why": None})
    assert [r["order_id"] for r in good] == ["O2"]
    assert rejects(result) == ["order_id: test order, not real"]
    assert "reject_reason" not in good[0]


def test_missing_non_nullable_column_is_a_reject(tmp_path) -> None:
    result, good = shipments(tmp_path, {"tn": "1Z"}, {"id": "", "tn": "1Y"}, {"id": "A3"})
    assert [r["shipment_id"] for r in good] == ["A3"]
    assert rejects(result) == ["shipment_id: missing", "shipment_id: missing"]


def test_empty_strings_become_null_and_text_is_trimmed(tmp_path) -> None:
    _, (row,) = shipments(tmp_path, {"id": " A1 ", "tn": "", "carrier": "   ", "code": None})
    assert row["shipment_id"] == "A1"
    assert row["tracking_number"] is None and row["carrier_code"] is None and row["status_raw"] is None


def test_columns_left_out_are_typed_nulls(tmp_path) -> None:
    result, (row,) = shipments(tmp_path, {"id": "A1"})
    assert row["service"] is None and row["last_event_at"] is None
    types = dict(result.con.execute(
        "SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = 'staged_shipments'").fetchall())
    assert types["last_event_at"] == "TIMESTAMP WITH TIME ZONE" and types["service"] == "VARCHAR"
    assert types["is_final"] == "BOOLEAN"


def test_common_columns_filled_by_core(tmp_path) -> None:
    result, (row,) = shipments(tmp_path, {"id": "A1"})
    assert row["provider"] == "acme" and row["account_id"] == "acct-1" and row["extracted_at"] == EXTRACTED
    assert row["run_id"].startswith("run-")
    assert list(row) == transform.TABLES["shipments"].column_names


def test_extras_kept_as_json_text(tmp_path) -> None:
    import json

    _, (row,) = shipments(tmp_path, {"id": "A1", "more": {"label_id": "se-1", "n": 2}})
    assert json.loads(row["extras"]) == {"label_id": "se-1", "n": 2}


def test_unknown_output_column_is_a_plugin_error(tmp_path) -> None:
    sql = f"SELECT e->>'id' AS shipment_id, e->>'colour' AS parcel_colour FROM {ITEMS}"
    with pytest.raises(PluginError, match=r"^provider acme, stream parcels: mapping of shipments outputs unknown "
                                          r"column\(s\) parcel_colour"):
        shipments(tmp_path, {"id": "A1"}, sql=sql, times={})


def test_unknown_table_is_a_plugin_error(tmp_path) -> None:
    with pytest.raises(PluginError, match="^provider acme, stream parcels: mapping targets unknown table 'parcels'"):
        run(tmp_path, [TableMapping("parcels", f"SELECT e->>'id' AS shipment_id FROM {ITEMS}")], [{"items": [{"id": "A"}]}])


def test_invalid_mapping_sql_is_a_plugin_error(tmp_path) -> None:
    with pytest.raises(PluginError, match="^provider acme, stream parcels: mapping to shipments is not valid SQL"):
        run(tmp_path, [TableMapping("shipments", "SELECT nosuchcolumn AS shipment_id FROM pages")], [{"items": []}])


# ------------------------------------------------------------------------------------- statuses


def test_status_from_table_and_final_flag(tmp_path) -> None:
    _, got = shipments(tmp_path, {"id": "A1", "code": "DE"}, {"id": "A2", "code": "IT"})
    assert [(r["status"], r["status_raw"], r["is_final"]) for r in got] == [("delivered", "DE", True), ("in_transit", "IT", False)]


def test_unmapped_status_becomes_unknown_and_is_counted(tmp_path) -> None:
    result, got = shipments(tmp_path, {"id": "A1", "code": "ZZ"}, {"id": "A2", "code": "ZZ"}, {"id": "A3", "code": "YY"},
                            {"id": "A4"})
    assert [r["status"] for r in got] == ["unknown"] * 4
    assert [r["is_final"] for r in got] == [False] * 4
    assert result.unmapped == {("shipments", "ZZ"): 2, ("shipments", "YY"): 1}
    assert rejects(result) == []


def test_a_sources_status_map_gives_unknown_codes_a_status_and_never_overrules_a_table(tmp_path) -> None:
    by_hand = {"shipments": {"ZZ": "delivered", "DE": "exception"}, "tracking_events": {"YY": "in_transit"}}
    result, got = shipments(tmp_path, {"id": "A1", "code": "ZZ"}, {"id": "A2", "code": " ZZ "}, {"id": "A3", "code": "YY"},
                            {"id": "A4", "code": "DE"}, status_map=by_hand)
    assert [(r["status"], r["is_final"]) for r in got] == [("delivered", True), ("delivered", True), ("unknown", False),
                                                           ("delivered", True)]
    assert result.unmapped == {("shipments", "YY"): 1}  # another table's map is not this one's
    assert rejects(result) == []


def test_a_status_map_key_can_name_one_carriers_code(tmp_path) -> None:
    by_hand = {"shipments": {"dhl/ZZ": "delivered", "ZZ": "exception"}}
    _, got = shipments(tmp_path, {"id": "A1", "code": "ZZ", "carrier": "dhl"}, {"id": "A2", "code": "ZZ", "carrier": "ups"},
                       {"id": "A3", "code": "ZZ"}, status_map=by_hand)
    assert [r["status"] for r in got] == ["delivered", "exception", "exception"]


def test_invalid_status_string_is_a_reject(tmp_path) -> None:
    sql = f"SELECT e->>'id' AS shipment_id, e->>'status' AS status FROM {ITEMS}"
    result, good = shipments(tmp_path, {"id": "A1", "status": "Delivered"}, {"id": "A2", "status": "delivered"},
                             sql=sql, times={})
    assert [(r["shipment_id"], r["status"]) for r in good] == [("A2", "delivered")]
    (reason,) = rejects(result)
    assert reason.startswith("status: ") and "Delivered" in reason


# ------------------------------------------------------------------------------------ countries


def test_country_names_and_codes_become_alpha2(tmp_path) -> None:
    result, got = shipments(tmp_path, {"id": "A1", "dest": "HONG KONG", "origin": "China"},
                            {"id": "A2", "dest": "Hong Kong", "origin": " cn "}, {"id": "A3", "dest": "hk", "origin": "CHN"},
                            {"id": "A4", "dest": "Narnia", "origin": ""}, {"id": "A5", "dest": "narnia"})
    assert [(r["destination_country"], r["origin_country"]) for r in got] == [
        ("HK", "CN"), ("HK", "CN"), ("HK", "CN"), (None, None), (None, None)]
    assert result.unknown_countries == {"Narnia": 1, "narnia": 1}
    # The text no table knows is kept in extras; rows whose countries are known keep their extras as mapped.
    assert [json.loads(r["extras"]) if r["extras"] else None for r in got] == [
        None, None, None, {"destination_country_raw": "Narnia"}, {"destination_country_raw": "narnia"}]


def test_an_unknown_country_joins_the_extras_object_a_mapping_gives(tmp_path) -> None:
    _, got = shipments(tmp_path, {"id": "A1", "dest": "Macau SAR", "origin": "HK", "more": {"leg": "return"}},
                       {"id": "A2", "dest": "HK", "more": {"leg": "out"}},
                       {"id": "A3", "dest": "Narnia", "more": ["not", "an", "object"]})
    assert [(r["shipment_id"], json.loads(r["extras"])) for r in got] == [
        ("A1", {"leg": "return", "destination_country_raw": "Macau SAR"}), ("A2", {"leg": "out"}),
        ("A3", ["not", "an", "object"])]
    as_text = SHIPMENTS_SQL.replace("e->'more' AS extras", "e->>'more' AS extras")
    result, got = shipments(tmp_path / "text", {"id": "B1", "dest": "Narnia", "more": "not json"}, sql=as_text)
    assert got == [] and rejects(result) == ["extras: not valid JSON"]


def test_event_country(tmp_path) -> None:
    result = run(tmp_path, [TableMapping("tracking_events", EVENTS_SQL, {"occurred_at": "iso"})],
                 [{"items": [{"tn": "1Z", "at": "2024-05-01T00:00:00Z", "country": "Malaysia"}]}])
    (row,) = rows(result, "tracking_events")
    assert row["country"] == "MY"


# ----------------------------------------------------------------------------------------- keys


EVENT_PAGES = [
    {"items": [{"tn": "1Z", "at": "2024-05-01T12:00:00+08:00", "code": "IT", "text": "Departed", "lat": "22.3"},
               {"tn": "1Z", "at": "2024-05-02T09:30:00.5Z", "code": "DE", "text": "Delivered, front door"}]},
    b'{"items": [{"tn": "9X", "at": "2024-05-03T00:00:00Z", "code": "ZZ", "text": "\xe5\xb7\xb2\xe7\xb0\xbd\xe6\x94\xb6"}]}',
]


def events(tmp_path: Path, sub: str, pages=EVENT_PAGES) -> list[dict[str, Any]]:
    result = run(tmp_path / sub, [TableMapping("tracking_events", EVENTS_SQL, {"occurred_at": "iso"})], pages)
    return rows(result, "tracking_events", "occurred_at")


def test_event_rows(tmp_path) -> None:
    got = events(tmp_path, "a")
    assert [(r["shipment_id"], r["status"], r["occurred_at"]) for r in got] == [
        ("1Z", "in_transit", datetime(2024, 5, 1, 4, 0, tzinfo=UTC)),
        ("1Z", "delivered", datetime(2024, 5, 2, 9, 30, 0, 500000, tzinfo=UTC)),
        ("9X", "unknown", datetime(2024, 5, 3, tzinfo=UTC)),
    ]
    assert got[0]["latitude"] == 22.3 and got[0]["occurred_at_local"] == "2024-05-01T12:00:00+08:00"
    assert got[2]["description"] == "已簽收"


def test_event_id_is_the_keys_module_hash(tmp_path) -> None:
    from shipetl import keys

    for r in events(tmp_path, "a"):
        assert r["event_id"] == keys.event_id("acme", r["tracking_number"], r["occurred_at"], r["status_raw"], r["description"])


def test_event_id_identical_across_runs(tmp_path) -> None:
    first, second = events(tmp_path, "a"), events(tmp_path, "b")
    assert first[0]["run_id"] != second[0]["run_id"]
    assert [r["event_id"] for r in first] == [r["event_id"] for r in second]
    assert len({r["event_id"] for r in first}) == 3


def test_record_hash_identical_for_identical_content(tmp_path) -> None:
    item = {"id": "A1", "tn": "1Z", "code": "IT", "created": "2024-05-01T00:00:00Z", "dest": "HK"}
    _, first = shipments(tmp_path / "a", item, {**item, "id": "A2"})
    _, again = shipments(tmp_path / "b", item)
    _, changed = shipments(tmp_path / "c", {**item, "code": "DE"})
    assert first[0]["record_hash"] == again[0]["record_hash"]
    assert first[0]["record_hash"] != first[1]["record_hash"]  # the id is content too
    assert changed[0]["record_hash"] != first[0]["record_hash"]


def test_record_hash_tells_null_from_empty_extras(tmp_path) -> None:
    _, (a,) = shipments(tmp_path / "a", {"id": "A1"})
    _, (b,) = shipments(tmp_path / "b", {"id": "A1", "more": {}})
    assert a["extras"] is None and b["extras"] == "{}"
    assert a["record_hash"] != b["record_hash"]


# --------------------------------------------------------------------------------- raw files


def test_pages_as_bytes_and_dicts_give_the_same_rows(tmp_path) -> None:
    item = {"id": "A1", "tn": "1Z", "code": "DE", "created": "2024-05-01T00:00:00Z"}
    _, from_dict = shipments(tmp_path / "a", item)
    result = run(tmp_path / "b", [TableMapping("shipments", SHIPMENTS_SQL, SHIPMENT_TIMES)],
                 [b'{"items": [{"id": "A1", "tn": "1Z", "code": "DE",\n "created": "2024-05-01T00:00:00Z"}]}'])
    from_bytes = rows(result, "shipments")
    strip = lambda r: {k: v for k, v in r.items() if k != "run_id"}  # noqa: E731
    assert [strip(r) for r in from_bytes] == [strip(r) for r in from_dict]


def test_rows_from_every_rotated_file(tmp_path) -> None:
    pages = [{"items": [{"id": f"A{i:03d}", "code": "IT"}]} for i in range(12)]
    result = run(tmp_path, [TableMapping("shipments", SHIPMENTS_SQL, SHIPMENT_TIMES)], pages, rotate_bytes=150)
    assert len(list((tmp_path / "raw").rglob("*.ndjson.zst"))) >= 3
    assert [r["shipment_id"] for r in rows(result, "shipments", "shipment_id")] == [f"A{i:03d}" for i in range(12)]
    assert result.tables["shipments"].mapped == 12


def test_one_stream_to_two_tables(tmp_path) -> None:
    ship = f"SELECT DISTINCT e->>'tn' AS shipment_id, e->>'tn' AS tracking_number FROM {ITEMS}"
    result = run(tmp_path, [TableMapping("shipments", ship), TableMapping("tracking_events", EVENTS_SQL, {"occurred_at": "iso"})],
                 EVENT_PAGES)
    assert sorted(r["shipment_id"] for r in rows(result, "shipments")) == ["1Z", "9X"]
    assert len(rows(result, "tracking_events")) == 3
    assert result.staged == {"shipments", "tracking_events"}


def test_stream_without_files_stages_nothing(tmp_path) -> None:
    con = shared_con()
    drop_staged(con)
    stream = Stream("parcels", "JSON", (TableMapping("shipments", SHIPMENTS_SQL, SHIPMENT_TIMES),))
    result = transform.transform(con, [stream], {}, provider="acme", account_id="a", run_id="r",
                                 extracted_at=EXTRACTED, timezone=None)
    assert result.staged == set() and result.tables == {}


# ------------------------------------------------------------------------------------------ pii


def test_pii_keep(tmp_path) -> None:
    con = transform.connect(pii="keep")
    _, (row,) = orders(tmp_path, {"id": "O1", "name": "Chan Tai Man", "phone": ""}, con=con)
    assert row["recipient_name"] == "Chan Tai Man" and row["recipient_phone"] is None


def test_pii_drop(tmp_path) -> None:
    con = transform.connect(pii="drop")
    _, (row,) = orders(tmp_path, {"id": "O1", "name": "Chan Tai Man", "phone": "+852 5555 0000"}, con=con)
    assert row["recipient_name"] is None and row["recipient_phone"] is None


def test_pii_hash_is_stable_and_keyed(tmp_path) -> None:
    one, two = transform.connect(pii="hash", pii_key="k-one-secret"), transform.connect(pii="hash", pii_key="k-two-secret")

    def hashed(sub: str, con) -> dict[str, Any]:
        _, (row,) = orders(tmp_path / sub, {"id": "O1", "name": "Chan Tai Man", "phone": " "}, con=con)
        return row

    a, b, c = hashed("a", one), hashed("b", one), hashed("c", two)
    assert a["recipient_name"] == b["recipient_name"]
    assert a["recipient_name"] != c["recipient_name"]
    assert a["recipient_name"].startswith("h:") and "Chan" not in a["recipient_name"]
    assert a["recipient_phone"] is None  # nothing to hide stays NULL


def test_pii_hash_without_key_fails_the_run(tmp_path) -> None:
    con = transform.connect(pii="hash", pii_key=None)
    _, (row,) = orders(tmp_path / "a", {"id": "O1"}, con=con)  # nothing to hash: fine
    assert row["recipient_name"] is None
    with pytest.raises(Exception, match=r"credentials\.pii_key"):
        orders(tmp_path / "b", {"id": "O1", "name": "Chan Tai Man"}, con=con)


def test_an_unreadable_required_time_has_one_reason_and_an_absent_one_is_missing(tmp_path) -> None:
    result = run(tmp_path, [TableMapping("tracking_events", EVENTS_SQL, {"occurred_at": "iso"})],
                 [{"items": [{"tn": "1Z", "at": "2025-13-45T00:00:00Z"}, {"tn": "2Z"}]}])
    reasons = rejects(result)
    assert len(reasons) == 2
    assert reasons[0].startswith("occurred_at: '2025-13-45T00:00:00Z' is not") and "missing" not in reasons[0]
    assert reasons[1] == "occurred_at: missing"
