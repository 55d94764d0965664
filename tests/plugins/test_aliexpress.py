"""AliExpress plugin: the shared contract, signing, both error layers, tokens, order id sources, and the SQL
mapping of real shapes."""

from __future__ import annotations

import json
import os
import stat
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import duckdb
import httpx
import orjson
import pytest
from structlog.testing import capture_logs

import shipetl_aliexpress
from shipetl import AuthError, ConfigError, NotFoundError, Page, TerminalError, TokenPair, TokenStore, TransientError, http_client
from shipetl import transform
from shipetl.context import RunBookkeeping
from shipetl.log import get_logger
from shipetl.rawzone import RawZoneWriter
from shipetl.testing import ErrorFixture, ProviderContract
from shipetl_aliexpress import client as ae_client
from shipetl_aliexpress import extract, provider, sandbox, statuses
from shipetl_aliexpress.client import AliExpressClient, SessionRejected, ban_seconds, classify, gateway_error, sign

FIXTURES = Path(provider.__file__).parent / "fixtures"
SECRET = sandbox.APP_SECRET
APP_KEY = sandbox.APP_KEY


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


class FakeContext(RunBookkeeping):
    """Just enough of ExtractContext: HTTP through a transport (mock or loopback), a real TokenStore; core's cursors."""

    def __init__(self, tmp_path: Path, *, transport: httpx.BaseTransport | None = None, base_url: str = "http://ae.test",
                 secrets: dict[str, str] | None = None, open_shipments: list[dict[str, Any]] | None = None,
                 rows: dict[str, list[tuple]] | None = None, cursors: dict[str, Any] | None = None,
                 max_open_polls: int | None = None) -> None:
        self.source_name, self.account_id = "ae", "seller-1"
        self._cursors, self.new_cursors, self.max_open_polls = dict(cursors or {}), {}, max_open_polls
        self.tokens = TokenStore(tmp_path / "tokens")
        self.log = get_logger()
        self.counters: Counter[str] = Counter()
        self.unheard: set[str] = set()
        self._transport, self._base_url = transport, base_url
        self._secrets = {"app_secret": SECRET, "auth_code": sandbox.AUTH_CODE} if secrets is None else secrets
        self._open = open_shipments or []
        self._rows = rows or {}

    def http(self, *, rate_limit_key: str | None = None, **overrides: Any):
        self.rate_limit_key = rate_limit_key  # the limiter a real context would share (no waiting here)
        return http_client(base_url=self._base_url, source="ae/seller-1", transport=self._transport,
                           sleep=lambda s: None, **overrides)

    def secret(self, name: str) -> str:
        if name not in self._secrets:
            raise ConfigError(f"credentials.{name}: missing")
        return self._secrets[name]

    def query(self, sql: str, params: list[Any] | None = None) -> list[tuple]:
        return next((rows for key, rows in self._rows.items() if key in sql), [])


def form_of(request: httpx.Request) -> dict[str, str]:
    return dict(parse_qsl(request.content.decode()))


# --- the shared contract, over captured-shape fixtures ----------------------------------------------

SEED_ORDER, AWKWARD_ORDER = "8190000000000001", "8190000000000002"
SEED_PARCEL = "4209795192144903600008220012159992"
TRACKING_ROUTE = f"POST /sync?method={ae_client.TRACKING_GET}&ae_order_id="


class TestAliExpressContract(ProviderContract):
    """Every call is a form POST to one path: the routes tell them apart by the form's ``method`` and ids."""

    plugin = shipetl_aliexpress
    fixtures = FIXTURES
    options = {"app_key": APP_KEY, "order_ids": [SEED_ORDER, AWKWARD_ORDER]}
    routes = {
        "POST /rest/auth/token/create": "token_create.json",
        f"POST /sync?method={ae_client.ORDER_GET}": "order_get.json",
        TRACKING_ROUTE + SEED_ORDER: "tracking_seed_sample.json",
        TRACKING_ROUTE + AWKWARD_ORDER: "tracking_awkward_shapes.json",
    }
    # Core hands a run the parcels still open; the failed order's open parcel is the one named.
    open_shipments = [{"shipment_id": SEED_PARCEL, "tracking_number": SEED_PARCEL, "order_id": SEED_ORDER}]
    failing_poll = (TRACKING_ROUTE + SEED_ORDER, SEED_PARCEL)
    errors = {"auth": ErrorFixture(200, "error_incomplete_signature.json"),
              "rate_limit": ErrorFixture(200, "error_api_call_limit.json"),
              "bad_input": ErrorFixture(200, "error_insufficient_permission.json")}


