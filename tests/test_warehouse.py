"""The DuckDB warehouse: duplicate-free commits, data + state + run record together, lake files, busy files."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq
import pytest

from shipetl import faultpoints, lake, runs, state, transform, warehouse
from shipetl.errors import WarehouseBusyError
from shipetl.provider import Page, Stream, TableMapping
from shipetl.rawzone import RawZoneWriter
from shipetl.statuses import StatusTables

T0 = datetime(2025, 1, 2, 3, 0, tzinfo=UTC)
ITEMS = "(SELECT unnest(CAST(body->'items' AS JSON[])) AS e FROM pages)"
SHIPMENTS_SQL = (f"SELECT DISTINCT e->>'tn' AS shipment_id, e->>'tn' AS tracking_number, e->>'code' AS status_raw, "
                 f"status_of('acme', e->>'code') AS status FROM {ITEMS}")
EVENTS_SQL = (f"SELECT e->>'tn' AS shipment_id, e->>'tn' AS tracking_number, e->>'at' AS occurred_at, "
              f"e->>'code' AS status_raw, status_of('acme', e->>'code') AS status, e->>'text' AS description FROM {ITEMS}")
STREAM = Stream("tracking", "JSON", (TableMapping("shipments", SHIPMENTS_SQL),
                                     TableMapping("tracking_events", EVENTS_SQL, {"occurred_at": "iso"})))


def scans(*items: tuple[str, str, str]) -> dict[str, Any]:
    """A page of scans (tracking number, code, ISO time); a shipment's snapshot is its code."""
    return {"items": [{"tn": tn, "code": code, "at": at, "text": f"scan {code}"} for tn, code, at in items]}


_CONS: list[duckdb.DuckDBPyConnection] = []


def _shared_con(tables: StatusTables) -> duckdb.DuckDBPyConnection:
    """One transform connection for the module (connect() takes about half a second); commits attach to it in turn."""
    if not _CONS:
        _CONS.append(transform.connect(status_tables=tables))
    return _CONS[0]


