"""Shopee provider: the shared contract over captured-shape fixtures, then signing, errors and tokens.

HTTP is faked with ``httpx.MockTransport``; the end-to-end tests against the sandbox are in
``tests/e2e/test_shopee_e2e.py``.
"""

from __future__ import annotations

import os
import re
import stat
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import httpx
import orjson
import pytest
import structlog
from structlog.testing import capture_logs

import shipetl_shopee
from shipetl import (AuthError, NotFoundError, Page, SkipRecord, TerminalError, TokenPair, TokenStore, TransientError,
                     http_client)
from shipetl import keys
from shipetl.context import RunBookkeeping
from shipetl.plugins import registry_from_modules
from shipetl.rawzone import RawZoneWriter
from shipetl.redact import redact_text
from shipetl.testing import ContractContext, ErrorFixture, FixtureTransport, ProviderContract
from shipetl.transform import staged_table
from shipetl_shopee.client import (
    AccessTokenRejected,
    NeedsPackageNumber,
    ShopeeApi,
    StaleTimestamp,
    base_string,
    classify,
    sign,
)
from shipetl_shopee import extract
from shipetl_shopee.extract import carrier_code, reversed_carrier_code, windows
from shipetl_shopee.provider import ShopeeOptions, ShopeeProvider, parse_redirect
from shipetl_shopee.tokens import PROVIDER, ShopTokens, code_for_shop

FIXTURES = Path(shipetl_shopee.__file__).parent / "fixtures"
PARTNER_ID, SHOP_ID, KEY = 2001887, 880303, "shipetl-example-partner-key"
RELINK = f"shipetl auth daily.yaml shopee/shop-{SHOP_ID}"


class TestShopeeContract(ProviderContract):
    plugin = shipetl_shopee
    fixtures = FIXTURES
    options = {"partner_id": PARTNER_ID, "shop_ids": [SHOP_ID], "poll_concurrency": 2}
    until = datetime(2025, 12, 20, tzinfo=UTC)
    # Two slices of the order list (each a little under 15 days), which the fixtures answer alike: the second
    # lists again what the first did, as an order updated on their shared boundary second would be.
    window = timedelta(days=29)
    routes = {
        "POST /api/v2/auth/token/get": "token_get.json",
        "GET /api/v2/order/get_order_list?cursor=": "order_list_page_1.json",
        "GET /api/v2/order/get_order_list?cursor=2": "order_list_last_page.json",
        "GET /api/v2/order/get_order_detail": "order_detail.json",
        "GET /api/v2/logistics/get_tracking_number?order_sn=210930KJDNF06T": "tracking_number_seed.json",
        "GET /api/v2/logistics/get_tracking_number?package_number=OFG10000000000001": "tracking_number_split_1.json",
        "GET /api/v2/logistics/get_tracking_number?package_number=OFG10000000000002": "tracking_number_split_2.json",
        "GET /api/v2/logistics/get_tracking_info?order_sn=210930KJDNF06T": "tracking_info_seed.json",
        "GET /api/v2/logistics/get_tracking_info?package_number=OFG10000000000001": "tracking_info_return_leg.json",
    }
    failing_poll = ("GET /api/v2/logistics/get_tracking_info?package_number=OFG10000000000001", "OFG10000000000001")
    errors = {"auth": ErrorFixture(403, "error_auth.json"),
              "rate_limit": ErrorFixture(200, "error_rate_limit.json"),
              "bad_input": ErrorFixture(400, "error_param.json")}
    allow_rejects = ("missing from get_order_detail",)

    def test_missing_order_is_a_reject_not_a_failure(self, harvest):
        rejects = harvest.tables["rejects"].to_pylist()
        assert [orjson.loads(r["record"])["order_id"] for r in rejects] == ["251201GONE0000"]

    def test_pii_is_hashed_by_default(self, harvest):
        orders = {r["order_id"]: r for r in harvest.tables["orders"].to_pylist()}
        # The contract transforms with pii "keep"; the pii macro is exercised in the e2e tests with hash.
        assert orders["251103SPLIT2PK"]["recipient_name"] == "สมชาย ใจดี"

    def test_zero_package_order_has_no_shipment(self, harvest):
        shipments = {r["order_id"] for r in harvest.tables["shipments"].to_pylist()}
        assert "251201UNPAID00" not in shipments and "251103SPLIT2PK" in shipments

    def test_return_leg_is_a_second_shipment_the_forward_one_points_at(self, harvest):
        shipments = {r["shipment_id"]: r for r in harvest.tables["shipments"].to_pylist()}
        leg = shipments["OFG10000000000001:return"]
        assert (leg["service"], leg["carrier_code"]) == ("J&T Express Return (TH)", "j_t_express_return_th")
        assert orjson.loads(leg["extras"]) == {"leg": "return", "order_sn": "251103SPLIT2PK",
                                               "package_number": "OFG10000000000001"}
        forward = orjson.loads(shipments["OFG10000000000001"]["extras"])
        assert forward["reversed_tracking_number"] == leg["tracking_number"] == "JNTR0000000000771"
        assert "reversed_tracking_number" not in orjson.loads(shipments["OFG86672620092786"]["extras"])
        events = [e for e in harvest.tables["tracking_events"].to_pylist() if e["shipment_id"] == leg["shipment_id"]]
        assert {(e["carrier_code"], orjson.loads(e["extras"])["leg"]) for e in events} == {
            (leg["carrier_code"], "return")}


