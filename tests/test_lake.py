"""The Parquet lake: partitioned staging writes, atomic publishing, and repair after a crash."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from shipetl import lake
from shipetl.schema import TABLES
from shipetl.warehouse import table_ddl

EXTRACTED = datetime(2025, 1, 2, 3, 0, tzinfo=UTC)


@pytest.fixture
def con() -> duckdb.DuckDBPyConnection:
    c = duckdb.connect()
    c.execute("SET TimeZone = 'UTC'")
    return c


def add_events(con, rows: list[tuple[str, str, str]]) -> str:
    """A temp table of tracking_events rows (provider, event_id, occurred_at); returns its name."""
    con.execute(table_ddl(TABLES["tracking_events"]).replace("CREATE TABLE IF NOT EXISTS tracking_events",
                                                             "CREATE TEMP TABLE ev"))
    for provider, event_id, occurred in rows:
        con.execute("INSERT INTO ev (provider, account_id, run_id, extracted_at, event_id, shipment_id, occurred_at, status) "
                    "VALUES (?, 'a', 'r1', ?, ?, 's1', CAST(? AS TIMESTAMPTZ), 'in_transit')",
                    [provider, EXTRACTED, event_id, occurred])
    return "temp.main.ev"


def files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*.parquet"))


def test_write_staging_partitions_by_provider_and_utc_day(con, tmp_path) -> None:
    rel = add_events(con, [("acme", "e1", "2024-05-01T23:30:00-05:00"), ("acme", "e2", "2024-05-01T00:00:00Z"),
                           ("zeta", "e3", "2024-05-01T12:00:00Z")])
    lake.write_staging(con, TABLES["tracking_events"], rel, tmp_path, "c1")
    staged = lake.staging_dir(tmp_path, "c1")
    assert staged == tmp_path / "_staging" / "c1"
    parts = sorted(str(p.relative_to(staged)) for p in staged.glob("*/*/*"))
    assert parts == ["tracking_events/provider=acme/date=2024-05-01", "tracking_events/provider=acme/date=2024-05-02",
                     "tracking_events/provider=zeta/date=2024-05-01"]
    assert all(Path(f).name.startswith("c1-") for f in files_under(staged))
    assert not (tmp_path / "tracking_events").exists()  # nothing visible before publish


def test_a_backfill_over_many_days_writes_each_row_once_in_its_day(con, tmp_path) -> None:
    # 40 days spread over years: more than one COPY's worth, with long gaps between days.
    days = [f"{2020 + i % 5}-{1 + i % 12:02d}-{1 + i % 28:02d}" for i in range(40)]
    rel = add_events(con, [("acme", f"e{i}", f"{d}T12:00:00Z") for i, d in enumerate(days)])
    lake.write_staging(con, TABLES["tracking_events"], rel, tmp_path, "c1")
    staged = lake.staging_dir(tmp_path, "c1") / "tracking_events"
    rows = con.execute(f"SELECT event_id, CAST(occurred_at AS DATE)::VARCHAR, CAST(date AS VARCHAR) FROM read_parquet('{staged}/**/*.parquet', "
                      "hive_partitioning=true)").fetchall()
    assert sorted(rows) == sorted((f"e{i}", d, d) for i, d in enumerate(days))
    assert len(files_under(staged)) == len(set(days))


def test_missing_partition_time_falls_back_to_extracted_at(con, tmp_path) -> None:
    con.execute(table_ddl(TABLES["orders"]).replace("CREATE TABLE IF NOT EXISTS orders", "CREATE TEMP TABLE o"))
    con.execute("INSERT INTO o (provider, account_id, run_id, extracted_at, order_id, record_hash) VALUES ('acme', 'a', 'r', ?, 'O1', 'h')",
                [EXTRACTED])
    lake.write_staging(con, TABLES["orders"], "temp.main.o", tmp_path, "c1")
    assert [p.name for p in (tmp_path / "_staging" / "c1" / "orders" / "provider=acme").iterdir()] == ["date=2025-01-02"]


def test_publish_moves_every_file_and_removes_staging(con, tmp_path) -> None:
    rel = add_events(con, [("acme", "e1", "2024-05-01T10:00:00Z"), ("acme", "e2", "2024-05-02T10:00:00Z")])
    lake.write_staging(con, TABLES["tracking_events"], rel, tmp_path, "c1")
    assert lake.pending(tmp_path) == ["c1"]
    assert lake.publish(tmp_path, "c1") == 2
    assert lake.pending(tmp_path) == []
    assert files_under(tmp_path) == ["tracking_events/provider=acme/date=2024-05-01/c1-0.parquet",
                                     "tracking_events/provider=acme/date=2024-05-02/c1-0.parquet"]
    rows = pq.read_table(tmp_path / "tracking_events").to_pylist()
    assert sorted(r["event_id"] for r in rows) == ["e1", "e2"]


def test_publish_beside_earlier_commits(con, tmp_path) -> None:
    rel = add_events(con, [("acme", "e1", "2024-05-01T10:00:00Z")])
    lake.write_staging(con, TABLES["tracking_events"], rel, tmp_path, "c1")
    lake.publish(tmp_path, "c1")
    lake.write_staging(con, TABLES["tracking_events"], rel, tmp_path, "c2")
    lake.publish(tmp_path, "c2")
    assert files_under(tmp_path) == ["tracking_events/provider=acme/date=2024-05-01/c1-0.parquet",
                                     "tracking_events/provider=acme/date=2024-05-01/c2-0.parquet"]


def test_repair_publishes_committed_and_deletes_the_rest(con, tmp_path) -> None:
    rel = add_events(con, [("acme", "e1", "2024-05-01T10:00:00Z")])
    lake.write_staging(con, TABLES["tracking_events"], rel, tmp_path, "committed-1")
    lake.write_staging(con, TABLES["tracking_events"], rel, tmp_path, "never-committed")
    lake.repair(tmp_path, {"committed-1", "some-older-commit"})
    assert lake.pending(tmp_path) == []
    assert files_under(tmp_path) == ["tracking_events/provider=acme/date=2024-05-01/committed-1-0.parquet"]


def test_repair_finishes_a_half_published_commit(con, tmp_path) -> None:
    rel = add_events(con, [("acme", "e1", "2024-05-01T10:00:00Z"), ("acme", "e2", "2024-05-02T10:00:00Z")])
    lake.write_staging(con, TABLES["tracking_events"], rel, tmp_path, "c1")
    first = sorted(lake.staging_dir(tmp_path, "c1").rglob("*.parquet"))[0]
    dest = tmp_path / first.relative_to(lake.staging_dir(tmp_path, "c1"))
    dest.parent.mkdir(parents=True)
    first.rename(dest)  # the crash came after the first rename
    lake.repair(tmp_path, {"c1"})
    assert len(files_under(tmp_path)) == 2 and lake.pending(tmp_path) == []


def test_repair_and_pending_on_an_empty_lake(tmp_path) -> None:
    assert lake.pending(tmp_path / "lake") == []
    lake.repair(tmp_path / "lake", set())
    assert not (tmp_path / "lake").exists()


def test_a_lake_mirrors_one_warehouse_only(tmp_path) -> None:
    from shipetl.errors import ConfigError

    lake_dir = tmp_path / "lake"
    lake.claim(lake_dir, tmp_path / "a.duckdb")
    lake.claim(lake_dir, tmp_path / "a.duckdb")  # the same warehouse again: fine
    with pytest.raises(ConfigError, match=r"mirrors the warehouse .*a\.duckdb, not .*b\.duckdb: give each warehouse its own"):
        lake.claim(lake_dir, tmp_path / "b.duckdb")
    (lake_dir / lake.OWNER).unlink()  # the file was moved: the hint says to delete the marker
    lake.claim(lake_dir, tmp_path / "b.duckdb")
    assert lake.owner_problem(lake_dir, tmp_path / "b.duckdb") is None


def test_a_lake_holding_a_commit_its_warehouse_has_no_record_of_is_refused_until_rebuilt(con, tmp_path) -> None:
    from shipetl.errors import ConfigError

    lake_dir, warehouse = tmp_path / "lake", tmp_path / "a.duckdb"
    lake.claim(lake_dir, warehouse, set())
    events = add_events(con, [("shipengine", "e1", "2024-05-01 10:00:00+00")])
    lake.write_staging(con, TABLES["tracking_events"], events, lake_dir, "run-1")
    lake.publish(lake_dir, "run-1")
    lake.claim(lake_dir, warehouse, {"run-1"})  # the warehouse that committed it: fine
    # Started over (or restored from a copy older than run-1): its next commit would write e1 a second time.
    with pytest.raises(ConfigError, match=r"holds commit run-1, of which the warehouse .*a\.duckdb has no record .*--rebuild"):
        lake.claim(lake_dir, warehouse, set())
    lake.mark_rebuilt(lake_dir, warehouse, None)  # what a finished `shipetl lake --rebuild` does
    lake.claim(lake_dir, warehouse, set())


def test_the_marker_names_a_commit_before_its_first_file_moves(con, tmp_path, monkeypatch) -> None:
    from shipetl import faultpoints

    lake_dir, warehouse = tmp_path / "lake", tmp_path / "a.duckdb"
    lake.claim(lake_dir, warehouse, set())
    events = add_events(con, [("shipengine", "e1", "2024-05-01 10:00:00+00")])
    lake.write_staging(con, TABLES["tracking_events"], events, lake_dir, "run-1")

    def killed(point: str) -> None:
        if point == "lake_half_published":
            raise RuntimeError("killed after its first file moved")

    monkeypatch.setattr(faultpoints, "reached", killed)
    with pytest.raises(RuntimeError):
        lake.publish(lake_dir, "run-1")
    # A warehouse with no record of run-1 (restored from before it) is refused, though run-1 never finished publishing.
    assert "holds commit run-1" in lake.owner_problem(lake_dir, warehouse, set())
