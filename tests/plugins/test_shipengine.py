"""The ShipEngine plugin's own rules, beyond the shared contract (tests/test_contract_builtins.py).

- An event no status table maps comes out of the mapping with a NULL status, so core counts its raw code as
  unmapped (it used to say ``'unknown'`` itself, which hid every unmapped code from the run summary).
- The scan's personal fields (``signer``, ``company_name``) follow ``pii:``; with no key, ``hash`` drops them.
- A tracking poll that still fails after core's retries costs that parcel, not the source, unless most do.
"""

from __future__ import annotations

import copy
from collections import Counter
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import structlog
from structlog.testing import capture_logs

import shipetl_shipengine
from shipetl import AuthError, Page, RateLimit, TransientError, http_client, transform
from shipetl.context import RunBookkeeping
from shipetl.rawzone import RawZoneWriter
from shipetl_shipengine import extract
from shipetl_shipengine.client import TEST_KEY_RATE_LIMIT, ShipEngineClient, classify
from shipetl_shipengine.provider import ShipEngineOptions, ShipEngineProvider
from shipetl_shipengine.statuses import USPS_CODES

FIXTURES = Path(shipetl_shipengine.__file__).parent / "fixtures"
BASE = "https://shipengine.test"
SIGNER, COMPANY = "JANE Q DOE-SIGNER", "ACME ROOFING LLC"


def fixture(name: str) -> dict[str, Any]:
    return orjson.loads((FIXTURES / name).read_bytes())


def legacy_ups_reply() -> dict[str, Any]:
    """The UPS fixture in the older shape: no per-event status codes ("" as UPS sends), delivered and signed."""
    body = copy.deepcopy(fixture("tracking_ups_current.json"))
    body.update({"status_code": "DE", "status_detail_code": None, "carrier_status_code": "KB"})
    newest = copy.deepcopy(body["events"][0])
    newest.update({"occurred_at": "2021-09-20T18:30:00Z", "carrier_occurred_at": "2021-09-20T13:30:00",
                   "description": "Delivered", "event_code": "KB", "carrier_status_code": "KB",
                   "signer": SIGNER, "company_name": COMPANY})
    body["events"].insert(0, newest)
    for e in body["events"]:
        e.update({"status_code": "", "status_detail_code": "", "status_description": ""})
    return body


def mapped(tmp_path: Path, registry, bodies: list[dict[str, Any]], *, pii: str = "keep", pii_key: str | None = None,
           label_status: dict[str, str] | None = None) -> tuple[list[dict[str, Any]], transform.TransformResult]:
    """Tracking replies through the raw zone and core's transform: staged tracking_events rows, and the result.
    ``label_status``: the label's tracking_status by tracking number, as extract.label_meta carries it."""
    started = datetime(2025, 12, 20, tzinfo=UTC)
    with RawZoneWriter(tmp_path / "raw", "shipengine", "se", "run-1", started) as raw:
        for body in bodies:
            number = body["tracking_number"]
            raw.write(Page("tracking", orjson.dumps(body), {
                "label_carrier_code": body["carrier_code"], "tracking_number": number,
                "label_tracking_status": (label_status or {}).get(number)}))
        files = raw.close()
    con = transform.connect(status_tables=registry.statuses, pii=pii, pii_key=pii_key)
    result = transform.transform(con, ShipEngineProvider.streams, files, provider="shipengine", account_id="se",
                                 run_id="run-1", extracted_at=started, timezone=None)
    rel = con.sql(f"SELECT * FROM {transform.staged_table('tracking_events')} ORDER BY occurred_at")
    return [dict(zip(rel.columns, row)) for row in rel.fetchall()], result


# --- 1. unmapped scan codes are counted ---------------------------------------------------------------

def test_codes_no_table_maps_are_left_null_so_core_counts_them(tmp_path, registry) -> None:
    rows, result = mapped(tmp_path, registry, [legacy_ups_reply()])
    status = {r["status_raw"]: r["status"] for r in rows}
    # The newest scan takes the reply's top-level status (DE); no UPS table exists, so the older ones are unknown...
    assert status == {"MP": "unknown", "OR": "unknown", "DP": "unknown", "KB": "delivered"}
    # ...and counted per code, which is what the run summary shows as tracking_events:<code>.
    assert result.unmapped == Counter({("tracking_events", "MP"): 1, ("tracking_events", "OR"): 1,
                                       ("tracking_events", "DP"): 1})


