"""The analytics marts against ground truth: the ShipEngine sandbox's storyline, and hand-built orders.

Expected figures are computed here from ``build_world(42)`` (what each parcel really went through and what
ShipEngine reported for each scan), never from the warehouse, so a wrong join, filter or aggregate fails.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest
from shipetl_shipengine.sandbox import DEFAULT_CLOCK, build_world

from shipetl import marts, warehouse
from shipetl.config import AnalyticsConfig
from shipetl.demo import run_demo

PIPELINE = """\
warehouse: {{path: {tmp}/warehouse.duckdb, lake: {tmp}/lake, raw: {tmp}/raw, tokens: {tmp}/tokens}}
sources:
  - name: shipengine
    provider: shipengine
    base_url: ${{SHIPETL_SANDBOX_URL}}/shipengine
    start: 2025-08-01
    rate_limit: {{per_second: 400, burst: 50, max_in_flight: 16}}
    credentials: {{api_key: sandbox_live_key}}
    options: {{poll_concurrency: 16}}
"""

# --- What ShipEngine reports for each scan of the storyline (providers.md 3.5) -------------------------
KIND_STATUS = {"created": "info_received", "awaiting_dropoff": "info_received", "out_for_delivery": "out_for_delivery",
               "attempted": "failed_attempt", "pickup_point": "available_for_pickup", "delay": "exception",
               "return_to_sender": "exception", "lost": "exception", "held_customs": "exception",
               "unmapped": "unknown"}
TOP_STATUS = {"AC": "in_transit", "IT": "in_transit", "NY": "pending", "AT": "failed_attempt", "DE": "delivered",
              "SP": "available_for_pickup", "EX": "exception", "UN": "unknown"}
# Seed 004: 01 delivered, OF out for delivery, its other scans (03, 10, NT, 07) in transit.
USPS_SCAN_STATUS = {"01": "delivered", "OF": "out_for_delivery", "03": "in_transit", "10": "in_transit",
                    "NT": "in_transit", "07": "in_transit"}
FINAL_DETAILS = {"PARCEL_LOST"}
# Scans that prove the carrier has the parcel (shipment_timeline.first_scan_at): never pending, info_received,
# expired, nor exception (a cancellation or failed pick-up; a delay before pick-up is skipped too).
CARRIER_SCANS = {"in_transit", "out_for_delivery", "failed_attempt", "available_for_pickup", "delivered", "returned",
                 "unknown"}


def reported_status(s, e, newest: bool) -> str:
    """Current replies carry each scan's status; legacy ones only the reply's (on its newest scan) and USPS codes."""
    if s.style == "current":
        return "delivered" if e.kind.startswith("delivered") else KIND_STATUS.get(e.kind, "in_transit")
    if s.tracking_carrier == "usps" and e.code in USPS_SCAN_STATUS:
        return USPS_SCAN_STATUS[e.code]
    return TOP_STATUS[s.status_at(DEFAULT_CLOCK)[0]] if newest else "unknown"


def truth() -> dict[str, dict]:
    """Per tracking number at the sandbox clock: milestones, finality and every reported scan."""
    out = {}
    for s in build_world(42).labels(DEFAULT_CLOCK):
        seen = [e for e in s.events if e.utc <= DEFAULT_CLOCK]
        shown = [e for e in seen if not e.hidden]
        newest = max((e.utc for e in shown), default=None)
        scans = [(e, reported_status(s, e, e.utc == newest)) for e in shown]

        def first(*statuses, scans=scans):
            return min((e.utc for e, st in scans if st in statuses), default=None)

        code, detail = s.status_at(DEFAULT_CLOCK)
        out[s.tracking_number] = {
            "carrier": s.tracking_carrier, "created_at": s.created_at, "hidden": any(e.hidden for e in seen),
            "first_scan_at": min((e.utc for e, st in scans if st in CARRIER_SCANS), default=None),
            "picked_up_at": first("in_transit"), "first_out_for_delivery_at": first("out_for_delivery"),
            "delivered_at": first("delivered"),
            "failed_attempts": sum(st == "failed_attempt" for _, st in scans),
            "final": code == "DE" or (s.style == "current" and detail in FINAL_DETAILS),
            "quiet_since": max((e.utc for e in seen), default=s.created_at),
            "scans": scans,
        }
    return out


@pytest.fixture(scope="module")
def world() -> dict[str, dict]:
    return truth()


@pytest.fixture(scope="module")
def loaded(tmp_path_factory) -> Path:
    """The sandbox (seed 42) loaded once by a real run; returns the warehouse file."""
    tmp = tmp_path_factory.mktemp("marts")
    (tmp / "pipeline.yaml").write_text(PIPELINE.format(tmp=tmp))
    result, _ = run_demo(str(tmp / "pipeline.yaml"), seed=42)
    assert result.ok, [s.error for s in result.sources]
    return tmp / "warehouse.duckdb"


def reader(path: Path, as_of: datetime = DEFAULT_CLOCK, stuck_after_days: int = 5):
    con = duckdb.connect(str(path), read_only=True)
    con.execute("SET TimeZone = 'UTC'")
    marts.install(con, AnalyticsConfig(stuck_after_days=stuck_after_days), as_of=as_of, temporary=True)
    return con


def dicts(con, sql: str, params=None) -> list[dict]:
    cur = con.execute(sql, params or [])
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row)) for row in cur.fetchall()]


def quantile_cont(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks, as DuckDB's quantile_cont."""
    values = sorted(values)
    h = (len(values) - 1) * q
    lo = int(h)
    return values[lo] + (values[min(lo + 1, len(values) - 1)] - values[lo]) * (h - lo)


