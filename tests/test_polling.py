"""shipetl.polling: per-record requests that fail for now are skipped and counted, unless most of them fail."""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
import structlog
from structlog.testing import capture_logs

from shipetl import AuthError, Polls, Skip, TransientError
from shipetl.polling import (MAX_TURNS, ROUND_END, PollRound, asked_all_since, describe_cursor, looks_down,
                             still_unheard, take_turn, turn_rank)


class Ctx:
    """The parts of an ExtractContext Polls uses."""

    def __init__(self) -> None:
        self.counters: Counter = Counter()
        self.unheard: list[str] = []
        self.log = structlog.get_logger()

    def count(self, name: str, n: int = 1) -> None:
        self.counters[name] += n

    def mark_unheard(self, shipment_ids) -> None:
        self.unheard.extend(shipment_ids)


def failing(down: set[int], *, outage: bool = True):
    """A fetch that answers ``n * 10``, or a Skip for the items in ``down``."""

    def fetch(n: int) -> int | Skip:
        if n in down:
            return Skip("tracking_poll_failed", TransientError(f"item {n}: HTTP 503\nsecond line"), {"item": n},
                        outage=outage)
        return n * 10

    return fetch


def test_half_failing_is_tolerated_more_than_half_is_not() -> None:
    assert not looks_down(failed=10, finished=20)
    assert looks_down(failed=11, finished=20)
    assert not looks_down(failed=19, finished=19)  # not judged before 20...
    assert looks_down(failed=2, finished=3, all_in=True)  # ...unless the run has no more
    assert not looks_down(failed=1, finished=3, all_in=True)
    assert not looks_down(failed=1, finished=2000)
    assert not looks_down(failed=0, finished=0, all_in=True)
    assert looks_down(failed=20, finished=2000, in_a_row=20)  # an API that died halfway through the run
    assert not looks_down(failed=19, finished=2000, in_a_row=19)


def test_an_api_dying_halfway_through_fails_after_twenty_failures_in_a_row() -> None:
    """Most polls answered, then the host stopped answering: not a few records to ask again, an outage."""
    ctx = Ctx()
    polls = Polls(ctx, "Unit API", concurrency=2)
    with pytest.raises(TransientError) as caught:
        list(polls.run(range(2000), failing(set(range(600, 2000)) | {100, 300})))
    assert str(caught.value).startswith("Unit API looks down: the last 20 polls in a row still failed after retries")
    assert polls.finished == 620 and ctx.counters["tracking_poll_failed"] == 22


def test_skipped_items_are_counted_logged_once_and_handed_back_in_order() -> None:
    ctx, again = Ctx(), []
    polls = Polls(ctx, "Unit API", concurrency=4)
    with capture_logs() as logs:
        results = list(polls.run(range(30), failing({3, 17}), again))
        polls.finish()
    assert results == [n * 10 for n in range(30) if n not in (3, 17)]
    assert again == [3, 17] and ctx.counters == Counter({"tracking_poll_failed": 2})
    assert [(e["event"], e["log_level"], e["item"], e["error"]) for e in logs] == [
        ("tracking_poll_failed", "warning", 3, "item 3: HTTP 503"),
        ("tracking_poll_failed", "warning", 17, "item 17: HTTP 503")]


def test_most_failing_raises_one_line_naming_the_api_and_sends_no_more_requests() -> None:
    started = Counter()
    lock = threading.Lock()

    def fetch(n: int) -> Skip:
        with lock:
            started[n] += 1
        time.sleep(0.005)  # a request takes a while: the pool cannot race through all 500 first
        error = TransientError("POST /sync still failing after 6 attempts: HTTP 500")
        return Skip("order_poll_failed", error, {"n": n})

    ctx = Ctx()
    polls = Polls(ctx, "Unit API", concurrency=2)
    with pytest.raises(TransientError) as caught:
        list(polls.run(range(500), fetch))
    assert str(caught.value) == ("Unit API looks down: 20 of the first 20 polls still failed after retries, so nothing "
                                 "is loaded this run; last: POST /sync still failing after 6 attempts: HTTP 500")
    assert ctx.counters["order_poll_failed"] == 20 and len(started) < 100


def test_a_small_run_is_judged_on_all_its_requests_once_finished() -> None:
    polls = Polls(Ctx(), "Unit API", concurrency=2)
    assert list(polls.run([1, 2, 3], failing({1, 2}))) == [30]
    with pytest.raises(TransientError, match="2 of the first 3 polls"):
        polls.finish()