def test_of_scans_at_the_newest_instant_only_the_first_in_the_reply_takes_the_top_level_status(tmp_path, registry):
    body = legacy_ups_reply()
    newest, tied = body["events"][0], body["events"][1]
    tied.update({"occurred_at": newest["occurred_at"], "carrier_occurred_at": newest["carrier_occurred_at"]})
    body["events"].append(copy.deepcopy(newest))  # a scan the reply repeats is the same scan, whatever its place
    rows, _ = mapped(tmp_path, registry, [body])
    last = max(r["occurred_at"] for r in rows)
    assert sorted((r["status_raw"], r["status"]) for r in rows if r["occurred_at"] == last) == sorted([
        ("KB", "delivered"), ("KB", "delivered"), (tied["event_code"], "unknown")])


def test_documented_usps_codes_and_per_event_status_codes_are_not_counted(tmp_path, registry) -> None:
    rows, result = mapped(tmp_path, registry, [fixture("tracking_usps_seed_004.json"),
                                               fixture("tracking_ups_current.json")])
    assert not result.unmapped
    usps = {r["status_raw"]: r["status"] for r in rows if r["carrier_code"] == "usps"}
    assert usps == {code: status for code, (status, _) in USPS_CODES.items()}


def test_a_usps_code_outside_the_seed_is_counted_not_guessed(tmp_path, registry) -> None:
    body = fixture("tracking_usps_seed_004.json")
    body["events"][2].update({"event_code": "A1", "carrier_status_code": "A1"})  # not documented anywhere
    rows, result = mapped(tmp_path, registry, [body])
    assert next(r["status"] for r in rows if r["status_raw"] == "A1") == "unknown"
    assert result.unmapped == Counter({("tracking_events", "A1"): 1})


# --- 1b. how an event's status is chosen: ShipEngine's own per-event status, refined by a carrier table ------

def with_event_status(body: dict[str, Any], by_code: dict[str, tuple[str | None, str | None]]) -> dict[str, Any]:
    """``body`` with each event's own ``status_code`` / ``status_detail_code`` set from ``by_code[event_code]``."""
    body = copy.deepcopy(body)
    for e in body["events"]:
        e["status_code"], e["status_detail_code"] = by_code[e["event_code"]]
    return body


def scan_reply(carrier: str, number: str, scans: list[tuple[str, str, str | None, str | None]]) -> dict[str, Any]:
    """A tracking reply of ``carrier`` with one event per (event_code, text, status_code, status_detail_code),
    oldest first, an hour apart; the reply's top-level status is its newest event's."""
    template = fixture("tracking_ups_current.json")["events"][0]
    events = []
    for hour, (code, text, status, detail) in enumerate(scans):
        e = copy.deepcopy(template)
        e.update({"occurred_at": f"2025-12-01T{10 + hour:02d}:00:00Z", "carrier_occurred_at": None,
                  "description": text, "event_code": code, "carrier_status_code": code,
                  "carrier_status_description": text, "status_code": status, "status_detail_code": detail})
        events.insert(0, e)
    top_status, top_detail = scans[-1][2], scans[-1][3]
    body = copy.deepcopy(fixture("tracking_ups_current.json"))
    body.update({"tracking_number": number, "carrier_code": carrier, "status_code": top_status or "IT",
                 "status_detail_code": top_detail, "carrier_status_code": scans[-1][0], "events": events})
    return body


def test_a_parcel_delivered_after_turning_back_to_its_sender_is_returned(tmp_path, registry) -> None:
    back = scan_reply("ups", "1ZBACK", [("IT", "In transit", "IT", None),
                                        ("RS", "Returning to sender", "EX", "RETURN_TO_SENDER"),
                                        ("DS", "Delivered to sender", "DE", "DELIVERED")])
    turning = scan_reply("ups", "1ZTURN", [("IT", "In transit", "IT", None),
                                           ("RS", "Returning to sender", "EX", "RETURN_TO_SENDER")])
    home = scan_reply("ups", "1ZHOME", [("IT", "In transit", "IT", None), ("DL", "Delivered", "DE", "DELIVERED")])
    _, result = mapped(tmp_path, registry, [back, turning, home])
    rows = result.con.sql(f"SELECT shipment_id, status, is_final FROM {transform.staged_table('shipments')}").fetchall()
    assert sorted(rows) == [("1ZBACK", "returned", True), ("1ZHOME", "delivered", True), ("1ZTURN", "exception", False)]