# --- signing (providers.md 1.2 vectors) ----------------------------------------------------------------

def test_shop_signature_vector():
    base = base_string(2001887, "/api/v2/shop/get_shop_info", 1655714431, "59777174636562737266615546704c6d", 14701711)
    assert base == "2001887/api/v2/shop/get_shop_info165571443159777174636562737266615546704c6d14701711"
    assert sign(KEY, base) == "e4d83657e2bce78547c380bce45181051b9c479ee9116bd52c2b4d2149dbf925"


def test_public_signature_vector():
    base = base_string(2001887, "/api/v2/auth/token/get", 1655714431)
    assert base == "2001887/api/v2/auth/token/get1655714431"
    assert sign(KEY, base) == "279ea310cc065743910a58e466257b114175560e6f5ddf63557961fad50d47cd"


# --- fakes ---------------------------------------------------------------------------------------------

def _reply(name: str, status: int = 200) -> httpx.Response:
    return httpx.Response(status, content=(FIXTURES / name).read_bytes(), headers={"content-type": "application/json"})


class FakeShopee:
    """Answers by path from a list of replies per path, recording every request."""

    def __init__(self, replies: dict[str, list[httpx.Response]]):
        self.replies = replies
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        queue = self.replies[request.url.path]
        return queue.pop(0) if len(queue) > 1 else queue[0]

    def paths(self) -> list[str]:
        return [r.url.path for r in self.requests]


def _api(fake: FakeShopee, tmp_path: Path, pair: TokenPair | None = None, clock=None, auth_code=None):
    def http_for(cls):
        return http_client(base_url="http://shopee.test", source="shopee/shop-880303", classify=cls,
                           transport=httpx.MockTransport(fake), sleep=lambda _s: None)

    store = TokenStore(tmp_path / "tokens", clock=clock or (lambda: datetime.now(UTC)))
    if pair is not None:
        store.save(PROVIDER, f"shop-{SHOP_ID}", pair)
    auth_api = ShopeeApi(http_for, PARTNER_ID, KEY, SHOP_ID)
    tokens = ShopTokens(store, auth_api, relink=RELINK, account=f"shop-{SHOP_ID}", shop_id=SHOP_ID, auth_code=auth_code)
    return ShopeeApi(http_for, PARTNER_ID, KEY, SHOP_ID, tokens), store


def _pair(access="old-access-token-0001", refresh="old-refresh-token-0001", expires_in=timedelta(hours=3)) -> TokenPair:
    now = datetime.now(UTC)
    return TokenPair(access, now + expires_in, refresh, now + timedelta(days=29), now)


# --- requests ------------------------------------------------------------------------------------------

def test_shop_call_signs_with_token_and_shop_in_the_query(tmp_path):
    fake = FakeShopee({"/api/v2/logistics/get_tracking_info": [_reply("tracking_info_seed.json")]})
    api, _ = _api(fake, tmp_path, _pair(access="access-abc-123"))
    api.tracking_info("210930KJDNF06T", None)
    q = dict(fake.requests[0].url.params)
    assert set(q) == {"order_sn", "partner_id", "timestamp", "access_token", "shop_id", "sign"}
    assert q["access_token"] == "access-abc-123" and q["shop_id"] == str(SHOP_ID)
    expected = sign(KEY, base_string(PARTNER_ID, "/api/v2/logistics/get_tracking_info", int(q["timestamp"]),
                                     "access-abc-123", SHOP_ID))
    assert q["sign"] == expected


def test_order_detail_asks_fifty_at_most_with_optional_fields(tmp_path):
    fake = FakeShopee({"/api/v2/order/get_order_detail": [_reply("order_detail.json")]})
    api, _ = _api(fake, tmp_path, _pair())
    api.order_detail([f"SN{i}" for i in range(50)])
    q = fake.requests[0].url.params
    assert len(q["order_sn_list"].split(",")) == 50
    assert {"item_list", "package_list", "pay_time", "total_amount", "recipient_address"} <= set(
        q["response_optional_fields"].split(","))
    with pytest.raises(ValueError):
        api.order_detail([f"SN{i}" for i in range(51)])


def test_forty_days_become_three_windows_of_a_little_under_fifteen_days():
    start = datetime(2025, 10, 1, tzinfo=UTC)
    slices = windows(start, start + timedelta(days=40))
    assert [b - a for a, b in slices] == [1_292_400, 1_292_400, 871_200]  # 15 days less an hour, twice
    assert slices[0][0] == int(start.timestamp()) and all(slices[i][1] == slices[i + 1][0] for i in range(2))