def test_far_side_failures_are_counted_but_never_make_the_api_look_down() -> None:
    ctx, again = Ctx(), []
    polls = Polls(ctx, "Unit API", concurrency=4)
    assert list(polls.run(range(40), failing(set(range(40)), outage=False), again)) == []
    polls.finish()
    assert again == list(range(40)) and ctx.counters["tracking_poll_failed"] == 40


def test_one_request_for_a_batch_counts_every_record_it_skips() -> None:
    ctx = Ctx()
    polls = Polls(ctx, "Unit API", concurrency=1)
    polls.skip(Skip("order_poll_failed", TransientError("HTTP 500"), {"order_sn": ["A", "B", "C"]}), records=3)
    polls.succeeded()
    polls.finish()  # one failed request of two: not down
    assert ctx.counters["order_poll_failed"] == 3 and (polls.failed, polls.finished) == (1, 2)


def test_the_shipments_a_skipped_request_names_are_marked_unheard_for_the_run() -> None:
    ctx = Ctx()
    polls = Polls(ctx, "Unit API", concurrency=2)

    def fetch(n: int) -> int | Skip:
        if n % 2:
            return Skip("tracking_poll_failed", TransientError("HTTP 503"), {"n": n}, shipment_ids=(f"S{n}", f"S{n}:return"))
        return Skip("carrier_errors", TransientError("carrier down"), {"n": n}, outage=False) if n == 4 else n

    assert list(polls.run(range(6), fetch)) == [0, 2]
    assert ctx.unheard == ["S1", "S1:return", "S3", "S3:return", "S5", "S5:return"]


def test_an_error_a_fetch_raises_propagates_at_once() -> None:
    def fetch(n: int) -> int:
        if n == 5:
            raise AuthError("credentials refused")
        return n

    polls = Polls(Ctx(), "Unit API", concurrency=1)
    got = []
    with pytest.raises(AuthError):
        got.extend(polls.run(range(1000), fetch))
    assert got == [0, 1, 2, 3, 4]


def test_requests_run_at_most_twice_the_concurrency_ahead_of_the_reader() -> None:
    started: list[int] = []

    def fetch(n: int) -> int:
        started.append(n)
        return n

    results = Polls(Ctx(), "Acme", concurrency=2).run(iter(range(10_000)), fetch)
    assert [next(results) for _ in range(3)] == [0, 1, 2]
    assert len(started) <= 3 + 2 * 2  # not all 10,000 fetched and held before the reader asks
    results.close()


# ------------------------------------------------------------------------------ max_open_polls rounds


def test_runs_taking_turns_ask_every_record_once_before_any_twice() -> None:
    records = [f"1Z{i:06d}" for i in range(103)]
    after, asked = None, []
    for _ in range(11):  # ten runs of ten and three of the eleventh go round the 103; its other seven start again
        due, after = take_turn(records, str, 10, after)
        asked.append(due)
    first_round = [r for due in asked[:10] for r in due] + asked[10][:3]
    assert sorted(first_round) == records  # each exactly once
    assert asked[10][3:] == asked[0][:7]  # the second round starts where the first did


def test_a_record_joining_the_set_waits_at_most_one_round() -> None:
    records = [f"order-{i}" for i in range(40)]
    _, after = take_turn(records, str, 10, None)
    records.append("order-new")
    for _ in range(5):  # 41 records, 10 a run: five runs go round them all
        due, after = take_turn(records, str, 10, after)
        if "order-new" in due:
            break
    assert "order-new" in due


def test_turns_follow_the_key_not_the_order_records_come_in() -> None:
    records = [{"tn": f"TN{i}"} for i in range(30)]
    due, after = take_turn(records, lambda r: r["tn"], 7, None)
    again, again_after = take_turn(list(reversed(records)), lambda r: r["tn"], 7, None)
    assert due == again and after == again_after == turn_rank(due[-1]["tn"])
    assert take_turn([], str, 5, after) == ([], None)


def test_a_rank_is_the_same_in_another_process() -> None:
    import subprocess
    import sys

    code = "from shipetl.polling import turn_rank; print(turn_rank('1Z999AA10123456784'))"
    ranks = {subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True,
                            env={"PYTHONHASHSEED": seed}).stdout for seed in ("1", "2")}
    assert ranks == {turn_rank("1Z999AA10123456784") + "\n"}


def test_every_record_was_asked_since_the_turns_that_go_once_round_began() -> None:
    records = [f"1Z{i:06d}" for i in range(103)]
    start = datetime(2026, 3, 1, tzinfo=UTC)
    round_, last_asked = PollRound(), {}
    for day in range(25):  # ten records a daily run: eleven runs go round the 103
        when = start + timedelta(days=day)
        due, last = take_turn(records, str, 10, round_.place)
        last_asked.update(dict.fromkeys(due, when))
        round_ = PollRound.from_cursor(round_.took(when, last).to_cursor())  # as the cursor stores it
        since = round_.asked_all_since()
        if day < 10:
            assert since is None  # not round yet: no record's silence is known
        else:
            assert min(last_asked.values()) >= since >= when - timedelta(days=10)
            assert len(round_.turns) <= 11


