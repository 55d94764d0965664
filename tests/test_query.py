"""``shipetl sql``: table, CSV, JSON lines and Parquet out of a read-only session, and one-line errors."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from shipetl import warehouse

T = datetime(2025, 10, 1, 12, tzinfo=UTC)


@pytest.fixture
def pipeline(tmp_path) -> Path:
    """A warehouse with two orders and one parcel quiet since T; the pipeline calls a parcel stuck after 3 days."""
    db = tmp_path / "warehouse.duckdb"
    with warehouse.connect(db, read_only=False) as con:
        warehouse.ensure_schema(con)
        for order_id, total in (("1001", Decimal("12.5000")), ("1002", Decimal("99.9900"))):
            con.execute("INSERT INTO orders (provider, account_id, run_id, extracted_at, order_id, created_at, "
                        "total_amount, currency, record_hash) VALUES ('shopee', 'shop-1', 'r1', ?, ?, ?, ?, 'MYR', ?)",
                        [T, order_id, T, total, order_id])
        con.execute("INSERT INTO shipments (provider, account_id, run_id, extracted_at, shipment_id, carrier_code, "
                    "status, is_final, created_at, last_event_at, record_hash) "
                    "VALUES ('shopee', 'shop-1', 'r1', ?, 'SPX1', 'spx', 'in_transit', false, ?, ?, 'h')",
                    [T, T, T])
    path = tmp_path / "pipeline.yaml"
    path.write_text(textwrap.dedent(f"""\
        warehouse: {{path: {db}, lake: {tmp_path}/lake}}
        analytics: {{stuck_after_days: 3}}
        sources: [{{provider: shipengine}}]
        """))
    return path


ORDERS = "SELECT order_id, total_amount, created_at FROM orders ORDER BY order_id"


def test_csv_to_stdout(run_cli, pipeline):
    proc = run_cli("sql", str(pipeline), ORDERS, "--format", "csv")
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader(io.StringIO(proc.stdout)))
    assert [r["order_id"] for r in rows] == ["1001", "1002"]
    assert Decimal(rows[1]["total_amount"]) == Decimal("99.99")
    assert rows[0]["created_at"].startswith("2025-10-01 12:00:00")


def test_json_lines_to_stdout_keep_decimals_exact(run_cli, pipeline):
    proc = run_cli("sql", str(pipeline), ORDERS, "--format", "json")
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert rows == [{"order_id": "1001", "total_amount": "12.5000", "created_at": "2025-10-01T12:00:00+00:00"},
                    {"order_id": "1002", "total_amount": "99.9900", "created_at": "2025-10-01T12:00:00+00:00"}]


def test_parquet_needs_out_and_round_trips(run_cli, pipeline, tmp_path):
    proc = run_cli("sql", str(pipeline), ORDERS, "--format", "parquet")
    assert proc.returncode == 2 and "--out" in proc.stderr and proc.stdout == ""
    out = tmp_path / "orders.parquet"
    proc = run_cli("sql", str(pipeline), ORDERS, "--format", "parquet", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    table = pq.read_table(out)
    assert table.column("order_id").to_pylist() == ["1001", "1002"]
    assert table.column("total_amount").to_pylist() == [Decimal("12.5000"), Decimal("99.9900")]


def test_out_file_name_picks_the_format(run_cli, pipeline, tmp_path):
    out = tmp_path / "orders.jsonl"
    proc = run_cli("sql", str(pipeline), ORDERS, "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert [json.loads(line)["order_id"] for line in out.read_text().splitlines()] == ["1001", "1002"]
    assert "wrote 2 row(s)" in proc.stderr


def test_table_shows_the_marts_with_the_pipeline_settings(run_cli, pipeline):
    proc = run_cli("sql", str(pipeline), "SELECT shipment_id, analytics_stuck_after_days() AS n FROM stuck_shipments")
    assert proc.returncode == 0, proc.stderr
    assert "shipment_id" in proc.stdout and "SPX1" in proc.stdout
    assert "│ 3 " in proc.stdout  # analytics.stuck_after_days from the pipeline, not the stored default 5


@pytest.mark.parametrize("query, message", [
    ("CREATE TABLE x AS SELECT 1", "read-only"),
    ("SELEC nonsense", "syntax error"),
    ("SELECT * FROM no_such_table", "no_such_table"),
])
def test_errors_are_one_line(run_cli, pipeline, query, message, command_error):
    proc = run_cli("sql", str(pipeline), query)
    assert proc.returncode == 2
    error = command_error(proc.stderr)  # one line
    assert error.startswith("query failed:") and message in error.lower()
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("query", ["SELECT [1, 2] AS x", "SELECT {'a': 1} AS x"], ids=["list", "struct"])
def test_a_column_csv_cannot_hold_is_one_line_naming_the_other_formats(run_cli, pipeline, query, command_error):
    proc = run_cli("sql", str(pipeline), query, "--format", "csv")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    error = command_error(proc.stderr)
    assert error.startswith("cannot write this result as csv:") and "try --format json or parquet" in error
    assert run_cli("sql", str(pipeline), query, "--format", "json").stdout.startswith('{"x":')


def test_reader_meeting_a_commit_gets_a_clear_message(run_cli, pipeline, tmp_path):
    db = tmp_path / "warehouse.duckdb"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import duckdb, sys, time\n"
                               f"con = duckdb.connect({str(db)!r})\n"
                               "print('holding', flush=True)\n"
                               "sys.stdin.readline()\n"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        proc = run_cli("sql", str(pipeline), ORDERS, "--wait", "0.5")
    finally:
        holder.communicate("done\n", timeout=30)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "another process holds the warehouse" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    # Once the writer is gone the same query works.
    assert run_cli("sql", str(pipeline), ORDERS, "--format", "csv").returncode == 0


def test_table_stops_at_the_row_limit_and_says_so(run_cli, pipeline):
    proc = run_cli("sql", str(pipeline), "SELECT range AS n FROM range(1500)")
    assert proc.returncode == 0, proc.stderr
    assert "│ 999 " in proc.stdout and "│ 1000 " not in proc.stdout
    assert "more rows not shown (first 1000 only)" in proc.stderr


def test_reads_the_lake_but_no_other_file(run_cli, pipeline, tmp_path):
    lake = tmp_path / "lake" / "orders"
    lake.mkdir(parents=True)
    with warehouse.connect(tmp_path / "warehouse.duckdb", read_only=True) as con:
        con.execute(f"COPY (SELECT order_id FROM orders) TO '{lake}/part.parquet' (FORMAT parquet)")
    outside = tmp_path / "outside.csv"
    outside.write_text("secret\n42\n")
    lake_query = run_cli("sql", str(pipeline), f"SELECT count(*) AS n FROM read_parquet('{tmp_path}/lake/**/*.parquet')",
                         "--format", "csv")
    assert lake_query.returncode == 0, lake_query.stderr
    assert list(csv.reader(io.StringIO(lake_query.stdout))) == [["n"], ["2"]]
    proc = run_cli("sql", str(pipeline), f"SELECT * FROM read_csv('{outside}')")
    assert proc.returncode == 2 and "file system operations are disabled" in proc.stderr
    assert f"reads files only under the lake ({tmp_path}/lake/) and the raw zone ({tmp_path}/raw/)" in proc.stderr
    # Re-enabling access from inside the query is refused by DuckDB itself.
    proc = run_cli("sql", str(pipeline), "SET enable_external_access = true")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


@pytest.mark.parametrize("query, refused", [
    ("COPY orders TO '{dir}/lake/orders/evil.csv'", "COPY"),
    ("SELECT 1; COPY (SELECT 1) TO '{dir}/lake/x.parquet'", "COPY"),
    ("EXPORT DATABASE '{dir}/lake/dump'", "EXPORT DATABASE"),
    ("ATTACH '{dir}/lake/other.duckdb' AS other", "ATTACH"),
    ("INSTALL httpfs", "INSTALL or LOAD"),
])
def test_statements_that_write_files_are_refused(run_cli, pipeline, tmp_path, query, refused, command_error):
    proc = run_cli("sql", str(pipeline), query.format(dir=tmp_path))
    assert proc.returncode == 2
    assert command_error(proc.stderr) == f"shipetl sql only reads: {refused} is not allowed (use --out FILE to save a result)"
    assert not (tmp_path / "lake").exists()  # nothing was written, not even a folder


def test_session_settings_still_work(run_cli, pipeline):
    proc = run_cli("sql", str(pipeline), "SET TimeZone = 'Asia/Kuala_Lumpur'; "
                   "SELECT strftime(created_at, '%H:%M') AS local FROM orders LIMIT 1", "--format", "csv")
    assert proc.returncode == 0, proc.stderr
    assert list(csv.reader(io.StringIO(proc.stdout))) == [["local"], ["20:00"]]  # 12:00 UTC in Kuala Lumpur
