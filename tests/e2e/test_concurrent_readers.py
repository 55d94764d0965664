"""Readers beside a running `shipetl run`: DuckDB read-only sessions in other processes, and Parquet readers.

A run holds the DuckDB file only while it commits, so a read-only connection from another process works
while the run is extracting; the lake publishes by atomic renames, so no reader of ``<lake>/<table>/``
ever meets a half-written file.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from datetime import timedelta
from pathlib import Path

import duckdb
import httpx
import pyarrow.parquet as pq
from background import BackgroundRun
from shipetl_shipengine.sandbox import DEFAULT_CLOCK

from shipetl.schema import DATA_TABLES


SOURCE = """
- name: se
  provider: shipengine
  base_url: {url}/shipengine
  start: 2025-08-01
  rate_limit: {{per_second: 1000, burst: 100, max_in_flight: 8}}
  credentials: {{api_key: sandbox_live_key}}
  options: {{poll_concurrency: 8}}
"""
READER = """
import duckdb, sys
con = duckdb.connect(sys.argv[1], read_only=True)
events = con.execute("SELECT count(*) FROM tracking_events").fetchall()[0][0]
runs = con.execute("SELECT count(*) FROM runs").fetchall()[0][0]
stuck = con.execute("SELECT count(*) FROM stuck_shipments").fetchall()[0][0]
print(events, runs, stuck)
"""


class LakeWatcher(threading.Thread):
    """Reads every Parquet file under the table folders, over and over, until stopped; keeps what failed."""

    def __init__(self, lake: Path) -> None:
        super().__init__(daemon=True)
        self.lake = lake
        self.stop = threading.Event()
        self.failures: list[str] = []
        self.reads = 0

    def run(self) -> None:
        while not self.stop.is_set():
            for table in DATA_TABLES:
                for path in (self.lake / table).rglob("*.parquet"):
                    try:
                        pq.read_table(path)
                        self.reads += 1
                    except FileNotFoundError:
                        continue
                    except Exception as exc:  # noqa: BLE001 - any unreadable file is the failure we look for
                        self.failures.append(f"{path}: {exc}")


def read_in_another_process(db: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", READER, str(db)], capture_output=True, text=True, timeout=60)


def test_reader_in_another_process_queries_while_a_run_extracts(sandbox, make_pipeline, run_cli, tmp_path):
    pipeline = make_pipeline(SOURCE.format(url=sandbox))
    db, lake = tmp_path / "warehouse.duckdb", tmp_path / "lake"
    assert run_cli("run", str(pipeline)).returncode == 0
    ((events_before,),) = duckdb.connect(str(db), read_only=True).execute(
        "SELECT count(*) FROM tracking_events").fetchall()

    # The second run finds new scans 40 days later, and every request is slow: extraction takes seconds.
    httpx.post(f"{sandbox}/shipengine/_clock", json={"now": (DEFAULT_CLOCK + timedelta(days=40)).isoformat()})
    httpx.post(f"{sandbox}/_sandbox/faults", json={"latency_ms": 60}).raise_for_status()
    watcher = LakeWatcher(lake)
    watcher.start()
    run = BackgroundRun(pipeline, tmp_path)
    try:
        assert run.polling.wait(60), run.log_tail()
        reader = read_in_another_process(db)
        still_running = run.process.poll() is None
        run.process.wait(timeout=240)
    finally:
        run.end()
        watcher.stop.set()
        watcher.join(timeout=60)

    assert reader.returncode == 0, reader.stderr
    events, runs, stuck = map(int, reader.stdout.split())
    assert still_running, "the run ended before the reader finished: make the sandbox slower"
    assert (events, runs) == (events_before, 1)  # the first run's data, the second not committed yet
    assert stuck > 0  # the marts are stored in the file, readable by any DuckDB client
    assert run.process.returncode == 0, run.log_tail()

    ((events_after, runs_after),) = duckdb.connect(str(db), read_only=True).execute(
        "SELECT (SELECT count(*) FROM tracking_events), (SELECT count(*) FROM runs)").fetchall()
    assert events_after > events_before and runs_after == 2

    # Parquet: nothing unreadable was ever seen, staging stays outside the table folders, lake == warehouse.
    assert watcher.failures == [] and watcher.reads > 0
    assert not any(p.name.startswith("_") for t in DATA_TABLES for p in (lake / t).rglob("*"))
    ((lake_events,),) = duckdb.sql(
        f"SELECT count(*) FROM read_parquet('{lake}/tracking_events/**/*.parquet', hive_partitioning=true)").fetchall()
    assert lake_events == events_after

