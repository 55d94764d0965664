"""Fuuffy end to end: real loopback HTTP to the sandbox, real `shipetl run`, real DuckDB, Parquet and raw zone."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import httpx
import orjson
import pytest
import zstandard

from shipetl import config, runner
from shipetl.sandbox import SandboxSettings, running_sandbox
from faulted import fault_requests
from shipetl_fuuffy.sandbox import build_world
from sources import FUUFFY_CLIENT_SECRET, FUUFFY_PII_KEY, fuuffy_source, shipengine_source

WRONG_SECRET = "fuuffy-wrong-secret-5d2c"
HK_OFFSET = timedelta(hours=8)


def rows(tmp_path: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as con:
        con.execute("SET TimeZone = 'UTC'")
        return con.execute(sql).fetchall()


def loaded_events(tmp_path: Path) -> set[tuple]:
    return set(rows(tmp_path, "SELECT tracking_number, occurred_at, status_raw, description, status FROM tracking_events "
                              "WHERE provider = 'fuuffy'"))


def expected_events(world=None) -> set[tuple]:
    world = world or build_world(42)
    return {(e["tracking_number"], e["utc"], e["code"], e["message"], e["status"]) for e in world.expected_events()}


@pytest.fixture
def custom_sandbox(registry) -> Callable[..., AbstractContextManager[str]]:
    """Start a sandbox with Fuuffy knobs: ``with custom_sandbox(fuuffy_token_max_uses=40) as url``."""

    def start(scale: float = 1.0, **extra):
        return running_sandbox(registry.sandboxes, SandboxSettings(port=0, seed=42, scale=scale, extra=extra))

    return start


def test_run_loads_ground_truth_in_utc_and_rerun_adds_nothing(sandbox, make_pipeline, run_cli, tmp_path):
    pipeline = make_pipeline(fuuffy_source(sandbox))
    first = run_cli("run", str(pipeline))
    assert first.returncode == 0, first.stderr[-3000:]
    world = build_world(42)

    assert loaded_events(tmp_path) == expected_events(world)
    # Every UTC instant is the naive Hong Kong text shifted by exactly -8 h, to the second.
    for local, utc in rows(tmp_path, "SELECT occurred_at_local, occurred_at FROM tracking_events"):
        assert datetime.strptime(local, "%Y-%m-%d %H:%M:%S") - HK_OFFSET == utc.replace(tzinfo=None)
    early = rows(tmp_path, "SELECT count(*) FROM tracking_events WHERE CAST(occurred_at AS DATE) "
                           "< CAST(strptime(occurred_at_local, '%Y-%m-%d %H:%M:%S') AS DATE)")[0][0]
    assert early > 0  # scans between 00:00 and 08:00 in Hong Kong belong to the previous UTC day

    shipments = {r[0]: r[1:] for r in rows(tmp_path, "SELECT tracking_number, order_id, carrier_code, status, is_final, "
                                                     "status_raw FROM shipments_latest")}
    truth = {s["tracking_number"]: (s["order_id"], s["carrier_code"], s["status"], s["is_final"], s["status_raw"])
             for s in world.expected_shipments()}
    assert shipments == truth
    assert {s[2] for s in truth.values()} >= {"available_for_pickup", "failed_attempt", "returned", "info_received"}

    orders = {r[0]: r[1:] for r in rows(tmp_path, "SELECT order_id, status_raw, created_at, destination_country, "
                                                  "recipient_name FROM orders_latest")}
    assert {k: v[:3] for k, v in orders.items()} == {
        o["order_id"]: (o["status_raw"], o["created_at"], o["destination_country"]) for o in world.expected_orders()}
    assert all(name.startswith("h:") for *_, name in orders.values())  # pii: hash
    remarks = [r for (r,) in rows(tmp_path, "SELECT extras->>'remark' FROM orders_latest WHERE extras->>'remark' <> ''")]
    assert remarks and all(r.startswith("h:") for r in remarks)  # free text that can name people is hashed too

    multi = rows(tmp_path, "SELECT count(*) FROM (SELECT order_id FROM shipments_latest GROUP BY 1 HAVING count(*) > 1)")
    assert multi[0][0] > 0
    counts = rows(tmp_path, "SELECT (SELECT count(*) FROM orders), (SELECT count(*) FROM shipments), "
                            "(SELECT count(*) FROM tracking_events)")[0]

    second = run_cli("run", str(pipeline))
    assert second.returncode == 0, second.stderr[-3000:]
    assert rows(tmp_path, "SELECT (SELECT count(*) FROM orders), (SELECT count(*) FROM shipments), "
                          "(SELECT count(*) FROM tracking_events)")[0] == counts
    assert rows(tmp_path, "SELECT loaded, status FROM runs ORDER BY started_at")[-1] == (0, "ok")
    assert_no_secret_anywhere(tmp_path, first.stdout + first.stderr + second.stdout + second.stderr)


def assert_no_secret_anywhere(tmp_path: Path, output: str) -> None:
    """Neither the client secret nor the access token in logs, warehouse, lake or raw zone."""
    token_file = next((tmp_path / "tokens").glob("fuuffy*.json"))
    token = orjson.loads(token_file.read_bytes())["access_token"]
    secrets = {"client secret": FUUFFY_CLIENT_SECRET, "access token": token, "pii key": FUUFFY_PII_KEY}
    raw = b"".join(zstandard.ZstdDecompressor().decompress(p.read_bytes(), max_output_size=1 << 30)
                   for p in (tmp_path / "raw").rglob("*.zst"))
    assert raw, "raw zone is empty"
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as con:
        tables = [t for (t,) in con.execute("SELECT table_name FROM information_schema.tables WHERE table_type = 'BASE TABLE'").fetchall()]
        dump = "".join(str(con.execute(f'SELECT * FROM "{t}"').fetchall()) for t in tables)
    lake = duckdb.sql(f"SELECT string_agg(CAST(t AS VARCHAR), '') FROM read_parquet('{tmp_path}/lake/**/*.parquet', "
                      "union_by_name=true) AS t").fetchall()[0][0]
    for name, value in secrets.items():
        for where, text in (("logs", output), ("raw zone", raw.decode("utf-8", "replace")), ("warehouse", dump),
                            ("lake", lake)):
            assert value not in text, f"{name} found in the {where}"


def test_token_expiring_mid_run_is_renewed_and_the_run_completes(custom_sandbox, make_pipeline, tmp_path):
    with custom_sandbox(fuuffy_token_max_uses=60) as url:
        result = runner.run_pipeline(config.load(make_pipeline(fuuffy_source(url))))
        stats = httpx.get(f"{url}/fuuffy/_stats").json()
    assert result.ok, [s.error for s in result.sources]
    # Each token dies after 60 calls: a renewal per 60 accepted calls, and none without a refusal first.
    assert stats["token_requests"] >= -(-stats["api_requests"] // 60) >= 5
    assert stats["token_requests"] <= stats["rejected_tokens"] + 1
    assert loaded_events(tmp_path) == expected_events()


def test_token_expired_by_the_admin_route_is_replaced_on_the_next_run(sandbox, make_pipeline, tmp_path):
    pipeline = config.load(make_pipeline(fuuffy_source(sandbox)))
    assert runner.run_pipeline(pipeline).ok
    httpx.post(f"{sandbox}/fuuffy/_tokens/expire").raise_for_status()
    # The stored token still looks valid for almost an hour: the sandbox's 401 invalid_token must trigger renewal.
    assert runner.run_pipeline(pipeline).ok
    assert httpx.get(f"{sandbox}/fuuffy/_stats").json()["token_requests"] == 2


def test_wrong_client_secret_fails_that_source_alone(custom_sandbox, make_pipeline, run_cli, tmp_path):
    with custom_sandbox(scale=0.1) as url:  # a small ShipEngine world keeps the other source quick
        pipeline = make_pipeline(fuuffy_source(url, name="fz-bad", secret=WRONG_SECRET) + shipengine_source(url))
        result = run_cli("run", str(pipeline))
    assert result.returncode == 1
    output = result.stdout + result.stderr
    assert "Traceback" not in output
    failed = [line for line in result.stdout.splitlines() if "fz-bad" in line]
    assert len(failed) == 1 and "FAILED" in failed[0] and "401021" in failed[0]
    assert WRONG_SECRET not in output
    assert rows(tmp_path, "SELECT source, status FROM runs ORDER BY source") == [("fz-bad", "failed"), ("se", "ok")]
    (error,) = rows(tmp_path, "SELECT error FROM runs WHERE source = 'fz-bad'")[0]
    assert "credentials.client_secret" in error and "\n" not in error
    assert rows(tmp_path, "SELECT count(*) FROM tracking_events WHERE provider = 'shipengine'")[0][0] > 0
    assert rows(tmp_path, "SELECT count(*) FROM tracking_events WHERE provider = 'fuuffy'")[0][0] == 0


def test_courier_failure_is_skipped_and_counted_not_fatal(custom_sandbox, make_pipeline, tmp_path):
    world = build_world(42)
    victim = next(s for s in world.expected_shipments() if s["carrier_code"] == "sf_express")["tracking_number"]
    with custom_sandbox(fuuffy_courier_failures=[victim], fuuffy_courier_latency_ms=5) as url:
        result = runner.run_pipeline(config.load(make_pipeline(fuuffy_source(url, options="max_retries: 1"))))
    (source,) = result.sources
    assert source.status == "ok", source.error
    assert source.counters.get("courier_failures") == 1
    assert loaded_events(tmp_path) == {e for e in expected_events(world) if e[0] != victim}


def test_rate_limit_headers_hold_requests_until_the_window_resets(custom_sandbox, make_pipeline, tmp_path):
    # A "minute" of one second and 100 requests in it: the run's ~360 requests span several windows.
    with custom_sandbox(fuuffy_rate_per_minute=100, fuuffy_rate_window_s=1) as url:
        pipeline = make_pipeline(fuuffy_source(url, options="poll_concurrency: 1").replace("max_in_flight: 8", "max_in_flight: 1"))
        result = runner.run_pipeline(config.load(pipeline))
        stats = httpx.get(f"{url}/fuuffy/_stats").json()
    assert result.ok, [s.error for s in result.sources]
    assert stats["exhausted"] >= 2  # the sandbox said "0 left" more than once...
    assert stats["throttled"] == 0  # ...and the client waited for the reset instead of hitting 429
    assert loaded_events(tmp_path) == expected_events()


# --- Scans of couriers no code table knows: the newest takes Fuuffy's own status, the rest are counted ---------

def test_unmapped_courier_codes_are_counted_per_code_and_delivered_parcels_have_delivered_at(sandbox, make_pipeline,
                                                                                             run_cli, tmp_path):
    result = run_cli("run", str(make_pipeline(fuuffy_source(sandbox))))
    assert result.returncode == 0, result.stderr[-3000:]
    world = build_world(42)
    events = world.expected_events()

    # Ground truth of the summary's unmapped counts: Kerry / Hongkong Post scans left unknown (not their
    # parcel's newest, or beside text that lags behind), per code. SF's 607 is unknown on purpose, not counted.
    counts: dict[str, int] = {}
    for e in events:
        if e["status"] == "unknown" and e["code"] != "607":
            counts[f"tracking_events:{e['code']}"] = counts.get(f"tracking_events:{e['code']}", 0) + 1
    details = orjson.loads(rows(tmp_path, "SELECT details FROM runs WHERE source = 'fz'")[0][0])
    assert details["unmapped"] == counts
    assert "tracking_events:DL" not in counts  # a Kerry / Hongkong Post "delivered" is always its parcel's newest scan
    (line,) = [orjson.loads(line) for line in result.stderr.splitlines() if '"status_unmapped"' in line]  # one per table
    assert line["table"] == "tracking_events" and line["rows"] == sum(counts.values())
    assert {f"tracking_events:{code}": n for code, n in line["codes"].items()} == counts
    assert list(line["codes"].values()) == sorted(line["codes"].values(), reverse=True)  # most rows first

    # shipment_timeline: every delivered parcel has delivered_at, its first delivered scan (Kerry and
    # Hongkong Post included: 30 of them had none while their scans were all unknown).
    delivered_scan: dict[str, datetime] = {}
    for e in events:
        if e["status"] == "delivered":
            delivered_scan[e["tracking_number"]] = min(e["utc"], delivered_scan.get(e["tracking_number"], e["utc"]))
    timeline = {tn: (status, at, carrier) for tn, status, at, carrier in rows(
        tmp_path, "SELECT tracking_number, current_status, delivered_at, carrier_code FROM shipment_timeline")}
    delivered = {tn: at for tn, (status, at, _) in timeline.items() if status == "delivered"}
    assert delivered == delivered_scan
    assert {carrier for tn, (_, _, carrier) in timeline.items() if tn in delivered} >= {"kerry_express", "hongkong_post"}
    # Out for delivery now: the newest scan says so, whichever courier relays it.
    moving = rows(tmp_path, "SELECT carrier_code, count(*), count(first_out_for_delivery_at) FROM shipment_timeline "
                            "WHERE current_status = 'out_for_delivery' GROUP BY 1")
    assert {carrier for carrier, _, _ in moving} > {"sf_express"}
    assert all(parcels == with_time for _, parcels, with_time in moving)


def test_a_parcel_whose_replies_keep_coming_cut_short_is_skipped_counted_and_loaded_next_run(sandbox, make_pipeline,
                                                                                             tmp_path, monkeypatch):
    # The trial user's night: one tracking number's replies cut short ("HTTP 200: undecodable JSON body") past the
    # retries used to fail the whole source and throw away everything extracted.
    expected = expected_events()
    victim = sorted({e[0] for e in expected})[0]
    fault_requests(monkeypatch, lambda r: r.url.params.get("tracking_number") == victim, fault="truncate")
    pipeline = config.load(make_pipeline(fuuffy_source(sandbox, options="poll_concurrency: 8, max_retries: 1")))

    (first,) = runner.run_pipeline(pipeline).sources
    assert first.status == "ok", first.error
    assert first.counters["tracking_poll_failed"] == 1
    assert loaded_events(tmp_path) == {e for e in expected if e[0] != victim}
    (retry,) = rows(tmp_path, "SELECT value FROM source_state WHERE source = 'fz' AND key = 'tracking_retry'")[0]
    assert [t["tracking_number"] for t in orjson.loads(retry)] == [victim]  # no row yet: the cursor keeps it

    monkeypatch.undo()
    (second,) = runner.run_pipeline(pipeline).sources
    assert second.status == "ok", second.error
    assert "tracking_poll_failed" not in second.counters and loaded_events(tmp_path) == expected
    (retry,) = rows(tmp_path, "SELECT value FROM source_state WHERE source = 'fz' AND key = 'tracking_retry'")[0]
    assert orjson.loads(retry) == []