def test_a_delivered_parcel_without_an_instant_of_delivery_takes_its_newest_scans(tmp_path, registry) -> None:
    naive = scan_reply("fedex", "7001", [("IT", "In transit", "IT", None), ("DL", "Delivered", "DE", "DELIVERED")])
    naive["actual_delivery_date"] = "2025-12-01T05:24:32"  # FedEx's naive text, hours off (providers.md 6.1)
    given = scan_reply("ups", "1Z02", [("IT", "In transit", "IT", None), ("KB", "Delivered", "DE", "DELIVERED")])
    given["actual_delivery_date"] = "2025-12-01T10:59:00Z"
    moving = scan_reply("ups", "1Z03", [("IT", "In transit", "IT", None)])
    _, result = mapped(tmp_path, registry, [naive, given, moving])
    rows = result.con.sql(f"SELECT shipment_id, delivered_at FROM {transform.staged_table('shipments')}").fetchall()
    assert sorted(rows) == [("1Z02", datetime(2025, 12, 1, 10, 59, tzinfo=UTC)), ("1Z03", None),
                            ("7001", datetime(2025, 12, 1, 11, 0, tzinfo=UTC))]


def test_a_reply_without_a_status_code_takes_its_labels_tracking_status(tmp_path, registry) -> None:
    bodies = [scan_reply("ups", number, [("IT", "In transit", "IT", None)]) for number in ("1ZA", "1ZB", "1ZC", "1ZD")]
    for body in bodies[:3]:
        body.update({"status_code": "", "status_detail_code": None})
    _, result = mapped(tmp_path, registry, bodies, label_status={
        "1ZA": "delivered_to_service_point", "1ZB": "teleported", "1ZC": "delivered", "1ZD": "delivered"})
    rows = result.con.sql(f"SELECT shipment_id, status, status_raw, is_final FROM {transform.staged_table('shipments')}")
    assert sorted(rows.fetchall()) == [
        ("1ZA", "available_for_pickup", "delivered_to_service_point", False),
        ("1ZB", "unknown", "teleported", False),  # outside the label enum: counted, not guessed
        ("1ZC", "delivered", "delivered", True),
        ("1ZD", "in_transit", "IT", False),  # the reply's own status_code wins over the label's
    ]
    assert result.unmapped[("shipments", "teleported")] == 1


def test_a_scan_whose_local_and_utc_times_are_the_same_midnight_is_flagged_date_only(tmp_path, registry) -> None:
    rows, _ = mapped(tmp_path, registry, [fixture("tracking_usps_seed_004.json")])
    precision = {row["status_raw"]: orjson.loads(row["extras"])["occurred_at_precision"] for row in rows}
    assert precision.pop("NT") == "date"
    assert set(precision.values()) == {None}
    nt = next(row for row in rows if row["status_raw"] == "NT")
    assert nt["occurred_at"] == datetime(2021, 9, 18, tzinfo=UTC)  # the instant stays as sent


def test_a_position_sent_as_empty_text_loads_as_none_and_the_reply_with_it(tmp_path, registry) -> None:
    body = fixture("tracking_usps_seed_004.json")
    body["events"][0].update({"latitude": "", "longitude": ""})  # UPS's "" for absent (providers.md 6.1)
    body["events"][1].update({"latitude": "37.0776", "longitude": -94.1258})
    rows, result = mapped(tmp_path, registry, [body])
    assert result.tables["tracking_events"].rejected == 0
    newest, second = sorted(rows, key=lambda r: r["occurred_at"], reverse=True)[:2]
    assert (newest["latitude"], newest["longitude"]) == (None, None)
    assert (second["latitude"], second["longitude"]) == (37.0776, -94.1258)