# --- sandbox data --------------------------------------------------------------------------------------


def test_views_are_stored_in_the_warehouse_file(loaded):
    con = duckdb.connect(str(loaded), read_only=True)
    views = {r[0] for r in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT temporary").fetchall()}
    assert set(marts.MARTS) <= views
    (count,) = con.execute("SELECT count(*) FROM shipment_timeline").fetchall()[0]
    assert count == 2000


def test_shipment_timeline_milestones_match_the_storyline(loaded, world):
    rows = {r["tracking_number"]: r for r in dicts(reader(loaded), "SELECT * FROM shipment_timeline")}
    assert set(rows) == set(world)
    checked = 0
    for tn, want in world.items():
        got = rows[tn]
        for key in ("first_scan_at", "picked_up_at", "first_out_for_delivery_at", "failed_attempts"):
            assert got[key] == want[key], (tn, key)
        if want["hidden"]:
            continue  # delivered scan missing from the reply: delivered_at comes from actual_delivery_date
        assert got["delivered_at"] == want["delivered_at"], tn
        if want["delivered_at"] and want["first_scan_at"]:
            days = (want["delivered_at"] - want["first_scan_at"]).total_seconds() / 86400
            assert got["days_in_transit"] == pytest.approx(days, abs=1e-9), tn
            checked += 1
    assert checked > 900


def test_days_in_transit_of_a_moving_parcel_counts_to_as_of(loaded, world):
    as_of = DEFAULT_CLOCK + timedelta(days=3)
    rows = dicts(reader(loaded, as_of=as_of), "SELECT tracking_number, days_in_transit FROM shipment_timeline "
                                              "WHERE NOT is_final AND delivered_at IS NULL AND first_scan_at IS NOT NULL")
    assert rows
    for row in rows:
        want = (as_of - world[row["tracking_number"]]["first_scan_at"]).total_seconds() / 86400
        assert row["days_in_transit"] == pytest.approx(want, abs=1e-9)


def test_delivery_performance_matches_ground_truth_per_carrier_lane_and_week(loaded, world):
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for want in world.values():
        start = want["first_scan_at"] or want["created_at"]
        monday = (start.astimezone(UTC) - timedelta(days=start.astimezone(UTC).weekday())).date()
        groups[(want["carrier"], monday)].append(want)
    rows = dicts(reader(loaded), "SELECT * FROM delivery_performance")
    assert {(r["carrier_code"], r["week_start"]) for r in rows} == set(groups)
    compared = 0
    for row in rows:
        members = groups[(row["carrier_code"], row["week_start"])]
        assert (row["origin_country"], row["destination_country"], row["lane"]) == ("US", "US", "US-US")
        assert row["shipments"] == len(members)
        if any(m["hidden"] for m in members):
            continue
        transit = [(m["delivered_at"] - m["first_scan_at"]).total_seconds() / 86400
                   for m in members if m["delivered_at"]]
        assert row["delivered"] == len(transit)
        if transit:
            assert row["median_transit_days"] == pytest.approx(statistics.median(transit), abs=1e-9)
            assert row["p90_transit_days"] == pytest.approx(quantile_cont(transit, 0.9), abs=1e-9)
            compared += 1
    assert compared > 40
    iso = {r["iso_week"] for r in rows if r["week_start"].isoformat() == "2025-11-17"}
    assert iso == {"2025-W47"}


@pytest.mark.parametrize("days", [5, 20])
def test_stuck_shipments_are_the_open_parcels_quiet_for_n_days(loaded, world, days):
    rows = dicts(reader(loaded, stuck_after_days=days), "SELECT tracking_number, days_without_scan FROM stuck_shipments")
    cutoff = DEFAULT_CLOCK - timedelta(days=days)
    want = {tn for tn, w in world.items() if not w["final"] and w["quiet_since"] <= cutoff}
    assert {r["tracking_number"] for r in rows} == want
    assert len(want) > 100
    assert min(r["days_without_scan"] for r in rows) >= days


def test_delivery_exceptions_count_each_carrier_and_reason(loaded, world):
    want: dict[tuple, list] = defaultdict(lambda: [0, set()])
    for tn, w in world.items():
        for e, status in w["scans"]:
            if status in ("failed_attempt", "exception", "returned"):
                entry = want[(w["carrier"], status, e.description or e.code)]
                entry[0] += 1
                entry[1].add(tn)
    rows = dicts(reader(loaded), "SELECT * FROM delivery_exceptions")
    got = {(r["carrier_code"], r["kind"], r["reason"]): (r["events"], r["shipments"]) for r in rows}
    assert got == {k: (n, len(tns)) for k, (n, tns) in want.items()}
    per_carrier = defaultdict(int)
    for w in world.values():
        per_carrier[w["carrier"]] += 1
    for r in rows:
        assert r["share_of_carrier_shipments"] == pytest.approx(r["shipments"] / per_carrier[r["carrier_code"]])


# --- hand-built rows: orders with ship-by dates, ETAs -------------------------------------------------

T = datetime(2025, 10, 1, 12, tzinfo=UTC)


def _insert(con, table: str, **values) -> None:
    base = {"provider": "shopee", "account_id": "shop-1", "run_id": "r1", "extracted_at": T - timedelta(days=30)}
    if table != "tracking_events":
        base["record_hash"] = f"h{values}"
    row = {**base, **values}
    con.execute(f"INSERT INTO {table} ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})", list(row.values()))


def _shipment(con, sid: str, order_id: str | None, *, status="in_transit", is_final=False, **values) -> None:
    _insert(con, "shipments", **{"shipment_id": sid, "tracking_number": sid, "order_id": order_id, "carrier_code": "spx",
                                 "status": status, "is_final": is_final, "origin_country": "SG",
                                 "destination_country": "MY", "created_at": T - timedelta(days=3), **values})


def _event(con, sid: str, at: datetime, status: str, description: str = "scan") -> None:
    _insert(con, "tracking_events", event_id=f"{sid}-{at.isoformat()}-{status}", shipment_id=sid, tracking_number=sid,
            carrier_code="spx", occurred_at=at, status=status, description=description, status_raw=status.upper())


@pytest.fixture
def hand_built(tmp_path) -> Path:
    path = tmp_path / "warehouse.duckdb"
    with warehouse.connect(path, read_only=False) as con:
        warehouse.ensure_schema(con)
        h = timedelta(hours=1)
        # A: scanned two hours before ship-by; its label event a day earlier does not matter.
        _insert(con, "orders", order_id="A", ship_by_at=T)
        _shipment(con, "A1", "A")
        _event(con, "A1", T - 24 * h, "info_received")
        _event(con, "A1", T - 2 * h, "in_transit")
        # B: label before ship-by, first carrier scan a day after: late.
        _insert(con, "orders", order_id="B", ship_by_at=T)
        _shipment(con, "B1", "B")
        _event(con, "B1", T - 24 * h, "info_received")
        _event(con, "B1", T + 24 * h, "in_transit")
        # C: two parcels, the earlier one made it.
        _insert(con, "orders", order_id="C", ship_by_at=T)
        _shipment(con, "C1", "C")
        _shipment(con, "C2", "C")
        _event(con, "C1", T + 48 * h, "in_transit")
        _event(con, "C2", T - 1 * h, "in_transit")
        # D: never handed over, deadline passed; E: deadline still ahead.
        _insert(con, "orders", order_id="D", ship_by_at=T)
        _insert(con, "orders", order_id="E", ship_by_at=T + timedelta(days=20))
        # F: another shop's order B: B1 is not its parcel.
        _insert(con, "orders", order_id="B", account_id="shop-2", ship_by_at=T)
        # G: a newer snapshot moved ship-by earlier; the latest one counts.
        _insert(con, "orders", order_id="G", ship_by_at=T + timedelta(days=5), extracted_at=T - timedelta(days=9))
        _insert(con, "orders", order_id="G", ship_by_at=T, extracted_at=T - timedelta(days=8), run_id="r2")
        _shipment(con, "G1", "G")
        _event(con, "G1", T + 30 * h, "in_transit")
        # H: no scans; the shipment's own shipped_at is after ship-by.
        _insert(con, "orders", order_id="H", ship_by_at=T)
        _shipment(con, "H1", "H", shipped_at=T + 5 * h)
        # No ship-by: not part of the mart.
        _insert(con, "orders", order_id="N")
        # ETA: P1's ETA survives only in its first snapshot; P2 arrived the day after its ETA; P3 had none.
        _shipment(con, "P1", None, estimated_delivery_at=T + 72 * h)
        _shipment(con, "P1", None, status="delivered", is_final=True, extracted_at=T, run_id="r2")
        _event(con, "P1", T, "in_transit")
        _event(con, "P1", T + 72 * h + 11 * h, "delivered")  # later that same UTC day: on time
        _shipment(con, "P2", None, status="delivered", is_final=True, estimated_delivery_at=T + 48 * h)
        _event(con, "P2", T, "in_transit")
        _event(con, "P2", T + 72 * h, "delivered")
        _event(con, "P2", T + 50 * h, "failed_attempt", "Recipient not home")
        _shipment(con, "P3", None, status="delivered", is_final=True)
        _event(con, "P3", T, "in_transit")
        _event(con, "P3", T + 96 * h, "delivered")
    return path


def test_order_fulfilment_finds_the_orders_that_missed_ship_by(hand_built):
    con = reader(hand_built, as_of=T + timedelta(days=9))
    rows = {(r["account_id"], r["order_id"]): r for r in dicts(con, "SELECT * FROM order_fulfilment")}
    statuses = {key: r["fulfilment_status"] for key, r in rows.items()}
    assert statuses == {("shop-1", "A"): "on_time", ("shop-1", "B"): "late", ("shop-1", "C"): "on_time",
                        ("shop-1", "D"): "overdue", ("shop-1", "E"): "open", ("shop-2", "B"): "overdue",
                        ("shop-1", "G"): "late", ("shop-1", "H"): "late"}
    assert rows[("shop-1", "B")]["hours_after_ship_by"] == pytest.approx(24)
    assert rows[("shop-1", "C")]["shipments"] == 2
    (late,) = con.execute("SELECT count(*) FROM order_fulfilment WHERE fulfilment_status = 'late'").fetchall()[0]
    assert late == 3


def test_delivery_performance_share_delivered_by_eta(hand_built):
    con = reader(hand_built, as_of=T + timedelta(days=9))
    rows = dicts(con, "SELECT * FROM delivery_performance WHERE carrier_code = 'spx' AND delivered > 0")
    assert len(rows) == 1
    row = rows[0]
    assert (row["delivered"], row["delivered_with_eta"], row["delivered_by_eta"]) == (3, 2, 1)
    assert row["on_time_share"] == pytest.approx(0.5)
    assert row["median_transit_days"] == pytest.approx(83 / 24)  # transit of 83 h, 72 h and 96 h
    assert row["p90_transit_days"] == pytest.approx(quantile_cont([83 / 24, 3.0, 4.0], 0.9))
    (exc,) = dicts(con, "SELECT * FROM delivery_exceptions")
    assert (exc["kind"], exc["reason"], exc["events"]) == ("failed_attempt", "Recipient not home", 1)


def test_delivered_by_eta_reads_the_delivery_day_where_the_carrier_delivered(tmp_path):
    """ETA 2025-10-03 (a date: UTC midnight). L1 was delivered at 7 pm in Los Angeles that day, 02:00 UTC the next:
    on time by its local date. L2 came at the same instant with no local time sent: late by its UTC date. L3's
    local text is no date (epoch seconds): its UTC date, late too. L4's first delivered scan has no local time; a
    second one, days later, has: the first one's UTC date counts."""
    path = tmp_path / "warehouse.duckdb"
    eta, delivered = datetime(2025, 10, 3, tzinfo=UTC), datetime(2025, 10, 4, 2, tzinfo=UTC)
    with warehouse.connect(path, read_only=False) as con:
        warehouse.ensure_schema(con)
        for sid, local in (("L1", "2025-10-03T19:00:00"), ("L2", None), ("L3", "1759543200")):
            _shipment(con, sid, None, status="delivered", is_final=True, estimated_delivery_at=eta)
            _event(con, sid, delivered - timedelta(days=2), "in_transit")
            _insert(con, "tracking_events", event_id=f"{sid}-d", shipment_id=sid, tracking_number=sid, carrier_code="spx",
                    occurred_at=delivered, occurred_at_local=local, status="delivered", status_raw="DE")
        _shipment(con, "L4", None, status="delivered", is_final=True, estimated_delivery_at=eta + timedelta(days=1))
        _insert(con, "tracking_events", event_id="L4-d", shipment_id="L4", tracking_number="L4", carrier_code="spx",
                occurred_at=delivered, status="delivered", status_raw="DE")
        _insert(con, "tracking_events", event_id="L4-d2", shipment_id="L4", tracking_number="L4", carrier_code="spx",
                occurred_at=delivered + timedelta(days=2), occurred_at_local="2025-10-06T09:00:00", status="delivered",
                status_raw="DE")
    con = reader(path, as_of=T + timedelta(days=9))
    rows = {r["shipment_id"]: r for r in dicts(con, "SELECT * FROM shipment_timeline")}
    assert {sid: (str(r["delivered_on"]), r["delivered_by_eta"]) for sid, r in rows.items()} == {
        "L1": ("2025-10-03", True), "L2": ("2025-10-04", False), "L3": ("2025-10-04", False), "L4": ("2025-10-04", True)}


def test_stored_macros_default_to_now_and_five_days(hand_built):
    con = duckdb.connect(str(hand_built), read_only=True)
    ((days, lag),) = con.execute(
        "SELECT analytics_stuck_after_days(), epoch(current_timestamp - analytics_as_of())").fetchall()
    assert days == 5 and abs(lag) < 60
    # Parcels scanned in 2025 and never finished are all stuck by now.
    stuck = {r[0] for r in con.execute("SELECT shipment_id FROM stuck_shipments").fetchall()}
    assert {"A1", "B1", "C1", "G1", "H1"} <= stuck and not stuck & {"P1", "P2", "P3"}


# --- hand-built rows: cancellations, unpaid orders, exception scans -------------------------------------
# Shopee's demo data: a cancelled order's only scans are ORDER_CREATED (info_received) and CANCELED
# (exception); an UNPAID or IN_CANCEL order has a ship-by date but no obligation to meet it (yet).

AS_OF = T + timedelta(days=9)


def _order(con, order_id: str, status_raw: str, status: str, **values) -> None:
    _insert(con, "orders", order_id=order_id, ship_by_at=T, status=status, status_raw=status_raw, **values)


@pytest.fixture
def cancellations(tmp_path) -> Path:
    path = tmp_path / "warehouse.duckdb"
    with warehouse.connect(path, read_only=False) as con:
        warehouse.ensure_schema(con)
        h = timedelta(hours=1)
        # X: cancelled before pick-up; the CANCELED scan came two hours before ship-by.
        _order(con, "X", "CANCELLED", "exception", paid_at=T - 48 * h)
        _shipment(con, "X1", "X", status="exception", is_final=True)
        _event(con, "X1", T - 48 * h, "info_received", "Order created")
        _event(con, "X1", T - 2 * h, "exception", "Shipment is cancelled")
        # XL: handed over a day late, then cancelled (raw status in lower case, as Fuuffy sends it at times).
        _order(con, "XL", "cancelled", "exception", paid_at=T - 48 * h)
        _shipment(con, "XL1", "XL")
        _event(con, "XL1", T + 24 * h, "in_transit")
        # K: cancelled; its parcel's snapshot still says pending (label only, never scanned by the carrier).
        _order(con, "K", "CANCELLED", "exception", paid_at=T - 48 * h)
        _shipment(con, "K1", "K", status="pending")
        _event(con, "K1", T - 48 * h, "info_received", "Order created")
        # U: unpaid; COD: cash on delivery, no paid_at either, but ready to ship and never handed over.
        _order(con, "U", "UNPAID", "pending")
        _order(con, "COD", "READY_TO_SHIP", "pending")
        # IC: the buyer asked to cancel before hand-over; ICH: asked after the carrier had it in time.
        _order(con, "IC", "IN_CANCEL", "unknown", paid_at=T - 48 * h)
        _shipment(con, "IC1", "IC", status="pending")
        _order(con, "ICH", "IN_CANCEL", "unknown", paid_at=T - 48 * h)
        _shipment(con, "ICH1", "ICH")
        _event(con, "ICH1", T - 1 * h, "in_transit")
        # F: pick-up failed before ship-by, nothing since: not handed over.
        _order(con, "F", "READY_TO_SHIP", "pending", paid_at=T - 48 * h)
        _shipment(con, "F1", "F", status="exception")
        _event(con, "F1", T - 24 * h, "info_received", "Pick-up requested")
        _event(con, "F1", T - 3 * h, "exception", "Pick-up failed")
        # W: a delay scanned before ship-by, the first pick-up scan two hours after it.
        _order(con, "W", "SHIPPED", "in_transit", paid_at=T - 48 * h)
        _shipment(con, "W1", "W")
        _event(con, "W1", T - 1 * h, "exception", "Weather delay")
        _event(con, "W1", T + 2 * h, "in_transit")
        # S: no scans yet; the source's own pick-up time says handed over.
        _order(con, "S", "SHIPPED", "in_transit", paid_at=T - 48 * h)
        _shipment(con, "S1", "S", shipped_at=T - 5 * h)
    return path


def _fulfilment(path: Path) -> dict[str, dict]:
    return {r["order_id"]: r for r in dicts(reader(path, as_of=AS_OF), "SELECT * FROM order_fulfilment")}


def test_shipment_hand_over_is_a_carrier_scan_never_a_label_or_exception_scan(cancellations):
    rows = {r["shipment_id"]: r for r in dicts(reader(cancellations, as_of=AS_OF), "SELECT * FROM shipment_timeline")}
    h = timedelta(hours=1)
    got = {sid: (rows[sid]["first_scan_at"], rows[sid]["handed_over_at"]) for sid in ("X1", "K1", "F1", "W1", "S1")}
    assert got == {"X1": (None, None), "K1": (None, None), "F1": (None, None),
                   "W1": (T + 2 * h, T + 2 * h), "S1": (None, T - 5 * h)}
    assert rows["X1"]["days_in_transit"] is None and rows["F1"]["days_in_transit"] is None


def test_order_fulfilment_cancelled_order_is_neither_on_time_nor_late(cancellations):
    rows = _fulfilment(cancellations)
    assert {k: rows[k]["fulfilment_status"] for k in ("X", "XL", "K")} == dict.fromkeys(("X", "XL", "K"), "cancelled")
    assert rows["X"]["handed_over_at"] is None  # the CANCELED scan is no hand-over
    assert rows["XL"]["handed_over_at"] == T + timedelta(hours=24)  # the hand-over stays visible ...
    assert rows["XL"]["hours_after_ship_by"] is None  # ... but is not judged
    assert all(rows[k]["hours_after_ship_by"] is None for k in ("X", "K"))


def test_order_fulfilment_an_exception_scan_is_no_hand_over(cancellations):
    rows = _fulfilment(cancellations)
    assert (rows["F"]["fulfilment_status"], rows["F"]["handed_over_at"]) == ("overdue", None)
    assert (rows["W"]["fulfilment_status"], rows["W"]["hours_after_ship_by"]) == ("late", pytest.approx(2))
    assert (rows["S"]["fulfilment_status"], rows["S"]["hours_after_ship_by"]) == ("on_time", pytest.approx(-5))


def test_order_fulfilment_unpaid_order_awaits_payment_not_overdue(cancellations):
    rows = _fulfilment(cancellations)
    assert rows["U"]["fulfilment_status"] == "awaiting_payment"
    assert rows["COD"]["fulfilment_status"] == "overdue"  # no paid_at is not "unpaid": cash on delivery must ship


def test_order_words_are_each_providers_own(cancellations):
    with warehouse.connect(cancellations, read_only=False) as con:
        _insert(con, "orders", provider="acme", order_id="A", ship_by_at=T, status="exception", status_raw="Annulee ")
        _insert(con, "orders", provider="acme", order_id="AC", ship_by_at=T, status="exception", status_raw="CANCELLED")
    con = duckdb.connect(str(cancellations), read_only=True)
    marts.install(con, as_of=AS_OF, temporary=True, order_states={"acme": {"ANNULEE": "cancelled"}})
    rows = {r["order_id"]: r["fulfilment_status"] for r in dicts(con, "SELECT * FROM order_fulfilment")}
    # acme's own word, in any case; Shopee's words are Shopee's alone (none are given here).
    assert (rows["A"], rows["AC"], rows["X"], rows["U"]) == ("cancelled", "overdue", "overdue", "overdue")


def test_order_fulfilment_cancellation_request_is_not_overdue(cancellations):
    rows = _fulfilment(cancellations)
    assert rows["IC"]["fulfilment_status"] == "cancel_requested"
    assert rows["ICH"]["fulfilment_status"] == "on_time"  # handed over before the request: judged as usual
    con = reader(cancellations, as_of=AS_OF)
    (missed,) = con.execute("SELECT list(order_id ORDER BY order_id) FROM order_fulfilment "
                            "WHERE fulfilment_status IN ('late', 'overdue')").fetchall()[0]
    assert missed == ["COD", "F", "W"]


def test_stuck_shipments_leave_out_unscanned_parcels_of_cancelled_orders(cancellations):
    con = reader(cancellations, as_of=AS_OF)
    stuck = {r[0] for r in con.execute("SELECT shipment_id FROM stuck_shipments").fetchall()}
    # K1 never reached the carrier and its order is cancelled; XL1 did reach it, so it can be stuck.
    assert stuck == {"XL1", "IC1", "ICH1", "F1", "W1", "S1"}


def test_delivery_performance_leaves_out_parcels_the_carrier_never_had(cancellations):
    con = reader(cancellations, as_of=AS_OF)
    (shipments,) = con.execute("SELECT sum(shipments) FROM delivery_performance").fetchall()[0]
    assert shipments == 7  # every parcel but X1, cancelled before pick-up


def test_delivery_performance_gives_every_parcel_a_week_even_before_its_first_scan(tmp_path):
    path = tmp_path / "warehouse.duckdb"
    with warehouse.connect(path, read_only=False) as con:
        warehouse.ensure_schema(con)
        _insert(con, "orders", order_id="N", created_at=T - timedelta(days=14))  # a Wednesday two weeks back
        _shipment(con, "N1", "N", status="pending", created_at=None)  # waiting for its number: no scan, no label
        _shipment(con, "L1", None, status="info_received", created_at=None)
        _event(con, "L1", T - timedelta(hours=1), "info_received", "Label created")  # this week
        _shipment(con, "S1", None)  # its label's created_at, three days back: last week
    rows = dicts(reader(path, as_of=AS_OF), "SELECT week_start, shipments FROM delivery_performance ORDER BY 1")
    monday = (T - timedelta(days=T.weekday())).date()
    assert [(r["week_start"], r["shipments"]) for r in rows] == [
        (monday - timedelta(days=14), 1), (monday - timedelta(days=7), 1), (monday, 1)]


def test_delivery_exceptions_leave_out_cancellations_before_pick_up(cancellations):
    rows = dicts(reader(cancellations, as_of=AS_OF), "SELECT * FROM delivery_exceptions")
    got = {(r["kind"], r["reason"]): (r["events"], r["shipments"], r["share_of_carrier_shipments"]) for r in rows}
    assert got == {("exception", "Pick-up failed"): (1, 1, pytest.approx(1 / 7)),
                   ("exception", "Weather delay"): (1, 1, pytest.approx(1 / 7))}


@pytest.mark.e2e
def test_two_accounts_that_see_the_same_parcels_share_their_scans(tmp_path, world):
    """Two API keys of one ShipEngine account: each scan is stored once, and both accounts' timelines have it."""
    two = PIPELINE.format(tmp=tmp_path) + (
        "  - name: shipengine-test-key\n    provider: shipengine\n    base_url: ${SHIPETL_SANDBOX_URL}/shipengine\n"
        "    start: 2025-08-01\n    rate_limit: {per_second: 400, burst: 50, max_in_flight: 16}\n"
        "    credentials: {api_key: TEST_sandbox_key}\n    options: {poll_concurrency: 16}\n")
    (tmp_path / "pipeline.yaml").write_text(two)
    result, _ = run_demo(str(tmp_path / "pipeline.yaml"), seed=42)
    assert result.ok, [s.error for s in result.sources]
    con = reader(tmp_path / "warehouse.duckdb")
    (stored, distinct), = con.execute("SELECT count(*), count(DISTINCT event_id) FROM tracking_events").fetchall()
    assert stored == distinct == sum(len(w["scans"]) for w in world.values())
    per_account = dict(con.execute("SELECT account_id, sum(events) FROM shipment_timeline GROUP BY 1").fetchall())
    assert per_account == {"shipengine": stored, "shipengine-test-key": stored}
