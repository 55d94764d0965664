"""The ShipEngine sandbox: real API shapes, auth, paging, rate limits, clock, and honest ground truth."""

from __future__ import annotations

import json
import re
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import orjson
import pytest

try:
    import shipetl.sandbox  # noqa: F401
    import shipetl_shipengine.sandbox  # noqa: F401
except ImportError:  # running without an installed package
    ROOT = Path(__file__).resolve().parents[1]
    sys.path[:0] = [str(ROOT), str(ROOT / "plugins")]

from shipetl.sandbox import SandboxSettings, running_sandbox
from shipetl_shipengine.sandbox import DEFAULT_CLOCK, build_world, create_app

KEY = {"API-Key": "TEST_sandbox_key"}
OFFSET = re.compile(r"[+-]\d\d:\d\d$")


@contextmanager
def sandbox_client(**settings: Any) -> Iterator[httpx.Client]:
    """A client of a ShipEngine sandbox of its own on loopback; ``client.world`` is the world it serves."""
    made = []

    def factory(sandbox_settings: SandboxSettings):
        made.append(create_app(sandbox_settings))
        return made[-1]

    with running_sandbox({"shipengine": factory}, SandboxSettings(port=0, **settings)) as url, \
            httpx.Client(base_url=url) as client:
        client.world = made[0].state.world
        yield client


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    """The full-size world, read-only: tests that move the clock or limits make their own."""
    with sandbox_client() as shared:
        yield shared


@pytest.fixture(scope="module")
def world(client: httpx.Client):
    return client.world


def true_instant(event: dict[str, Any]) -> datetime:
    """providers.md 6.1: occurred_at, unless carrier_occurred_at has an explicit offset and disagrees."""
    occurred = datetime.fromisoformat(event["occurred_at"].replace("Z", "+00:00"))
    carrier = event["carrier_occurred_at"]
    if carrier and OFFSET.search(carrier):
        return datetime.fromisoformat(carrier).astimezone(UTC)
    return occurred


def test_missing_or_bad_key_gives_401_with_errors_body(client: httpx.Client) -> None:
    for headers in ({}, {"API-Key": "nope"}):
        response = client.get("/shipengine/v1/labels", headers=headers)
        assert response.status_code == 401
        body = response.json()
        assert re.fullmatch(r"[0-9a-f-]{36}", body["request_id"])
        assert body["errors"] == [{
            "error_source": "shipengine", "error_type": "security", "error_code": "unauthorized",
            "message": "The API key is invalid. Please see https://www.shipengine.com/docs/auth",
        }]


def test_paging_walks_every_label_exactly_once(client: httpx.Client, world) -> None:
    url: str | None = "/shipengine/v1/labels?page_size=300&sort_dir=asc"
    seen: list[str] = []
    pages = []
    while url:
        body = client.get(url, headers=KEY).json()
        pages.append(body)
        seen += [label["label_id"] for label in body["labels"]]
        url = body["links"]["next"].get("href")
    assert pages[0]["total"] == len(seen) == len(set(seen)) == len(world.labels()) == 2000
    assert len(pages) == pages[0]["pages"] == 7
    assert pages[0]["links"]["prev"] == {} and pages[-1]["links"]["next"] == {}
    assert "page=7" in pages[-1]["links"]["last"]["href"].split("?")[1].split("&")
    created = [label["created_at"] for page in pages for label in page["labels"]]
    assert created == sorted(created)
    label = pages[0]["labels"][0]
    assert label["label_id"].startswith("se-") and label["carrier_id"].startswith("se-")
    assert label["status"] == "completed" and label["ship_to"]["country_code"] == "US"


def test_default_page_size_sort_and_window(client: httpx.Client, world) -> None:
    body = client.get("/shipengine/v1/labels", headers=KEY).json()
    assert len(body["labels"]) == 25
    newest = max(s.created_at for s in world.shipments)
    assert body["labels"][0]["created_at"].startswith(newest.strftime("%Y-%m-%dT%H:%M:%S"))
    window = {"created_at_start": "2025-10-01T00:00:00Z", "created_at_end": "2025-10-31T23:59:59Z"}
    body = client.get("/shipengine/v1/labels", params=window, headers=KEY).json()
    expected = [s for s in world.shipments if datetime(2025, 10, 1, tzinfo=UTC) <= s.created_at
                <= datetime(2025, 10, 31, 23, 59, 59, tzinfo=UTC)]
    assert body["total"] == len(expected) > 0


