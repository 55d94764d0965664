"""The ExtractContext: rate limits, fetch windows, cursors, counters, and the HTTP client it builds."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import httpx
import pytest
from structlog.testing import capture_logs

from shipetl import ratelimit
from shipetl.config import RateLimitConfig, SourceConfig
from shipetl.context import DEFAULT_FIRST_WINDOW, POLL_TURN_CURSOR, SourceContext, as_utc, effective_rate_limit
from shipetl.errors import PluginError
from shipetl.log import get_logger
from shipetl.polling import PollRound
from shipetl.ratelimit import RateLimit

UNTIL = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


class FakeProvider:
    name = "acme"
    default_base_url = "https://api.acme.example/"
    default_timezone = "Asia/Hong_Kong"
    default_rate_limit = RateLimit(per_second=10, per_minute=300, burst=5, max_in_flight=4)


def make_ctx(cursors=None, since=None, until=UNTIL, started_at=None, **source) -> SourceContext:
    src = SourceConfig.model_validate({"name": "acme-main", "provider": "acme", **source})
    return SourceContext(source=src, provider_cls=FakeProvider, options=None, account_id="acct-1",
                         label="acme-main/acct-1", cursors=cursors or {}, open_shipments=[{"shipment_id": "1Z"}],
                         since=since, until=until, log=get_logger(), started_at=started_at)


# ------------------------------------------------------------------------------------ rate limit


def test_no_override_keeps_provider_default() -> None:
    assert effective_rate_limit(FakeProvider.default_rate_limit, None) == FakeProvider.default_rate_limit


def test_rates_given_replace_all_default_rates() -> None:
    got = effective_rate_limit(FakeProvider.default_rate_limit, RateLimitConfig(per_hour=1000))
    assert got == RateLimit(per_second=None, per_minute=None, per_hour=1000, burst=5, max_in_flight=4)


def test_burst_and_in_flight_merge() -> None:
    got = effective_rate_limit(FakeProvider.default_rate_limit, RateLimitConfig(burst=1, max_in_flight=2))
    assert got == RateLimit(per_second=10, per_minute=300, burst=1, max_in_flight=2)


def test_no_default() -> None:
    assert effective_rate_limit(None, None) == RateLimit()
    assert effective_rate_limit(None, RateLimitConfig(per_second=2)) == RateLimit(per_second=2)


# ---------------------------------------------------------------------------------------- window


def test_since_wins() -> None:
    since = datetime(2025, 5, 1, tzinfo=UTC)
    ctx = make_ctx(cursors={"updated_at": "2025-05-20T00:00:00+00:00"}, since=since, start="2024-01-01", lookback="2d")
    assert ctx.since == since
    assert ctx.window("updated_at") == (since, UNTIL)


def test_stored_cursor_minus_lookback() -> None:
    ctx = make_ctx(cursors={"updated_at": "2025-05-20T06:00:00+00:00"}, start="2024-01-01", lookback="2d")
    assert ctx.since is None
    assert ctx.window("updated_at") == (datetime(2025, 5, 18, 6, 0, tzinfo=UTC), UNTIL)


def test_stored_cursor_keeps_its_offset_as_an_instant() -> None:
    ctx = make_ctx(cursors={"t": "2025-05-20T08:00:00+08:00"}, lookback="6h")
    start, _ = ctx.window("t")
    assert start == datetime(2025, 5, 19, 18, 0, tzinfo=UTC)


def test_a_stored_cursor_without_an_offset_is_utc() -> None:
    assert make_ctx(cursors={"t": "2025-05-20T06:00:00"}).window("t")[0] == datetime(2025, 5, 20, 6, tzinfo=UTC)


def test_a_naive_cursor_value_is_utc_and_compares_with_the_stored_one() -> None:
    ctx = make_ctx(cursors={"t": "2025-05-20T06:00:00+00:00"})
    ctx.set_cursor("t", datetime(2025, 5, 21, 6, 0))  # naive: a plugin's own parse of an API's time
    assert ctx.new_cursors == {"t": "2025-05-21T06:00:00+00:00"}
    ctx.set_cursor("t", datetime(2025, 5, 19))  # earlier than committed: left as it is
    assert ctx.new_cursors == {"t": "2025-05-21T06:00:00+00:00"}


def test_times_with_another_offset_are_converted_to_utc() -> None:
    start = make_ctx(start="2024-03-05T08:00:00+08:00").window("k")[0]
    assert start.utcoffset() == timedelta(0) and start.isoformat() == "2024-03-05T00:00:00+00:00"


def test_a_checkpoint_moved_only_when_it_holds_a_cursor_other_than_the_committed_one() -> None:
    ctx = make_ctx(cursors={"t": "2025-05-20T06:00:00+00:00"})
    assert not ctx.checkpoint_moved()  # none yet
    ctx.set_cursor("retry", [])
    ctx.checkpoint()
    assert not ctx.checkpoint_moved()  # an empty retry list where none was committed: nothing gained
    ctx.set_cursor("t", datetime(2025, 5, 21, tzinfo=UTC))
    ctx.checkpoint()
    assert ctx.checkpoint_moved()


def test_a_window_cursor_that_is_not_a_time_is_a_plugin_error_naming_it() -> None:
    ctx = make_ctx(cursors={"updated_at": 1747720800000})
    with pytest.raises(PluginError, match=r"cursor 'updated_at' holds 1747720800000, which ctx.window cannot read"):
        ctx.window("updated_at")


def test_other_cursor_key_falls_back_to_start() -> None:
    ctx = make_ctx(cursors={"updated_at": "2025-05-20T06:00:00+00:00"}, start="2024-01-01")
    assert ctx.window("created_at") == (datetime(2024, 1, 1, tzinfo=UTC), UNTIL)


def test_start_as_date_is_utc_midnight() -> None:
    start, until = make_ctx(start="2024-03-05").window("k")
    assert start == datetime(2024, 3, 5, tzinfo=UTC) and start.tzinfo is not None and until == UNTIL


def test_start_as_datetime() -> None:
    assert make_ctx(start="2024-03-05T08:00:00+08:00").window("k")[0] == datetime(2024, 3, 5, tzinfo=UTC)
    assert make_ctx(start="2024-03-05T08:00:00").window("k")[0] == datetime(2024, 3, 5, 8, tzinfo=UTC)


def test_default_first_window_is_30_days() -> None:
    assert DEFAULT_FIRST_WINDOW == timedelta(days=30)
    assert make_ctx().window("k") == (UNTIL - timedelta(days=30), UNTIL)


def test_as_utc() -> None:
    assert as_utc(date(2024, 1, 2)) == datetime(2024, 1, 2, tzinfo=UTC)
    assert as_utc(datetime(2024, 1, 2, 3)) == datetime(2024, 1, 2, 3, tzinfo=UTC)
    hk = datetime(2024, 1, 2, 3, tzinfo=timezone(timedelta(hours=8)))
    assert as_utc(hk) == hk


# --------------------------------------------------------------------------------------- cursors


def test_set_cursor_with_datetime_stores_iso_text() -> None:
    ctx = make_ctx(cursors={"updated_at": "2025-01-01T00:00:00+00:00", "page": 3})
    when = datetime(2025, 5, 20, 6, 30, 15, 123456, tzinfo=UTC)
    ctx.set_cursor("updated_at", when)
    ctx.set_cursor("offset", 42)
    assert ctx.new_cursors == {"updated_at": "2025-05-20T06:30:15.123456+00:00", "offset": 42}
    assert ctx.cursor("updated_at") == "2025-05-20T06:30:15.123456+00:00"
    assert ctx.cursor("page") == 3 and ctx.cursor("nothing", "dflt") == "dflt"


def test_cursor_set_this_run_does_not_move_this_runs_window() -> None:
    ctx = make_ctx(cursors={"updated_at": "2025-05-20T00:00:00+00:00"})
    ctx.set_cursor("updated_at", datetime(2025, 5, 30, tzinfo=UTC))
    assert ctx.window("updated_at")[0] == datetime(2025, 5, 20, tzinfo=UTC)


def test_a_since_window_after_the_cursor_leaves_it_so_the_gap_is_fetched_next() -> None:
    committed = {"updated_at": "2025-05-01T00:00:00+00:00"}
    ctx = make_ctx(cursors=committed, since=datetime(2025, 5, 10, tzinfo=UTC))  # 1..10 May never fetched
    ctx.set_cursor("updated_at", UNTIL)
    assert ctx.new_cursors == {}
    assert make_ctx(cursors=committed).window("updated_at")[0] == datetime(2025, 5, 1, tzinfo=UTC)


def test_a_since_window_reaching_back_to_the_cursor_advances_it() -> None:
    ctx = make_ctx(cursors={"updated_at": "2025-05-01T00:00:00+00:00"}, since=datetime(2025, 4, 20, tzinfo=UTC))
    ctx.set_cursor("updated_at", UNTIL)
    assert ctx.new_cursors == {"updated_at": UNTIL.isoformat()}


def test_a_backfill_of_old_days_never_moves_the_cursor_back() -> None:
    ctx = make_ctx(cursors={"updated_at": "2025-05-01T00:00:00+00:00"}, since=datetime(2025, 1, 1, tzinfo=UTC),
                   until=datetime(2025, 2, 1, tzinfo=UTC))
    ctx.set_cursor("updated_at", datetime(2025, 2, 1, tzinfo=UTC))
    assert ctx.cursor("updated_at") == "2025-05-01T00:00:00+00:00"


def test_a_first_since_window_after_start_sets_no_cursor() -> None:
    ctx = make_ctx(since=datetime(2025, 3, 1, tzinfo=UTC), start="2025-01-01")  # January, February never fetched
    ctx.set_cursor("updated_at", UNTIL)
    assert ctx.new_cursors == {}
    ctx = make_ctx(since=datetime(2025, 3, 1, tzinfo=UTC))  # no start: a window reaching back past 30 days sets it
    ctx.set_cursor("updated_at", UNTIL)
    assert ctx.new_cursors == {"updated_at": UNTIL.isoformat()}


def test_a_first_since_window_inside_the_default_first_window_sets_no_cursor() -> None:
    """No start: a first plain run would fetch the 30 days before UNTIL; a window of the last ten leaves twenty
    nobody fetched, which the next plain run must fetch (the cursor moved to UNTIL lost them)."""
    ctx = make_ctx(since=UNTIL - timedelta(days=10))
    ctx.set_cursor("updated_at", UNTIL)
    assert ctx.new_cursors == {}


def test_counters_timezone_and_open_shipments() -> None:
    ctx = make_ctx()
    ctx.count("not_found")
    ctx.count("not_found", 2)
    assert ctx.counters == {"not_found": 3}
    assert ctx.timezone == "Asia/Hong_Kong"
    assert make_ctx(timezone="Europe/London").timezone == "Europe/London"
    shipments = ctx.open_shipments()
    assert list(shipments) == [{"shipment_id": "1Z"}]
    with pytest.raises(AttributeError):
        shipments.append({"shipment_id": "2Z"})  # read-only: what a destination handed in stays as it was


def test_open_records_are_all_due_unless_the_source_caps_them() -> None:
    numbers = [f"1Z{i:04d}" for i in range(25)]
    ctx = make_ctx()
    assert ctx.due_for_polling(iter(numbers), key=str) == numbers
    assert ctx.new_cursors == {} and ctx.counters == {}
    assert make_ctx(max_open_polls=25).due_for_polling(numbers, key=str) == numbers


def test_capped_runs_go_round_the_open_records_from_where_the_last_committed_run_stopped() -> None:
    numbers = [f"1Z{i:04d}" for i in range(25)]
    cursors: dict = {}
    asked: list[str] = []
    for _ in range(3):
        ctx = make_ctx(cursors=cursors, max_open_polls=10)
        with capture_logs() as logs:
            due = ctx.due_for_polling(numbers, key=str)
        assert len(due) == 10 and ctx.counters["open_polls_deferred"] == 15
        assert [e for e in logs if e["event"] == "open_polls_deferred"] == [
            {"event": "open_polls_deferred", "log_level": "info", "open": 25, "polled": 10, "deferred": 15,
             "runs_per_round": 3}]
        asked += due
        cursors = {**cursors, **ctx.new_cursors}  # what the commit stores
    assert sorted(asked[:25]) == numbers and asked[25:] == asked[:5]
    assert set(cursors) == {POLL_TURN_CURSOR}


def test_the_cursor_keeps_each_turn_until_the_turns_go_round() -> None:
    numbers = [f"1Z{i:04d}" for i in range(25)]
    cursors: dict = {}
    for run in range(1, 5):  # 10 of 25 a run: three runs go round
        ctx = make_ctx(cursors=cursors, max_open_polls=10)
        ctx.due_for_polling(numbers, key=str)
        cursors = {**cursors, **ctx.new_cursors}
        kept = PollRound.from_cursor(cursors[POLL_TURN_CURSOR])
        assert (kept.asked_all_since() is None) == (run < 3)
        assert len(kept.turns) == min(run, 3)
    assert PollRound.from_cursor(cursors[POLL_TURN_CURSOR]).place == kept.turns[-1][2]
    # Few enough open records to ask every one: the round is done at once, its place kept.
    ctx = make_ctx(cursors=cursors, max_open_polls=10)
    assert ctx.due_for_polling(numbers[:10], key=str) == numbers[:10]
    after = PollRound.from_cursor(ctx.new_cursors[POLL_TURN_CURSOR])
    assert after.place == kept.place and len(after.turns) == 1
    assert after.asked_all_since() == datetime.fromisoformat(after.turns[0][0])


def test_a_turn_is_dated_by_the_start_of_its_run() -> None:
    started = datetime(2026, 3, 1, 2, 0, 0, 750_000, tzinfo=UTC)
    for records in ([f"1Z{i:04d}" for i in range(25)], ["1Z0001"]):  # a turn of some, a turn of all
        ctx = make_ctx(max_open_polls=10, started_at=started)
        ctx.due_for_polling(records, key=str)
        (turn,) = PollRound.from_cursor(ctx.new_cursors[POLL_TURN_CURSOR]).turns
        assert datetime.fromisoformat(turn[0]) == started.replace(microsecond=0)


def test_secret() -> None:
    from shipetl.errors import ConfigError

    ctx = make_ctx(credentials={"api_key": "k-123456"})
    assert ctx.secret("api_key") == "k-123456"
    with pytest.raises(ConfigError, match="credentials.api_secret"):
        ctx.secret("api_secret")


def test_query_without_warehouse_is_empty() -> None:
    assert make_ctx().query("SELECT 1") == []


# ------------------------------------------------------------------------------------------- http


def test_http_uses_base_url_override_and_shared_limiter(monkeypatch) -> None:
    monkeypatch.setattr(ratelimit, "_limiters", {})
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(200, json={"ok": True})

    ctx = make_ctx(base_url="http://127.0.0.1:9/sandbox/acme/", rate_limit={"per_minute": 60})
    with ctx.http(transport=httpx.MockTransport(handler)) as client:
        assert client.get("/v1/items").json() == {"ok": True}
        limiter = client.rate_limit
    assert seen == ["http://127.0.0.1:9/sandbox/acme/v1/items"]
    assert limiter is ratelimit._limiters["acme/acct-1"]
    assert [b.rate for b in limiter.buckets] == [1.0] and limiter.max_in_flight == 4
    with ctx.http(rate_limit_key="acme/partner-1", transport=httpx.MockTransport(handler)) as other:
        assert other.rate_limit is ratelimit._limiters["acme/partner-1"] and other.rate_limit is not limiter


def test_http_may_replace_the_providers_default_limit_and_the_sources_own_still_wins(monkeypatch) -> None:
    monkeypatch.setattr(ratelimit, "_limiters", {})
    slower = RateLimit(per_minute=20, burst=2)
    with make_ctx().http(default_rate_limit=slower) as client:
        assert [b.rate for b in client.rate_limit.buckets] == [20 / 60] and client.rate_limit.max_in_flight == 8
    monkeypatch.setattr(ratelimit, "_limiters", {})
    with make_ctx(rate_limit={"per_minute": 120}).http(default_rate_limit=slower) as client:
        assert [b.rate for b in client.rate_limit.buckets] == [2.0]


def test_http_default_base_url(monkeypatch) -> None:
    monkeypatch.setattr(ratelimit, "_limiters", {})
    seen: list[str] = []
    ctx = make_ctx()
    with ctx.http(transport=httpx.MockTransport(lambda r: seen.append(str(r.url)) or httpx.Response(204))) as client:
        client.get("/v2/x")
    assert seen == ["https://api.acme.example/v2/x"]