# --- the error envelope (providers.md 1.5) -------------------------------------------------------------

@pytest.mark.parametrize(("fixture", "status", "error", "words"), [
    ("error_rate_limit.json", 200, TransientError, "slow down"),
    ("error_auth.json", 403, AccessTokenRejected, "access token refused"),
    ("error_sign.json", 403, AuthError, "wrong sign"),
    ("error_stale_timestamp.json", 400, StaleTimestamp, "clock skew"),
    ("error_param.json", 400, TerminalError, "bad parameters"),
    ("error_package_number_needed.json", 200, NeedsPackageNumber, "package_number"),
    ("error_allocating.json", 200, SkipRecord, "next run"),
])
def test_envelope_becomes_a_typed_error_naming_endpoint_and_shop(fixture, status, error, words):
    response = _reply(fixture, status)
    response.request = httpx.Request("GET", "http://shopee.test/api/v2/order/get_order_detail")
    with pytest.raises(error) as caught:
        classify(response, shop="shop 880303")
    message = str(caught.value)
    assert words in message and "shop 880303" in message and "/api/v2/order/get_order_detail" in message


def test_success_envelope_and_foreign_bodies_pass():
    for response in (_reply("order_detail.json"), httpx.Response(503, text="<html>busy</html>")):
        response.request = httpx.Request("GET", "http://shopee.test/x")
        assert classify(response) is None


def test_not_found_names_are_matched_exactly_then_by_suffix():
    for name in ("error_not_found", "logistics.invalid_error", "common.error_not_found"):
        response = httpx.Response(200, json={"error": name, "message": "gone", "request_id": "r"})
        response.request = httpx.Request("GET", "http://shopee.test/x")
        with pytest.raises(NotFoundError):
            classify(response)


def test_rate_limit_envelope_is_retried_until_it_passes(tmp_path):
    fake = FakeShopee({"/api/v2/logistics/get_tracking_info": [
        _reply("error_rate_limit.json"), _reply("error_rate_limit.json"), _reply("tracking_info_seed.json")]})
    api, _ = _api(fake, tmp_path, _pair())
    body = orjson.loads(api.tracking_info("210930KJDNF06T", None))
    assert body["response"]["logistics_status"] == "LOGISTICS_DELIVERY_DONE" and len(fake.requests) == 3


def test_split_order_is_asked_again_with_its_package_number(tmp_path):
    fake = FakeShopee({"/api/v2/logistics/get_tracking_number": [
        _reply("error_package_number_needed.json"), _reply("tracking_number_split_1.json")]})
    api, _ = _api(fake, tmp_path, _pair())
    reply = api.tracking_number("251103SPLIT2PK", "OFG10000000000001", split=False)
    assert reply["tracking_number"] == "KEX000000000001"
    assert "package_number" not in fake.requests[0].url.params
    assert fake.requests[1].url.params["package_number"] == "OFG10000000000001"


def test_stale_timestamp_is_signed_again_once_then_reported_as_clock_skew(tmp_path):
    fake = FakeShopee({"/api/v2/order/get_order_detail": [_reply("error_stale_timestamp.json", 400)]})
    api, _ = _api(fake, tmp_path, _pair())
    with pytest.raises(AuthError, match="clock skew"):
        api.order_detail(["SN1"])
    assert len(fake.requests) == 2


# --- tokens (providers.md 1.3) -------------------------------------------------------------------------

def test_refused_access_token_is_refreshed_once_persisted_and_used(tmp_path):
    fake = FakeShopee({
        "/api/v2/order/get_order_detail": [_reply("error_auth.json", 403), _reply("order_detail.json")],
        "/api/v2/auth/access_token/get": [_reply("token_refresh.json")],
    })
    api, store = _api(fake, tmp_path, _pair())
    api.order_detail(["210930KJDNF06T"])
    assert fake.paths() == ["/api/v2/order/get_order_detail", "/api/v2/auth/access_token/get",
                            "/api/v2/order/get_order_detail"]
    assert orjson.loads(fake.requests[1].content) == {"refresh_token": "old-refresh-token-0001",
                                                      "partner_id": PARTNER_ID, "shop_id": SHOP_ID}
    stored = store.load(PROVIDER, f"shop-{SHOP_ID}")
    assert stored.refresh_token == "7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d"
    assert fake.requests[2].url.params["access_token"] == stored.access_token
    path = next((tmp_path / "tokens").glob("*.json"))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert timedelta(seconds=14370) < stored.access_expires_at - stored.obtained_at <= timedelta(seconds=14376)