class Warehouse:
    """A warehouse, lake and raw zone in tmp_path, and a way to stage and commit pages as one source run would."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.path, self.lake = root / "wh.duckdb", root / "lake"
        self.n = 0
        self.tables = StatusTables()
        self.tables.add("acme-plugin", "acme", {"IT": "in_transit", "DE": "delivered", "EX": "exception"})
        self.con = _shared_con(self.tables)

    def stage(self, *pages: Any, extracted_at: datetime | None = None, stream: Stream = STREAM,
              rotate_bytes: int = 32 << 20) -> tuple[transform.TransformResult, runs.SourceRun]:
        self.n += 1
        run_id = f"2025010{self.n}T000000Z-abc{self.n:03d}"
        when = extracted_at or T0 + timedelta(hours=self.n)
        with RawZoneWriter(self.root / "raw", "acme", "acct-1", run_id, when, rotate_bytes=rotate_bytes) as raw:
            for body in pages:
                raw.write(Page("tracking", body))
            files = raw.close()
        con = self.con
        for (name,) in con.execute("SELECT view_name FROM duckdb_views() WHERE temporary AND view_name LIKE 'staged_%'").fetchall():
            con.execute(f"DROP VIEW temp.main.{name}")  # what the previous stage left
        result = transform.transform(con, [stream], files, provider="acme", account_id="acct-1", run_id=run_id,
                                     extracted_at=when, timezone=None)
        run = runs.SourceRun(run_id, "acme-main", "acme", "acct-1", when, when, "ok")
        run.extracted = {t: c.mapped for t, c in result.tables.items()}
        return result, run

    def commit(self, *pages: Any, cursors: dict[str, Any] | None = None, **kw: Any) -> tuple[dict[str, int], runs.SourceRun]:
        result, run = self.stage(*pages, **kw)
        return warehouse.commit(self.path, self.lake, result, run, cursors or {}, timeout=5), run

    def query(self, sql: str, params: list[Any] | None = None) -> list[tuple]:
        with warehouse.connect(self.path, read_only=True, timeout=5) as con:
            return con.execute(sql, params or []).fetchall()

    def lake_rows(self, table: str) -> list[dict[str, Any]]:
        files = sorted((self.lake / table).rglob("*.parquet"))
        return [r for f in files for r in pq.read_table(f).to_pylist()]


@pytest.fixture
def wh(tmp_path: Path) -> Warehouse:
    return Warehouse(tmp_path)


PAGE_1 = scans(("1Z", "IT", "2024-05-01T10:00:00Z"), ("2Z", "IT", "2024-05-01T11:00:00Z"))


def test_first_commit_loads_everything(wh) -> None:
    loaded, run = wh.commit(PAGE_1)
    assert loaded == {"shipments": 2, "tracking_events": 2}
    assert run.loaded == {"shipments": 2, "tracking_events": 2}
    assert wh.query("SELECT shipment_id, status FROM shipments ORDER BY 1") == [("1Z", "in_transit"), ("2Z", "in_transit")]
    assert wh.query("SELECT count(*) FROM tracking_events") == [(2,)]


def test_same_rows_twice_add_nothing(wh) -> None:
    wh.commit(PAGE_1)
    loaded, run = wh.commit(PAGE_1)
    assert loaded == {"shipments": 0, "tracking_events": 0}
    assert run.totals() == (4, 0, 4, 0)  # extracted, loaded, deduplicated, rejected
    assert wh.query("SELECT count(*) FROM shipments") == [(2,)]
    assert wh.query("SELECT count(*), count(DISTINCT event_id) FROM tracking_events") == [(2, 2)]


def test_events_dedup_on_event_id_and_new_scans_are_added(wh) -> None:
    wh.commit(PAGE_1)
    loaded, _ = wh.commit(scans(("1Z", "IT", "2024-05-01T10:00:00Z"), ("1Z", "DE", "2024-05-02T10:00:00Z")))
    assert loaded["tracking_events"] == 1
    assert wh.query("SELECT status FROM tracking_events WHERE shipment_id = '1Z' ORDER BY occurred_at") == [
        ("in_transit",), ("delivered",)]


def test_scan_repeated_within_one_reply_is_stored_once(wh) -> None:
    page = scans(("1Z", "IT", "2024-05-01T10:00:00Z"), ("1Z", "IT", "2024-05-01T10:00:00Z"))
    loaded, _ = wh.commit(page)
    assert loaded["tracking_events"] == 1


def test_changed_snapshot_is_appended_and_latest_shows_it(wh) -> None:
    wh.commit(PAGE_1)
    loaded, run = wh.commit(scans(("1Z", "DE", "2024-05-02T10:00:00Z"), ("2Z", "IT", "2024-05-01T11:00:00Z")))
    assert loaded["shipments"] == 1  # 1Z changed, 2Z did not
    assert wh.query("SELECT shipment_id, status, is_final FROM shipments ORDER BY shipment_id, extracted_at") == [
        ("1Z", "in_transit", False), ("1Z", "delivered", True), ("2Z", "in_transit", False)]
    assert wh.query("SELECT shipment_id, status, run_id FROM shipments_latest ORDER BY 1") == [
        ("1Z", "delivered", run.run_id), ("2Z", "in_transit", wh.query("SELECT min(run_id) FROM runs")[0][0])]


def test_of_two_snapshots_in_one_run_the_later_files_loads(wh) -> None:
    """A listing by update time that changes while it is paged lists a shipment twice: the later page wins."""
    loaded, _ = wh.commit(scans(("1Z", "IT", "2024-05-01T10:00:00Z"), ("2Z", "DE", "2024-05-01T10:00:00Z")),
                          scans(("1Z", "DE", "2024-05-02T10:00:00Z"), ("2Z", "IT", "2024-05-02T10:00:00Z")),
                          rotate_bytes=1)  # a file per page
    assert loaded["shipments"] == 2
    assert wh.query("SELECT shipment_id, status FROM shipments_latest ORDER BY 1") == [("1Z", "delivered"), ("2Z", "in_transit")]


def test_of_two_snapshots_in_one_file_the_newer_by_its_last_scan_loads(wh) -> None:
    latest = Stream("tracking", "JSON", (TableMapping(
        "shipments", f"SELECT e->>'tn' AS shipment_id, e->>'code' AS status_raw, status_of('acme', e->>'code') AS status, "
                     f"e->>'at' AS last_event_at FROM {ITEMS}", {"last_event_at": "iso"}),))
    pages = []
    for n in range(8):  # each parcel in transit, then delivered a day later, in either order within the file
        older, newer = (f"{n}Z", "IT", "2024-05-01T10:00:00Z"), (f"{n}Z", "DE", "2024-05-02T10:00:00Z")
        pages += [scans(older), scans(newer)] if n % 2 else [scans(newer), scans(older)]
    result, run = wh.stage(*pages, stream=latest)
    warehouse.commit(wh.path, wh.lake, result, run, {}, timeout=5)
    assert wh.query("SELECT DISTINCT status FROM shipments_latest") == [("delivered",)]


def test_a_mappings_counters_count_only_the_rows_a_commit_loads(wh) -> None:
    counting = Stream("tracking", "JSON", (TableMapping(
        "tracking_events", EVENTS_SQL, {"occurred_at": "iso"},
        counters=("CASE WHEN m.status_raw = 'EX' THEN 'exceptions_seen' END",)),))

    def commit(*pages):
        result, run = wh.stage(*pages, stream=counting)
        run.counters = {"pages_asked": len(pages), **result.counters}  # a provider's own counter, and the mapping's
        warehouse.commit(wh.path, wh.lake, result, run, {}, timeout=5)
        return run.counters

    first = scans(("1Z", "EX", "2024-05-01T10:00:00Z"), ("2Z", "EX", "2024-05-01T11:00:00Z"))
    assert commit(first) == {"pages_asked": 1, "exceptions_seen": 2}
    # Polled again, with one new exception scan: the two old ones were counted by the run that loaded them.
    again = scans(("1Z", "EX", "2024-05-01T10:00:00Z"), ("2Z", "EX", "2024-05-01T11:00:00Z"), ("2Z", "EX", "2024-05-02T09:00:00Z"))
    assert commit(again) == {"pages_asked": 1, "exceptions_seen": 1}
    assert commit(again) == {"pages_asked": 1}
    assert wh.query("SELECT sum((details->>'$.counters.exceptions_seen')::INT) FROM runs") == [(3,)]


def test_snapshot_changing_back_is_appended_again(wh) -> None:
    wh.commit(scans(("1Z", "IT", "2024-05-01T10:00:00Z")))
    wh.commit(scans(("1Z", "EX", "2024-05-02T10:00:00Z")))
    loaded, _ = wh.commit(scans(("1Z", "IT", "2024-05-03T10:00:00Z")))
    assert loaded["shipments"] == 1
    assert wh.query("SELECT status FROM shipments_latest") == [("in_transit",)]


def test_latest_is_the_newest_extraction_and_the_later_run_breaks_a_tie(wh) -> None:
    _, first = wh.commit(scans(("1Z", "IT", "2024-05-01T10:00:00Z"), ("2Z", "IT", "2024-05-01T10:00:00Z")),
                         extracted_at=T0 + timedelta(days=2))
    # A later run whose extraction is older (a replay of an old raw file) does not become the latest ...
    wh.commit(scans(("1Z", "EX", "2024-05-01T10:00:00Z")), extracted_at=T0)
    # ... and of two snapshots extracted at the same instant, the later run's wins.
    _, tie = wh.commit(scans(("2Z", "DE", "2024-05-02T10:00:00Z")), extracted_at=T0 + timedelta(days=2))
    assert wh.query("SELECT shipment_id, status, run_id FROM shipments_latest ORDER BY 1") == [
        ("1Z", "in_transit", first.run_id), ("2Z", "delivered", tie.run_id)]
    assert wh.query("SELECT count(*) FROM shipments") == [(4,)]


def test_run_record_and_cursors_are_committed(wh) -> None:
    _, run = wh.commit(PAGE_1, cursors={"updated_at": "2024-05-01T11:00:00+00:00", "page": 3})
    (record,) = wh.query("SELECT run_id, source, account_id, status, extracted, loaded, commit_id FROM runs")
    assert record == (run.run_id, "acme-main", "acct-1", "ok", 4, 4, f"{run.run_id}-acme-main_acct-1")
    with warehouse.connect(wh.path, read_only=True) as con:
        assert state.read(con, "acme-main", "acct-1") == {"updated_at": "2024-05-01T11:00:00+00:00", "page": 3}
        assert runs.committed_ids(con) == {record[-1]}


def test_failure_before_commit_leaves_nothing(wh, monkeypatch) -> None:
    wh.commit(PAGE_1, cursors={"page": 1})

    def boom(point: str) -> None:
        if point == "lake_staged":
            raise RuntimeError("killed")

    monkeypatch.setattr(faultpoints, "reached", boom)
    with pytest.raises(RuntimeError):
        wh.commit(scans(("3Z", "IT", "2024-05-03T10:00:00Z")), cursors={"page": 2})
    assert wh.query("SELECT count(*) FROM shipments WHERE shipment_id = '3Z'") == [(0,)]
    assert wh.query("SELECT count(*) FROM tracking_events") == [(2,)]
    assert wh.query("SELECT count(*) FROM runs") == [(1,)]
    assert wh.query("SELECT value FROM source_state WHERE key = 'page'") == [("1",)]
    assert lake.pending(wh.lake) != []  # its staged Parquet waits for the next commit to discard it
    monkeypatch.undo()
    wh.commit(scans(("4Z", "IT", "2024-05-04T10:00:00Z")))
    assert lake.pending(wh.lake) == []
    assert sorted(r["shipment_id"] for r in wh.lake_rows("shipments")) == ["1Z", "2Z", "4Z"]


def test_crash_after_commit_is_published_by_the_next_commit(wh, monkeypatch) -> None:
    def boom(point: str) -> None:
        if point == "committed":
            raise RuntimeError("killed")

    monkeypatch.setattr(faultpoints, "reached", boom)
    with pytest.raises(RuntimeError):
        wh.commit(PAGE_1)
    assert wh.query("SELECT count(*) FROM shipments") == [(2,)]
    assert wh.lake_rows("shipments") == [] and len(lake.pending(wh.lake)) == 1
    monkeypatch.undo()
    wh.commit(scans(("3Z", "IT", "2024-05-03T10:00:00Z")))
    assert lake.pending(wh.lake) == []
    assert sorted(r["shipment_id"] for r in wh.lake_rows("shipments")) == ["1Z", "2Z", "3Z"]


def test_lake_holds_exactly_the_inserted_rows(wh) -> None:
    _, first = wh.commit(PAGE_1)
    _, second = wh.commit(scans(("1Z", "IT", "2024-05-01T10:00:00Z"), ("1Z", "DE", "2024-05-02T23:30:00-05:00")))
    events = wh.lake_rows("tracking_events")
    assert sorted(e["event_id"] for e in events) == sorted(r[0] for r in wh.query("SELECT event_id FROM tracking_events"))
    dirs = sorted(str(p.relative_to(wh.lake)) for p in wh.lake.glob("*/provider=*/date=*"))
    assert dirs == [
        "shipments/provider=acme/date=2025-01-02",
        "tracking_events/provider=acme/date=2024-05-01",
        "tracking_events/provider=acme/date=2024-05-03",  # 23:30 at -05:00 is the next day in UTC
    ]
    assert len(wh.lake_rows("shipments")) == 3  # 2 first, then 1Z's changed snapshot
    assert lake.pending(wh.lake) == []
    assert not list((wh.lake / lake.STAGING).rglob("*.parquet"))


def test_lake_files_have_canonical_types(wh) -> None:
    wh.commit(PAGE_1)
    (path,) = (wh.lake / "tracking_events").rglob("*.parquet")
    schema = pq.read_schema(path)
    expected = transform.TABLES["tracking_events"].schema
    for f in schema:
        assert f.type == expected.field(f.name).type, f.name
    assert set(schema.names) == set(expected.names) - {"provider"}


def test_rejects_are_stored(wh) -> None:
    loaded, _ = wh.commit(scans(("1Z", "IT", "not a time")))
    assert loaded["rejects"] == 1
    (row,) = wh.query("SELECT provider, table_name, reason FROM rejects")
    assert row[:2] == ("acme", "tracking_events") and row[2].startswith("occurred_at: 'not a time'")


def test_record_failure(wh) -> None:
    run = runs.SourceRun("r1", "acme-main", "acme", "acct-1", T0, T0, "failed", "source acme-main: token rejected")
    warehouse.record_failure(wh.path, run, timeout=5)
    assert wh.query("SELECT status, error, commit_id FROM runs") == [("failed", "source acme-main: token rejected", None)]
    assert wh.query("SELECT count(*) FROM shipments") == [(0,)]


def storage_version_number(path: Path) -> int:
    """The format number in a DuckDB file's header (after an 8-byte checksum and the magic ``DUCK``)."""
    header = path.read_bytes()[:20]
    assert header[8:12] == b"DUCK"
    return int.from_bytes(header[12:20], "little")