# The meta the extractor puts beside each tracking fixture (its order's logistics_status comes from order.get).
TRACKING_META = {
    "tracking_seed_sample": {"order_id": SEED_ORDER, "logistics_status": "SELLER_SEND_GOODS",
                             "unmatched_node_status": "in_transit"},
    "tracking_awkward_shapes": {"order_id": AWKWARD_ORDER, "logistics_status": "SELLER_SEND_PART_GOODS",
                                "unmatched_node_status": "in_transit"},
}
AWKWARD_META = TRACKING_META["tracking_awkward_shapes"]


def expected_rows(table: str, order_id: str) -> list[dict[str, Any]]:
    """One order's rows of the contract's ``expected_<table>.json`` (scans by the order's parcels)."""
    rows = json.loads(fixture(f"expected_{table}.json"))
    if table == "tracking_events":
        parcels = {s["shipment_id"] for s in expected_rows("shipments", order_id)}
        return [r for r in rows if r["shipment_id"] in parcels]
    return [r for r in rows if r["order_id"] == order_id]


# --- signing -------------------------------------------------------------------------------------

VECTOR_PARAMS = {"access_token": "test", "app_key": "123456", "order_id": "1234", "sign_method": "sha256",
                 "timestamp": "1517820392000"}


def test_signature_reproduces_the_documented_vector_with_api_path() -> None:
    assert sign(VECTOR_PARAMS, "helloworld", "/order/get") == \
        "4190D32361CFB9581350222F345CB77F3B19F0E31D162316848A2C1FFD5FAB4A"


def test_signature_without_prefix_is_the_sync_form() -> None:
    assert sign(VECTOR_PARAMS, "helloworld") == "3B474B29F7DA7DB12014B44655CC5FD021B222CAD26E08F9269B802CFDB91651"


def test_signature_ignores_sign_and_empty_values_and_sorts_by_byte_order() -> None:
    shuffled = dict(reversed(list(VECTOR_PARAMS.items())))
    with_noise = {**shuffled, "sign": "ABC", "simplify": ""}
    assert sign(with_noise, "helloworld") == sign(VECTOR_PARAMS, "helloworld")
    # Byte order puts "Z" before "a": a case-insensitive sort would give another signature.
    assert sign({"a": "1", "Z": "2"}, "k") != sign({"a": "1", "z": "2"}, "k")


def test_client_signs_sync_calls_without_prefix_and_token_calls_with_it(tmp_path: Path) -> None:
    seen: list[tuple[str, dict[str, str]]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        form = form_of(request)
        seen.append((request.url.path, form))
        if request.url.path.startswith("/rest"):
            return httpx.Response(200, content=fixture("token_create.json"))
        return httpx.Response(200, content=fixture("tracking_seed_sample.json"))

    ctx = FakeContext(tmp_path, transport=httpx.MockTransport(handler))
    reply = AliExpressClient(ctx, app_key=APP_KEY).tracking("8190000000000001")
    assert reply.result["ret"] is True
    assert ctx.rate_limit_key == f"aliexpress/app-{APP_KEY}"  # the app key's quota, whichever seller asks
    (token_path, token_form), (sync_path, sync_form) = seen
    assert token_path == "/rest/auth/token/create" and token_form["code"] == sandbox.AUTH_CODE
    assert token_form["sign"] == sandbox.expected_sign(token_form, "/auth/token/create")
    assert sync_path == "/sync" and sync_form["method"] == "aliexpress.ds.order.tracking.get"
    assert sync_form["sign"] == sandbox.expected_sign(sync_form)
    assert sync_form["session"] == "50000600a07xQ2sandboxAccessToken" and sync_form["language"] == "en_US"
    assert len(sync_form["timestamp"]) == 13 and sync_form["sign_method"] == "sha256"


# --- errors --------------------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "kind", "words"), [
    ("error_api_call_limit.json", TransientError, "ApiCallLimit"),
    ("error_incomplete_signature.json", AuthError, "credentials.app_secret"),
    ("error_insufficient_permission.json", TerminalError, "permission"),
    ("error_isp_busy.json", TransientError, "ServiceUnavailable"),
    ("error_illegal_access_token.json", SessionRejected, "access token"),
    ("token_error_flat.json", AuthError, "credentials.app_secret"),
])
def test_gateway_errors_become_typed_errors(name: str, kind: type, words: str) -> None:
    with pytest.raises(kind) as caught:
        classify(httpx.Response(200, content=fixture(name)))
    assert words in str(caught.value)
    if name == "error_insufficient_permission.json":  # type ISP, but sub_code wins: never retried
        assert not isinstance(caught.value, TransientError)