def test_token_is_renewed_ahead_of_expiry(tmp_path):
    fake = FakeShopee({"/api/v2/auth/access_token/get": [_reply("token_refresh.json")],
                       "/api/v2/logistics/get_tracking_info": [_reply("tracking_info_seed.json")]})
    api, _ = _api(fake, tmp_path, _pair(expires_in=timedelta(minutes=5)))
    api.tracking_info("210930KJDNF06T", None)
    assert fake.paths() == ["/api/v2/auth/access_token/get", "/api/v2/logistics/get_tracking_info"]


def test_second_rejection_tells_the_user_to_link_the_shop_again(tmp_path):
    fake = FakeShopee({"/api/v2/order/get_order_detail": [_reply("error_auth.json", 403)],
                       "/api/v2/auth/access_token/get": [_reply("token_refresh.json")]})
    api, _ = _api(fake, tmp_path, _pair())
    with pytest.raises(AuthError, match=re.escape(RELINK)):
        api.order_detail(["SN1"])


def test_spent_refresh_token_names_the_shop_and_the_fix(tmp_path):
    fake = FakeShopee({"/api/v2/auth/access_token/get": [_reply("token_error_refresh_spent.json")]})
    api, _ = _api(fake, tmp_path, _pair(expires_in=timedelta(0)))
    with pytest.raises(AuthError) as caught:
        api.tracking_info("SN1", None)
    assert "shop 880303" in str(caught.value) and RELINK in str(caught.value)


def test_a_wrong_base_url_is_blamed_on_the_base_url_not_on_the_refresh_token(tmp_path):
    fake = FakeShopee({"/api/v2/auth/access_token/get": [httpx.Response(404, text="<html>no such page</html>")]})
    api, _ = _api(fake, tmp_path, _pair(expires_in=timedelta(0)))
    with pytest.raises(TerminalError) as caught:
        api.tracking_info("SN1", None)
    assert not isinstance(caught.value, AuthError)
    assert str(caught.value) == ("POST http://shopee.test/api/v2/auth/access_token/get answered HTTP 404 with no Shopee "
                                 "error body: Shopee is not there; check the source's base_url")


def test_unlinked_shop_uses_the_configured_code_once(tmp_path):
    fake = FakeShopee({"/api/v2/auth/token/get": [_reply("token_get.json")],
                       "/api/v2/logistics/get_tracking_info": [_reply("tracking_info_seed.json")]})
    api, store = _api(fake, tmp_path, auth_code="880101:other,880303:the-code")
    api.tracking_info("SN1", None)
    api.tracking_info("SN2", None)
    assert fake.paths().count("/api/v2/auth/token/get") == 1
    assert orjson.loads(fake.requests[0].content)["code"] == "the-code"
    assert store.load(PROVIDER, f"shop-{SHOP_ID}").access_token == "4a6b9c0d1e2f30415263748596a7b8c9"
    # The shop's code, one of the credential's pairs, is masked like a credential of its own.
    assert redact_text("Invalid code the-code") == "Invalid code ***"


def test_unlinked_shop_without_code_says_run_shipetl_auth(tmp_path):
    api, _ = _api(FakeShopee({}), tmp_path)
    with pytest.raises(AuthError, match=re.escape(f"shop 880303 is not linked yet; run: {RELINK}")):
        api.tracking_info("SN1", None)


def test_code_for_shop_and_pasted_redirects():
    assert code_for_shop("abc", 1) == "abc" and code_for_shop("1:a, 2:b", 2) == "b" and code_for_shop("1:a", 3) is None
    assert parse_redirect("https://x.test/cb?code=c0de&shop_id=880101") == ("c0de", 880101)
    assert parse_redirect("  c0de \n") == ("c0de", None)


# --- return legs (providers.md 1.4: reversed_* fields) ---------------------------------------------------

def _leg_reply(forward_newest: str = "RETURNED", number: str = "JNTR0000000000771", scans: bool = True) -> dict:
    """The fixture reply with a return leg; ``forward_newest`` RETURN_STARTED drops the RETURNED scan."""
    body = orjson.loads((FIXTURES / "tracking_info_return_leg.json").read_bytes())
    response = body["response"]
    if forward_newest == "RETURN_STARTED":
        response["tracking_info"] = response["tracking_info"][1:]
    response["reversed_tracking_number"] = number
    if not scans:
        response["reversed_tracking_info"] = []
    return body


def _mapped(tmp_path: Path, bodies: list[dict]) -> dict[str, list[dict]]:
    """Each reply as the tracking page of a package of its own (``P0``, ``P1``...), through the raw zone and the
    real transform."""
    registry = registry_from_modules({"shopee": shipetl_shopee})
    with RawZoneWriter(tmp_path / "raw", "shopee", "shopee", "unit-run", datetime(2025, 12, 20, tzinfo=UTC)) as raw:
        for n, body in enumerate(bodies):
            body["response"]["package_number"] = f"P{n}"
            reply = orjson.dumps(body)
            raw.write(Page("tracking", reply, {
                "order_sn": "251103SPLIT2PK", "package_number": f"P{n}", "split": False,
                "logistics_status": "LOGISTICS_DELIVERY_FAILED", "shipping_carrier": "Kerry Express",
                "carrier_code": carrier_code("Kerry Express"), "destination_country": "TH", "pickup_done_time": 0,
                "tracking_number": f"KEX{n}", "reversed_carrier_code": reversed_carrier_code(reply)}))
        files = raw.close()
    result = TestShopeeContract._transform(registry, ShopeeProvider, files, "unit-run")
    try:
        tables = {}
        for name in ("shipments", "tracking_events"):
            staged = result.con.sql(f"SELECT * FROM {staged_table(name)}")
            tables[name] = [dict(zip(staged.columns, values)) for values in staged.fetchall()]
        return tables
    finally:
        result.con.close()