def test_scans_no_carrier_table_knows_take_shipengines_own_per_event_status(tmp_path, registry) -> None:
    # The trial user's codes (UPS OT, FedEx PU / OD): no table knows them, but each event of a current
    # reply carries ShipEngine's own status_code and status_detail_code (providers.md 6.1), which place it.
    ups = scan_reply("ups", "1ZTRIAL0000000001", [("OR", "Pickup Scan", "IT", "PICKED_UP"),
                                                   ("OT", "Out For Delivery Today", "IT", "OUT_FOR_DELIVERY"),
                                                   ("KB", "Delivered", "DE", "DELIVERED")])
    fedex = scan_reply("fedex", "700000000001", [("PU", "Picked up", "IT", "PICKED_UP"),
                                                  ("OD", "On FedEx vehicle for delivery", "IT", "OUT_FOR_DELIVERY"),
                                                  ("DL", "Delivered", "DE", "DELIVERED")])
    rows, result = mapped(tmp_path, registry, [ups, fedex])
    assert {(r["carrier_code"], r["status_raw"]): r["status"] for r in rows} == {
        ("ups", "OR"): "in_transit", ("ups", "OT"): "out_for_delivery", ("ups", "KB"): "delivered",
        ("fedex", "PU"): "in_transit", ("fedex", "OD"): "out_for_delivery", ("fedex", "DL"): "delivered"}
    assert not result.unmapped


def test_the_same_scans_without_a_status_of_their_own_stay_unknown_and_are_counted(tmp_path, registry) -> None:
    # The seed's (older) shape: per-event status_code "" / null. Only the newest scan has a status, the
    # reply's; no UPS or FedEx code table is documented, so the older scans cannot be placed by any field.
    ups = scan_reply("ups", "1ZTRIAL0000000002", [("OR", "Pickup Scan", "", ""), ("OT", "Out For Delivery Today", "", ""),
                                                   ("KB", "Delivered", "", "")])
    ups["status_code"] = "DE"
    rows, result = mapped(tmp_path, registry, [ups])
    assert {r["status_raw"]: r["status"] for r in rows} == {"OR": "unknown", "OT": "unknown", "KB": "delivered"}
    assert result.unmapped == Counter({("tracking_events", "OR"): 1, ("tracking_events", "OT"): 1})


def test_a_carrier_table_refines_a_bare_in_transit_of_shipengines(tmp_path, registry) -> None:
    # Per-event status_code without a detail: IT is "in transit, refined by detail" (providers.md 3.5), and
    # USPS's OF (seed 004: out for delivery) is such a refinement. Before, the bare IT won: OF was in_transit.
    seed = fixture("tracking_usps_seed_004.json")
    body = with_event_status(seed, {code: ("IT", None) for code in ("OF", "07", "NT", "10", "03")} | {"01": ("DE", None)})
    rows, result = mapped(tmp_path, registry, [body])
    assert {r["status_raw"]: r["status"] for r in rows} == {code: status for code, (status, _) in USPS_CODES.items()}
    assert not result.unmapped


def test_shipengines_carrier_status_not_mapped_falls_back_to_the_carrier_table(tmp_path, registry) -> None:
    # UN / CARRIER_STATUS_NOT_MAPPED is ShipEngine saying it could not place the carrier's code: a table
    # that knows the code places it; a code nobody knows stays unknown as ShipEngine says (not counted).
    seed = fixture("tracking_usps_seed_004.json")
    body = with_event_status(seed, {"01": ("DE", "DELIVERED"), "OF": ("UN", "CARRIER_STATUS_NOT_MAPPED"),
                                    "07": ("IT", "RECEIVED_LOCAL_DELIVERY_DEPOT"), "NT": ("IT", "IN_TRANSIT"),
                                    "10": ("UN", "CARRIER_STATUS_NOT_MAPPED"), "03": ("IT", "PICKED_UP")})
    body["events"][3].update({"event_code": "XX", "carrier_status_code": "XX"})  # NT -> a code no table knows
    body["events"][3].update({"status_code": "UN", "status_detail_code": "CARRIER_STATUS_NOT_MAPPED"})
    rows, result = mapped(tmp_path, registry, [body])
    status = {r["status_raw"]: r["status"] for r in rows}
    assert status == {"01": "delivered", "OF": "out_for_delivery", "07": "in_transit", "XX": "unknown",
                      "10": "in_transit", "03": "in_transit"}
    assert not result.unmapped