def test_call_limit_waits_the_seconds_the_message_names_else_one() -> None:
    assert gateway_error(orjson.loads(fixture("error_api_call_limit.json"))["error_response"]).retry_after == 2.0
    assert gateway_error(orjson.loads(fixture("error_api_call_limit_no_seconds.json"))["error_response"]).retry_after == 1.0
    assert ban_seconds("This ban will last for 0.5 more seconds") == 0.5


def test_success_with_error_words_is_still_success() -> None:
    classify(httpx.Response(200, content=fixture("tracking_awkward_shapes.json")))  # ret: true beside "error code"
    classify(httpx.Response(200, content=fixture("token_create.json")))  # flat success, code "0"


def test_business_miss_is_not_found_and_throttle_is_retried(tmp_path: Path) -> None:
    replies = iter([fixture("error_api_call_limit_no_seconds.json"), fixture("tracking_not_found.json")])
    ctx = FakeContext(tmp_path, transport=httpx.MockTransport(lambda r: httpx.Response(200, content=next(replies))))
    ctx.tokens.save("aliexpress", "seller-1", TokenPair("stored-access-token", datetime.now(UTC) + timedelta(days=1)))
    with pytest.raises(NotFoundError, match="TRACKING DATA NOT FOUND"):
        AliExpressClient(ctx, app_key=APP_KEY).tracking("8190000000000009")


# --- tokens --------------------------------------------------------------------------------------

def test_token_created_from_auth_code_is_persisted_privately_with_reply_lifetimes(tmp_path: Path) -> None:
    ctx = FakeContext(tmp_path, transport=httpx.MockTransport(lambda r: httpx.Response(200, content=fixture("token_create.json"))))
    before = datetime.now(UTC)
    assert AliExpressClient(ctx, app_key=APP_KEY).session() == "50000600a07xQ2sandboxAccessToken"
    pair = ctx.tokens.load("aliexpress", "seller-1")
    assert pair.refresh_token == "50001600a07xQ2sandboxRefreshToken" and pair.extra["seller_id"] == "2000100200"
    assert timedelta(hours=23, minutes=59) < pair.access_expires_at - before < timedelta(hours=24, minutes=1)
    assert timedelta(hours=47, minutes=59) < pair.refresh_expires_at - before < timedelta(hours=48, minutes=1)
    files = list((tmp_path / "tokens").glob("*.json"))
    assert len(files) == 1 and stat.S_IMODE(os.stat(files[0]).st_mode) == 0o600


def test_token_close_to_expiry_is_refreshed_with_its_refresh_token(tmp_path: Path) -> None:
    forms: list[tuple[str, dict[str, str]]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        forms.append((request.url.path, form_of(request)))
        return httpx.Response(200, content=fixture("token_create.json"))

    ctx = FakeContext(tmp_path, transport=httpx.MockTransport(handler), secrets={"app_secret": SECRET})
    now = datetime.now(UTC)
    ctx.tokens.save("aliexpress", "seller-1", TokenPair("old-access", now + timedelta(minutes=2), "old-refresh",
                                                        now + timedelta(days=1)))
    assert AliExpressClient(ctx, app_key=APP_KEY).session() == "50000600a07xQ2sandboxAccessToken"
    path, form = forms[0]
    assert path == "/rest/auth/token/refresh" and form["refresh_token"] == "old-refresh"
    assert form["sign"] == sandbox.expected_sign(form, "/auth/token/refresh")


REFRESH_REFUSED = b'{"type": "ISV", "code": "IllegalRefreshToken", "message": "The refresh token is invalid or expired"}'


def _stored_pair_near_expiry(ctx) -> None:
    now = datetime.now(UTC)
    ctx.tokens.save("aliexpress", "seller-1", TokenPair("old-access", now + timedelta(minutes=2), "old-refresh",
                                                        now + timedelta(days=1)))


def test_a_refused_refresh_token_is_replaced_from_the_auth_code(tmp_path: Path) -> None:
    paths: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.path)
        refused = request.url.path.endswith("/refresh")
        return httpx.Response(200, content=REFRESH_REFUSED if refused else fixture("token_create.json"))

    ctx = FakeContext(tmp_path, transport=httpx.MockTransport(handler))
    _stored_pair_near_expiry(ctx)
    assert AliExpressClient(ctx, app_key=APP_KEY).session() == "50000600a07xQ2sandboxAccessToken"
    assert paths == ["/rest/auth/token/refresh", "/rest/auth/token/create"]
    assert ctx.tokens.load("aliexpress", "seller-1").refresh_token == "50001600a07xQ2sandboxRefreshToken"


