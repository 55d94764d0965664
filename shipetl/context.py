"""The ExtractContext core hands a provider for one account of one source."""

from __future__ import annotations

import copy
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from datetime import date, datetime, timedelta, timezone
from typing import Any, TypeVar

from pydantic import BaseModel

from .errors import ConfigError, PluginError
from .httpclient import HttpClient, http_client
from .polling import POLL_TURN_CURSOR, PollRound, take_turn
from .ratelimit import RateLimit, limiter_for
from .snapshots import Snapshots
from .tokens import TokenStore

DEFAULT_FIRST_WINDOW = timedelta(days=30)

T = TypeVar("T")


def as_utc(value: date | datetime) -> datetime:
    """A config date or datetime as an aware datetime in UTC (naive means UTC; another offset is converted)."""
    if not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day)
    return value.astimezone(timezone.utc) if value.tzinfo else value.replace(tzinfo=timezone.utc)


def stored_time(cursors: dict[str, Any], key: str) -> datetime | None:
    """The committed time cursor ``key`` as an aware datetime (naive text is UTC); None while unset.

    :raises PluginError: the cursor holds something else (a number, say): it names the cursor.
    """
    stored = cursors.get(key)
    if stored is None or stored == "":
        return None
    try:
        return as_utc(datetime.fromisoformat(stored))
    except (TypeError, ValueError):
        raise PluginError(f"cursor {key!r} holds {stored!r}, which ctx.window cannot read as a time: a window's cursor "
                          "must be set with ctx.set_cursor(key, <datetime>)") from None


RATES = ("per_second", "per_minute", "per_hour")


def effective_rate_limit(default: RateLimit | None, configured) -> RateLimit:
    """The provider's default limit with the source's ``rate_limit:`` applied; rates given replace all default rates."""
    base = dict((default or RateLimit()).__dict__)
    given = configured.model_dump(exclude_none=True) if configured else {}
    if any(r in given for r in RATES):
        base.update(dict.fromkeys(RATES))
    base.update(given)
    return RateLimit(**base)


