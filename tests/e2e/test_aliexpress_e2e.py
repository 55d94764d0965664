"""AliExpress end to end: real loopback HTTP to the sandbox, real DuckDB, Parquet and raw zone, a real CLI process."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import parse_qsl

import duckdb
import httpx
import orjson
import zstandard

from shipetl import config
from shipetl.runner import run_pipeline
from faulted import fault_requests
from shipetl_aliexpress.sandbox import APP_SECRET, AUTH_CODE, build_world
from sources import aliexpress_source


WRONG_SECRET = "wrong-aliexpress-secret-5d1c"
UPPER_HEX_64 = re.compile(r"[0-9A-F]{64}")


def write_ids(tmp_path: Path, ids: list[str]) -> Path:
    path = tmp_path / "orders.csv"
    path.write_text("placed_on,ae_order_id\n" + "".join(f"2025-12-01,{i}\n" for i in ids))
    return path


def rows(tmp_path: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as con:
        con.execute("SET TimeZone = 'UTC'")
        return con.execute(sql).fetchall()


def test_pipeline_loads_ground_truth_survives_throttling_and_rerun_adds_nothing(sandbox, make_pipeline, registry, tmp_path):
    world = build_world(42)  # the sandbox fixture serves seed 42 at scale 1
    httpx.post(f"{sandbox}/aliexpress/_throttle", json={"every": 60, "seconds": 1})
    pipeline = config.load(make_pipeline(aliexpress_source(sandbox, write_ids(tmp_path, [o.order_id for o in world.orders]))))

    first = run_pipeline(pipeline, registry=registry).sources[0]
    assert first.status == "ok", first.error
    assert first.counters["tracking_not_found"] == len(world.not_found_ids()) > 0
    assert httpx.get(f"{sandbox}/aliexpress/_stats").json()["throttled"] > 0

    orders = {r[0]: r[1:] for r in rows(tmp_path, "SELECT order_id, status_raw, status, created_at, paid_at, total_amount, "
                                                  "currency, item_count FROM orders_latest")}
    assert orders == {o["order_id"]: (o["status_raw"], o["status"], o["created_at"], o["paid_at"], o["total_amount"],
                                      o["currency"], o["item_count"]) for o in world.expected_orders()}
    items = sorted(rows(tmp_path, "SELECT order_id, item_id, quantity, unit_price FROM order_items_latest"))
    assert items == sorted((i["order_id"], i["item_id"], i["quantity"], i["unit_price"]) for i in world.expected_order_items())

    shipments = sorted(rows(tmp_path, "SELECT shipment_id, tracking_number, order_id, status, is_final, "
                                      "estimated_delivery_at, last_event_at, delivered_at FROM shipments_latest"))
    assert shipments == sorted(tuple(s.values()) for s in world.expected_shipments())

    events = sorted(rows(tmp_path, "SELECT shipment_id, occurred_at, status_raw, description, status FROM tracking_events"))
    expected_events = sorted(tuple(e.values()) for e in world.expected_events())
    assert events == expected_events
    assert all(e[1].tzinfo is not None and e[1].utcoffset().total_seconds() == 0 for e in events[:5])
    assert rows(tmp_path, "SELECT count(*) FROM rejects")[0][0] == 0

    second = run_pipeline(pipeline, registry=registry).sources[0]
    assert second.status == "ok", second.error
    assert sum(second.loaded.values()) == 0 and second.extracted["tracking_events"] > 0
    assert second.counters["orders_finished_skipped"] == sum(o.order_status == "FINISH" for o in world.orders) > 0
    assert rows(tmp_path, "SELECT count(*) FROM tracking_events")[0][0] == len(expected_events)


def test_cli_run_keeps_secrets_out_of_logs_warehouse_and_raw_zone(sandbox, make_pipeline, run_cli, tmp_path):
    world = build_world(42)
    ids = list(dict.fromkeys([o.order_id for o in world.orders[:40]] + world.not_found_ids()[-2:]))
    ids_file = write_ids(tmp_path, ids)
    pipeline = make_pipeline(aliexpress_source(sandbox, ids_file) + aliexpress_source(sandbox, ids_file, name="ae-bad", secret=WRONG_SECRET))

    done = run_cli("--log-level", "debug", "run", str(pipeline))
    assert done.returncode == 1, done.stderr[-2000:]  # the bad source failed, the good one loaded
    failures = [orjson.loads(line) for line in done.stderr.splitlines()
                if line.startswith("{") and '"source_failed"' in line]
    assert len(failures) == 1 and failures[0]["source"] == "ae-bad"
    assert "IncompleteSignature" in failures[0]["error"] and "credentials.app_secret" in failures[0]["error"]
    assert rows(tmp_path, "SELECT count(DISTINCT order_id) FROM orders")[0][0] == len(ids)

    tokens = [orjson.loads(p.read_bytes()) for p in (tmp_path / "tokens").glob("*.json")]
    assert len(tokens) == 1
    secrets = [APP_SECRET, WRONG_SECRET, AUTH_CODE, tokens[0]["access_token"], tokens[0]["refresh_token"]]

    raw_text = "".join(zstandard.ZstdDecompressor().stream_reader(p.open("rb")).read().decode()
                       for p in (tmp_path / "raw").rglob("*.ndjson.zst"))
    assert "aliexpress_ds_order_tracking_get_response" in raw_text
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as con:
        tables = [t for (t,) in con.execute("SELECT table_name FROM information_schema.tables").fetchall()]
        warehouse_text = "".join(str(con.execute(f'SELECT * FROM "{t}"').fetchall()) for t in tables)
    assert "tracking_events" in tables and len(warehouse_text) > 10_000
    for where, text in (("logs", done.stdout + done.stderr), ("raw zone", raw_text), ("warehouse", warehouse_text)):
        for secret in secrets:
            assert secret not in text, f"a secret leaked into the {where}"
        assert not UPPER_HEX_64.search(text), f"a request sign leaked into the {where}"
    assert '"http_request"' in done.stderr  # debug logs did show every request, signs and sessions masked


def test_every_parcel_and_scan_has_its_carrier_code_and_the_marts_no_blank_carrier(sandbox, make_pipeline, registry,
                                                                                  tmp_path):
    world = build_world(42)
    pipeline = config.load(make_pipeline(aliexpress_source(sandbox, write_ids(tmp_path, [o.order_id for o in world.orders]))))
    source = run_pipeline(pipeline, registry=registry).sources[0]
    assert source.status == "ok", source.error

    # carrier_name (seed 002), lower-cased, words joined by "_": what each parcel's carrier_code must be.
    truth = {(p.mail_no or f"{o.order_id}-P{pos}"): "_".join(p.carrier_name.lower().split())
             for o in world.orders if o.has_tracking for pos, p in enumerate(o.parcels, start=1)}
    assert dict(rows(tmp_path, "SELECT shipment_id, carrier_code FROM shipments_latest")) == truth
    scans = rows(tmp_path, "SELECT shipment_id, carrier_code FROM tracking_events")
    assert scans and all(code == truth[sid] for sid, code in scans)

    names = {"_".join(n.lower().split()) for n in {p.carrier_name for o in world.orders for p in o.parcels}}
    for mart in ("shipment_timeline", "delivery_performance", "stuck_shipments"):
        carriers = {c for (c,) in rows(tmp_path, f"SELECT DISTINCT carrier_code FROM {mart}")}
        assert carriers == names, mart


def test_an_order_whose_tracking_keeps_failing_is_skipped_counted_and_loaded_next_run(sandbox, make_pipeline, registry,
                                                                                      tmp_path, monkeypatch):
    world = build_world(42)
    ids = [o.order_id for o in world.orders[:40]]
    victim = next(o for o in world.orders[:40] if o.has_tracking and o.parcels).order_id
    fault_requests(monkeypatch, lambda r: dict(parse_qsl(r.content.decode())).get("ae_order_id") == victim)
    pipeline = config.load(make_pipeline(aliexpress_source(sandbox, write_ids(tmp_path, ids))))

    first = run_pipeline(pipeline, registry=registry).sources[0]
    assert first.status == "ok", first.error
    assert first.counters["tracking_poll_failed"] == 1
    loaded = {order_id for (order_id,) in rows(tmp_path, "SELECT order_id FROM orders")}
    assert loaded == set(ids) - {victim}  # its snapshot waits for its parcels

    monkeypatch.undo()  # the sandbox answers again: the next run fetches it, as its id is still configured
    second = run_pipeline(pipeline, registry=registry).sources[0]
    assert second.status == "ok", second.error
    assert "tracking_poll_failed" not in second.counters
    shipments = sorted(rows(tmp_path, "SELECT shipment_id, tracking_number, order_id, status, is_final, "
                                      "estimated_delivery_at, last_event_at, delivered_at FROM shipments_latest"))
    assert shipments == sorted(tuple(s.values()) for s in world.expected_shipments() if s["order_id"] in ids)
    assert victim in {order_id for (order_id,) in rows(tmp_path, "SELECT order_id FROM orders")}