# DuckDB 1.0's format is number 64; DuckDB 1.0 to 1.5 read 64 to 68, DuckDB 2 writes a newer one by default.
@pytest.mark.parametrize("first_write", ["commit", "failure record"])
def test_a_new_warehouse_is_written_in_a_format_duckdb_1_reads(wh, first_write) -> None:
    if first_write == "commit":
        wh.commit(PAGE_1)
    else:
        warehouse.record_failure(wh.path, runs.SourceRun("r1", "acme-main", "acme", "acct-1", T0, T0, "failed", "down"),
                                 timeout=5)
        wh.commit(PAGE_1)
    assert warehouse.STORAGE_VERSION == "v1.0.0" and storage_version_number(wh.path) == 64
    assert wh.query("SELECT count(*) FROM tracking_events") == [(2,)]
    # The format alone is not enough: DuckDB 2 writes an index (a PRIMARY KEY, UNIQUE) that DuckDB 1.0 fails to read.
    assert wh.query("SELECT count(*) FROM duckdb_indexes()") == [(0,)]
    assert wh.query("SELECT count(*) FROM duckdb_constraints() WHERE constraint_type IN ('PRIMARY KEY', 'UNIQUE')") == [(0,)]


def test_a_warehouse_an_earlier_shipetl_made_loses_the_key_duckdb_1_cannot_read_and_keeps_its_cursors(tmp_path) -> None:
    path = tmp_path / "wh.duckdb"
    with warehouse.connect(path, read_only=False) as con:  # source_state as shipetl made it before
        con.execute("CREATE TABLE source_state (source VARCHAR NOT NULL, account_id VARCHAR NOT NULL, key VARCHAR NOT NULL, "
                    "value JSON, run_id VARCHAR, updated_at TIMESTAMPTZ, PRIMARY KEY (source, account_id, key))")
        con.execute("INSERT INTO source_state VALUES ('se', 'acct-1', 'labels', '\"2025-01-01T00:00:00+00:00\"', 'r1', ?)", [T0])
    with warehouse.connect(path, read_only=False) as con:
        warehouse.ensure_schema(con)
        assert con.execute("SELECT count(*) FROM duckdb_constraints() WHERE constraint_type = 'PRIMARY KEY'").fetchone() == (0,)
        assert con.execute("SELECT source, account_id, key, value, run_id FROM source_state").fetchall() == [
            ("se", "acct-1", "labels", '"2025-01-01T00:00:00+00:00"', "r1")]
        state.write(con, "se", "acct-1", "r2", {"labels": "2025-02-01T00:00:00+00:00"})  # still one row per key
        assert state.read(con, "se", "acct-1") == {"labels": "2025-02-01T00:00:00+00:00"}
        assert con.execute("SELECT count(*) FROM source_state").fetchone() == (1,)


