"""The Fuuffy sandbox over loopback HTTP: auth, envelopes, limits, paging, and a world with the awkward cases
providers.md 4 lists."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import orjson
import pytest

from shipetl.sandbox import SandboxSettings, running_sandbox
from shipetl_fuuffy.sandbox import DEFAULT_CLIENTS, FOREIGN_ORDER_IDS, HK, build_world, create_app

CLIENT_ID, CLIENT_SECRET = next(iter(DEFAULT_CLIENTS.items()))


@contextmanager
def sandbox_client(**extra) -> Iterator[httpx.Client]:
    """A client of a Fuuffy sandbox of its own, served on loopback with the given extra settings."""
    with running_sandbox({"fuuffy": create_app}, SandboxSettings(port=0, extra=extra)) as url, \
            httpx.Client(base_url=url) as client:
        yield client


def token(client: httpx.Client, secret: str = CLIENT_SECRET):
    return client.post("/fuuffy/v1/auth/token", data={"grant_type": "client_credentials", "client_id": CLIENT_ID,
                                                      "client_secret": secret})


def auth(client: httpx.Client) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(client).json()['data']['access_token']}", "Content-Type": "application/json"}


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    with sandbox_client() as shared:
        yield shared


def test_token_is_issued_for_an_hour_and_a_wrong_secret_gets_401021(client):
    good = token(client)
    assert good.status_code == 200
    assert good.json()["data"]["token_type"] == "Bearer" and good.json()["data"]["expires_in"] == 3600
    bad = token(client, "nope-secret")
    assert bad.status_code == 401 and bad.json()["error"]["code"] == "401021"


def test_bad_and_expired_tokens_are_refused(client):
    missing = client.get("/fuuffy/v1/order/list", headers={"Authorization": "Bearer made-up"})
    assert missing.status_code == 401 and missing.json()["error"]["code"] == "401000"
    with sandbox_client() as own:
        headers = auth(own)
        assert own.get("/fuuffy/v1/order/list", headers=headers).status_code == 200
        assert own.post("/fuuffy/_tokens/expire").json()["expired"] == 1
        expired = own.get("/fuuffy/v1/order/list", headers=headers)
    assert expired.status_code == 401 and expired.json()["error"]["code"] == "invalid_token"


def test_validation_errors_carry_an_error_trace(client):
    reply = client.get("/fuuffy/v1/order/list", params={"limit": 101}, headers=auth(client))
    error = reply.json()["error"]
    assert reply.status_code == 400 and error["code"] == "400000" and error["error_trace"][0]["field"] == "limit"
    reply = client.get("/fuuffy/v1/order/list", params={"start_date": "2025/12/01"}, headers=auth(client))
    assert reply.json()["error"]["error_trace"][0]["field"] == "start_date"


def test_tracking_errors_as_documented(client):
    headers = auth(client)
    unknown = client.get("/fuuffy/v1/tracking/get/1", headers=headers)
    assert unknown.status_code == 400 and unknown.json()["error"]["error_code"] == "ORDER_NOT_FOUND"
    missing = client.get("/fuuffy/v1/tracking/get", headers=headers)
    assert missing.json()["error"]["error_code"] == "TRACKING_NUMBER_REQUIRED"
    foreign = client.get(f"/fuuffy/v1/tracking/get/{FOREIGN_ORDER_IDS[0]}", headers=headers)
    assert foreign.status_code == 403 and isinstance(foreign.json()["error"], str)


def test_order_list_pages_by_hong_kong_creation_date(client):
    headers, world = auth(client), build_world(42)
    seen, page = [], 1
    while True:
        body = client.get("/fuuffy/v1/order/list", headers=headers, params={
            "start_date": "2025-11-01", "end_date": "2025-12-01", "sort_key": "order_id", "sort_dir": "ASC",
            "page": page, "limit": 100}).json()
        seen += [o["order_id"] for o in body["data"]["order_list"]]
        if page >= body["pagination"]["total_pages"]:
            break
        page += 1
    november = [o.order_id for o in world.orders if o.created.astimezone(HK).strftime("%Y-%m") == "2025-11"]
    assert seen == sorted(november, key=int) and len(seen) > 100  # more than one page, end_date exclusive


def test_courier_failures_and_rate_limits_on_request():
    failing = build_world(42).orders[-1]
    with sandbox_client(fuuffy_courier_failures=[failing.order_id], fuuffy_rate_per_minute=3) as client:
        headers = auth(client)
        down = client.get(f"/fuuffy/v1/tracking/get/{failing.order_id}", headers=headers)
        replies = [client.get("/fuuffy/v1/order/list", headers=headers) for _ in range(3)]
    assert down.status_code == 500 and down.json()["error"]["code"] == "500999"
    assert [r.headers["X-RateLimit-Remaining"] for r in replies[:2]] == ["1", "0"]
    throttled = replies[2]
    assert throttled.status_code == 429 and throttled.json()["error"]["code"] == "rate_limit_exceeded"
    assert int(throttled.headers["X-RateLimit-Reset"]) > 1_700_000_000


def test_world_has_the_awkward_cases():
    world = build_world(42)
    assert 250 <= len(world.orders) <= 350
    assert any(len(o.parcels) > 1 for o in world.orders) and any(not o.numbers(world.clock) for o in world.orders)
    events = world.expected_events()
    assert any(e["local"][11:13] < "08" for e in events)  # the UTC date rolls back
    assert {"50", "54", "30", "31", "44", "80", "8000", "631", "70"} <= {e["code"] for e in events}
    styles = Counter(o.time_style for o in world.orders)
    assert set(styles) == {"offset", "z", "naive"}
    bodies = [world.tracking_json(o, p) for o in world.orders for p in o.parcels]
    assert any(isinstance(b["data"], str) for b in bodies)
    assert any(isinstance(orjson.loads(b["data"]) if isinstance(b["data"], str) else b["data"], dict) for b in bodies)
    texts = {world.tracking_json(o, None)["data"]["order_status"] for o in world.orders}
    assert "列印及安排取件" in texts
