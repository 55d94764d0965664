"""Per-record requests (one parcel's tracking, one order's detail) that may fail for now without failing the run.

A record whose request still fails after core's retries (``TransientError``: 429, 5xx, timeouts, cut bodies)
costs that record, not the night: the plugin's fetch returns a :class:`Skip` for it, and :class:`Polls` counts
it, logs it with the fields naming it, and hands it back so the plugin can ask for it again next run. When most
requests fail, or the last ``JUDGE_AFTER`` fail in a row, the API is down, and loading a sliver would hide
that: the source fails with one line (rule in :func:`looks_down`). Errors the plugin does not turn into a
``Skip`` (``AuthError``, ``TerminalError``) fail the source at once.

A source's ``max_open_polls`` caps how many records a run asks again of those the warehouse holds as open:
:func:`take_turn` picks them in a fixed order that goes round, each run going on where the last stopped, and
:class:`PollRound` remembers the turns since every record was last asked, so expiry judges a parcel's silence
only on what was asked (:meth:`PollRound.asked_all_since`). A record whose poll failed was asked but not
heard from: :func:`still_unheard` keeps it from expiry until a later turn has asked it again.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_right
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from itertools import islice
from typing import TYPE_CHECKING, Any, TypeVar

from .errors import TransientError

if TYPE_CHECKING:
    from .provider import ExtractContext

T = TypeVar("T")
R = TypeVar("R")

# Failed requests are judged once this many have finished (a run with fewer is judged on all of them); this
# many failing in a row is an outage however many succeeded before (an API that died halfway through).
JUDGE_AFTER = 20
# Where ``ExtractContext.due_for_polling`` keeps its PollRound: core's cursor, named apart from a provider's.
POLL_TURN_CURSOR = "core.poll_turn"
# Core's cursor of the shipments whose latest poll failed, each ``[shipment_id, since]`` (:func:`still_unheard`).
UNHEARD_CURSOR = "core.unheard"
# Turn ranks are 64-bit hashes: the round is this many places long, the last one this.
ROUND = 1 << 64
ROUND_END = f"{ROUND - 1:016x}"
# Turns a PollRound keeps while they do not yet go round once: enough for a round a thousand runs long.
MAX_TURNS = 1000


def looks_down(failed: int, finished: int, *, all_in: bool = False, in_a_row: int = 0) -> bool:
    """Whether the API looks down: more than half of the finished requests failed after their retries, judged
    once ``JUDGE_AFTER`` have finished, or on however many there were once the run's last one has (``all_in``);
    or the last ``JUDGE_AFTER`` failed one after another (``in_a_row``), however many succeeded before.

    A lone failure among thousands is a record to ask again; half of them failing is an outage, and a run that
    loaded the other half would look like a quiet night. Twenty is enough that bad luck alone does not trip it
    (with core's six attempts a request fails for good about once in a million at 10% faults), and small enough
    that a dead API fails the source after a few seconds instead of after every record.
    """
    return _mostly_failed(failed, finished, all_in) or in_a_row >= JUDGE_AFTER


def _mostly_failed(failed: int, finished: int, all_in: bool) -> bool:
    return (all_in or finished >= JUDGE_AFTER) and failed * 2 > finished


@dataclass(frozen=True)
class Skip:
    """A record left for the next run, as a plugin's fetch returns it.

    ``counter`` is what it is counted and logged as, ``record`` the log fields naming it. ``outage=False`` marks a
    failure on the far side of the API (a carrier's), which is counted but never makes the API look down.
    ``shipment_ids`` are the shipments (``shipment_id`` as the mappings write it) the failed request would have
    brought news of: none of them is expired until asked again (``ExtractContext.mark_unheard``).
    """

    counter: str
    error: Exception
    record: Mapping[str, Any]
    outage: bool = True
    shipment_ids: Sequence[str] = ()


class Polls:
    """The per-record requests of one account's run to one API; ``api`` names it in the outage error."""

    def __init__(self, ctx: ExtractContext, api: str, concurrency: int) -> None:
        self.ctx, self.api, self.concurrency = ctx, api, concurrency
        self.failed = self.finished = self.in_a_row = 0
        self._last_error = ""

    def run(self, items: Iterable[T], fetch: Callable[[T], R | Skip], again: list[T] | None = None) -> Iterator[R]:
        """``fetch(item)`` for every item, ``concurrency`` at a time, each result yielded in ``items`` order.

        An item whose fetch returns a :class:`Skip` goes to :meth:`skip`, and to ``again`` when the caller keeps
        such items for the next run. An error a fetch raises propagates at once; requests not started by then (or
        when the caller stops reading) are never sent. At most twice ``concurrency`` requests run ahead of the
        caller, so memory stays bounded however many items there are, and an outage stops the run early.
        """
        pool = ThreadPoolExecutor(max_workers=self.concurrency)
        waiting = iter(items)
        ahead: deque = deque((item, pool.submit(fetch, item)) for item in islice(waiting, 2 * self.concurrency))
        try:
            while ahead:
                item, future = ahead.popleft()
                for following in islice(waiting, 1):
                    ahead.append((following, pool.submit(fetch, following)))
                outcome = future.result()
                if isinstance(outcome, Skip):
                    if again is not None:
                        again.append(item)
                    self.skip(outcome)
                    continue
                self.succeeded()
                yield outcome
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def succeeded(self) -> None:
        """Note a request that got its answer (a miss such as not-found counts as an answer)."""
        self.finished += 1
        self.in_a_row = 0

    def skip(self, skip: Skip, records: int = 1) -> None:
        """Note a failed request: count its ``records`` as ``skip.counter`` and log one warning.

        :raises TransientError: the API looks down (:func:`looks_down`).
        """
        error = (str(skip.error).splitlines() or [type(skip.error).__name__])[0]
        self.finished += 1
        self.ctx.count(skip.counter, records)
        if skip.shipment_ids:
            self.ctx.mark_unheard(skip.shipment_ids)
        self.ctx.log.warning(skip.counter, **skip.record, error=error, action="skipped; asked again next run")
        if skip.outage:
            self.failed += 1
            self.in_a_row += 1
            self._last_error = error
            self._judge(all_in=False)

    def finish(self) -> None:
        """Judge the run on all its requests, once the last has finished (a small run is judged only here).

        :raises TransientError: the API looks down.
        """
        self._judge(all_in=True)

    def _judge(self, *, all_in: bool) -> None:
        if looks_down(self.failed, self.finished, all_in=all_in, in_a_row=self.in_a_row):
            which = (f"{self.failed} of the first {self.finished} polls" if _mostly_failed(self.failed, self.finished, all_in)
                     else f"the last {self.in_a_row} polls in a row")
            raise TransientError(f"{self.api} looks down: {which} still failed after retries, so nothing is "
                                 f"loaded this run; last: {self._last_error}")


def turn_rank(key: str) -> str:
    """A record's place in the polling round: a hash of its key, the same in every process and release."""
    return hashlib.blake2b(key.encode(), digest_size=8).hexdigest()


def take_turn(records: Iterable[T], key: Callable[[T], str], limit: int, after: str | None) -> tuple[list[T], str | None]:
    """Up to ``limit`` of ``records``, the first ones whose :func:`turn_rank` comes after ``after``, going round
    past the last; and where the turn stopped, to pass as ``after`` next time: the rank of the last one taken,
    or the end of the round when no record ranks after it (None when none is taken).

    Ranks spread records evenly over the round whatever their keys look like, so runs taking ``limit`` each
    ask every record once before asking any twice, and a record that joins the set waits one round at most.
    """
    ranked = sorted(((turn_rank(key(record)), record) for record in records), key=lambda pair: pair[0])
    start = bisect_right(ranked, after or "", key=lambda pair: pair[0])
    taken = (ranked[start:] + ranked[:start])[:limit]
    if not taken:
        return [], None
    return [record for _, record in taken], ROUND_END if taken[-1][0] == ranked[-1][0] else taken[-1][0]


@dataclass
class PollRound:
    """Where an account's round of open polls stands, as core's ``core.poll_turn`` cursor keeps it.

    ``place`` is the rank the last turn reached; ``turns`` are the turns since every open record was last asked,
    oldest first, each ``[when, from, to]``: taken at ``when`` (ISO), it asked every open record ranked after
    ``from`` up to ``to``, going round (``from`` None: from the start of the round; ``to`` None: all of them).
    """

    place: str | None = None
    turns: list[list[str | None]] = field(default_factory=list)

    @classmethod
    def from_cursor(cls, value) -> PollRound:
        """The round a stored cursor describes (a bare rank, as stored before turns were kept, has none)."""
        if isinstance(value, dict):
            return cls(value.get("place"), [list(turn) for turn in value.get("turns") or []])
        return cls(value if isinstance(value, str) else None)

    def to_cursor(self) -> dict:
        """The value the ``core.poll_turn`` cursor stores (JSON)."""
        return {"place": self.place, "turns": self.turns}

    def took(self, when: datetime, last: str | None) -> PollRound:
        """This round after a turn taken at ``when`` from ``place`` to ``last`` (None: every open record was asked)."""
        turns = [*self.turns, [_stamp(when), self.place, last]]
        start = _round_start(turns)
        return PollRound(last or self.place, turns[start:] if start is not None else turns[-MAX_TURNS:])

    def asked_all_since(self) -> datetime | None:
        """When the turns that go once round began: every record open since then was asked at that time or later
        (a record that opened later was asked as it opened). None while the kept turns do not go round."""
        start = _round_start(self.turns)
        return datetime.fromisoformat(self.turns[start][0]) if start is not None else None


def _stamp(when: datetime) -> str:
    """An instant as core's polling cursors keep it, turns and failed polls alike: ISO, to the second, rounded
    down (a lower bound still), so the two compare as equals when they are the same run's."""
    return when.replace(microsecond=0).isoformat()


def _turn_length(first: str | None, last: str | None) -> int:
    """Places of the round a turn from ``first`` (exclusive) to ``last`` (inclusive) went over."""
    if last is None:
        return ROUND
    if first is None:
        return int(last, 16) + 1
    return (int(last, 16) - int(first, 16)) % ROUND


def _round_start(turns: list[list[str | None]]) -> int | None:
    """Index of the oldest of the newest turns that together go once round; None while all of them do not."""
    covered = 0
    for i in range(len(turns) - 1, -1, -1):
        covered += _turn_length(turns[i][1], turns[i][2])
        if covered >= ROUND:
            return i
    return None


def asked_all_since(started_at: datetime, cursors: Mapping[str, Any]) -> datetime | None:
    """When every open record was last all asked, as a run that went to its end with ``cursors`` tells: at its own
    start when it asked them all (it kept no turn: no ``max_open_polls``), else when the latest turns that go
    once round began (None while they do not)."""
    if POLL_TURN_CURSOR not in cursors:
        return started_at
    return PollRound.from_cursor(cursors[POLL_TURN_CURSOR]).asked_all_since()


def describe_cursor(key: str, value: Any) -> str | None:
    """Core's polling cursors (``core.poll_turn``, ``core.unheard``) in words, for ``shipetl state``; None for any
    other key, or a value core did not write. The stored values hold up to a thousand turns or one entry per
    shipment: too much to read."""
    if key == POLL_TURN_CURSOR:
        try:
            round_ = PollRound.from_cursor(value)
            reached = f"{int(round_.place, 16) / ROUND:.0%} of the round" if round_.place else "the start of the round"
            since = round_.asked_all_since()
        except (TypeError, ValueError, IndexError):
            return None
        asked = (f"every open shipment asked since {since.isoformat()}" if since else
                 "the kept turns have not gone once round yet")
        return f"next turn after {reached}; {len(round_.turns)} turn(s) kept; {asked}"
    if key == UNHEARD_CURSOR:
        entries = [(shipment_id, since) for shipment_id, since, _ in _unheard_entries(value)]
        if not entries:
            return "no shipment waiting"
        shown = ", ".join(f"{shipment_id} (failed {since})" for shipment_id, since in entries[:3])
        more = f" and {len(entries) - 3} more" if len(entries) > 3 else ""
        return f"{len(entries)} shipment(s) whose poll failed, not expired until asked again: {shown}{more}"
    return None


def still_unheard(kept: Any, unheard: Iterable[str], when: datetime, asked_since: datetime | None) -> list[list[str]]:
    """The ``core.unheard`` cursor after a run started at ``when``: ``[shipment_id, since]`` of each shipment whose
    latest poll failed, this run's ``unheard`` and those of ``kept`` (the cursor before) not asked again since.

    A failed poll at ``since`` was asked again once every record has been asked from a later instant: an entry
    goes when ``asked_since`` (:func:`asked_all_since`; None: not known, as in a run stopped early) is after it.
    A shipment failing again gets this run's instant.
    """
    out = {shipment_id: since for shipment_id, since, failed_at in _unheard_entries(kept)
           if asked_since is None or asked_since <= failed_at}
    out.update(dict.fromkeys(unheard, _stamp(when)))
    return [[shipment_id, since] for shipment_id, since in sorted(out.items())]


def _unheard_entries(value: Any) -> Iterator[tuple[str, str, datetime]]:
    """``(shipment_id, since, since as an instant)`` of each entry of a ``core.unheard`` cursor that core wrote: a
    pair of an id and an ISO instant with its offset (a hand-edited or foreign one is left out)."""
    for entry in value if isinstance(value, list) else ():
        try:
            shipment_id, since = entry
            failed_at = datetime.fromisoformat(since)
        except (TypeError, ValueError):
            continue
        if failed_at.tzinfo is not None:
            yield str(shipment_id), since, failed_at