def test_reader_on_missing_file_gets_none(tmp_path) -> None:
    path = tmp_path / "nothing" / "wh.duckdb"
    with warehouse.connect(path, read_only=True) as con:
        assert con is None
    assert not path.exists()


def test_connection_is_utc(wh) -> None:
    wh.commit(PAGE_1)
    with warehouse.connect(wh.path, read_only=True) as con:
        assert con.execute("SELECT current_setting('TimeZone')").fetchone() == ("UTC",)


def test_ensure_schema_creates_views(tmp_path) -> None:
    with warehouse.connect(tmp_path / "wh.duckdb", read_only=False) as con:
        warehouse.ensure_schema(con)
        warehouse.ensure_schema(con)
        names = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    assert {"orders", "order_items", "shipments", "tracking_events", "rejects", "runs", "source_state",
            "orders_latest", "order_items_latest", "shipments_latest"} <= names


HOLDER = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1])
print("ready", flush=True)
time.sleep(float(sys.argv[2]))
"""


@pytest.fixture
def held(tmp_path: Path):
    """A warehouse file another process holds open read-write for a few seconds."""
    path = tmp_path / "wh.duckdb"
    duckdb.connect(str(path)).close()
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(path), "5"], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        yield path
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("read_only", [True, False], ids=["reader", "writer"])
def test_busy_file_gives_a_clear_one_line_error(held, read_only) -> None:
    started = datetime.now()
    with pytest.raises(WarehouseBusyError) as info:
        with warehouse.connect(held, read_only=read_only, timeout=0.5):
            pass
    assert datetime.now() - started < timedelta(seconds=4)
    msg = str(info.value)
    assert str(held) in msg and ("try again" in msg if read_only else "commit_timeout" in msg)
    assert "\n" not in msg
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_open_shipment_with_a_recent_scan_is_not_expired_though_its_mapping_gives_no_last_event_at(wh) -> None:
    wh.commit(scans(("1Z", "IT", "2024-12-01T10:00:00Z"), ("2Z", "IT", "2024-12-01T11:00:00Z")), extracted_at=T0)
    later = T0 + timedelta(days=40)
    result, run = wh.stage(scans(("2Z", "IT", (later - timedelta(days=1)).isoformat())), extracted_at=later)
    warehouse.commit(wh.path, wh.lake, result, run, {}, timeout=5, expire_before=later - timedelta(days=30))
    latest = dict(wh.query("SELECT shipment_id, status FROM shipments_latest"))
    assert latest == {"1Z": "expired", "2Z": "in_transit"}
    assert run.counters["expired"] == 1


def test_a_silent_shipment_whose_poll_failed_in_this_run_is_not_expired(wh) -> None:
    """Its news since the last run is unknown: expiring it would end its polling before a late scan is seen."""
    wh.commit(scans(("1Z", "IT", "2024-12-01T10:00:00Z"), ("2Z", "IT", "2024-12-01T11:00:00Z"),
                    ("3Z", "IT", "2024-12-01T12:00:00Z")), extracted_at=T0)
    later = T0 + timedelta(days=40)
    result, run = wh.stage(extracted_at=later)
    run.unheard = {"2Z", "not-stored"}
    warehouse.commit(wh.path, wh.lake, result, run, {}, timeout=5, expire_before=later - timedelta(days=30))
    latest = dict(wh.query("SELECT shipment_id, status FROM shipments_latest"))
    assert latest == {"1Z": "expired", "2Z": "in_transit", "3Z": "expired"}
    assert run.counters["expired"] == 2


def test_failure_record_of_a_busy_warehouse_is_set_aside_then_stored(held) -> None:
    first = runs.SourceRun("r1", "acme-main", "acme", "acct-1", T0, T0, "failed", "token rejected")
    warehouse.record_failure(held, first, timeout=0.5)  # held: no wait past the timeout, no error
    pending = warehouse.pending_runs_file(held)
    assert b"token rejected" in pending.read_bytes()
    second = runs.SourceRun("r2", "acme-main", "acme", "acct-1", T0, T0, "failed", "API down")
    warehouse.record_failure(held, second, timeout=30)  # the holder lets go after 5 s
    with warehouse.connect(held, read_only=True) as con:
        stored = con.execute("SELECT run_id, status, error FROM runs ORDER BY run_id").fetchall()
    assert stored == [("r1", "failed", "token rejected"), ("r2", "failed", "API down")]
    assert not pending.exists()


def test_next_commit_stores_set_aside_records_once(wh) -> None:
    failed = runs.SourceRun("r0", "acme-main", "acme", "acct-1", T0, T0, "failed", "token rejected")
    pending = warehouse.pending_runs_file(wh.path)
    runs.set_aside(pending, failed)
    runs.set_aside(pending, failed)  # as if a crash had come between storing it and deleting the file
    _, run = wh.commit(PAGE_1)
    assert wh.query("SELECT run_id, status FROM runs ORDER BY status") == [("r0", "failed"), (run.run_id, "ok")]
    assert not pending.exists()


def test_a_file_no_run_committed_to_reads_as_empty(tmp_path) -> None:
    db = tmp_path / "warehouse.duckdb"
    duckdb.connect(str(db)).close()  # opened by hand (a notebook) before the first run
    assert warehouse.query(db, "SELECT * FROM orders_latest") == []
    assert warehouse.start_state(db, "se", "shipengine", "se") == ({}, [])