@pytest.mark.parametrize(("reply", "status", "final", "last_event"), [
    (_leg_reply(), "returned", True, "2025-11-07 22:00:00"),
    (_leg_reply("RETURN_STARTED"), "in_transit", False, "2025-11-07 22:00:00"),
    (_leg_reply("RETURN_STARTED", scans=False), "info_received", False, None),
    (_leg_reply(scans=False), "returned", True, None),
], ids=["forward-returned", "forward-returning", "number-only", "returned-number-only"])
def test_return_leg_status_follows_the_forward_leg_and_every_reverse_scan_is_in_transit(tmp_path, reply, status,
                                                                                        final, last_event):
    tables = _mapped(tmp_path, [reply])
    legs = [r for r in tables["shipments"] if r["shipment_id"] == "P0:return"]
    assert [(r["status"], r["status_raw"], r["is_final"], r["tracking_number"]) for r in legs] == [
        (status, None, final, "JNTR0000000000771")]
    assert (legs[0]["last_event_at"] and f"{legs[0]['last_event_at']:%Y-%m-%d %H:%M:%S}") == last_event
    scans = [e for e in tables["tracking_events"] if e["shipment_id"] == "P0:return"]
    assert len(scans) == len(reply["response"]["reversed_tracking_info"])
    assert {(e["status"], e["status_raw"], e["tracking_number"]) for e in scans} <= {
        ("in_transit", None, "JNTR0000000000771")}
    forward = next(r for r in tables["shipments"] if r["shipment_id"] == "P0")
    assert forward["status_raw"] == reply["response"]["tracking_info"][0]["logistics_status"]


def test_only_a_reverse_number_or_reverse_scans_make_a_return_leg(tmp_path):
    empty = _leg_reply(number="", scans=False)
    empty["response"]["reversed_courier_name"] = ""
    absent = _leg_reply()
    for name in ("reversed_tracking_number", "reversed_courier_name", "reversed_tracking_info"):
        del absent["response"][name]
    tables = _mapped(tmp_path, [empty, absent, _leg_reply(number="")])
    assert sorted(r["shipment_id"] for r in tables["shipments"]) == ["P0", "P1", "P2", "P2:return"]
    # Without a return leg the forward extras are what they were before return legs existed.
    extras = {r["shipment_id"]: r["extras"] for r in tables["shipments"]}
    assert extras["P0"] == extras["P1"].replace("P1", "P0") == (
        '{"order_sn":"251103SPLIT2PK","package_number":"P0","split":false,'
        '"package_logistics_status":"LOGISTICS_DELIVERY_FAILED"}')
    # No return number yet: the scans are keyed by the leg's shipment id.
    scans = [e for e in tables["tracking_events"] if e["shipment_id"] == "P2:return"]
    assert len(scans) == 3 and {e["tracking_number"] for e in scans} == {None}
    assert len({e["event_id"] for e in scans}) == 3


def test_a_reverse_scan_keeps_its_event_id_when_the_return_number_comes(tmp_path):
    before = _mapped(tmp_path / "before", [_leg_reply(number="")])["tracking_events"]
    after = _mapped(tmp_path / "after", [_leg_reply()])["tracking_events"]
    legs = [sorted((e["event_id"], e["tracking_number"]) for e in scans if e["shipment_id"] == "P0:return")
            for scans in (before, after)]
    assert len(legs[0]) == 3 and {n for _, n in legs[0]} == {None} and {n for _, n in legs[1]} == {"JNTR0000000000771"}
    assert [i for i, _ in legs[0]] == [i for i, _ in legs[1]]
    # Core's own id for a scan without a number, so scans loaded before this rule keep theirs too.
    assert {e["event_id"] for e in before if e["shipment_id"] == "P0:return"} == {
        keys.event_id("shopee", "P0:return", e["occurred_at"], None, e["description"])
        for e in before if e["shipment_id"] == "P0:return"}


class _Warehouse(ContractContext):
    """A contract context whose ``query`` reads a DuckDB ``shipments_latest`` table, as a committed warehouse would."""

    def __init__(self, con, **kwargs):
        super().__init__(**kwargs)
        self.con = con

    def query(self, sql, params=None):
        return self.con.execute(sql, params or []).fetchall()


