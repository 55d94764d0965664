"""The contract kit itself (``shipetl.testing``): what it catches in a third-party plugin, and what it lets pass.

Each case writes a small carrier plugin and its contract class into a pytester folder, as a plugin
author would (the test module is the plugin module), and runs pytest on it in-process.
"""

from __future__ import annotations

from pathlib import Path

import httpcore  # noqa: F401 (kept imported: see below)
import httpx
import pytest

# Imported before pytester snapshots sys.modules: DuckDB, which it imports, cannot be imported twice in a process;
# and httpcore, which httpx imports only on a first request: first imported inside a pytester run, it would be
# dropped after it, and httpx would go on mapping the dropped module's errors, letting later tests' ConnectError
# escape as httpcore's own (tests/test_installed_plugins.py's wait for its sandbox).
from shipetl.testing import FixtureTransport, ProviderContract

pytest_plugins = ["pytester"]

PLUGIN = '''
import sys
from pathlib import Path

from shipetl import API_VERSION, Page, Provider, Stream, TableMapping, hookimpl
from shipetl.testing import ErrorFixture, ProviderContract

PARCELS_BODY = "STRUCT(parcels STRUCT(id VARCHAR, service VARCHAR, status VARCHAR, last_scan VARCHAR)[])"
SHIPMENTS_SQL = """
SELECT p.id AS shipment_id, p.id AS tracking_number, 'kit' AS carrier_code,
       coalesce(p.service, meta->>'service') AS service, status_of('kitcheck', p.status) AS status,
       p.status AS status_raw, p.last_scan AS last_event_at
FROM (SELECT meta, unnest(body.parcels) AS p FROM pages)
"""
CURSOR = "listed_until"


def stored_meta(row):
    """What a poll needs to know of a parcel an earlier run stored (its tracking reply lacks the service)."""
    return {"service": row["service"]}


def window_start(ctx):
    """Where this run's listing starts."""
    return ctx.window(CURSOR)[0]


class KitProvider(Provider):
    name = "kitcheck"
    default_base_url = "https://api.kitcheck.invalid"
    streams = (Stream("parcels", PARCELS_BODY, (TableMapping("shipments", SHIPMENTS_SQL, {"last_event_at": "iso"}),)),)

    def extract(self, ctx):
        since = window_start(ctx)
        known = ctx.query("SELECT DISTINCT shipment_id FROM shipments WHERE provider = ? AND account_id = ?",
                          [self.name, ctx.account_id])
        ctx.log.info("parcels_known", known=len(known), since=since.isoformat())
        with ctx.http() as http:
            yield Page("parcels", http.get("/parcels", params={"page": "1"}).content)
            ctx.set_cursor(CURSOR, ctx.until)
            for row in ctx.open_shipments():
                meta = stored_meta(row)
                yield Page("parcels", http.get(f"/parcels/{row['shipment_id']}").content, meta)


@hookimpl
def shipetl_api_version():
    return API_VERSION


@hookimpl
def register_providers(register):
    register(KitProvider)


@hookimpl
def register_status_maps(register):
    register("kitcheck", {"moving": "in_transit", "done": "delivered"})


class KitContract(ProviderContract):
    plugin = sys.modules[__name__]
    fixtures = Path(__file__).parent / "fixtures"
    routes = {"GET /parcels?page=1": "parcels.json", "GET /parcels/P1": "parcel_p1.json"}
    errors = {"auth": ErrorFixture(401, "error.json"), "rate_limit": ErrorFixture(429, "error.json"),
              "bad_input": ErrorFixture(400, "error.json")}
'''

FIXTURES = {
    "parcels.json": '{"parcels": [{"id": "P1", "service": "Express", "status": "moving", '
                    '"last_scan": "2025-01-20T08:00:00Z"}, {"id": "P2", "service": "Economy", "status": "done", '
                    '"last_scan": "2025-01-18T10:30:00Z"}]}',
    "parcel_p1.json": '{"parcels": [{"id": "P1", "status": "moving", "last_scan": "2025-01-20T08:00:00Z"}]}',
    "parcel_p3.json": '{"parcels": [{"id": "P3", "status": "moving", "last_scan": "2025-01-21T09:00:00Z"}]}',
    "error.json": '{"error": "no"}',
    "expected_shipments.json": '[{"shipment_id": "P1", "status": "in_transit", "last_event_at": "2025-01-20T08:00:00Z"}, '
                               '{"shipment_id": "P2", "status": "delivered", "last_event_at": "2025-01-18T10:30:00Z"}]',
}
CHECKS = {name for name in dir(ProviderContract) if name.startswith("test_")}