def test_a_refused_refresh_token_without_auth_code_says_to_authorize_again(tmp_path: Path) -> None:
    ctx = FakeContext(tmp_path, transport=httpx.MockTransport(lambda r: httpx.Response(200, content=REFRESH_REFUSED)),
                      secrets={"app_secret": SECRET})
    _stored_pair_near_expiry(ctx)
    with pytest.raises(AuthError) as caught:
        AliExpressClient(ctx, app_key=APP_KEY).session()
    assert str(caught.value) == ("source ae/seller-1: the stored refresh token was refused and no credentials.auth_code; "
                                 "authorize the app for this seller again and put the new code in credentials.auth_code "
                                 "(a code is single-use and short-lived)")


def test_no_token_and_no_auth_code_names_the_missing_credential(tmp_path: Path) -> None:
    ctx = FakeContext(tmp_path, transport=httpx.MockTransport(lambda r: httpx.Response(500)), secrets={"app_secret": SECRET})
    with pytest.raises(AuthError, match="credentials.auth_code"):
        AliExpressClient(ctx, app_key=APP_KEY).session()


def test_rejected_session_is_refreshed_once_then_the_call_retried(tmp_path: Path) -> None:
    sessions: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        form = form_of(request)
        if request.url.path.startswith("/rest"):
            return httpx.Response(200, content=fixture("token_create.json"))
        sessions.append(form["session"])
        if form["session"] == "revoked-access":
            return httpx.Response(200, content=fixture("error_illegal_access_token.json"))
        return httpx.Response(200, content=fixture("tracking_seed_sample.json"))

    ctx = FakeContext(tmp_path, transport=httpx.MockTransport(handler))
    now = datetime.now(UTC)
    ctx.tokens.save("aliexpress", "seller-1", TokenPair("revoked-access", now + timedelta(days=1), "rt-1", now + timedelta(days=2)))
    AliExpressClient(ctx, app_key=APP_KEY).tracking("8190000000000001")
    assert sessions == ["revoked-access", "50000600a07xQ2sandboxAccessToken"]


# --- order ids -----------------------------------------------------------------------------------

def options(**kw) -> provider.AliExpressOptions:
    return provider.AliExpressOptions(app_key=APP_KEY, **kw)


def test_options_need_some_source_of_order_ids() -> None:
    with pytest.raises(ValueError, match="order_ids, order_ids_file or order_ids_sql"):
        provider.AliExpressOptions(app_key=APP_KEY)
    assert options(order_ids=[8190000000000001]).order_ids == ["8190000000000001"]


def test_order_ids_from_list_file_csv_and_sql_without_repeats(tmp_path: Path) -> None:
    lines = tmp_path / "ids.txt"
    # Not ids: a word, a number too large for the API's 64-bit order_id, a digit that is not ASCII, zero.
    lines.write_text("# placed this week\n8190000000000002\n\n 8190000000000003 \nnot-an-id\n"
                     "99999999999999999999999\n\u00b2\n0\n")
    table = tmp_path / "ids.csv"
    table.write_text("shop,ae_order_id\nA,8190000000000004\nB,8190000000000002\n")
    ctx = FakeContext(tmp_path, rows={"FROM my_orders": [("8190000000000005",), (None,)]})
    assert extract.configured_ids(ctx, options(order_ids=["8190000000000001"], order_ids_file=lines)) == [
        "8190000000000001", "8190000000000002", "8190000000000003"]
    assert ctx.counters["bad_order_ids"] == 4
    got = extract.configured_ids(ctx, options(order_ids_file=table, order_ids_column="ae_order_id",
                                              order_ids_sql="SELECT id FROM my_orders"))
    assert got == ["8190000000000004", "8190000000000002", "8190000000000005"]
    with pytest.raises(ConfigError, match="no column 'order'"):
        extract.ids_from_file(table, "order")


def test_finished_orders_are_skipped_unless_a_parcel_is_still_open(tmp_path: Path) -> None:
    ctx = FakeContext(tmp_path, open_shipments=[{"order_id": "8190000000000003"}, {"order_id": "8190000000000009"}],
                      rows={"orders_latest": [("8190000000000001", True), ("8190000000000003", True),
                                              ("8190000000000004", False)]})
    ids = extract.ids_to_fetch(ctx, options(order_ids=["8190000000000001", "8190000000000002", "8190000000000003",
                                                       "8190000000000004"]))
    assert ids == ["8190000000000002", "8190000000000009", "8190000000000003", "8190000000000004"]  # new ones first
    assert ctx.counters["orders_finished_skipped"] == 1