def test_a_carrier_table_never_overrules_an_outcome_shipengine_states(tmp_path, registry) -> None:
    # USPS 03 and 07 are in_transit in the carrier table; ShipEngine's own EX, AT and DE for the event stand,
    # and a status_detail_code always wins (providers.md 3.5).
    seed = fixture("tracking_usps_seed_004.json")
    body = with_event_status(seed, {"01": (None, None), "OF": ("IT", "OUT_FOR_DELIVERY"), "07": ("AT", None),
                                    "NT": ("EX", None), "10": ("IT", "HUB_SCAN_IN"), "03": ("DE", None)})
    rows, _ = mapped(tmp_path, registry, [body])
    status = {r["status_raw"]: r["status"] for r in rows}
    assert status == {"01": "delivered", "OF": "out_for_delivery", "07": "failed_attempt", "NT": "exception",
                      "10": "in_transit", "03": "delivered"}


# --- 2. personal fields of a scan -----------------------------------------------------------------------

@pytest.mark.parametrize("pii, key", [("drop", None), ("hash", "unit-pii-key"), ("keep", None)])
def test_signer_and_company_follow_the_pii_setting(tmp_path, registry, pii, key) -> None:
    rows, _ = mapped(tmp_path, registry, [legacy_ups_reply()], pii=pii, pii_key=key)
    text = orjson.dumps([{k: str(v) for k, v in r.items()} for r in rows]).decode()
    assert (SIGNER in text and COMPANY in text) == (pii == "keep")
    extras = {r["status_raw"]: orjson.loads(r["extras"]) for r in rows}
    assert extras["KB"]["signed"] is True and extras["DP"]["signed"] is None
    signer = extras["KB"]["signer"]
    assert signer == {"drop": None, "keep": SIGNER}.get(pii, signer) and (pii != "hash" or signer.startswith("h:"))


def test_default_pii_hash_without_a_key_drops_the_names_instead_of_refusing_the_source(tmp_path) -> None:
    from shipetl import config, jobs

    path = tmp_path / "p.yaml"
    path.write_text("sources: [{name: se, provider: shipengine, credentials: {api_key: k}}]\n")
    (source,) = config.load(path, env={}).sources
    assert jobs.pii_settings(source, ShipEngineProvider) == ("drop", None)


# --- 3. one failing poll is not the whole night ---------------------------------------------------------

LABEL_TIME = "2025-12-01T10:00:00.000Z"


class Ctx(RunBookkeeping):
    """An ExtractContext over an httpx.MockTransport, with no waiting between retries."""

    def __init__(self, transport: httpx.MockTransport, cursors: dict[str, Any] | None = None,
                 open_shipments: list[dict[str, Any]] | None = None, max_open_polls: int | None = None) -> None:
        self.max_open_polls = max_open_polls
        self.source_name = self.account_id = "se"
        self.options = ShipEngineOptions(page_size=100, poll_concurrency=4)
        self.timezone, self.since, self.until = None, None, datetime(2025, 12, 20, tzinfo=UTC)
        self.log = structlog.get_logger(source="se")
        self.counters: Counter = Counter()
        self.unheard: set[str] = set()
        self._cursors, self.new_cursors = dict(cursors or {}), {}
        self._open = open_shipments or []
        self.transport = transport

    def window(self, key: str) -> tuple[datetime, datetime]:
        return datetime(2025, 11, 1, tzinfo=UTC), self.until

    def http(self, *, default_rate_limit: RateLimit | None = None, **overrides: Any):
        self.default_rate_limit = default_rate_limit  # what a real context would build the limiter from
        return http_client(base_url=BASE, source="se", max_retries=2, sleep=lambda _s: None,
                           transport=self.transport, **{k: v for k, v in overrides.items() if k != "transport"})

    def secret(self, name: str) -> str:
        return "unit-api-key"


def numbers(n: int) -> list[str]:
    return [f"1ZUNIT{i:08d}" for i in range(n)]