def run_contract(pytester: pytest.Pytester, source: str,
                 fixtures: dict[str, str] | None = None) -> dict[str, tuple[str, str]]:
    """Run the kitcheck plugin's contract with ``source`` appended to its module (later definitions win), and
    ``fixtures`` beside the usual ones (None leaves the usual one of that name out).

    Returns {test: (outcome, failure text)}; a failing fixture counts as its test failing.
    """
    (pytester.path / "fixtures").mkdir()
    for name, body in {**FIXTURES, **(fixtures or {})}.items():
        if body is None:
            continue
        (pytester.path / "fixtures" / name).write_text(body)
    pytester.makepyfile(test_kit=PLUGIN + source)
    outcomes: dict[str, tuple[str, str]] = {}
    for report in pytester.inline_run("-p", "no:cacheprovider").getreports("pytest_runtest_logreport"):
        name = report.nodeid.rsplit("::", 1)[-1]
        if outcomes.get(name, ("",))[0] != "failed" and (report.failed or report.skipped or report.when == "call"):
            outcomes[name] = (report.outcome, report.longreprtext)
    return outcomes


def test_a_sound_plugin_passes_every_check_and_its_second_run_starts_from_the_first_runs_commit(pytester):
    outcomes = run_contract(pytester, '''
class TestKit(KitContract):
    def test_second_run_state(self, harvest, rerun):
        assert harvest.cursors == {CURSOR: "2025-01-31T00:00:00+00:00"} and rerun.open_shipments == 1
        assert [r.url.path for r in harvest.requests] == ["/base-url-check/parcels"]
        assert [r.url.path for r in rerun.harvest.requests] == ["/base-url-check/parcels", "/base-url-check/parcels/P1"]
        assert '"known":0' in harvest.output and '"known":2' in rerun.harvest.output  # ctx.query reads its warehouse
''')
    assert {name.partition("[")[0] for name in outcomes} == {*CHECKS, "test_second_run_state"}
    assert {name: outcome for name, (outcome, _) in outcomes.items() if outcome != "passed"} == {
        "test_a_poll_failing_after_retries_costs_that_shipment_alone": "skipped"}  # no failing_poll declared


def test_rows_commits_and_state_carry_the_account_the_provider_names(pytester):
    outcomes = run_contract(pytester, '''
KitProvider.accounts = lambda self: ["depot-7"]


class TestKit(KitContract):
    def test_account(self, harvest, rerun):
        assert set(harvest.tables["shipments"].column("account_id").to_pylist()) == {"depot-7"}
        assert rerun.open_shipments == 1  # read back for depot-7, as `shipetl run` reads it
        assert '"known":2' in rerun.harvest.output  # the extract's ctx.query for its own account finds the rows
''')
    assert outcomes["test_account"][0] == "passed", outcomes["test_account"][1]
    assert outcomes["test_rerun_adds_nothing"][0] == "passed", outcomes["test_rerun_adds_nothing"][1]


@pytest.mark.parametrize(("bug", "message"), [
    ("def stored_meta(row):\n    return {'service': row['service_code']}\n", "KeyError: 'service_code'"),
    ("def stored_meta(row):\n    return {}\n", "loaded more rows: {'shipments': 1}"),
    ("def window_start(ctx):\n    return max(ctx.until, ctx.cursor(CURSOR) or ctx.until)\n",
     "TypeError: '>' not supported between instances of 'str' and 'datetime.datetime'"),
    ("def window_start(ctx):\n    return ctx.window(CURSOR)[0]\n\n\n_extract = KitProvider.extract\n\n\n"
     "def epoch_ms_cursor(self, ctx):\n    set_cursor = ctx.set_cursor\n"
     "    ctx.set_cursor = lambda key, value: set_cursor(key, int(value.timestamp() * 1000))\n"
     "    yield from _extract(self, ctx)\n\n\nKitProvider.extract = epoch_ms_cursor\n",
     "cursor 'listed_until' holds 1738281600000, which ctx.window cannot read as a time"),
], ids=["open-shipment-rebuilt-from-a-missing-column", "open-shipment-rebuilt-differently",
        "cursor-read-back-as-a-datetime", "window-cursor-stored-as-epoch-ms"])