def test_orders_the_warehouse_holds_open_take_turns_under_max_open_polls_and_new_ones_never_wait(tmp_path: Path) -> None:
    configured = [f"81900000000000{i:02d}" for i in range(10)]
    stored = [(i, False) for i in configured[:8]]
    asked: list[str] = []
    cursors: dict[str, Any] = {}
    for _ in range(4):
        ctx = FakeContext(tmp_path, rows={"orders_latest": stored}, cursors=cursors, max_open_polls=3)
        ids = extract.ids_to_fetch(ctx, options(order_ids=configured))
        assert ids[:2] == configured[8:] and len(ids) == 5  # the two never stored, then three in turn
        assert ctx.counters["open_polls_deferred"] == 5
        asked += ids[2:]
        cursors = {**cursors, **ctx.new_cursors}  # what the commit stores
    assert sorted(asked[:8]) == configured[:8] and asked[8:] == asked[:4]


# --- mapping -------------------------------------------------------------------------------------

def mapped(tmp_path: Path, registry, stream: str, body: bytes, meta: dict[str, Any]) -> dict[str, Any]:
    """Run one page through the raw zone and core's transform; staged rows per table, and ``unmapped`` counts."""
    started = datetime(2026, 1, 1, tzinfo=UTC)
    with RawZoneWriter(tmp_path / "raw", "aliexpress", "seller-1", "run-1", started) as raw:
        raw.write(Page(stream, body, meta))
        files = raw.close()
    con = transform.connect(status_tables=registry.statuses)
    result = transform.transform(con, provider.AliExpressProvider.streams, files, provider="aliexpress",
                                 account_id="seller-1", run_id="run-1", extracted_at=started,
                                 timezone=provider.AliExpressProvider.default_timezone)
    assert not result.tables.get("rejects") and "rejects" not in result.staged
    out: dict[str, Any] = {"unmapped": dict(result.unmapped)}
    for table in sorted(result.staged):
        rel = con.sql(f"SELECT * FROM {transform.staged_table(table)}")
        out[table] = [dict(zip(rel.columns, row)) for row in rel.fetchall()]
    con.close()
    return out


def comparable(rows: list[dict[str, Any]], columns: list[str], key: tuple[str, ...]) -> list[dict[str, Any]]:
    def plain(v: Any) -> Any:  # as the expected_<table>.json files write values
        if isinstance(v, datetime):
            return v.astimezone(UTC).isoformat().replace("+00:00", "Z")
        return str(v) if hasattr(v, "as_tuple") else v
    picked = [{c: plain(r[c]) for c in columns} for r in rows]
    return sorted(picked, key=lambda r: tuple(str(r[k]) for k in key))


@pytest.mark.parametrize("name", list(TRACKING_META))
def test_tracking_fixture_maps_to_expected_rows(tmp_path: Path, registry, name: str) -> None:
    meta = TRACKING_META[name]
    rows = mapped(tmp_path, registry, "tracking", fixture(f"{name}.json"), meta)
    for table, key in (("shipments", ("shipment_id",)), ("tracking_events", ("shipment_id", "occurred_at"))):
        expected = expected_rows(table, meta["order_id"])
        columns = list(expected[0])
        assert comparable(rows[table], columns, key) == comparable(expected, columns, key)
    events = rows["tracking_events"]
    assert len({e["event_id"] for e in events}) == len(events)


def test_same_scan_in_two_parcels_is_two_events_and_a_number_does_not_change_its_id(tmp_path: Path, registry) -> None:
    meta = AWKWARD_META
    first = mapped(tmp_path / "a", registry, "tracking", fixture("tracking_awkward_shapes.json"), meta)
    numbered = fixture("tracking_awkward_shapes.json").replace(b'"mail_no": ""', b'"mail_no": "LP00999999999999"', 1)
    second = mapped(tmp_path / "b", registry, "tracking", numbered, meta)
    ids = lambda rows: {e["event_id"] for e in rows["tracking_events"]}  # noqa: E731
    assert ids(first) == ids(second)
    assert {e["shipment_id"] for e in second["tracking_events"]} >= {"LP00999999999999"}


def test_placeholder_parcel_is_retired_once_its_number_appears(tmp_path: Path, registry) -> None:
    meta = {**AWKWARD_META, "placeholders": ["8190000000000002-P1"]}
    numbered = fixture("tracking_awkward_shapes.json").replace(b'"mail_no": ""', b'"mail_no": "LP00999999999999"', 1)
    shipments = {s["shipment_id"]: s for s in mapped(tmp_path, registry, "tracking", numbered, meta)["shipments"]}
    retired = shipments["8190000000000002-P1"]
    assert retired["is_final"] and retired["status"] == shipments["LP00999999999999"]["status"] == "info_received"
    assert json.loads(retired["extras"])["superseded_by"] == "LP00999999999999"
    assert not shipments["LP00999999999999"]["is_final"] and len(shipments) == 4


