"""Times the analytics marts and ``shipetl report`` over a synthetic warehouse of millions of tracking events.

    python tests/benchmarks/bench_analytics.py [--events 5000000] [--keep DIR]

The warehouse is generated with DuckDB SQL straight into the canonical tables (4 providers, 8 carriers,
6 lanes, 8 scans per parcel on average, a second snapshot for a fifth of the parcels, orders with ship-by
dates for the marketplace parcels), consistent with itself: every event belongs to a shipment. Then each
mart is materialized in full (``CREATE TEMP TABLE AS SELECT *``) and the report is written; prints seconds.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import duckdb

from shipetl import config, marts, report, warehouse

EVENTS_PER_SHIPMENT = 8


def cpu_seconds() -> float:
    """User + system CPU of this process, DuckDB's threads included: a fair figure on a busy machine."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime
GENERATE = """
CREATE TEMP TABLE gen AS
SELECT i,
       ['shipengine', 'shopee', 'aliexpress', 'fuuffy'][1 + i % 4] AS provider,
       'acct-' || (i % 3) AS account_id,
       ['usps', 'ups', 'fedex', 'dhl_express', 'spx', 'jnt', 'sf_express', 'cainiao'][1 + (hash(i) % 8)::INT] AS carrier_code,
       [['US', 'US'], ['CN', 'MY'], ['HK', 'SG'], ['CN', 'US'], ['SG', 'MY'], ['HK', 'HK']][1 + (hash(i + 7) % 6)::INT] AS lane,
       TIMESTAMPTZ '2025-01-01 00:00:00+00' + to_seconds((hash(i + 1) % (300 * 86400))::BIGINT) AS created_at,
       (hash(i + 2) % 100)::INT AS fate
FROM range({shipments}) t(i);

INSERT INTO orders (provider, account_id, run_id, extracted_at, order_id, status, created_at, ship_by_at, record_hash)
SELECT provider, account_id, 'bench', created_at + INTERVAL 1 DAY, 'O' || i, 'in_transit',
       created_at - INTERVAL 1 DAY, created_at + to_hours((hash(i + 3) % 72)::BIGINT), md5('o' || i)
FROM gen WHERE provider IN ('shopee', 'aliexpress');

INSERT INTO shipments (provider, account_id, run_id, extracted_at, shipment_id, tracking_number, order_id,
                       carrier_code, status, is_final, origin_country, destination_country, created_at,
                       estimated_delivery_at, delivered_at, last_event_at, record_hash)
SELECT provider, account_id, 'bench', created_at + INTERVAL 20 DAY, 'S' || i, 'S' || i,
       CASE WHEN provider IN ('shopee', 'aliexpress') THEN 'O' || i END, carrier_code,
       CASE WHEN fate < 75 THEN 'delivered' WHEN fate < 85 THEN 'in_transit' WHEN fate < 92 THEN 'exception'
            ELSE 'failed_attempt' END,
       fate < 75, lane[1], lane[2], created_at,
       CASE WHEN fate >= 75 THEN created_at + INTERVAL 6 DAY END,
       CASE WHEN fate < 75 THEN created_at + to_hours({events} * 12) END,
       created_at + to_hours({events} * 12), md5('s' || i)
FROM gen;

-- A fifth of the parcels have an older snapshot, with the ETA they lost once delivered.
INSERT INTO shipments (provider, account_id, run_id, extracted_at, shipment_id, tracking_number, carrier_code,
                       status, is_final, origin_country, destination_country, created_at, estimated_delivery_at,
                       record_hash)
SELECT provider, account_id, 'bench0', created_at + INTERVAL 2 DAY, 'S' || i, 'S' || i, carrier_code, 'in_transit',
       false, lane[1], lane[2], created_at, created_at + to_days(3 + (fate % 5)), md5('s0' || i)
FROM gen WHERE i % 5 = 0;

INSERT INTO tracking_events (provider, account_id, run_id, extracted_at, event_id, shipment_id, tracking_number,
                             carrier_code, occurred_at, status, status_raw, description, country)
SELECT provider, account_id, 'bench', created_at + INTERVAL 20 DAY, md5('e' || i || '-' || k), 'S' || i, 'S' || i,
       carrier_code, created_at + to_minutes(k * 720 + (hash(i * 10 + k) % 600)::BIGINT),
       CASE WHEN k = 0 THEN 'info_received'
            WHEN k = {events} - 1 AND fate < 75 THEN 'delivered'
            WHEN k = {events} - 2 AND fate < 75 THEN 'out_for_delivery'
            WHEN k = {events} - 1 AND fate < 85 THEN 'in_transit'
            WHEN k = {events} - 1 AND fate < 92 THEN 'exception'
            WHEN k = {events} - 1 THEN 'failed_attempt'
            ELSE 'in_transit' END AS status,
       'C' || k,
       CASE WHEN k = {events} - 1 AND fate BETWEEN 85 AND 91 THEN ['Address incomplete', 'Held by customs', 'Parcel damaged'][1 + fate % 3]
            WHEN k = {events} - 1 AND fate >= 92 THEN 'Recipient not available'
            ELSE 'Scan ' || k END,
       lane[1]
FROM gen, range({events}) r(k);

INSERT INTO runs (run_id, source, provider, account_id, started_at, finished_at, status, error, loaded)
SELECT 'run-' || d || '-' || p, p, p, 'acct-0', TIMESTAMPTZ '2025-10-01 02:00:00+00' + to_days(d),
       TIMESTAMPTZ '2025-10-01 02:00:00+00' + to_days(d) + to_seconds(60 + (hash(d, p) % 600)::BIGINT),
       CASE WHEN hash(d, p) % 17 = 0 THEN 'failed' ELSE 'ok' END,
       CASE WHEN hash(d, p) % 17 = 0 THEN 'source shopee/acct-0: HTTP 503 after 5 retries' END,
       10000 + hash(d, p) % 50000
FROM range(60) t(d), (VALUES ('shipengine'), ('shopee'), ('aliexpress'), ('fuuffy')) s(p);
"""


