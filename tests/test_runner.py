"""run_pipeline with fake providers: sources isolated, one-line errors, counters and cursors committed."""

from __future__ import annotations

import errno
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import orjson
import pytest
import zstandard
from structlog.testing import capture_logs

from shipetl import Page, Polls, Provider, Skip, Stream, TableMapping, TransientError, config, runlock, runner, storage, warehouse
from shipetl.destination import DuckDBDestination
from shipetl.errors import AuthError, ConfigError, RunInProgressError, RunStopped, ShipetlError, TerminalError
from shipetl.rawzone import RawZoneWriter
from shipetl.registry import PluginInfo, Registry

ITEMS = "(SELECT unnest(CAST(body->'items' AS JSON[])) AS e FROM pages)"
SHIPMENTS_SQL = (f"SELECT e->>'tn' AS shipment_id, e->>'tn' AS tracking_number, e->>'code' AS status_raw, "
                 f"status_of('fake', e->>'code') AS status, e->>'at' AS created_at, EXTRAS AS extras FROM {ITEMS}")
SHIPMENTS = Stream("parcels", "JSON", (TableMapping("shipments", SHIPMENTS_SQL.replace("EXTRAS", "e->'more'"),
                                                    {"created_at": "iso"}),))
# The same, with a person's name in extras, passed through pii() as personal fields must be.
WITH_PERSON = Stream("parcels", "JSON", (TableMapping(
    "shipments", SHIPMENTS_SQL.replace("EXTRAS", "json_object('who', pii(e->>'who'))"), {"created_at": "iso"}),))


class GoodProvider(Provider):
    name = "goodco"
    default_base_url = "https://goodco.example"
    streams = (SHIPMENTS,)

    def extract(self, ctx) -> Iterator[Page]:
        ctx.count("not_found", 2)
        ctx.count("pages_asked")
        start, until = ctx.window("updated_at")
        ctx.set_cursor("updated_at", until)
        ctx.set_cursor("seen_start", start.isoformat())
        yield Page("parcels", {"items": [{"tn": "1Z", "code": "IT", "at": "2025-05-01T00:00:00Z"},
                                         {"tn": "2Z", "code": "DE", "at": "2025-05-02T00:00:00Z"},
                                         {"tn": "3Z", "code": "??", "at": "not a time"}]})
        yield Page("parcels", b'{"items": [{"tn": "4Z", "code": "QQ"}]}')


class BrokenProvider(Provider):
    name = "badco"
    default_base_url = "https://badco.example"
    streams = (SHIPMENTS,)

    def extract(self, ctx) -> Iterator[Page]:
        yield Page("parcels", {"items": [{"tn": "9Z", "code": "IT"}]})
        raise RuntimeError("boom: unexpected reply shape")


class RefusedProvider(Provider):
    name = "authco"
    default_base_url = "https://authco.example"
    streams = (SHIPMENTS,)

    def extract(self, ctx) -> Iterator[Page]:
        raise AuthError(f"source {ctx.source_name}: API key rejected (HTTP 401); check credentials.api_key\n"
                        "response body: {\"message\": \"unauthorized\"}")
        yield  # pragma: no cover


class ShopsProvider(GoodProvider):
    """Two accounts (shops) under one source."""

    name = "shopsco"

    def accounts(self) -> list[str]:
        return ["shop-1", "shop-2"]


def make_registry() -> Registry:
    reg = Registry()
    reg.plugins["fakes"] = PluginInfo("fakes", __name__)
    for cls in (GoodProvider, BrokenProvider, RefusedProvider, ShopsProvider):
        reg.add_provider("fakes", cls)
    reg.add_destination("fakes", "duckdb", DuckDBDestination)
    reg.statuses.add("fakes", "fake", {"IT": "in_transit", "DE": "delivered"})
    return reg


@pytest.fixture
def registry() -> Registry:
    return make_registry()


@pytest.fixture
def pipeline(make_pipeline):
    def make(sources: str) -> config.PipelineConfig:
        return config.load(make_pipeline(sources, commit_timeout=10), env={})

    return make


GOOD_AND_BAD = """\
- name: good
  provider: goodco
  pii: keep
  start: 2025-04-01
- name: bad
  provider: badco
  pii: keep
"""


def by_name(result: runner.RunResult) -> dict[str, object]:
    return {s.source: s for s in result.sources}