@pytest.mark.parametrize("query", ["page_size=501", "page_size=0", "page=0", "sort_dir=up", "created_at_start=x"])
def test_bad_list_parameters_give_400_validation(client: httpx.Client, query: str) -> None:
    response = client.get(f"/shipengine/v1/labels?{query}", headers=KEY)
    assert response.status_code == 400
    assert response.json()["errors"][0]["error_type"] == "validation"


def test_tracking_by_label_and_by_number(client: httpx.Client, world) -> None:
    s = next(s for s in world.shipments if s.label_carrier == "stamps_com" and len(s.events) >= 4)
    by_label = client.get(f"/shipengine/v1/labels/{s.label_id}/track", headers=KEY).json()
    assert by_label["tracking_number"] == s.tracking_number and by_label["carrier_code"] == "usps"
    assert by_label["carrier_id"] == 1 and len(by_label["events"]) >= 4
    for carrier in ("stamps_com", "usps"):
        params = {"carrier_code": carrier, "tracking_number": s.tracking_number}
        assert client.get("/shipengine/v1/tracking", params=params, headers=KEY).json() == by_label
    wrong = client.get("/shipengine/v1/tracking", params={"carrier_code": "ups", "tracking_number":
                                                        s.tracking_number}, headers=KEY)
    assert wrong.status_code == 400 and wrong.json()["errors"][0]["error_code"] == "invalid_identifier"
    missing = client.get("/shipengine/v1/tracking", params={"carrier_code": "ups", "tracking_number": "1Z0"},
                         headers=KEY)
    assert missing.status_code == 404 and missing.json()["errors"][0]["error_code"] == "not_found"
    assert client.get("/shipengine/v1/labels/se-0/track", headers=KEY).status_code == 404


def test_same_seed_same_json_other_seed_differs() -> None:
    def dump(w) -> bytes:
        return orjson.dumps([[w.label_json(s), w.tracking_json(s)] for s in w.shipments])

    small = dump(build_world(7, 0.1))
    assert small == dump(build_world(7, 0.1))
    assert small != dump(build_world(8, 0.1))


def test_volume_statuses_and_dst_hour(world) -> None:
    events = world.expected_events()
    assert len(events) >= 10_000
    assert {r["status_code"] for r in world.expected_shipments()} == {"AC", "IT", "DE", "EX", "UN", "AT", "NY",
                                                                      "SP"}
    details = {r["status_detail_code"] for r in world.expected_shipments()}
    assert {"OUT_FOR_DELIVERY", "AWAITING_COLLECTION_FROM_PICKUP_POINT", "RETURN_TO_SENDER", "PARCEL_LOST",
            "DELIVERED", "ATTEMPTED_DELIVERY", "HELD_BY_CUSTOMS", "CARRIER_STATUS_NOT_MAPPED"} <= details
    folds = Counter()
    for s in world.shipments:
        for e in s.events:
            if e.place:
                local = e.utc.astimezone(ZoneInfo(e.place.zone))
                if local.replace(fold=1 - local.fold).utcoffset() != local.utcoffset():
                    folds[local.fold] += 1
    assert folds[0] >= 20 and folds[1] >= 20 and sum(folds.values()) >= 50
    late = [s for s in world.shipments if s.events and s.events[-1].utc > DEFAULT_CLOCK]
    assert 0.02 <= len(late) / len(world.shipments) <= 0.08


def test_payload_quirks_of_section_6_1_are_present(world) -> None:
    replies = [world.tracking_json(s) for s in world.shipments]
    events = [(r["carrier_code"], e) for r in replies for e in r["events"]]
    carrier_times = [e["carrier_occurred_at"] for _, e in events]
    assert any(t and t.endswith("-07:00") for t in carrier_times)
    assert any(c == "usps" and e["carrier_occurred_at"] and e["carrier_occurred_at"].endswith("Z") for c, e in events)
    assert any(c == "ups" and e["carrier_occurred_at"] and len(e["carrier_occurred_at"]) == 19 for c, e in events)
    assert all(e["carrier_occurred_at"] == e["occurred_at"] for c, e in events if c.startswith("fedex"))
    assert any(e["event_code"] == "NT" and e["occurred_at"].endswith("T00:00:00Z")
               and e["carrier_occurred_at"] == e["occurred_at"][:-1] for _, e in events)
    assert any(isinstance(e["carrier_status_code"], int) for _, e in events)
    assert any(e["company_name"] == "" for _, e in events) and any(e["company_name"] is None for _, e in events)
    assert any(e["latitude"] is None for _, e in events)
    assert any(r["events"] == [] for r in replies)
    assert any(len(r["events"]) != len({orjson.dumps(e) for e in r["events"]}) for r in replies)
    filled = [r for r in replies if r["events"] and r["events"][0]["status_code"]]
    assert 0.6 <= len(filled) / len([r for r in replies if r["events"]]) <= 0.8
    assert any(r["carrier_code"] == "fedex_walleted" for r in replies)