def test_demo_order_ids_are_the_orders_the_sandbox_serves() -> None:
    assert extract.ids_from_file(FIXTURES / "demo_order_ids.txt", None) == [o.order_id for o in sandbox_world().orders]


def test_order_fixture_maps_order_and_lines_in_pacific_time(tmp_path: Path, registry) -> None:
    rows = mapped(tmp_path, registry, "orders", fixture("order_get.json"), {"order_id": SEED_ORDER})
    for table, key in (("orders", ("order_id",)), ("order_items", ("line_id",))):
        expected = expected_rows(table, SEED_ORDER)
        columns = list(expected[0])
        assert comparable(rows[table], columns, key) == comparable(expected, columns, key)
    assert json.loads(rows["orders"][0]["extras"])["logistics_status"] == "SELLER_SEND_GOODS"


def test_unmatched_nodes_are_unknown_and_counted_when_the_fallback_is_off(tmp_path: Path, registry) -> None:
    meta = {"order_id": "8190000000000001", "logistics_status": "SELLER_SEND_GOODS", "unmatched_node_status": None}
    rows = mapped(tmp_path, registry, "tracking", fixture("tracking_seed_sample.json"), meta)
    assert [e["status"] for e in rows["tracking_events"]] == ["unknown"]
    assert rows["tracking_events"][0]["status_raw"] == "Delivery update"
    assert rows["unmapped"] == {("tracking_events", "Delivery update"): 1, ("shipments", "Delivery update"): 1}


@pytest.mark.parametrize(("desc", "name", "status", "final"), [
    ("Courier is delivering your package", "Delivery update", "out_for_delivery", False),
    ("Delivery attempt failed: recipient not available", "Delivery update", "failed_attempt", False),
    ("Ready for collection at the pickup point", "Delivery update", "available_for_pickup", False),
    ("Package returned to sender", "Returned", "returned", True),
    ("Package is being returned", "Delivery update", "exception", False),
    ("Parcel LOST in transit", "Delivery update", "exception", True),
    ("Package delivered to the recipient", "Delivered", "delivered", True),
    ("Package not delivered: address incomplete", "Delivery update", "exception", False),
    ("Seller is preparing your package", "Package in preparation", "info_received", False),
    ("快件派送中", "派送", "out_for_delivery", False),
    ("已签收，签收人：本人", "已签收", "delivered", True),
    ("海关扣留", "异常", "exception", False),
    ("Departed from the country of origin", "Delivery update", "in_transit", False),
])
def test_keyword_table_classifies_node_text(desc: str, name: str, status: str, final: bool) -> None:
    sql = (f"SELECT {statuses.node_status_sql('d', 'n', chr(39) + 'in_transit' + chr(39))}, "
           f"{statuses.node_final_sql('d', 'n')} FROM (SELECT ? AS d, ? AS n)")
    # Own connection, fully fetched: a half-read result on duckdb's default connection breaks later tests' duckdb.sql().
    with duckdb.connect() as con:
        assert con.execute(sql, [desc, name]).fetchall() == [(status, final)]


# --- against the loopback sandbox ----------------------------------------------------------------

def sandbox_ctx(tmp_path: Path, url: str, **secrets: str) -> FakeContext:
    return FakeContext(tmp_path, base_url=f"{url}/aliexpress",
                       secrets={"app_secret": SECRET, "auth_code": sandbox.AUTH_CODE, **secrets})


def test_sandbox_refuses_a_wrong_sign_and_the_error_names_the_secret(tmp_path: Path, sandbox) -> None:
    ctx = sandbox_ctx(tmp_path, sandbox, app_secret="not-the-app-secret")
    with pytest.raises(AuthError) as caught:
        AliExpressClient(ctx, app_key=APP_KEY).session()
    message = str(caught.value)
    assert "IncompleteSignature" in message and "credentials.app_secret" in message
    assert "not-the-app-secret" not in message and len(message.splitlines()) == 1


def test_sandbox_refuses_a_stale_timestamp_and_the_error_names_the_clock(tmp_path: Path, sandbox) -> None:
    import time

    ctx = sandbox_ctx(tmp_path, sandbox)
    stale = AliExpressClient(ctx, app_key=APP_KEY, clock=lambda: time.time() - 3 * 3600)
    with pytest.raises(AuthError, match="InvalidTimestamp.*clock"):
        stale.session()