def test_the_rerun_check_runs_a_second_extract_from_the_first_runs_cursors_and_open_shipments(pytester, bug, message):
    outcomes = run_contract(pytester, f"\n{bug}\n\nclass TestKit(KitContract):\n    pass\n")
    outcome, text = outcomes["test_rerun_adds_nothing"]
    assert outcome == "failed" and message in text, text[-2000:]
    assert outcomes["test_rows_have_the_canonical_schema"][0] == "passed"  # the first run alone is fine


def test_a_window_cursor_never_set_fails_its_check(pytester):
    outcomes = run_contract(pytester, '''
def window_start(ctx):
    return ctx.window("listed_since")[0]


class TestKit(KitContract):
    pass
''')
    outcome, text = outcomes["test_every_window_cursor_is_set"]
    assert outcome == "failed" and "cursor(s) ['listed_since'] but never sets them" in text, text[-1500:]


def test_the_second_runs_window_starts_at_the_cursor_the_first_run_committed(pytester):
    outcomes = run_contract(pytester, '''
def window_start(ctx):
    return ctx.window(CURSOR)[0]


class TestKit(KitContract):
    def test_windows(self, harvest, rerun):
        assert '"since":"2025-01-01T00:00:00+00:00"' in harvest.output  # the class's window before its until
        assert '"since":"2025-01-31T00:00:00+00:00"' in rerun.harvest.output  # the first run's cursor
''')
    assert outcomes["test_windows"][0] == "passed", outcomes["test_windows"][1]


def test_fixture_routes_no_request_reaches_are_named_unless_they_answer_an_error(pytester):
    outcomes = run_contract(pytester, '''
from shipetl.testing import Reply


class TestKit(KitContract):
    routes = {**KitContract.routes, "GET /parcels?page=2": "parcels.json", "GET /parcels/P2": "parcel_p1.json",
              "GET /parcels/P9": Reply(404, "error.json")}
''')
    outcome, text = outcomes["test_every_fixture_route_is_requested"]
    assert outcome == "failed", text
    assert "route(s) ['GET /parcels?page=2', 'GET /parcels/P2']" in text  # P1 counts: the second run asks it


# The kit's open parcels asked through shipetl.Polls, each failure a Skip naming {names}.
POLLED_EXTRACT = '''
from shipetl import Polls, Skip, TransientError


def polled_extract(self, ctx):
    with ctx.http() as http:
        yield Page("parcels", http.get("/parcels", params={{"page": "1"}}).content)
        ctx.set_cursor(CURSOR, ctx.until)

        def fetch(row):
            try:
                return Page("parcels", http.get(f"/parcels/{{row['shipment_id']}}").content, stored_meta(row))
            except TransientError as exc:
                return Skip("tracking_poll_failed", exc, {{"id": row["shipment_id"]}}, shipment_ids={names})

        polls = Polls(ctx, "Kit API", 2)
        yield from polls.run(list(ctx.open_shipments()), fetch)
        polls.finish()


KitProvider.extract = polled_extract
'''
WITH_A_FAILING_POLL = '''
class TestKit(KitContract):
    routes = {**KitContract.routes, "GET /parcels/P3": "parcel_p3.json"}
    open_shipments = [{"shipment_id": "P1", "service": "Express"}, {"shipment_id": "P3", "service": "Economy"}]
    failing_poll = ("GET /parcels/P1", "P1")
'''


@pytest.mark.parametrize(("extract", "outcome", "message"), [
    (POLLED_EXTRACT.format(names='(row["shipment_id"],)'), "passed", ""),
    (POLLED_EXTRACT.format(names="()"), "failed", "the Skip of the failed poll does not name 'P1'"),
    ("", "failed", "one shipment's failing poll failed the extract"),  # the kit's own extract: no Polls
], ids=["skipped-and-named", "skipped-unnamed", "not-skipped"])
def test_a_failing_poll_must_cost_its_shipment_alone_and_name_it(pytester, extract, outcome, message):
    outcomes = run_contract(pytester, extract + WITH_A_FAILING_POLL)
    got, text = outcomes["test_a_poll_failing_after_retries_costs_that_shipment_alone"]
    assert got == outcome and message in text, text[-2000:]