def build(path: Path, events: int) -> None:
    shipments = events // EVENTS_PER_SHIPMENT
    with warehouse.connect(path, read_only=False) as con:
        warehouse.ensure_schema(con)
        for statement in GENERATE.format(shipments=shipments, events=EVENTS_PER_SHIPMENT).split(";\n"):
            if statement.strip():
                con.execute(statement).fetchall()
        con.execute("CHECKPOINT").fetchall()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=5_000_000)
    parser.add_argument("--keep", type=Path, help="build the warehouse in this folder and keep it")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="shipetl-bench-analytics-"))
    work.mkdir(parents=True, exist_ok=True)
    db = work / "warehouse.duckdb"

    started = time.perf_counter()
    if not db.exists():
        build(db, args.events)
    print(f"{'warehouse':<22} {time.perf_counter() - started:7.2f} s  ({db})")

    with duckdb.connect(str(db), read_only=True) as con:
        counts = con.execute("SELECT (SELECT count(*) FROM tracking_events), (SELECT count(*) FROM shipments), "
                             "(SELECT count(*) FROM orders)").fetchall()[0]
        print(f"{'rows':<22} events {counts[0]:,}  shipment snapshots {counts[1]:,}  orders {counts[2]:,}")
        con.execute("SET TimeZone = 'UTC'")
        started = time.perf_counter()
        marts.install(con, temporary=True)
        print(f"{'create views':<22} {time.perf_counter() - started:7.2f} s")
        for name in marts.MARTS:
            started, cpu = time.perf_counter(), cpu_seconds()
            con.execute(f"CREATE OR REPLACE TEMP TABLE bench_{name} AS SELECT * FROM {name}").fetchall()
            (rows,) = con.execute(f"SELECT count(*) FROM bench_{name}").fetchall()[0]
            print(f"{name:<22} {time.perf_counter() - started:7.2f} s  (cpu {cpu_seconds() - cpu:6.2f} s)  "
                  f"{rows:>9,} rows")

    pipeline_file = work / "pipeline.yaml"
    pipeline_file.write_text(f"warehouse: {{path: {db}}}\nsources: [{{provider: shipengine}}]\n")
    started, cpu = time.perf_counter(), cpu_seconds()
    size = report.write_report(config.load(pipeline_file), work / "report.html")
    print(f"report                 {time.perf_counter() - started:7.2f} s  (cpu {cpu_seconds() - cpu:6.2f} s)  "
          f"{size / 1e6:.1f} MB, {work / 'report.html'}")


if __name__ == "__main__":
    main()