def test_sandbox_session_expired_mid_run_is_refreshed_once(tmp_path: Path, sandbox) -> None:
    ctx = sandbox_ctx(tmp_path, sandbox)
    client = AliExpressClient(ctx, app_key=APP_KEY)
    order_id = sandbox_world().orders[0].order_id
    assert client.order(order_id).result["order_status"]
    httpx.post(f"{sandbox}/aliexpress/_expire_tokens")
    assert client.order(order_id).result["order_status"]
    stats = httpx.get(f"{sandbox}/aliexpress/_stats").json()
    assert stats["tokens_create"] == 1 and stats["tokens_refresh"] == 1 and stats["refused_IllegalAccessToken"] == 1


_WORLD: list[sandbox.World] = []


def sandbox_world() -> sandbox.World:
    if not _WORLD:
        _WORLD.append(sandbox.build_world(42))
    return _WORLD[0]


def test_sandbox_world_has_the_awkward_cases() -> None:
    world = sandbox_world()
    assert len(world.orders) == sandbox.ORDERS_AT_SCALE_1
    assert len(world.not_found_ids()) > 5
    assert any(len(o.parcels) > 1 for o in world.orders)
    assert any(p.mail_no == "" and p.nodes for o in world.orders for p in o.parcels)
    assert {o.shape for o in world.orders} == set(sandbox.SHAPES)
    texts = [n.desc for o in world.orders for p in o.parcels for n in p.nodes]
    assert any(t.isascii() for t in texts) and any(not t.isascii() for t in texts)
    assert ae_client.TRACKING_GET == sandbox.TRACKING_GET and ae_client.ORDER_GET == sandbox.ORDER_GET


def test_carrier_code_is_the_parcels_carrier_name_normalized(tmp_path: Path, registry) -> None:
    # Seed 002's carrier_name ("AliExpress standard shipping") is the only carrier field of a tracking reply;
    # carrier_code was NULL for every parcel and scan, so the marts showed one blank-carrier bucket.
    meta = AWKWARD_META
    rows = mapped(tmp_path, registry, "tracking", fixture("tracking_awkward_shapes.json"), meta)
    names = {s["shipment_id"]: s["service"] for s in rows["shipments"]}
    codes = {s["shipment_id"]: s["carrier_code"] for s in rows["shipments"]}
    assert set(codes.values()) == {"aliexpress_standard_shipping", "cainiao_super_economy_global",
                                   "yunexpress_global_direct_line"}
    assert all(codes[k] == names[k].lower().replace(" ", "_") for k in codes)
    assert rows["tracking_events"] and all(e["carrier_code"] == codes[e["shipment_id"]] for e in rows["tracking_events"])


@pytest.mark.parametrize(("name", "code"), [
    ("AliExpress standard shipping", "aliexpress_standard_shipping"),
    ("  J&T Express - Global ", "j_t_express_global"),
    ("菜鸟 无忧物流", "菜鸟_无忧物流"),
    ("", None),
    (None, None),
])
def test_carrier_code_of_a_name(name, code) -> None:
    from shipetl_aliexpress.mapping import carrier_code_sql

    with duckdb.connect() as con:
        assert con.execute(f"SELECT {carrier_code_sql('n')} FROM (SELECT ?::VARCHAR AS n)", [name]).fetchall() == [(code,)]


def test_a_retired_placeholder_keeps_its_parcels_carrier_code(tmp_path: Path, registry) -> None:
    meta = {**AWKWARD_META, "placeholders": ["8190000000000002-P1"]}
    numbered = fixture("tracking_awkward_shapes.json").replace(b'"mail_no": ""', b'"mail_no": "LP00999999999999"', 1)
    shipments = {s["shipment_id"]: s for s in mapped(tmp_path, registry, "tracking", numbered, meta)["shipments"]}
    assert shipments["8190000000000002-P1"]["carrier_code"] == shipments["LP00999999999999"]["carrier_code"] is not None


# --- one order failing for now is not the whole night ----------------------------------------------------

def ae_ids(n: int) -> list[str]:
    return [str(8190000000000100 + i) for i in range(n)]


REPLIES = {
    "500": lambda: httpx.Response(500, text="Internal Server Error"),
    "cut": lambda: httpx.Response(200, content=fixture("tracking_seed_sample.json")[:40],
                                  headers={"content-type": "application/json"}),
    "refused": lambda: httpx.Response(200, content=fixture("error_incomplete_signature.json")),
}