def test_a_plugin_for_another_hook_api_version_is_reported_with_the_plugin_managers_reason(pytester):
    outcomes = run_contract(pytester, '''
@hookimpl
def shipetl_api_version():
    return 2


class TestKit(KitContract):
    pass
''')
    outcome, text = outcomes["test_plugin_loads_through_hooks"]
    assert outcome == "failed" and "plugin test_kit is broken: targets hook API version 2; this shipetl speaks " \
                                   "version 1" in text, text[-2000:]
    assert "registers providers" not in text


def test_rejects_is_an_empty_table_when_nothing_is_rejected(pytester):
    outcomes = run_contract(pytester, '''
from shipetl.schema import TABLES


class TestKit(KitContract):
    def test_rejects(self, harvest):
        rejects = harvest.tables["rejects"]
        assert rejects.num_rows == 0 and rejects.schema.names == TABLES["rejects"].column_names
''')
    assert outcomes["test_rejects"] == ("passed", "")


def test_options_that_give_several_accounts_are_refused_by_name(pytester):
    outcomes = run_contract(pytester, '''
class TwoShops(KitProvider):
    def accounts(self):
        return ["shop-1", "shop-2"]


class TestKit(KitContract):
    provider = TwoShops
''')
    outcome, text = outcomes["test_rows_have_the_canonical_schema"]
    assert outcome == "failed", text
    assert "TestKit.options give kitcheck 2 accounts (shop-1, shop-2); the contract runs exactly one" in text


def test_fixture_routes_match_the_fields_of_a_form_post_and_unmatched_ones_mask_secrets(tmp_path):
    (tmp_path / "order.json").write_text('{"order": 1}')
    (tmp_path / "tracking.json").write_text('{"tracking": 1}')
    routes = {"POST /sync?method=order.get": "order.json", "POST /sync?method=tracking.get&order_id=7": "tracking.json"}
    transport = FixtureTransport("http://rpc.test/api", tmp_path, routes)
    with httpx.Client(transport=transport, base_url="http://rpc.test/api") as client:
        order = client.post("/sync", data={"method": "order.get", "order_id": "7", "sign": "S1GNATURE"})
        tracking = client.post("/sync", data={"method": "tracking.get", "order_id": "7", "session": "T0KEN"})
        other = client.post("/sync", data={"method": "tracking.get", "order_id": "8", "session": "T0KEN"})
        query = client.post("/sync?method=tracking.get&order_id=7", json={"method": "order.get"})
    assert (order.json(), tracking.json(), other.status_code, query.json()) == ({"order": 1}, {"tracking": 1}, 404,
                                                                                {"tracking": 1})
    assert transport.answered == {"POST /sync?method=order.get": 1, "POST /sync?method=tracking.get&order_id=7": 2}
    (unmatched,) = transport.unmatched
    assert unmatched.startswith("POST /sync?method=tracking.get&order_id=8&session=") and "T0KEN" not in unmatched


# The kit's fixtures as rows (the two parcels of parcels.json), and a live server answering other parcels.
EXPECTED_SHIPMENTS = '[{"shipment_id": "P1", "status": "in_transit"}, {"shipment_id": "P2", "status": "delivered"}]'
AGAINST_A_LIVE_SERVER = '''
import pytest
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

from shipetl.sandbox import SandboxSettings, running_sandbox

LIVE = b'{"parcels": [{"id": "L1", "service": "Live", "status": "moving", "last_scan": "2025-01-22T08:00:00Z"}]}'


def live_app(settings):
    async def parcels(request):
        return Response(LIVE, media_type="application/json")

    return Starlette(routes=[Route("/parcels", parcels), Route("/parcels/{number}", parcels)])


class TestKit(KitContract):
    @pytest.fixture(scope="class")
    @classmethod
    def contract_base_url(cls):
        with running_sandbox({"kitcheck": live_app}, SandboxSettings(port=0)) as url:
            yield f"{url}/kitcheck"
'''