def test_return_legs_are_never_polled_themselves_but_keep_their_forward_package_polled(tmp_path):
    columns = ("shipment_id", "order_id", "tracking_number", "service", "carrier_code", "destination_country",
               "shipped_at", "extras")

    def row(shipment_id: str, final: bool) -> dict:
        package = shipment_id.removesuffix(":return")
        return {"shipment_id": shipment_id, "order_id": f"SN-{package}", "tracking_number": f"TN-{package}",
                "service": "Kerry Express", "carrier_code": "kerry_express", "destination_country": "TH",
                "shipped_at": datetime(2025, 11, 3, 20, tzinfo=UTC), "is_final": final,
                "extras": orjson.dumps({"order_sn": f"SN-{package}", "package_number": package, "split": True,
                                        "package_logistics_status": "LOGISTICS_DELIVERY_FAILED"}).decode()}

    # A: forward and leg open. B: forward final, leg open. C: both final. D: final, no leg.
    latest = [row("A", False), row("A:return", False), row("B", True), row("B:return", False), row("C", True),
              row("C:return", True), row("D", True)]
    con = duckdb.connect()
    con.execute("CREATE TABLE shipments_latest (provider VARCHAR, account_id VARCHAR, shipment_id VARCHAR, "
                "order_id VARCHAR, tracking_number VARCHAR, service VARCHAR, carrier_code VARCHAR, "
                "destination_country VARCHAR, shipped_at TIMESTAMPTZ, extras VARCHAR, is_final BOOLEAN)")
    for r in latest:
        con.execute("INSERT INTO shipments_latest VALUES ('shopee', 'shop-880303', ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [*(r[c] for c in columns), r["is_final"]])
    transport = FixtureTransport("http://shopee.test", FIXTURES, {
        "POST /api/v2/auth/token/get": "token_get.json",
        "GET /api/v2/logistics/get_tracking_info": "tracking_info_return_leg.json"})
    until = datetime(2025, 12, 20, tzinfo=UTC)
    options = ShopeeOptions(partner_id=PARTNER_ID, shop_ids=[SHOP_ID], poll_concurrency=2)
    ctx = _Warehouse(con, provider_cls=ShopeeProvider, options=options, base_url="http://shopee.test",
                     transport=transport, credentials={"partner_key": KEY, "auth_code": "c0de"}, first_since=until,
                     until=until, tmp=tmp_path, timezone_name=None,
                     open_shipments=[r for r in latest if not r["is_final"]])
    ctx.account_id = f"shop-{SHOP_ID}"
    pages = list(ShopeeProvider("shopee", options).extract(ctx))
    asked = sorted(r.url.params["package_number"] for r in transport.requests
                   if r.url.path == "/api/v2/logistics/get_tracking_info")
    assert asked == ["A", "B"] and not transport.unmatched
    polled = {p.meta["package_number"]: p.meta for p in pages}
    assert polled["B"]["tracking_number"] == "TN-B" and polled["B"]["order_sn"] == "SN-B" and polled["B"]["split"]
    assert polled["B"]["reversed_carrier_code"] == "j_t_express_return_th"


# --- one package or batch failing for now is not the whole night ------------------------------------------------

class RunCtx(RunBookkeeping):
    """An ExtractContext for ``extract.pages`` of one shop, with the cursors and open shipments of a prior run."""

    def __init__(self, cursors=None, open_shipments=None, max_open_polls=None) -> None:
        self.account_id, self.until = f"shop-{SHOP_ID}", datetime(2025, 12, 20, tzinfo=UTC)
        self.max_open_polls = max_open_polls
        self.log = structlog.get_logger()
        self.counters: Counter = Counter()
        self.unheard: set[str] = set()
        self._cursors, self.new_cursors, self._open = dict(cursors or {}), {}, open_shipments or []

    def window(self, key: str) -> tuple[datetime, datetime]:
        return self.until - timedelta(days=1), self.until

    def query(self, sql, params=None) -> list[tuple]:
        return []


def order_sns(n: int) -> list[str]:
    return [f"251219UNIT{i:04d}" for i in range(n)]


class FakeShop:
    """A shop listing ``listed``, one package per order (``P-<order_sn>``). Calls in ``down`` answer a failure:
    ``("detail", sn)`` fails the detail batch holding ``sn``, ``("tracking", sn)`` the order's tracking number;
    ``500`` is an HTTP 500, ``denied`` Shopee's ``error_permission``. ``all_down`` fails every tracking call."""

    def __init__(self, listed: list[str] | dict[int, list[str]], down: dict[tuple[str, str], str] | None = None,
                 all_down: bool = False):
        self.listed, self.down, self.all_down = listed, down or {}, all_down  # listed: by time_from, or in every slice
        self.asked: Counter = Counter()
        self.list_params: list[dict[str, str]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path, params = request.url.path.rsplit("/", 1)[1], request.url.params
        if path == "get_order_list":
            self.list_params.append(dict(params))
            listed = self.listed[int(params["time_from"])] if isinstance(self.listed, dict) else self.listed
            return httpx.Response(200, json={"error": "", "response": {
                "order_list": [{"order_sn": sn} for sn in listed], "more": False}})
        if path == "get_order_detail":
            batch = params["order_sn_list"].split(",")
            failure = next((self.down[("detail", sn)] for sn in batch if ("detail", sn) in self.down), None)
            self.asked[("detail", batch[0])] += 1
            package = {"shipping_carrier": "SPX", "logistics_status": "LOGISTICS_READY"}
            return self._failed(failure) if failure else httpx.Response(200, json={"error": "", "response": {
                "order_list": [{"order_sn": sn, "package_list": [{**package, "package_number": f"P-{sn}"}]}
                               for sn in batch]}})
        sn = params["order_sn"]
        call = ("tracking" if path == "get_tracking_number" else "info", sn)
        self.asked[call] += 1
        failure = "500" if self.all_down else self.down.get(call)
        if failure:
            return self._failed(failure)
        if path == "get_tracking_number":
            return httpx.Response(200, json={"error": "", "response": {"tracking_number": f"TN-{sn}"}})
        return httpx.Response(200, json={"error": "", "response": {
            "order_sn": sn, "package_number": params.get("package_number"), "logistics_status": "LOGISTICS_READY",
            "tracking_info": []}})

    @staticmethod
    def _failed(kind: str) -> httpx.Response:
        if kind == "denied":
            return httpx.Response(403, json={"error": "error_permission", "message": "no", "request_id": "r"})
        return httpx.Response(500, text="Internal Server Error")


def shop_pages(tmp_path: Path, fake: FakeShop, ctx: RunCtx) -> list[Page]:
    api, _ = _api(fake, tmp_path, _pair())
    return list(extract.pages(ctx, api, 100, 4))


def tracked(pages: list[Page]) -> list[str]:
    return [p.meta["order_sn"] for p in pages if p.stream == "tracking"]


def test_the_order_list_asks_for_pending_orders_too(tmp_path):
    fake = FakeShop(order_sns(2))
    shop_pages(tmp_path, fake, RunCtx())
    assert fake.list_params and all(p["request_order_status_pending"] == "true" for p in fake.list_params)


def test_a_package_failing_after_retries_is_skipped_counted_and_polled_next_run(tmp_path):
    sns = order_sns(30)
    fake = FakeShop(sns, {("tracking", sns[7]): "500"})
    ctx = RunCtx()
    with capture_logs() as logs:
        assert tracked(shop_pages(tmp_path, fake, ctx)) == [sn for sn in sns if sn != sns[7]]
    assert fake.asked[("tracking", sns[7])] == 6  # core's retries first (max_retries 5)
    assert ctx.counters == Counter({"tracking_poll_failed": 1})
    (warned,) = [e for e in logs if e["event"] == "tracking_poll_failed"]
    assert (warned["order_sn"], warned["package_number"]) == (sns[7], f"P-{sns[7]}") and "HTTP 500" in warned["error"]
    assert [m["package_number"] for m in ctx.new_cursors[extract.RETRY_CURSOR]] == [f"P-{sns[7]}"]
    assert ctx.new_cursors[extract.CURSOR] == ctx.until.isoformat()  # the window is done: the cursor moves on

    # Next run: the order is not listed again (not updated since), but the cursor remembers its package.
    again = RunCtx(cursors=ctx.new_cursors)
    pages = shop_pages(tmp_path, FakeShop([]), again)
    assert tracked(pages) == [sns[7]] and pages[-1].meta["tracking_number"] == f"TN-{sns[7]}"
    assert again.new_cursors[extract.RETRY_CURSOR] == [] and not again.counters


def test_an_open_package_failing_is_left_to_the_warehouse_not_the_retry_cursor(tmp_path):
    row = {"shipment_id": "P-OPEN", "order_id": "OPEN", "tracking_number": "TN-OPEN", "extras": None}
    ctx = RunCtx(open_shipments=[row])
    pages = shop_pages(tmp_path, FakeShop(order_sns(3), {("info", "OPEN"): "500"}), ctx)
    assert len(tracked(pages)) == 3 and ctx.counters == Counter({"tracking_poll_failed": 1})
    assert ctx.new_cursors[extract.RETRY_CURSOR] == []
    assert ctx.unheard == {"P-OPEN", "P-OPEN:return"}  # the package and its return leg: not expired by this run


def test_open_packages_not_listed_again_take_turns_under_max_open_polls(tmp_path):
    rows = [{"shipment_id": f"P-OPEN{i}", "order_id": f"OPEN{i}", "tracking_number": f"TN-OPEN{i}", "extras": None}
            for i in range(9)]
    listed = order_sns(2)
    cursors: dict = {}
    runs = []
    for _ in range(3):
        ctx = RunCtx(cursors=cursors, open_shipments=rows, max_open_polls=3)
        polled = tracked(shop_pages(tmp_path, FakeShop(listed), ctx))
        assert polled[:2] == listed and len(polled) == 5  # the orders updated in the window, then three open
        assert ctx.counters["open_polls_deferred"] == 6
        runs.append(set(polled[2:]))
        cursors = {**cursors, **ctx.new_cursors}
    assert set.union(*runs) == {row["order_id"] for row in rows} and sum(map(len, runs)) == 9


def test_packages_left_to_retry_are_always_polled_and_never_dropped_under_max_open_polls(tmp_path):
    sns = order_sns(4)
    failed = RunCtx()
    shop_pages(tmp_path, FakeShop(sns, {("tracking", sns[1]): "500", ("tracking", sns[2]): "500"}), failed)
    retry = failed.new_cursors[extract.RETRY_CURSOR]
    assert [m["order_sn"] for m in retry] == sns[1:3]
    rows = [{"shipment_id": f"P-OPEN{i}", "order_id": f"OPEN{i}", "tracking_number": f"TN-OPEN{i}", "extras": None}
            for i in range(5)]
    # Next run: neither order listed again, five open packages in the warehouse, one poll of them allowed.
    ctx = RunCtx(cursors={extract.RETRY_CURSOR: retry}, open_shipments=rows, max_open_polls=1)
    polled = tracked(shop_pages(tmp_path, FakeShop([]), ctx))
    assert sorted(polled[:2]) == sns[1:3] and len(polled) == 3  # both retries, then one open package's turn
    assert ctx.counters["open_polls_deferred"] == 4 and ctx.new_cursors[extract.RETRY_CURSOR] == []


def test_a_failing_order_detail_batch_is_skipped_counted_and_fetched_next_run(tmp_path):
    sns = order_sns(60)  # two batches: 50 and 10
    ctx = RunCtx()
    pages = shop_pages(tmp_path, FakeShop(sns, {("detail", sns[55]): "500"}), ctx)
    assert [p.stream for p in pages].count("order_detail") == 1 and tracked(pages) == sns[:50]
    assert ctx.counters == Counter({"order_poll_failed": 10})
    assert ctx.new_cursors[extract.ORDERS_RETRY_CURSOR] == sns[50:]

    again = RunCtx(cursors=ctx.new_cursors)
    pages = shop_pages(tmp_path, FakeShop([]), again)
    assert [p.stream for p in pages].count("order_detail") == 1 and tracked(pages) == sns[50:]
    assert again.new_cursors[extract.ORDERS_RETRY_CURSOR] == [] and not again.counters


def test_each_slice_fetched_whole_is_a_checkpoint_a_stopped_run_goes_on_from(tmp_path):
    ctx = RunCtx()
    since = ctx.until - timedelta(days=20)
    ctx.window = lambda key: (since, ctx.until)
    (_, first_end), (second_start, _) = extract.windows(since, ctx.until)  # 15 days, then 5
    sns = order_sns(30)
    fake = FakeShop({int(since.timestamp()): sns[:15], second_start: sns[15:]},
                    {("tracking", sns[3]): "500"})
    api, _ = _api(fake, tmp_path, _pair())
    pages = extract.pages(ctx, api, 100, 4)
    for page in pages:  # stopped in the second slice's packages, as Ctrl-C stops a run
        if page.stream == "tracking" and page.meta["order_sn"] == sns[20]:
            break
    pages.close()
    # The first slice is done: the cursor at its end, its package that failed kept for the next run.
    assert ctx.checkpointed[extract.CURSOR] == datetime.fromtimestamp(first_end, UTC).isoformat()
    assert ctx.checkpointed[extract.ORDERS_RETRY_CURSOR] == []
    assert [m["package_number"] for m in ctx.checkpointed[extract.RETRY_CURSOR]] == [f"P-{sns[3]}"]


def test_most_packages_failing_fails_the_shop_with_one_line(tmp_path):
    fake = FakeShop(order_sns(200), all_down=True)
    ctx = RunCtx()
    with pytest.raises(TransientError) as caught:
        shop_pages(tmp_path, fake, ctx)
    message = str(caught.value)
    assert re.match(r"Shopee looks down: \d+ of the first 20 polls still failed", message)
    assert "\n" not in message and KEY not in message
    assert len([c for c in fake.asked if c[0] == "tracking"]) < 60
    assert extract.CURSOR not in ctx.new_cursors and extract.CURSOR not in (ctx.checkpointed or {})


def test_a_permission_error_still_fails_the_shop_at_once(tmp_path):
    sns = order_sns(100)
    fake = FakeShop(sns, {("tracking", sns[0]): "500", ("tracking", sns[5]): "denied"})
    ctx = RunCtx()
    with pytest.raises(AuthError, match="permission refused"):
        shop_pages(tmp_path, fake, ctx)
    assert fake.asked[("tracking", sns[5])] == 1 and ctx.counters == Counter({"tracking_poll_failed": 1})