class FakeSync:
    """A fake AliExpress: every order and its tracking answer from the fixtures, except the calls in ``down``
    (``(api, order id)`` -> a name in ``REPLIES``), or every call with ``all_down``."""

    def __init__(self, down: dict[tuple[str, str], str] | None = None, all_down: bool = False) -> None:
        self.down, self.all_down = down or {}, all_down
        self.calls: Counter[tuple[str, str]] = Counter()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/rest"):
            return httpx.Response(200, content=fixture("token_create.json"))
        form = form_of(request)
        if form["method"] == ae_client.ORDER_GET:
            call = ("order", str(orjson.loads(form["single_order_query"])["order_id"]))
        else:
            call = ("tracking", form["ae_order_id"])
        self.calls[call] += 1
        if self.all_down or call in self.down:
            return REPLIES[self.down.get(call, "500")]()
        name = "order_get.json" if call[0] == "order" else "tracking_seed_sample.json"
        return httpx.Response(200, content=fixture(name))


def extract_ids(tmp_path: Path, fake: FakeSync, ids: list[str],
                open_shipments: list[dict[str, Any]] | None = None) -> tuple[FakeContext, list[Page]]:
    ctx = FakeContext(tmp_path, transport=httpx.MockTransport(fake), open_shipments=open_shipments)
    return ctx, list(extract.pages(ctx, options(order_ids=ids, poll_concurrency=4)))


def fetched(pages: list[Page]) -> list[tuple[str, str]]:
    return [(p.stream, p.meta["order_id"]) for p in pages]


@pytest.mark.parametrize(("api", "reply"), [("order", "500"), ("tracking", "500"), ("tracking", "cut")])
def test_an_order_failing_after_retries_is_skipped_counted_and_asked_again_next_run(tmp_path: Path, api: str,
                                                                                    reply: str) -> None:
    ids = ae_ids(30)
    fake = FakeSync({(api, ids[7]): reply})
    open_parcels = [{"shipment_id": "LP001", "order_id": ids[7], "tracking_number": "LP001"},
                    {"shipment_id": f"{ids[7]}-P2", "order_id": ids[7], "tracking_number": None},
                    {"shipment_id": "LP003", "order_id": ids[3], "tracking_number": "LP003"}]
    with capture_logs() as logs:
        ctx, pages = extract_ids(tmp_path, fake, ids, open_parcels)
    # Neither page of the order: a snapshot loaded FINISH alone would end its polling before its parcels came.
    assert fetched(pages) == [(s, i) for i in ids if i != ids[7] for s in ("tracking", "orders")]
    assert fake.calls[(api, ids[7])] == 6  # core's retries were used first (max_retries=5)
    assert ctx.counters == Counter({f"{api}_poll_failed": 1})
    warned = [e for e in logs if e["event"] == f"{api}_poll_failed"]
    assert len(warned) == 1 and warned[0]["order_id"] == ids[7] and warned[0]["log_level"] == "warning"
    assert "still failing after 6 attempts" in warned[0]["error"] and SECRET not in str(warned)
    assert ctx.unheard == {"LP001", f"{ids[7]}-P2"}  # the failed order's open parcels: not expired by this run

    # The next run reads the same ids, finds the order not stored as finished, and fetches it.
    again, pages = extract_ids(tmp_path, FakeSync(), ids)
    assert {("orders", ids[7]), ("tracking", ids[7])} <= set(fetched(pages)) and not again.counters


def test_most_orders_failing_fails_the_source_with_one_line(tmp_path: Path) -> None:
    fake = FakeSync(all_down=True)
    with pytest.raises(TransientError) as caught:
        extract_ids(tmp_path, fake, ae_ids(200))
    message = str(caught.value)
    assert message.startswith("AliExpress looks down: 20 of the first 20 polls still failed after retries")
    assert "\n" not in message and SECRET not in message
    assert len(fake.calls) < 60  # stopped early, not after every order's retries


def test_an_auth_error_still_fails_the_source_at_once(tmp_path: Path) -> None:
    ids = ae_ids(100)
    fake = FakeSync({("order", ids[0]): "500", ("order", ids[5]): "refused"})
    ctx = FakeContext(tmp_path, transport=httpx.MockTransport(fake))
    with pytest.raises(AuthError, match="credentials.app_secret"):
        list(extract.pages(ctx, options(order_ids=ids, poll_concurrency=2)))
    assert ctx.counters == Counter({"order_poll_failed": 1})  # the transient failure before it was skipped
    assert fake.calls[("order", ids[5])] == 1 and len(fake.calls) < 40