def test_rows_are_held_to_the_fixtures_expected_rows(pytester):
    outcomes = run_contract(pytester, "class TestKit(KitContract):\n    pass\n",
                            {"expected_shipments.json": EXPECTED_SHIPMENTS})
    assert outcomes["test_rows_match_expected"] == ("passed", "")


def test_a_time_an_hour_off_its_expected_row_fails_the_row_check(pytester):
    wrong_time = FIXTURES["expected_shipments.json"].replace("08:00:00Z", "09:00:00Z")
    outcomes = run_contract(pytester, "class TestKit(KitContract):\n    pass\n", {"expected_shipments.json": wrong_time})
    outcome, text = outcomes["test_rows_match_expected"]
    assert outcome == "failed" and "shipments differs from expected_shipments.json" in text, text[-1500:]


def test_a_table_the_fixtures_fill_without_expected_rows_fails_the_row_check(pytester):
    outcomes = run_contract(pytester, "class TestKit(KitContract):\n    pass\n", {"expected_shipments.json": None})
    outcome, text = outcomes["test_rows_match_expected"]
    assert outcome == "failed" and "the fixtures give rows of shipments and no expected_<table>.json" in text, text[-1500:]


def test_a_live_server_is_not_held_to_the_fixtures_expected_rows(pytester):
    outcomes = run_contract(pytester, AGAINST_A_LIVE_SERVER, {"expected_shipments.json": EXPECTED_SHIPMENTS})
    outcome, text = outcomes["test_rows_match_expected"]
    assert outcome == "skipped" and "a live server answers with its own data" in text, text
    assert outcomes["test_rerun_adds_nothing"] == ("passed", "")
    assert outcomes["test_no_secret_in_logs_raw_zone_or_rows"] == ("passed", "")


@pytest.mark.parametrize(("rows", "message"), [
    ('[{"shipment_id": "P1", "stauts": "in_transit"}, {"shipment_id": "P2", "stauts": "delivered"}]',
     "expected_shipments.json: no column(s) ['stauts'] in shipments"),
    ('[{"shipment_id": "P1"}, {"shipment_id": "P2", "status": "delivered"}]',
     "expected_shipments.json: row(s) [1] list other columns than the first row (['shipment_id'])"),
], ids=["misspelt-column", "rows-with-other-columns"])
def test_expected_rows_that_would_check_nothing_fail_with_the_file_named(pytester, rows, message):
    outcomes = run_contract(pytester, "class TestKit(KitContract):\n    pass\n", {"expected_shipments.json": rows})
    outcome, text = outcomes["test_rows_match_expected"]
    assert outcome == "failed" and message in text, text[-1500:]


def test_an_unexpected_reject_says_where_to_allow_it(pytester):
    rejected = run_contract(pytester, '''
SHIPMENTS_SQL = SHIPMENTS_SQL.replace("p.last_scan AS last_event_at", "'2025-01-20 08:00:00' AS last_event_at")
KitProvider.streams = (Stream("parcels", PARCELS_BODY, (TableMapping("shipments", SHIPMENTS_SQL, {"last_event_at": "iso"}),)),)


class TestKit(KitContract):
    pass
''')
    outcome, text = rejected["test_no_unexpected_rejects"]
    assert outcome == "failed" and "last_event_at: '2025-01-20 08:00:00'" in text and "in allow_rejects" in text, text[-1500:]


def test_an_allowance_for_rejects_the_fixtures_never_make_fails(pytester):
    outcomes = run_contract(pytester, "class TestKit(KitContract):\n    allow_rejects = ('no such reason',)\n")
    outcome, text = outcomes["test_no_unexpected_rejects"]
    assert outcome == "failed" and "allow_rejects ['no such reason'] match no reject of the fixtures" in text, text[-1500:]


def test_endless_paging_names_the_request_repeated_and_the_route_answering_it():
    transport = FixtureTransport("https://api.kit.invalid", Path(__file__).parent, {"GET /parcels": "test_testing_kit.py"})
    with httpx.Client(transport=transport, base_url="https://api.kit.invalid") as http, \
            pytest.raises(RuntimeError) as info:
        while True:
            http.get("/parcels", params={"cursor": "c2"})
    assert "GET /parcels?cursor=c2 was asked 2001 times and route 'GET /parcels' answers the most" in str(info.value)