class RunBookkeeping:
    """The cursor, polling and counter parts of an ExtractContext, shared by the runner's and the contract's.

    Expects ``_cursors`` (as committed), ``new_cursors``, ``_open`` (open shipments), ``counters``, ``unheard``,
    ``log``, ``until``, and for :meth:`window` ``_since_override`` (``--since``), ``_lookback`` and
    ``_first_since`` (where a first run's window starts).
    """

    _cursors: dict[str, Any]
    new_cursors: dict[str, Any]
    _open: Sequence[dict[str, Any]]
    counters: Counter
    unheard: set[str]
    """Shipments whose poll failed in this run (:meth:`mark_unheard`); the runner keeps them from expiry until asked
    again (:func:`shipetl.polling.still_unheard`)."""
    max_open_polls: int | None = None
    """The source's ``max_open_polls``: open records asked again per run at most (None: all of them)."""
    checkpointed: dict[str, Any] | None = None
    """The cursors as the provider's last :meth:`checkpoint` left them; None before its first."""
    started_at: datetime | None = None
    """When the run started, before any of its requests: the time a turn of open polls is kept with (None: now)."""

    _since_override: datetime | None
    _lookback: timedelta
    _first_since: datetime
    until: datetime

    def window(self, cursor_key: str) -> tuple[datetime, datetime]:
        """The time window to fetch: ``--since``, else the stored cursor minus the lookback, else the first window."""
        if self._since_override:
            return self._since_override, self.until
        stored = stored_time(self._cursors, cursor_key)
        return (self._first_since if stored is None else stored - self._lookback), self.until

    def cursor(self, key: str, default: Any = None) -> Any:
        return self.new_cursors.get(key, self._cursors.get(key, default))

    def set_cursor(self, key: str, value: Any) -> None:
        self.new_cursors[key] = value.isoformat() if isinstance(value, datetime) else value

    def checkpoint(self) -> None:
        self.checkpointed = copy.deepcopy(self.new_cursors)

    def checkpoint_moved(self) -> bool:
        """Whether the last checkpoint holds a cursor other than the one committed (an empty value the same as none):
        a run stopped after it leaves the next one less to fetch."""
        def empty(value: Any) -> bool:
            return value is None or value in ("", [], {})

        return self.checkpointed is not None and any(
            value != self._cursors.get(key) and not (empty(value) and empty(self._cursors.get(key)))
            for key, value in self.checkpointed.items())

    def open_shipments(self) -> Sequence[dict[str, Any]]:
        return self._open

    def due_for_polling(self, records: Iterable[T], key: Callable[[T], str]) -> list[T]:
        """The open ``records`` to ask again this run: all of them, or the source's ``max_open_polls`` of them
        taken in turn (:func:`shipetl.polling.take_turn`), the place reached and the turn kept as a cursor for
        the next run and for expiry (:class:`shipetl.polling.PollRound`)."""
        records = list(records)
        if self.max_open_polls is None:
            return records
        round_ = PollRound.from_cursor(self._cursors.get(POLL_TURN_CURSOR))
        # Dated by the run's start, not now: this run's new parcels were asked before this call, after its start.
        when = self.started_at or datetime.now(timezone.utc)
        if len(records) <= self.max_open_polls:
            self.set_cursor(POLL_TURN_CURSOR, round_.took(when, None).to_cursor())
            return records
        due, last = take_turn(records, key, self.max_open_polls, round_.place)
        self.set_cursor(POLL_TURN_CURSOR, round_.took(when, last).to_cursor())
        deferred = len(records) - len(due)
        self.count("open_polls_deferred", deferred)
        self.log.info("open_polls_deferred", open=len(records), polled=len(due), deferred=deferred,
                      runs_per_round=-(-len(records) // len(due)))
        return due

    def mark_unheard(self, shipment_ids: Iterable[str]) -> None:
        self.unheard.update(shipment_ids)

    def count(self, name: str, n: int = 1) -> None:
        self.counters[name] += n


class SourceContext(RunBookkeeping):
    """Implements :class:`shipetl.provider.ExtractContext` over the pipeline config and the warehouse."""

    def __init__(self, *, source, provider_cls, options: BaseModel, account_id: str, label: str,
                 cursors: dict[str, Any], open_shipments: Sequence[dict[str, Any]],
                 since: datetime | None, until: datetime, log: Any, tokens: TokenStore | None = None,
                 query: Callable[[str, list[Any] | None], list[tuple]] | None = None,
                 stop: threading.Event | None = None, started_at: datetime | None = None) -> None:
        self.source_name = source.name
        self._source = source
        self._provider = provider_cls
        self.options = options
        self.account_id = account_id
        self.label = label
        self.auth_command = source.auth_command(account_id)
        self.max_open_polls, self.started_at = source.max_open_polls, started_at
        self.timezone = source.timezone or provider_cls.default_timezone
        self._since_override = since
        self.until = until
        self._lookback = source.lookback
        self._first_since = as_utc(source.start) if source.start else until - DEFAULT_FIRST_WINDOW
        self.log = log
        self._cursors = dict(cursors)
        self.new_cursors: dict[str, Any] = {}
        self._kept: set[str] = set()  # time cursors a --since window leaves as committed (warned once each)
        # Read-only for the provider: a destination's own list is frozen; Snapshots hands out fresh dicts.
        self._open = open_shipments if isinstance(open_shipments, Snapshots) else tuple(open_shipments)
        self.counters: Counter = Counter()
        self.unheard: set[str] = set()
        self.tokens = tokens
        self._query = query
        self._stop = stop  # the run's: set, it ends the waits of this source's HTTP clients

    @property
    def since(self) -> datetime | None:
        """The ``--since`` given on the command line, if any."""
        return self._since_override

    def set_cursor(self, key: str, value: Any) -> None:
        """Store a cursor for the commit; a time cursor never moves back and never jumps a gap.

        A ``--since`` window that starts after the committed cursor (or, with none yet, after the source's
        first window: ``start:``, else 30 days before the run's end) leaves a stretch nobody fetched: the
        cursor stays where it was, so the next plain run fetches that stretch. A window ending before the
        committed cursor (a backfill of old days) leaves the cursor where it was too.
        """
        if isinstance(value, datetime):
            value = self._advanced(key, as_utc(value))  # naive is UTC, as a stored cursor without an offset is
            if value is None:
                return
        super().set_cursor(key, value)

    def _advanced(self, key: str, value: datetime) -> datetime | None:
        """Where a time cursor may go given ``value``; None to leave it as committed."""
        try:
            committed = stored_time(self._cursors, key)
        except PluginError:
            return value  # not a time cursor after all: the provider's own business
        floor = committed or self._first_since
        if self._since_override and self._since_override > floor:
            if key in self._kept:
                return None
            self._kept.add(key)
            self.log.warning("cursor_kept", cursor=key, since=self._since_override.isoformat(),
                             kept=committed.isoformat() if committed else None,
                             reason="the --since window starts after what is loaded; the next run fetches the gap")
            return None
        return None if committed and value <= committed else value

    def http(self, *, rate_limit_key: str | None = None, default_rate_limit: RateLimit | None = None,
             **overrides: Any) -> HttpClient:
        config = effective_rate_limit(default_rate_limit or self._provider.default_rate_limit, self._source.rate_limit)
        kwargs: dict[str, Any] = {
            "base_url": (self._source.base_url or self._provider.default_base_url).rstrip("/"),
            "source": self.label,
            "rate_limit": limiter_for(rate_limit_key or f"{self._provider.name}/{self.account_id}", config),
            "stop": self._stop,
        }
        kwargs.update(overrides)
        return http_client(**kwargs)

    def secret(self, name: str) -> str:
        return self._source.secret(name)

    def query(self, sql: str, params: list[Any] | None = None) -> list[tuple]:
        """Rows of a read-only query over the destination as the last commit left it; [] if there is none yet.

        :raises ConfigError: the query failed (unknown table, syntax, an attempt to write), naming the source.
        """
        if self._query is None:
            return []
        try:
            return self._query(sql, params)
        except ConfigError as exc:
            raise ConfigError(f"source {self.label}: {exc}") from None