def query(cfg: config.PipelineConfig, sql: str) -> list[tuple]:
    con = duckdb.connect(cfg.warehouse.path, read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def test_a_crashing_provider_fails_only_its_source(pipeline, registry) -> None:
    cfg = pipeline(GOOD_AND_BAD)
    result = runner.run_pipeline(cfg, registry=registry)
    runs = by_name(result)
    assert not result.ok
    assert runs["bad"].status == "failed"
    assert "badco" in runs["bad"].error and "RuntimeError" in runs["bad"].error and "boom" in runs["bad"].error
    assert "\n" not in runs["bad"].error
    assert runs["good"].status == "ok" and runs["good"].error is None
    assert runs["good"].loaded == {"shipments": 3}
    assert query(cfg, "SELECT shipment_id, status FROM shipments ORDER BY 1") == [
        ("1Z", "in_transit"), ("2Z", "delivered"), ("4Z", "unknown")]  # 9Z of the failed source is not loaded
    assert sorted(query(cfg, "SELECT source, status, commit_id IS NOT NULL FROM runs")) == [
        ("bad", "failed", False), ("good", "ok", True)]


def test_counts_and_counters_reach_the_run(pipeline, registry) -> None:
    cfg = pipeline(GOOD_AND_BAD)
    good = by_name(runner.run_pipeline(cfg, registry=registry))["good"]
    assert good.pages == 2
    assert good.extracted == {"shipments": 4} and good.rejected == {"shipments": 1}
    assert good.unmapped == {"shipments:QQ": 1}  # 3Z's ?? is not: the row is rejected, not loaded as unknown
    assert good.counters["not_found"] == 2 and good.counters["pages_asked"] == 1
    (details,) = query(cfg, "SELECT details FROM runs WHERE source = 'good'")[0]
    assert orjson.loads(details)["counters"]["not_found"] == 2
    assert query(cfg, "SELECT reason FROM rejects") == [("created_at: 'not a time' is not a valid ISO 8601 time with offset",)]


def test_a_sources_status_map_loads_its_codes_with_their_status_and_no_warning(pipeline, registry) -> None:
    cfg = pipeline("- {name: mapped, provider: goodco, pii: keep, status_map: {shipments: {QQ: delivered}}}\n"
                   "- {name: plain, provider: goodco, pii: keep}\n")
    with capture_logs() as logs:
        result = runner.run_pipeline(cfg, registry=registry)
    assert result.ok and by_name(result)["mapped"].unmapped == {} and by_name(result)["plain"].unmapped == {"shipments:QQ": 1}
    assert query(cfg, "SELECT account_id, status, is_final FROM shipments WHERE shipment_id = '4Z' ORDER BY 1") == [
        ("mapped", "delivered", True), ("plain", "unknown", False)]
    (warned,) = [e for e in logs if e["event"] == "status_unmapped"]
    assert warned["source"] == "plain" and warned["codes"] == {"QQ": 1} and "status_map" in warned["hint"]


class RepollProvider(GoodProvider):
    """Each run sends the parcels of every earlier run again, and one new parcel with an unknown code."""

    name = "repollco"
    runs = 0

    def extract(self, ctx) -> Iterator[Page]:
        type(self).runs += 1
        yield Page("parcels", {"items": [{"tn": f"{n}Z", "code": f"Q{n}", "at": "2025-05-01T00:00:00Z"}
                                         for n in range(1, type(self).runs + 1)]})


def test_unmapped_counts_only_the_rows_loaded(pipeline, registry) -> None:
    """A parcel polled again is deduplicated; its unknown code was counted by the run that loaded it."""
    registry.add_provider("fakes", RepollProvider)
    cfg = pipeline("- {name: repoll, provider: repollco, pii: keep}\n")
    first = runner.run_pipeline(cfg, registry=registry).sources[0]
    assert first.unmapped == {"shipments:Q1": 1}
    second = runner.run_pipeline(cfg, registry=registry).sources[0]
    assert second.extracted == {"shipments": 2} and second.loaded == {"shipments": 1}
    assert second.unmapped == {"shipments:Q2": 1}
    assert query(cfg, "SELECT unmapped FROM runs ORDER BY started_at") == [(1,), (1,)]


class SilentParcels(GoodProvider):
    """Parcels first seen long ago and silent since (``count`` of them), asked through Polls while open: the ones
    due, under max_open_polls. ``failing(due)`` names the polls of this run that fail."""

    name = "silentco"
    count = 30

    @staticmethod
    def failing(due: list[str]) -> set[str]:
        return set()

    def extract(self, ctx) -> Iterator[Page]:
        still_open = [row["shipment_id"] for row in ctx.open_shipments()]
        due = ctx.due_for_polling(still_open, key=str) if still_open else [f"T{i:02d}" for i in range(self.count)]
        failing = self.failing(due)

        def fetch(tn: str) -> dict | Skip:
            if tn in failing:
                return Skip("tracking_poll_failed", TransientError("HTTP 503"), {"tn": tn}, shipment_ids=(tn,))
            return {"tn": tn, "code": "IT", "at": "2024-01-01T00:00:00Z"}

        polls = Polls(ctx, "Silent API", concurrency=2)
        items = list(polls.run(due, fetch))
        polls.finish()
        yield Page("parcels", {"items": items})


def test_a_capped_run_expires_silent_parcels_only_once_its_turns_have_asked_every_one(make_pipeline, registry) -> None:
    registry.add_provider("fakes", SilentParcels)
    cfg = config.load(make_pipeline("- {name: turns, provider: silentco, pii: keep, max_open_polls: 10}",
                                    run={"expire_after_days": 30}))
    expired, deferred, waits = [], [], []
    for _ in range(4):  # the first run sees them all; then ten a run, so three runs go round
        with capture_logs() as logs:
            (run,) = runner.run_pipeline(cfg, registry=registry).sources
        assert run.ok, run.error
        expired.append(run.counters.get("expired", 0))
        deferred.append(run.counters.get("open_polls_deferred", 0))
        waits.append(sum(e["event"] == "expiry_waits" for e in logs))
    assert deferred == [0, 20, 20, 20] and waits == [0, 1, 1, 0]
    # Runs two and three left parcels unasked, so none is judged silent; run four completes the round.
    assert expired == [0, 0, 0, 30]
    assert query(cfg, "SELECT count(*) FROM shipments_latest WHERE status = 'expired' AND is_final") == [(30,)]


def test_a_silent_parcel_whose_poll_failed_is_expired_only_by_a_run_that_heard_from_it(make_pipeline, registry) -> None:
    class TenParcels(SilentParcels):
        count = 10

    registry.add_provider("fakes", TenParcels)
    cfg = config.load(make_pipeline("- {name: flaky, provider: silentco, pii: keep}", run={"expire_after_days": 30}))
    expired = []
    for failing in (set(), {"T01", "T02"}, set()):  # first seen; two polls fail; all answer
        TenParcels.failing = staticmethod(lambda due, failing=failing: failing)
        (run,) = runner.run_pipeline(cfg, registry=registry).sources
        assert run.ok, run.error
        expired.append(run.counters.get("expired", 0))
    assert expired == [0, 8, 2]
    assert query(cfg, "SELECT count(*) FROM shipments_latest WHERE status = 'expired'") == [(10,)]


def test_a_capped_parcel_whose_poll_failed_waits_for_its_next_turn_before_it_can_expire(make_pipeline, registry) -> None:
    """Its turn asked it but heard nothing: the round that turn began does not vouch for its silence."""
    failed: list[str] = []

    class FirstOfRunTwoFails(SilentParcels):
        @staticmethod
        def failing(due: list[str]) -> set[str]:
            if run_number != 2:
                return set()
            failed.append(due[0])
            return {due[0]}

    registry.add_provider("fakes", FirstOfRunTwoFails)
    cfg = config.load(make_pipeline("- {name: turns, provider: silentco, pii: keep, max_open_polls: 10}",
                                    run={"expire_after_days": 30}))
    expired = []
    for run_number in range(1, 6):  # first sight; then ten a run, three runs a round; run two's first poll fails
        # Core keeps these instants to the second: runs in one second could not tell which came first (nightly
        # runs are a day apart), so each run here starts in a second of its own.
        time.sleep(1 - datetime.now().microsecond / 1e6)
        (run,) = runner.run_pipeline(cfg, registry=registry).sources
        assert run.ok, run.error
        expired.append(run.counters.get("expired", 0))
    # Run four ends the first round and expires the 29 heard from; run five asks the failed one again, then expires it.
    assert expired == [0, 0, 0, 29, 1]
    (failed_one,) = failed
    assert query(cfg, f"SELECT status FROM shipments_latest WHERE shipment_id = '{failed_one}'") == [("expired",)]
    state = dict(query(cfg, "SELECT key, value FROM source_state WHERE source = 'turns'"))
    assert orjson.loads(state["core.unheard"]) == []  # forgotten once asked again


def test_cursors_committed_and_read_back_next_run(pipeline, registry) -> None:
    from datetime import UTC, datetime

    cfg = pipeline(GOOD_AND_BAD)
    first_until = datetime(2025, 5, 10, tzinfo=UTC)
    runner.run_pipeline(cfg, registry=registry, only=["good"], until=first_until)
    state = dict(query(cfg, "SELECT key, value FROM source_state WHERE source = 'good'"))
    assert orjson.loads(state["updated_at"]) == "2025-05-10T00:00:00+00:00"
    assert orjson.loads(state["seen_start"]) == "2025-04-01T00:00:00+00:00"  # start: on the first run
    second = runner.run_pipeline(cfg, registry=registry, only=["good"], until=datetime(2025, 5, 11, tzinfo=UTC))
    assert second.ok and by_name(second)["good"].loaded == {"shipments": 0}  # nothing changed: nothing appended
    state = dict(query(cfg, "SELECT key, value FROM source_state WHERE source = 'good'"))
    assert orjson.loads(state["seen_start"]) == "2025-05-10T00:00:00+00:00"  # the stored cursor, no lookback


def test_an_until_in_the_future_moves_the_cursor_no_further_than_now(pipeline, registry) -> None:
    from datetime import UTC, datetime, timedelta

    cfg = pipeline(GOOD_AND_BAD)
    before = datetime.now(UTC)
    assert runner.run_pipeline(cfg, registry=registry, only=["good"], until=before + timedelta(days=40)).ok
    state = dict(query(cfg, "SELECT key, value FROM source_state WHERE source = 'good'"))
    assert before <= datetime.fromisoformat(orjson.loads(state["updated_at"])) <= datetime.now(UTC)


def test_auth_error_is_one_line(pipeline, registry) -> None:
    cfg = pipeline("""\
        - name: refused
          provider: authco
        - name: good
          provider: goodco
          pii: keep
        """)
    runs = by_name(runner.run_pipeline(cfg, registry=registry))
    assert runs["refused"].error == "source refused: API key rejected (HTTP 401); check credentials.api_key"
    assert runs["good"].ok


class NoCursorProvider(GoodProvider):
    """Keeps no cursor (AliExpress without max_open_polls): every run of it looks like a first one by its cursors."""

    name = "nocursorco"

    def extract(self, ctx) -> Iterator[Page]:
        yield Page("parcels", {"items": [{"tn": "1Z", "code": "IT", "at": "2025-05-01T00:00:00Z"}]})


def test_a_source_renamed_is_told_on_its_first_run_which_account_it_may_have_been(make_pipeline, registry) -> None:
    registry.add_provider("fakes", NoCursorProvider)
    first = config.load(make_pipeline("- name: good\n  provider: nocursorco\n  pii: keep\n"), env={})
    assert runner.run_pipeline(first, registry=registry).ok
    renamed = config.load(make_pipeline("- name: good-eu\n  provider: nocursorco\n  pii: keep\n"), env={})
    with capture_logs() as logs:
        assert runner.run_pipeline(renamed, registry=registry).ok
    (warning,) = [e for e in logs if e["event"] == "source_maybe_renamed"]
    assert warning["loaded_before"] == ["good (account_id good)"] and "account_id" in warning["hint"]
    with capture_logs() as logs:
        assert runner.run_pipeline(renamed, registry=registry).ok
    assert [e for e in logs if e["event"] == "source_maybe_renamed"] == []  # it has run before: not a first run


class LocalTimesProvider(GoodProvider):
    name = "localco"
    default_timezone = "Asia/Hong_Kong"


def test_a_source_whose_timezone_changed_is_told_what_that_does(make_pipeline, registry) -> None:
    registry.add_provider("fakes", LocalTimesProvider)

    def zone_warnings(zone_line: str) -> list[dict]:
        cfg = config.load(make_pipeline(f"- name: local\n  provider: localco\n  pii: keep\n{zone_line}"), env={})
        with capture_logs() as logs:
            assert runner.run_pipeline(cfg, registry=registry).ok
        return [e for e in logs if e["event"] == "timezone_changed"]

    assert zone_warnings("") == []  # the first run: the provider's default zone, stored
    (warning,) = zone_warnings("  timezone: Asia/Tokyo\n")
    assert (warning["before"], warning["now"]) == ("Asia/Hong_Kong", "Asia/Tokyo") and "new instants" in warning["hint"]
    assert zone_warnings("  timezone: Asia/Tokyo\n") == []  # stored now: no longer a change


def test_only_runs_the_named_sources(pipeline, registry) -> None:
    cfg = pipeline(GOOD_AND_BAD)
    result = runner.run_pipeline(cfg, registry=registry, only=["good"])
    assert [s.source for s in result.sources] == ["good"] and result.ok


def test_only_picks_one_account_of_a_source_as_the_summary_names_it(pipeline, registry) -> None:
    cfg = pipeline("- {name: shops, provider: shopsco, pii: keep}\n" + GOOD_AND_BAD)
    result = runner.run_pipeline(cfg, registry=registry, only=["shops/shop-2", "good"])
    assert sorted(s.label for s in result.sources) == ["good", "shops/shop-2"] and result.ok
    with pytest.raises(ConfigError) as info:  # the command line is wrong: nothing runs, nothing is recorded
        runner.run_pipeline(cfg, registry=registry, only=["shops/shop-9", "good"])
    assert str(info.value) == f"{cfg.path}: --only: source shops has no account shop-9; its accounts: shop-1, shop-2"
    assert runner.run_pipeline(cfg, registry=registry, only=["good"]).ok
    assert [r[0] for r in warehouse.query(Path(cfg.warehouse.path), "SELECT source FROM runs ORDER BY 1")] == [
        "good", "good", "shops"]  # the two runs that ran (shops/shop-2 and good, then good), none of the refused one


def test_only_with_an_unknown_source_is_a_config_error(pipeline, registry) -> None:
    cfg = pipeline(GOOD_AND_BAD)
    with pytest.raises(ConfigError, match="goood"):
        runner.run_pipeline(cfg, registry=registry, only=["goood"])


def test_unknown_provider_fails_its_source_and_names_it(pipeline, registry) -> None:
    cfg = pipeline("""\
        - name: dhl-main
          provider: dhl
        - name: good
          provider: goodco
          pii: keep
        """)
    runs = by_name(runner.run_pipeline(cfg, registry=registry))
    assert runs["dhl-main"].status == "failed" and "'dhl'" in runs["dhl-main"].error
    assert "goodco" in runs["dhl-main"].error  # lists what is installed
    assert runs["good"].ok


def test_disabled_source_is_skipped(pipeline, registry) -> None:
    cfg = pipeline("""\
        - name: bad
          provider: badco
          enabled: false
        - name: good
          provider: goodco
          pii: keep
        """)
    result = runner.run_pipeline(cfg, registry=registry)
    assert result.ok and [s.source for s in result.sources] == ["good"]
    # Asked for by name, it is not silently left out: the command line says what will not happen.
    with pytest.raises(ConfigError, match=r"--only names bad, set to `enabled: false` there; set it to true"):
        runner.run_pipeline(cfg, registry=registry, only=["bad"])


class PersonProvider(GoodProvider):
    """Sends a person's name, which its mapping wraps in pii()."""

    name = "personco"
    streams = (WITH_PERSON,)

    def extract(self, ctx) -> Iterator[Page]:
        yield Page("parcels", {"items": [{"tn": "1Z", "code": "IT", "who": "Chan Tai Man"}]})


def test_pii_hash_without_key_names_the_credential(pipeline, registry) -> None:
    """pii defaults to hash: a provider with personal fields and no credentials.pii_key fails with a config error."""
    registry.add_provider("fakes", PersonProvider)
    cfg = pipeline("- name: people\n  provider: personco\n- name: good\n  provider: goodco\n")
    runs = by_name(runner.run_pipeline(cfg, registry=registry))
    people = runs["people"]
    assert people.status == "failed" and "\n" not in people.error
    assert people.error.startswith(f"{cfg.path}:")
    assert "sources[0].credentials.pii_key" in people.error and "internal error" not in people.error
    assert runs["good"].ok  # no pii() in its mappings: no key needed


def test_pii_hash_with_key_loads(pipeline, registry) -> None:
    registry.add_provider("fakes", PersonProvider)
    cfg = pipeline("- name: people\n  provider: personco\n  credentials: {pii_key: k-0123456789}\n")
    (run,) = runner.run_pipeline(cfg, registry=registry).sources
    assert run.ok, run.error
    (extras,) = query(cfg, "SELECT extras FROM shipments")[0]
    assert "Chan" not in extras and orjson.loads(extras)["who"].startswith("h:")


def test_only_with_an_unknown_source_lists_the_sources(pipeline, registry) -> None:
    cfg = pipeline(GOOD_AND_BAD)
    with pytest.raises(ConfigError) as info:
        runner.run_pipeline(cfg, registry=registry, only=["nope", "good"])
    assert str(info.value) == f"{cfg.path}: --only names no source called nope; sources: good, bad"


UNSET_VARIABLES = """\
- name: good
  provider: goodco
  pii: keep
- name: needs-key
  provider: goodco
  pii: keep
  credentials: {api_key: "${NEEDS_KEY_API_KEY}"}
- name: idle
  provider: badco
  enabled: false
  base_url: ${IDLE_URL}
"""


def test_unset_variable_fails_only_its_source(pipeline, registry) -> None:
    cfg = pipeline(UNSET_VARIABLES)  # loads although two sources have an unset variable
    result = runner.run_pipeline(cfg, registry=registry)
    runs = by_name(result)
    assert sorted(runs) == ["good", "needs-key"]  # the disabled one is skipped, silently
    assert runs["good"].ok
    assert runs["needs-key"].status == "failed" and not result.ok
    assert runs["needs-key"].error == (f"{cfg.path}:16: sources[1].credentials.api_key: ${{NEEDS_KEY_API_KEY}} is unset; "
                                       "export it or give a default with ${NEEDS_KEY_API_KEY:-...}")
    assert sorted(query(cfg, "SELECT source, status FROM runs")) == [("good", "ok"), ("needs-key", "failed")]


def test_unset_variable_of_an_unselected_source_is_ignored(pipeline, registry) -> None:
    cfg = pipeline(UNSET_VARIABLES)
    result = runner.run_pipeline(cfg, registry=registry, only=["good"])
    assert result.ok and [s.source for s in result.sources] == ["good"]


class KeyedProvider(GoodProvider):
    name = "keyedco"
    secrets = ("api_key",)


def test_unknown_credential_fails_its_source_with_a_hint(pipeline, registry) -> None:
    registry.add_provider("fakes", KeyedProvider)
    cfg = pipeline("- name: keyed\n  provider: keyedco\n  pii: keep\n  credentials: {apikey: k-0123456789}\n"
                   "- name: good\n  provider: goodco\n  pii: keep\n")
    runs = by_name(runner.run_pipeline(cfg, registry=registry))
    assert runs["keyed"].error == f"{cfg.path}:13: sources[0].credentials.apikey: unknown credential; did you mean 'api_key'?"
    assert runs["good"].ok


class EchoingProvider(KeyedProvider):
    """An API that quotes the key it refuses in its error (a 400 "unknown key ...")."""

    name = "echoco"

    def extract(self, ctx) -> Iterator[Page]:
        raise TerminalError(f"HTTP 400 invalid_request: unknown key {ctx.secret('api_key')}")
        yield  # pragma: no cover


def test_a_secret_an_api_echoes_in_its_error_is_masked_in_the_run_record(pipeline, registry) -> None:
    registry.add_provider("fakes", EchoingProvider)
    cfg = pipeline("- name: echo\n  provider: echoco\n  pii: keep\n  credentials: {api_key: SEKEYq7Zr4Xw9PbLm2N}\n")
    (run,) = runner.run_pipeline(cfg, registry=registry).sources
    assert run.error == "HTTP 400 invalid_request: unknown key ***"
    assert query(cfg, "SELECT error FROM runs") == [(run.error,)]


def test_a_warehouse_file_that_is_not_a_database_is_named_not_blamed_on_the_plugin(pipeline, registry) -> None:
    cfg = pipeline("- name: good\n  provider: goodco\n  pii: keep\n")
    Path(cfg.warehouse.path).write_bytes(b"not a database" * 30_000)
    (run,) = runner.run_pipeline(cfg, registry=registry).sources
    assert run.error.startswith(f"the warehouse file {cfg.warehouse.path} cannot be read (IO Error: The file ")
    assert "restore it from a backup" in run.error and "internal error" not in run.error


# --- the warehouse's folders ------------------------------------------------------------------------------


def test_a_lake_that_is_a_file_stops_the_run_naming_the_setting(make_pipeline, registry, tmp_path) -> None:
    (tmp_path / "lake").write_text("not a folder")
    cfg = config.load(make_pipeline(GOOD_AND_BAD), env={})
    with pytest.raises(ConfigError, match=r"warehouse\.lake: .*lake is a file, not a folder"):
        runner.run_pipeline(cfg, registry=registry)


def test_a_warehouse_path_that_is_a_folder_stops_the_run_naming_the_file_to_give(make_pipeline, registry,
                                                                                  tmp_path) -> None:
    cfg = config.load(make_pipeline(GOOD_AND_BAD), env={})
    Path(cfg.warehouse.path).mkdir(parents=True)
    with pytest.raises(ConfigError, match=r"warehouse\.path: .* is a folder; name the warehouse file in it"):
        runner.run_pipeline(cfg, registry=registry)


def test_a_run_lock_that_cannot_be_made_is_one_line_naming_the_setting(make_pipeline, registry, monkeypatch) -> None:
    cfg = config.load(make_pipeline(GOOD_AND_BAD), env={})
    lock = runlock.lock_file(cfg.warehouse.path)
    real_open = open

    def refusing_open(file, *args, **kwargs):  # as /proc refuses a new file: ENOENT in a folder that exists
        if str(file) == str(lock):
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", str(lock))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr("builtins.open", refusing_open)
    with pytest.raises(ShipetlError) as info:
        runner.run_pipeline(cfg, registry=registry)
    assert str(info.value) == f"cannot write warehouse.path ({lock.parent}): No such file or directory"


@pytest.mark.parametrize("exc, setting", [
    (PermissionError(1, "Operation not permitted", "{d}"), "warehouse.path"),  # could not create data/ itself
    (PermissionError(13, "Permission denied", "{d}/raw/goodco"), "warehouse.raw"),
    (duckdb.IOException('IO Error: Cannot open file "{d}/lake/_staging/x.parquet": Permission denied'), "warehouse.lake"),
    (duckdb.IOException('IO Error: Cannot open file "{d}/warehouse.duckdb": Read-only file system'), "warehouse.path"),
])
def test_a_folder_that_cannot_be_written_is_named_by_its_setting(tmp_path, exc, setting) -> None:
    d = tmp_path / "data"
    path = tmp_path / "p.yaml"
    path.write_text(f"warehouse: {{path: {d}/warehouse.duckdb, lake: {d}/lake, raw: {d}/raw, tokens: {d}/tokens}}\n"
                    "sources: [{provider: goodco}]\n")
    cfg = config.load(path, env={})
    if isinstance(exc, OSError):
        exc = type(exc)(exc.errno, exc.strerror, exc.filename.format(d=d))
    else:
        exc = type(exc)(str(exc).format(d=d))
    error = storage.write_error(cfg, exc)
    assert error is not None and str(error).startswith(f"cannot write {setting} (")
    assert storage.write_error(cfg, RuntimeError("unrelated")) is None


def test_a_full_disk_under_the_raw_zone_names_warehouse_raw_and_what_frees_space(tmp_path, monkeypatch) -> None:
    class FullDisk:
        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")  # as the compressor raises it: no file name

        def close(self):
            pass

    monkeypatch.setattr(zstandard.ZstdCompressor, "stream_writer", lambda self, fh: FullDisk())
    path = tmp_path / "p.yaml"
    path.write_text(f"warehouse: {{path: {tmp_path}/wh.duckdb, raw: {tmp_path}/raw}}\nsources: [{{provider: goodco}}]\n")
    with pytest.raises(OSError) as caught, RawZoneWriter(tmp_path / "raw", "goodco", "acct", "r1", datetime.now(UTC)) as raw:
        raw.write(Page("orders", b"{}"))
    error = storage.write_error(config.load(path, env={}), caught.value)
    assert str(error) == (f"cannot write warehouse.raw ({tmp_path}/raw): No space left on device; free some space "
                          "(warehouse.raw_keep_days deletes old raw pages after each run)")


class WidePagesProvider(Provider):
    """Pages wider than a tiny warehouse.memory_limit lets DuckDB parse."""

    name = "wideco"
    default_base_url = "https://wideco.example"
    streams = (SHIPMENTS,)

    def extract(self, ctx) -> Iterator[Page]:
        for p in range(4):
            yield Page("parcels", {"items": [{"tn": f"{p}-{i}", "code": "IT", "more": {"note": "x" * 200}}
                                             for i in range(2000)]})


def test_running_out_of_duckdb_memory_names_warehouse_memory_limit(make_pipeline, registry) -> None:
    registry.add_provider("fakes", WidePagesProvider)
    cfg = config.load(make_pipeline("- name: wide\n  provider: wideco\n  pii: keep\n", memory_limit="16MB"), env={})
    (run,) = runner.run_pipeline(cfg, registry=registry).sources
    assert run.status == "failed"
    assert run.error.startswith("DuckDB ran out of memory within warehouse.memory_limit 16MB (failed to allocate "), run.error
    assert run.error.endswith(f"; raise warehouse.memory_limit in {cfg.path}, doubling it for a start")


class _UnrecordableDestination(DuckDBDestination):
    def record_failure(self, run) -> None:
        raise OSError(30, "Read-only file system", "warehouse.duckdb")


def test_a_failure_that_cannot_be_recorded_still_fails_only_its_source(pipeline, registry) -> None:
    registry.add_destination("fakes", "unrecordable", _UnrecordableDestination)
    cfg = pipeline(GOOD_AND_BAD)
    cfg.destination = "unrecordable"
    runs = by_name(runner.run_pipeline(cfg, registry=registry))
    assert runs["bad"].status == "failed" and "boom" in runs["bad"].error
    assert runs["good"].status == "ok" and runs["good"].loaded == {"shipments": 3}


def test_a_failed_source_reports_nothing_deduplicated() -> None:
    from datetime import UTC, datetime

    from shipetl.runs import SourceRun

    run = SourceRun("r1", "se", "shipengine", "se", datetime.now(UTC), extracted={"tracking_events": 5},
                    rejected={"tracking_events": 1})
    run.status = "ok"
    assert run.totals() == (5, 0, 4, 1)  # loaded nothing new: four were already stored
    run.status = "failed"  # the commit failed: nothing was compared with the warehouse
    assert run.totals() == (5, 0, 0, 1)


def test_a_missing_file_is_not_taken_for_an_unwritable_folder(tmp_path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(f"warehouse: {{path: {tmp_path}/warehouse.duckdb}}\nsources: [{{provider: goodco}}]\n")
    cfg = config.load(path, env={})
    assert storage.write_error(cfg, FileNotFoundError(2, "No such file or directory", f"{tmp_path}/ids.txt")) is None


def test_raw_keep_days_prunes_after_a_successful_run_only(make_pipeline, registry, tmp_path) -> None:
    cfg = config.load(make_pipeline(GOOD_AND_BAD, raw_keep_days=3), env={})
    for source in ("good", "bad"):  # a run day long gone, for each account
        (tmp_path / "raw" / ("goodco" if source == "good" else "badco") / source / "2020-01-01" / "r0").mkdir(parents=True)
    runs = by_name(runner.run_pipeline(cfg, registry=registry))
    assert runs["good"].ok and not runs["bad"].ok
    assert not (tmp_path / "raw" / "goodco" / "good" / "2020-01-01").exists()
    assert len(list((tmp_path / "raw" / "goodco" / "good").iterdir())) == 1  # today's pages stay
    assert (tmp_path / "raw" / "badco" / "bad" / "2020-01-01").is_dir()  # a failed run deletes nothing


def test_a_lake_folder_that_refuses_files_after_commit_defers_publishing_not_the_load(pipeline, registry, monkeypatch,
                                                                                        tmp_path) -> None:
    from shipetl import lake

    cfg = pipeline(GOOD_AND_BAD)
    real_replace = lake.os.replace

    def refuse(src, dest):
        raise PermissionError(13, "Permission denied", str(dest))

    monkeypatch.setattr(lake.os, "replace", refuse)
    first = by_name(runner.run_pipeline(cfg, registry=registry, only=["good"]))["good"]
    assert first.ok and first.loaded == {"shipments": 3} and first.counters["lake_publish_deferred"] == 1
    assert query(cfg, "SELECT count(*) FROM shipments") == [(3,)]
    assert not list((tmp_path / "lake").glob("shipments/**/*.parquet"))  # still staged

    monkeypatch.setattr(lake.os, "replace", real_replace)  # the folder is writable again
    assert by_name(runner.run_pipeline(cfg, registry=registry, only=["good"]))["good"].ok
    assert query(cfg, f"SELECT count(*) FROM read_parquet('{tmp_path}/lake/shipments/**/*.parquet')") == [(3,)]
    assert not lake.pending(tmp_path / "lake")


def test_a_second_warehouse_on_the_same_lake_is_refused_before_it_runs(make_pipeline, registry, tmp_path) -> None:
    first = config.load(make_pipeline(GOOD_AND_BAD), env={})
    assert by_name(runner.run_pipeline(first, registry=registry, only=["good"]))["good"].ok
    second = config.load(make_pipeline(GOOD_AND_BAD, path=tmp_path / "other.duckdb"), env={})
    with pytest.raises(ConfigError, match=r"warehouse\.lake: lake .* mirrors the warehouse .*warehouse\.duckdb"):
        runner.run_pipeline(second, registry=registry, only=["good"])
    assert not (tmp_path / "other.duckdb").exists()


def test_a_commit_refused_for_a_warehouse_started_over_names_the_pipeline_to_rebuild(make_pipeline, registry, tmp_path,
                                                                                      monkeypatch) -> None:
    """The check before fetching is skipped while the warehouse is busy; the commit's own then names the file."""
    cfg = config.load(make_pipeline(GOOD_AND_BAD), env={})
    assert by_name(runner.run_pipeline(cfg, registry=registry, only=["good"]))["good"].ok
    Path(cfg.warehouse.path).unlink()  # started over; the lake holds the old warehouse's rows
    monkeypatch.setattr(storage, "_committed", lambda pipeline: None)  # as when the warehouse is busy at the check
    good = by_name(runner.run_pipeline(cfg, registry=registry, only=["good"]))["good"]
    assert not good.ok and f"run `shipetl lake {cfg.path} --rebuild`" in good.error


def test_a_run_removes_the_spill_folders_killed_runs_left(pipeline, registry, tmp_path) -> None:
    import os
    import time

    killed, recent = tmp_path / ".staging" / "20250101T000000Z-dead01", tmp_path / ".staging" / "20991231T000000Z-live01"
    for folder in (killed, recent):
        (folder / "good" / "staged").mkdir(parents=True)
    two_days_ago = time.time() - 2 * 86400
    os.utime(killed, (two_days_ago, two_days_ago))
    assert runner.run_pipeline(pipeline(GOOD_AND_BAD), registry=registry, only=["good"]).ok
    assert not killed.exists() and recent.exists()  # a folder of a run that may still be going stays


def test_the_run_after_a_killed_one_records_the_sources_it_left_unfinished(pipeline, registry, tmp_path) -> None:
    """A run killed with one source committed (just before its note said so) and another under way: the next
    run records the second as failed, keeps the first's own record, and deletes the killed run's spill folder."""
    cfg = pipeline(GOOD_AND_BAD)
    killed = runner.run_pipeline(cfg, registry=registry, only=["good"])
    with runlock.hold(cfg.warehouse.path) as (lock, _):  # what the killed run's note said when it died
        lock.begin(killed.run_id, datetime(2025, 5, 10, 2, 0, tzinfo=UTC), [("good", "goodco", "good"), ("bad", "badco", "bad")])
    holder = orjson.loads(runlock.note_file(cfg.warehouse.path).read_bytes())["holder"]
    spill = tmp_path / ".staging" / killed.run_id / "bad"
    spill.mkdir(parents=True)

    with capture_logs() as logs, pytest.raises(ConfigError):  # a run that fails before any source starts
        runner.run_pipeline(cfg, registry=registry, only=["nosuch"])
    rows = query(cfg, f"SELECT source, status, error, started_at FROM runs WHERE run_id = '{killed.run_id}' ORDER BY source")
    assert [r[:3] for r in rows] == [("bad", "failed", runner.KILLED), ("good", "ok", None)]
    assert rows[0][3] == datetime(2025, 5, 10, 2, 0, tzinfo=UTC)
    (warning,) = [e for e in logs if e["event"] == "previous_run_killed"]
    assert (warning["run_id"], warning["sources"], warning["holder"]) == (killed.run_id, ["good", "bad"], holder)
    assert not spill.parent.exists() and not runlock.note_file(cfg.warehouse.path).exists()

    with capture_logs() as logs:  # recorded once: the note is gone
        assert runner.run_pipeline(cfg, registry=registry, only=["good"]).ok
    assert not [e for e in logs if e["event"] == "previous_run_killed"]
    assert query(cfg, f"SELECT count(*) FROM runs WHERE run_id = '{killed.run_id}'") == [(2,)]


def test_a_run_notes_the_sources_it_has_not_finished_as_each_finishes(pipeline, registry, monkeypatch) -> None:
    cfg = pipeline(GOOD_AND_BAD)
    note = runlock.note_file(cfg.warehouse.path)
    notes: list[dict | None] = []
    real_write = runlock.RunLock._write

    def watching_write(self) -> None:
        real_write(self)
        notes.append(orjson.loads(note.read_bytes()) if note.exists() else None)

    monkeypatch.setattr(runlock.RunLock, "_write", watching_write)
    result = runner.run_pipeline(cfg, registry=registry)
    assert {s.source for s in result.sources} == {"good", "bad"}
    good, bad = ["good", "goodco", "good"], ["bad", "badco", "bad"]
    states = [n and n["unfinished"] for n in notes]
    assert states[:3] in ([[good, bad], [bad], None], [[good, bad], [good], None])  # begun, one finished, both
    assert set(map(str, states[3:])) <= {"None"}  # and the run's end leaves no note
    assert notes[0]["run_id"] == result.run_id
    assert notes[0]["holder"] == runlock.lock_file(cfg.warehouse.path).read_text().strip()
    assert not note.exists()


@pytest.mark.parametrize("text", ["", '{"run_id": "x", "unfi', "[1, 2]", '{"run_id": "x"}'])
def test_a_note_that_is_no_whole_note_of_a_killed_run_records_nothing(pipeline, registry, text) -> None:
    """Not a note this module wrote whole (written by hand, by another tool): nothing to record, nothing fails."""
    cfg = pipeline(GOOD_AND_BAD)
    note = runlock.note_file(cfg.warehouse.path)
    note.parent.mkdir(parents=True, exist_ok=True)
    note.write_text(text)
    with runlock.hold(cfg.warehouse.path) as (_, killed):
        assert killed is None


def test_a_failed_source_keeps_the_pipelines_analytics_settings_in_the_warehouse(make_pipeline, registry) -> None:
    """Recording a failure rewrote the marts' stored settings with their defaults: a BI tool saw 5 days, not 9."""
    path = make_pipeline(GOOD_AND_BAD)
    path.write_text(path.read_text() + "analytics: {stuck_after_days: 9}\n")
    cfg = config.load(path, env={})
    runner.run_pipeline(cfg, registry=registry, only=["good"])
    assert query(cfg, "SELECT analytics_stuck_after_days()") == [(9,)]
    assert not by_name(runner.run_pipeline(cfg, registry=registry, only=["bad"]))["bad"].ok
    assert query(cfg, "SELECT analytics_stuck_after_days()") == [(9,)]


def test_a_second_run_of_the_same_warehouse_stops_before_fetching(pipeline, registry) -> None:
    """A slow night meeting the next cron start: the second run fetches nothing and says who holds the lock."""
    import fcntl

    cfg = pipeline(GOOD_AND_BAD)
    lock = runlock.lock_file(cfg.warehouse.path)
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a+", encoding="utf-8") as held:
        held.write("pid 4242, started 2025-05-10 02:00:00 UTC\n")
        held.flush()
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(RunInProgressError, match=r"another `shipetl run` of this warehouse is under way "
                                                       r"\(pid 4242, started 2025-05-10 02:00:00 UTC\)"):
            runner.run_pipeline(cfg, registry=registry)
        fcntl.flock(held, fcntl.LOCK_UN)
    assert not __import__("pathlib").Path(cfg.warehouse.path).exists()  # nothing fetched, nothing recorded
    result = runner.run_pipeline(cfg, registry=registry)  # the lock released: the next run goes ahead
    assert {s.source for s in result.sources} == {"good", "bad"}
    assert f"pid {__import__('os').getpid()}" in lock.read_text()


def test_the_run_record_times_each_phase_and_lasts_until_its_commit(pipeline, registry) -> None:
    cfg = pipeline(GOOD_AND_BAD)
    good = by_name(runner.run_pipeline(cfg, registry=registry))["good"]
    (details, lasted), = query(cfg, "SELECT details, epoch(finished_at - started_at) FROM runs WHERE source = 'good'")
    seconds = orjson.loads(details)["seconds"]
    assert seconds == good.seconds and set(seconds) == {"fetch_and_map", "commit", "lake"}
    assert 0 <= seconds["lake"] <= seconds["commit"]
    assert lasted >= seconds["fetch_and_map"] + seconds["commit"] - 0.01  # the record's duration takes in its commit


class ListProvider(GoodProvider):
    """Returns its pages as a list, not from a generator."""

    name = "listco"

    def extract(self, ctx) -> list[Page]:
        return [Page("parcels", {"items": [{"tn": "1Z", "code": "IT"}]}), Page("parcels", {"items": [{"tn": "2Z", "code": "DE"}]})]


def test_a_provider_may_return_its_pages_as_any_iterable(pipeline, registry) -> None:
    registry.add_provider("fakes", ListProvider)
    result = runner.run_pipeline(pipeline("- {name: listed, provider: listco, pii: keep}\n"), registry=registry)
    assert result.ok and result.sources[0].loaded == {"shipments": 2}


class StoppedProvider(GoodProvider):
    """Checkpoints after its first page (``checkpoint``), then a stop is asked while its third page is fetched."""

    name = "stopco"
    checkpoint = True
    stop = threading.Event()

    def extract(self, ctx) -> Iterator[Page]:
        ctx.set_cursor("updated_at", datetime(2025, 5, 1, tzinfo=UTC))
        ctx.set_cursor("retry", ["1Z"])
        yield Page("parcels", {"items": [{"tn": "1Z", "code": "IT"}]})
        if self.checkpoint:
            ctx.checkpoint()
        ctx.set_cursor("updated_at", datetime(2025, 5, 2, tzinfo=UTC))
        ctx.set_cursor("retry", [])
        yield Page("parcels", {"items": [{"tn": "2Z", "code": "IT"}]})
        self.stop.set()  # as Ctrl-C would, while the next reply is on its way
        yield Page("parcels", {"items": [{"tn": "3Z", "code": "DE"}]})
        yield Page("parcels", {"items": [{"tn": "4Z", "code": "DE"}]})  # never asked for
        ctx.checkpoint()


@pytest.mark.parametrize("checkpoint", [True, False], ids=["checkpointed", "no-checkpoint"])
def test_a_stopped_run_loads_what_it_fetched_with_the_cursors_of_its_last_checkpoint(
        make_pipeline, registry, monkeypatch, checkpoint) -> None:
    registry.add_provider("fakes", StoppedProvider)
    monkeypatch.setattr(StoppedProvider, "checkpoint", checkpoint)
    monkeypatch.setattr(StoppedProvider, "stop", threading.Event())
    cfg = config.load(make_pipeline("- {name: first, provider: stopco, pii: keep}\n"
                                    "- {name: second, provider: goodco, pii: keep}", run={"max_parallel_sources": 1}))
    result = runner.run_pipeline(cfg, registry=registry, stop=StoppedProvider.stop)
    assert result.interrupted and not result.ok
    first, second = by_name(result)["first"], by_name(result)["second"]
    assert first.status == "interrupted" and first.pages == 3 and first.loaded == {"shipments": 3}
    assert ("goes on from its last checkpoint" if checkpoint else "fetches its window again") in first.error
    assert second.status == "failed" and second.error.startswith("not started")
    assert query(cfg, "SELECT shipment_id FROM shipments ORDER BY 1") == [("1Z",), ("2Z",), ("3Z",)]
    state = dict(query(cfg, "SELECT key, value FROM source_state WHERE source = 'first'"))
    assert state == ({"updated_at": '"2025-05-01T00:00:00+00:00"', "retry": '["1Z"]'} if checkpoint else {})
    assert query(cfg, "SELECT status, loaded FROM runs WHERE source = 'first'") == [("interrupted", 3)]
    assert first.totals() == (3, 3, 0, 0)


class WaitingProvider(GoodProvider):
    """Fetches one page, then is stopped while its next request waits to retry (as a 429 would make it)."""

    name = "waitco"

    def extract(self, ctx) -> Iterator[Page]:
        yield Page("parcels", {"items": [{"tn": "1Z", "code": "IT"}]})
        StoppedProvider.stop.set()
        raise RunStopped("waitco: the run is stopping")


class EagerWaitingProvider(GoodProvider):
    """Makes its requests before returning a list of pages, and is stopped while one waits."""

    name = "eagerco"

    def extract(self, ctx) -> list[Page]:
        StoppedProvider.stop.set()
        raise RunStopped("eagerco: the run is stopping")


@pytest.mark.parametrize("provider, pages", [(WaitingProvider, 1), (EagerWaitingProvider, 0)], ids=["generator", "list"])
def test_a_stop_that_ends_a_wait_loads_the_pages_fetched_before_it(make_pipeline, registry, monkeypatch, provider,
                                                                    pages) -> None:
    registry.add_provider("fakes", provider)
    monkeypatch.setattr(StoppedProvider, "stop", threading.Event())
    cfg = config.load(make_pipeline(f"- {{name: waiting, provider: {provider.name}, pii: keep}}"))
    (run,) = runner.run_pipeline(cfg, registry=registry, stop=StoppedProvider.stop).sources
    assert run.status == "interrupted" and run.pages == pages and sum(run.loaded.values()) == pages