def test_ground_truth_matches_payloads_under_the_6_1_rule(world) -> None:
    """Whoever applies the documented rule to the replies gets exactly expected_events()."""
    derived = set()
    order = Counter()
    for s in world.shipments:
        reply = world.tracking_json(s)
        instants = [true_instant(e) for e in reply["events"]]
        order["newest_first" if instants == sorted(instants, reverse=True) else "other"] += 1
        for e, instant in zip(reply["events"], instants):
            code = e["event_code"] or str(e["carrier_status_code"])
            derived.add((reply["tracking_number"], reply["carrier_code"], instant, code, e["description"] or None))
    expected = {tuple(row.values()) for row in world.expected_events()}
    assert derived == expected
    assert order["other"] > 0 and order["newest_first"] > 10 * order["other"]
    top = {s.tracking_number: world.tracking_json(s)["status_code"] for s in world.shipments}
    assert all(top[row["tracking_number"]] == row["status_code"] for row in world.expected_shipments())


def test_rate_limit_per_key_and_reset() -> None:
    with sandbox_client(scale=0.02, extra={"shipengine_rate_per_minute": 3}) as client:
        for _ in range(3):
            assert client.get("/shipengine/v1/labels", headers=KEY).status_code == 200
        limited = client.get("/shipengine/v1/labels", headers=KEY)
        assert limited.status_code == 429 and 1 <= int(limited.headers["Retry-After"]) <= 60
        assert limited.json()["errors"][0] | {"message": ""} == {
            "error_source": "shipengine", "error_type": "system", "error_code": "rate_limit_exceeded", "message": ""}
        assert client.get("/shipengine/v1/labels", headers={"API-Key": "sandbox_live_key"}).status_code == 200
        client.post("/_sandbox/reset")
        assert client.get("/shipengine/v1/labels", headers=KEY).status_code == 200


def test_clock_reveals_later_events_and_hides_future_labels() -> None:
    with sandbox_client(scale=0.1) as client:
        world = client.world
        s = next(s for s in world.shipments if s.events and s.events[-1].utc > DEFAULT_CLOCK and not s.events[-1].hidden)
        path = f"/shipengine/v1/labels/{s.label_id}/track"
        before = client.get(path, headers=KEY).json()
        assert client.get("/shipengine/_clock").json()["now"] == "2025-12-20T00:00:00Z"
        assert client.post("/shipengine/_clock", json={"now": "2026-03-01T00:00:00Z"}).status_code == 200
        after = client.get(path, headers=KEY).json()
        assert len(after["events"]) > len(before["events"])
        assert after["status_code"] == world.expected_shipments()[world.shipments.index(s)]["status_code"]
        total_later = client.get("/shipengine/v1/labels", headers=KEY).json()["total"]
        client.post("/shipengine/_clock", json={"now": "2025-10-01T00:00:00Z"})
        total_early = client.get("/shipengine/v1/labels", headers=KEY).json()["total"]
    assert 0 < total_early < total_later == len(world.shipments)


def test_faults_over_real_http() -> None:
    with running_sandbox({"shipengine": create_app}, SandboxSettings(port=0, scale=0.02)) as base:
        se = base + "/shipengine"
        assert httpx.get(base + "/").json()["providers"][0]["base_url"] == se
        limited = httpx.get(se + "/v1/labels", headers={**KEY, "X-Sandbox-Fault": "429"})
        assert limited.status_code == 429 and "retry-after" in limited.headers
        assert httpx.get(se + "/v1/labels", headers={**KEY, "X-Sandbox-Fault": "503"}).status_code == 503
        cut = httpx.get(se + "/v1/labels", headers={**KEY, "X-Sandbox-Fault": "truncate"})
        assert cut.status_code == 200
        with pytest.raises(json.JSONDecodeError):
            json.loads(cut.content)
        stats = httpx.get(base + "/_sandbox/stats").json()["faults"]
        assert (stats["429"], stats["503"], stats["truncate"]) == (1, 1, 1)