def label_time(i: int) -> datetime:
    """When the fake's label ``i`` was created: a minute after the one before."""
    return datetime.fromisoformat(LABEL_TIME) + timedelta(minutes=i)


class Api:
    """A fake ShipEngine: labels for ``tracking``, oldest first, in pages as asked; polls of ``down`` numbers
    answer ``status``."""

    def __init__(self, tracking: list[str], down: set[str] | str = frozenset(), status: int = 503,
                 labels_status: int = 200, error_source: str = "shipengine") -> None:
        self.tracking, self.down, self.status, self.labels_status = tracking, down, status, labels_status
        self.error_source = error_source
        self.polls: Counter = Counter()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/labels":
            if self.labels_status != 200:
                return httpx.Response(self.labels_status, json={"errors": [{"error_type": "system"}]})
            page, size = int(request.url.params["page"]), int(request.url.params["page_size"])
            labels = [{"label_id": f"se-{i}", "carrier_code": "ups", "tracking_number": n, "service_code": "ups_ground",
                       "created_at": label_time(i).isoformat().replace("+00:00", "Z"), "ship_to": {"country_code": "US"}}
                      for i, n in enumerate(self.tracking)]
            return httpx.Response(200, json={"labels": labels[(page - 1) * size:page * size], "total": len(labels),
                                             "page": page, "pages": max(1, -(-len(labels) // size))})
        number = request.url.params["tracking_number"]
        self.polls[number] += 1
        if self.down == "all" or number in self.down:
            if self.status == 401:
                return httpx.Response(401, json={"errors": [{"error_type": "security", "error_code": "unauthorized"}]})
            return httpx.Response(self.status, json={"errors": [{"error_source": self.error_source, "error_type": "system",
                                                                 "error_code": "unspecified"}]})
        return httpx.Response(200, json={"tracking_number": number, "carrier_code": "ups", "status_code": "IT",
                                         "events": []})


def pages_of(ctx: Ctx) -> list[Page]:
    return list(extract.pages(ctx, ctx.options))


def test_a_poll_failing_after_retries_is_skipped_counted_logged_and_asked_again() -> None:
    tracking = numbers(30)
    api = Api(tracking, down={tracking[7]})
    ctx = Ctx(httpx.MockTransport(api))
    with capture_logs() as logs:
        pages = pages_of(ctx)
    polled = [orjson.loads(p.body)["tracking_number"] for p in pages if p.stream == "tracking"]
    assert polled == [n for n in tracking if n != tracking[7]]  # the others, in order
    assert api.polls[tracking[7]] == 3  # core's retries were used first (max_retries=2 here)
    assert ctx.counters == Counter({"tracking_poll_failed": 1})
    assert ctx.unheard == {tracking[7]}  # its shipment_id: not expired by this run
    warned = [e for e in logs if e["event"] == "tracking_poll_failed"]
    assert len(warned) == 1 and warned[0]["log_level"] == "warning" and warned[0]["tracking_number"] == tracking[7]
    assert "unit-api-key" not in str(warned)
    # A parcel first seen in this run has no row to stay open with: the committed cursor remembers it.
    assert [m["tracking_number"] for m in ctx.new_cursors[extract.RETRY_CURSOR]] == [tracking[7]]
    assert ctx.new_cursors[extract.CURSOR] == ctx.until.isoformat()

    # Next run: no new labels, the API answers again, and the parcel is polled and then forgotten.
    later = Api([])
    again = Ctx(httpx.MockTransport(later), cursors=dict(ctx.new_cursors))
    (retried,) = [p for p in pages_of(again) if p.stream == "tracking"]
    assert orjson.loads(retried.body)["tracking_number"] == tracking[7]
    assert retried.meta["label_id"] == "se-7" and again.new_cursors[extract.RETRY_CURSOR] == []


def test_each_page_of_labels_once_polled_is_a_checkpoint_a_stopped_run_goes_on_from() -> None:
    tracking = numbers(250)  # three pages of labels (page_size 100)
    ctx = Ctx(httpx.MockTransport(Api(tracking, down={tracking[30]})))
    pages = extract.pages(ctx, ctx.options)
    polled = []
    for page in pages:  # stopped halfway through the second page's parcels, as Ctrl-C stops a run
        if page.stream == "tracking":
            polled.append(orjson.loads(page.body)["tracking_number"])
        if len(polled) == 150:
            break
    pages.close()
    assert polled[:99] == [n for n in tracking[:100] if n != tracking[30]]
    # Every label older than the first page's newest is polled, the failed one kept for the next run; the
    # second page may hold labels of that same second, so the cursor stays a second short of it.
    assert ctx.checkpointed[extract.CURSOR] == (label_time(99) - timedelta(seconds=1)).isoformat()
    assert [m["tracking_number"] for m in ctx.checkpointed[extract.RETRY_CURSOR]] == [tracking[30]]

    done = Ctx(httpx.MockTransport(Api(tracking)))
    assert len([p for p in pages_of(done) if p.stream == "tracking"]) == 250
    assert done.checkpointed == done.new_cursors == {extract.CURSOR: done.until.isoformat(), extract.RETRY_CURSOR: []}


def test_an_open_shipment_failing_beside_successes_is_not_put_in_the_retry_cursor() -> None:
    stored = {"tracking_number": "1ZOPEN", "carrier_code": "ups", "service": "ups_ground", "created_at": None,
              "destination_country": "US", "origin_country": "US", "extras": '{"label_id": "se-9"}'}
    api = Api(numbers(3), down={"1ZOPEN"})
    ctx = Ctx(httpx.MockTransport(api), open_shipments=[stored])
    assert len([p for p in pages_of(ctx) if p.stream == "tracking"]) == 3
    assert ctx.counters["tracking_poll_failed"] == 1
    assert ctx.new_cursors[extract.RETRY_CURSOR] == []  # it stays open in the warehouse: polled next run anyway


def stored_row(number: str) -> dict[str, Any]:
    """A shipment as the warehouse hands it back open."""
    return {"tracking_number": number, "carrier_code": "ups", "service": "ups_ground", "created_at": None,
            "destination_country": "US", "origin_country": "US", "extras": '{"label_id": "se-9"}'}


def test_max_open_polls_takes_open_parcels_in_turn_and_never_holds_back_a_new_label() -> None:
    open_numbers = [f"1ZOPEN{i:04d}" for i in range(12)]
    new = numbers(3)
    cursors: dict[str, Any] = {}
    runs: list[set[str]] = []
    for _ in range(3):
        api = Api(new)  # the same three labels each run (a lookback), and twelve parcels still open
        ctx = Ctx(httpx.MockTransport(api), cursors=cursors, open_shipments=[stored_row(n) for n in open_numbers],
                  max_open_polls=5)
        pages_of(ctx)
        assert all(api.polls[n] == 1 for n in new)
        runs.append({n for n in api.polls if n in open_numbers})
        assert len(runs[-1]) == 5 and ctx.counters["open_polls_deferred"] == 7
        cursors = {**cursors, **ctx.checkpointed}  # what the commit stores
    first, second, third = runs
    assert not first & second and len(third - first - second) == 2  # the round: twelve in three runs
    assert len(third & first) == 3 and not third & second  # and the next begins where the first did


def test_most_polls_failing_fails_the_source_with_one_line_and_stops_polling() -> None:
    tracking = numbers(200)
    api = Api(tracking, down="all")
    ctx = Ctx(httpx.MockTransport(api))
    with pytest.raises(TransientError) as info:
        pages_of(ctx)
    message = str(info.value)
    assert "\n" not in message and "looks down" in message and "20 of the first 20 polls" in message
    assert "unit-api-key" not in message
    assert sum(1 for n in tracking if api.polls[n]) < 60  # stopped early, not after every parcel's retries
    assert extract.CURSOR not in ctx.new_cursors and extract.CURSOR not in (ctx.checkpointed or {})


@pytest.mark.parametrize("status", [503, 400])
def test_a_carrier_outage_costs_its_parcels_until_the_next_run_never_the_source(status) -> None:
    tracking = numbers(30)
    api = Api(tracking, down="all", status=status, error_source="carrier")
    ctx = Ctx(httpx.MockTransport(api))
    assert [p for p in pages_of(ctx) if p.stream == "tracking"] == []
    assert all(api.polls[n] == 1 for n in tracking)  # the next run asks again, not this one
    assert ctx.counters == Counter({"carrier_errors": 30}) and ctx.unheard == set(tracking)
    assert len(ctx.new_cursors[extract.RETRY_CURSOR]) == 30


@pytest.mark.parametrize(("headers", "wait"), [({}, 5.0), ({"Retry-After": "2"}, 2.0), ({"RetryAfter": "3"}, 3.0),
                                               ({"Retry-After": "soon"}, 5.0)])
def test_a_429_waits_its_own_seconds_else_five(headers, wait) -> None:
    api = Api(["1Z1"])
    waits: list[float] = []

    def throttled(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/tracking" and not waits:
            return httpx.Response(429, headers=headers, json={"errors": [{"error_source": "shipengine", "error_type":
                                                                           "system", "error_code": "rate_limit_exceeded"}]})
        return api(request)

    http = http_client(base_url="https://api.shipengine.com", source="se", classify=classify,
                       transport=httpx.MockTransport(throttled), sleep=waits.append)
    assert http.request("GET", "/v1/tracking", params={"tracking_number": "1Z1"}).status_code == 200
    (slept,) = waits
    assert wait <= slept <= wait + 1  # the wait and a little jitter


@pytest.mark.parametrize(("key", "limit"), [("TEST_k1x9", TEST_KEY_RATE_LIMIT), ("live_k1x9", None)])
def test_a_test_key_gets_the_test_keys_twenty_requests_a_minute(key, limit) -> None:
    ctx = Ctx(httpx.MockTransport(Api([])))
    ctx.secret = lambda name: key
    ShipEngineClient(ctx).close()
    assert ctx.default_rate_limit == limit  # None: the provider's 200 a minute
    assert TEST_KEY_RATE_LIMIT.per_minute == 20


def test_filters_are_sent_in_utc_whatever_the_offset_of_the_window() -> None:
    from shipetl_shipengine.client import iso_z

    assert iso_z(datetime(2025, 11, 1, 8, tzinfo=timezone(timedelta(hours=8)))) == "2025-11-01T00:00:00Z"
    assert iso_z(datetime(2025, 11, 1, 8)) == "2025-11-01T08:00:00Z"


def test_a_success_listing_errors_keeps_its_data_and_logs_them() -> None:
    body = {"tracking_number": "1Z1", "status_code": "IT", "events": [],
            "errors": [{"error_source": "carrier", "error_type": "integrations", "error_code": "unspecified",
                        "message": "Some events could not be loaded"}]}
    request = httpx.Request("GET", f"{BASE}/v1/tracking?tracking_number=1Z1")
    log = structlog.get_logger()
    with capture_logs() as logs:
        classify(httpx.Response(200, json=body, request=request), log=log)
        classify(httpx.Response(200, json={**body, "errors": []}, request=request), log=log)
    assert [(e["event"], e["errors"][0]["message"], e["url"]) for e in logs] == [
        ("partial_success", "Some events could not be loaded", f"{BASE}/v1/tracking")]


def test_a_few_failures_among_many_are_tolerated() -> None:
    tracking = numbers(40)
    api = Api(tracking, down=set(tracking[::5]))  # 8 of 40
    ctx = Ctx(httpx.MockTransport(api))
    assert len([p for p in pages_of(ctx) if p.stream == "tracking"]) == 32
    assert ctx.counters["tracking_poll_failed"] == 8
    assert len(ctx.new_cursors[extract.RETRY_CURSOR]) == 8


def test_an_auth_error_on_a_poll_fails_the_source_at_once() -> None:
    tracking = numbers(100)
    api = Api(tracking, down={tracking[3]}, status=401)
    ctx = Ctx(httpx.MockTransport(api))
    with pytest.raises(AuthError):
        pages_of(ctx)
    assert api.polls[tracking[3]] == 1 and sum(1 for n in tracking if api.polls[n]) < 40
    assert not ctx.counters


def test_a_failing_labels_page_still_fails_the_source() -> None:
    ctx = Ctx(httpx.MockTransport(Api(numbers(5), labels_status=503)))
    with pytest.raises(TransientError, match="/v1/labels"):
        pages_of(ctx)
    assert extract.CURSOR not in ctx.new_cursors