def test_a_turn_that_asks_every_record_completes_the_round_at_once_and_keeps_the_place() -> None:
    when = datetime(2026, 3, 5, tzinfo=UTC)
    round_ = PollRound("7f00000000000000", [["2026-03-01T00:00:00+00:00", None, "3000000000000000"]])
    done = round_.took(when, None)
    assert done.place == "7f00000000000000" and done.asked_all_since() == when and len(done.turns) == 1


def test_a_bare_rank_from_before_turns_were_kept_is_a_place_with_no_round_yet() -> None:
    old = PollRound.from_cursor("a1b2c3d4e5f60718")
    assert old.place == "a1b2c3d4e5f60718" and old.turns == [] and old.asked_all_since() is None
    assert PollRound.from_cursor(None) == PollRound()


def test_turns_that_never_go_round_are_kept_to_a_bound() -> None:
    round_ = PollRound()
    for i in range(MAX_TURNS + 50):
        round_ = round_.took(datetime(2026, 1, 1, tzinfo=UTC), f"{i:016x}")  # one place a turn
    assert len(round_.turns) == MAX_TURNS and round_.asked_all_since() is None


def test_a_failed_poll_stays_unheard_until_every_record_was_asked_after_it() -> None:
    day = [datetime(2026, 3, d, 2, 0, 0, 123456, tzinfo=UTC) for d in range(1, 6)]
    kept = still_unheard([], ["P1", "P2"], day[0], asked_since=None)
    assert kept == [["P1", day[0].replace(microsecond=0).isoformat()], ["P2", day[0].replace(microsecond=0).isoformat()]]
    # A turn that began with the failing run does not vouch for it; a round begun after it does.
    same_round = still_unheard(kept, [], day[1], asked_since=day[0].replace(microsecond=0))
    assert same_round == kept
    assert still_unheard(kept, [], day[2], asked_since=day[1]) == []
    # Failing again moves it on; an unknown round (a run stopped early) forgets nothing.
    again = still_unheard(kept, ["P2"], day[3], asked_since=day[1])
    assert again == [["P2", day[3].replace(microsecond=0).isoformat()]]
    assert still_unheard(kept, [], day[4], asked_since=None) == kept
    assert still_unheard([["P3", "not a time"], "junk", ["P4"]], [], day[4], asked_since=None) == []
    assert still_unheard([["P5", "2026-03-09T02:00:00"]], [], day[4], asked_since=day[1]) == []  # naive: not core's


def test_a_run_with_no_turn_asked_every_record_at_its_start() -> None:
    start = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)
    assert asked_all_since(start, {}) == start
    assert asked_all_since(start, {"core.poll_turn": {"place": "00ff", "turns": [["2026-02-28T02:00:00+00:00", None, "00ff"]]}}) is None
    everything = PollRound().took(start, None).to_cursor()
    assert asked_all_since(start, {"core.poll_turn": everything}) == start


def test_shipetl_state_tells_cores_polling_cursors_in_words() -> None:
    start = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)
    halfway = PollRound().took(start, "8000000000000000")
    assert describe_cursor("core.poll_turn", halfway.to_cursor()) == (
        "next turn after 50% of the round; 1 turn(s) kept; the kept turns have not gone once round yet")
    gone_round = halfway.took(start + timedelta(days=1), ROUND_END).to_cursor()
    assert describe_cursor("core.poll_turn", gone_round) == (
        "next turn after 100% of the round; 2 turn(s) kept; every open shipment asked since 2026-03-01T02:00:00+00:00")
    assert describe_cursor("core.poll_turn", None).startswith("next turn after the start of the round; 0 turn(s)")
    unheard = still_unheard([], ["P1", "P2", "P3", "P4"], start, asked_since=None)
    assert describe_cursor("core.unheard", unheard) == (
        "4 shipment(s) whose poll failed, not expired until asked again: P1 (failed 2026-03-01T02:00:00+00:00), "
        "P2 (failed 2026-03-01T02:00:00+00:00), P3 (failed 2026-03-01T02:00:00+00:00) and 1 more")
    assert describe_cursor("core.unheard", []) == "no shipment waiting"
    # A provider's own cursor, and a value core did not write, are shown as stored.
    assert describe_cursor("labels_created_at", "2026-03-01T00:00:00+00:00") is None
    assert describe_cursor("core.poll_turn", {"place": "not hex", "turns": []}) is None
