"""Base classes a provider plugin fills in: Provider, Stream, TableMapping, Page, ExtractContext.

A provider fetches pages (``Provider.extract``) and declares, per stream, how a page maps to canonical
columns as DuckDB SQL (``TableMapping``). Core does everything generic around it: raw zone, typing,
UTC conversion, statuses, keys, rejects, loading.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from .config import SourceConfig
    from .httpclient import HttpClient
    from .ratelimit import RateLimit
    from .tokens import TokenStore

T = TypeVar("T")

# What an order's own status can say about its ship-by obligation (Provider.order_states).
ORDER_STATES = ("cancelled", "cancel_requested", "awaiting_payment")


@dataclass(frozen=True)
class Page:
    """One provider response, tagged with its stream.

    ``body`` is the decoded JSON, or better the response bytes exactly as received (kept byte for byte
    in the raw zone, never decoded and re-encoded).

    ``meta`` carries request context the mapping needs and the body lacks (the carrier code asked for,
    the order a tracking reply belongs to, what is already known of a shipment).
    """

    stream: str
    body: Any
    meta: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TableMapping:
    """How one stream's pages become rows of one canonical table.

    ``sql`` is a DuckDB SELECT over the relation ``pages(meta JSON, body <Stream.body_type>)``. It
    outputs canonical column names; columns it leaves out are NULL. Time columns come out raw (text or
    numbers) and are listed in ``times`` with their kind (``iso``, ``epoch_s``, ``epoch_ms``, ``local``):
    core converts them to UTC and turns unparseable values into rejects. ``status`` may be NULL where
    no table knows the raw code (core makes it ``unknown`` and counts it); the macros
    ``status_of(namespace, code)`` and ``final_of(namespace, code)`` look codes up in the registered
    status tables. A column ``reject_reason`` (text) rejects the row with that reason. A column
    ``time_zone`` (an IANA name per row, for APIs that send one beside each naive time) is the zone of
    that row's ``local`` times instead of the source's ``timezone``; an unknown name rejects the row.
    Neither column is stored.

    ``counters`` are SQL expressions over the mapped row (alias ``m``) that give a counter name or NULL;
    core counts each name and shows it in the run summary (``time_conflicts:usps``).
    """

    table: str
    sql: str
    times: Mapping[str, str] = field(default_factory=dict)
    counters: tuple[str, ...] = ()


@dataclass(frozen=True)
class Stream:
    """A kind of page a provider fetches, with the DuckDB type of its body and its table mappings."""

    name: str
    body_type: str
    mappings: tuple[TableMapping, ...] = ()


class NoOptions(BaseModel):
    """Options model of a provider that takes none."""

    model_config = ConfigDict(extra="forbid")


class ExtractContext(Protocol):
    """What core hands ``Provider.extract`` for one account of one source."""

    source_name: str
    account_id: str
    options: BaseModel
    timezone: str | None
    since: datetime | None
    """The ``--since`` of the command line; None on a plain run (take the window from :meth:`window`)."""
    until: datetime
    log: Any
    tokens: TokenStore
    """Where OAuth-style token pairs of this account are kept; see :class:`shipetl.tokens.TokenStore`."""
    auth_command: str
    """The command that links this account again (``shipetl auth daily.yaml shopee/shop-1``), for the error
    an OAuth-style provider raises when its tokens are gone."""

    def window(self, cursor_key: str) -> tuple[datetime, datetime]:
        """The window to fetch: ``--since``, else the stored cursor minus the source's lookback, else ``start:``.

        The cursor must have been set as a ``datetime`` (stored as ISO text); anything else is a PluginError.
        """

    def http(self, *, rate_limit_key: str | None = None, default_rate_limit: RateLimit | None = None,
             **overrides: Any) -> HttpClient:
        """An HTTP client on the source's base URL with core's retries, rate limit and redacted logs.

        The rate limit (provider default with the source's ``rate_limit:``) is shared per account;
        ``rate_limit_key`` shares it wider, e.g. ``aliexpress/app-1234`` for every seller of one app key.
        ``default_rate_limit`` replaces the provider's default for this account (ShipEngine's test keys get
        fewer requests); the source's ``rate_limit:`` still applies over it. The first client of a key sets its limit.
        """

    def secret(self, name: str) -> str:
        """The raw value of ``credentials.<name>``; a missing one is a config error naming the key."""

    def cursor(self, key: str, default: Any = None) -> Any:
        """A cursor as the last committed run of this account left it."""

    def set_cursor(self, key: str, value: Any) -> None:
        """Record a cursor; it is committed together with this run's rows, or not at all."""

    def checkpoint(self) -> None:
        """Mark a point the next run can go on from: the cursors set so far cover every page yielded so far.

        A run stopped early (Ctrl-C, or the SIGTERM of a scheduler's timeout) loads every page it fetched,
        with the cursors of its last checkpoint (before the first one: as committed), so a long backfill
        goes on where it stopped instead of starting again. Call it where nothing yielded so far waits on a
        later request: after a time slice whose records are all fetched, with the cursor at the slice's end
        and the retry lists as they stand. Pages after the last checkpoint load too, so yield a record's
        pages in an order any prefix of which is safe to load: the page that ends a record's polling (a
        final order snapshot) after the pages it needs.
        """

    def open_shipments(self) -> Sequence[dict[str, Any]]:
        """Latest snapshot of this account's shipments that are not final (they need polling), one dict of
        columns each. Read-only; iterate it rather than copy it into a list: an account can hold hundreds of
        thousands, and each row becomes a dict only as the iteration reaches it."""

    def due_for_polling(self, records: Iterable[T], key: Callable[[T], str]) -> list[T]:
        """The ones to ask now of ``records``, which this run would ask again because the warehouse holds them
        as open: all of them, unless the source sets ``max_open_polls``; then that many, taken in turn by
        ``key`` (a tracking number, an order number) so that successive runs go round them all, the rest
        counted as ``open_polls_deferred``. Call it once per run, on every open record a poll would update and
        on those alone: parcels new to this run and ones a failed poll left to retry are always asked. Core
        expires a silent parcel only once the turns have gone round the records passed."""

    def mark_unheard(self, shipment_ids: Iterable[str]) -> None:
        """Shipments this run asked about and got no answer for (their poll failed): their news since the last
        answer is unknown, so core expires none of them, however long they have been silent, until a later run
        has asked them again. :class:`~shipetl.polling.Polls` calls it for every :class:`~shipetl.polling.Skip`
        naming ``shipment_ids``."""

    def count(self, name: str, n: int = 1) -> None:
        """Add to a named counter shown in the run summary (``not_found``, ``time_conflicts``...)."""

    def query(self, sql: str, params: list[Any] | None = None) -> list[tuple]:
        """Rows of a read-only SQL query over the warehouse (``[]`` before the first commit)."""


class Provider:
    """A source of orders, shipments or tracking events; subclass per provider.

    One instance serves one source of the pipeline; ``extract`` runs once per account.
    """

    name: ClassVar[str]
    default_base_url: ClassVar[str]
    default_timezone: ClassVar[str | None] = None
    default_rate_limit: ClassVar[RateLimit | None] = None
    options_model: ClassVar[type[BaseModel]] = NoOptions
    streams: ClassVar[tuple[Stream, ...]] = ()
    secrets: ClassVar[tuple[str, ...]] = ()
    required_secrets: ClassVar[tuple[str, ...]] = ()
    order_states: ClassVar[Mapping[str, str]] = {}
    """Order statuses (``orders.status_raw``, any case) that change an order's ship-by obligation, each with
    one of :data:`ORDER_STATES`: ``cancelled`` (no obligation any more), ``cancel_requested`` (the buyer asked
    to cancel, the seller has not answered) or ``awaiting_payment`` (none yet; ``paid_at`` is not the test, as
    a cash-on-delivery order has none until delivery yet must ship on time). Any other status: to be shipped
    by its ship-by date. The analytics marts read them through ``analytics_order_state(provider, status_raw)``."""
    pii_key_optional: ClassVar[bool] = False
    """True when the only personal data the mappings pass through ``pii()`` is incidental (in extras): a source
    with ``pii: hash`` and no ``credentials.pii_key`` then has it dropped instead of being refused."""

    def __init__(self, source_name: str, options: BaseModel) -> None:
        self.source_name = source_name
        self.options = options

    def check_source(self, source: SourceConfig) -> None:
        """Raise ConfigError for what this source lacks that its options model cannot see; default: a missing or
        empty ``credentials.<name>`` for each of ``required_secrets``.

        Core calls it before any account runs, so ``shipetl validate``, ``check`` and ``run`` refuse the same
        sources with the same line. Override it (calling ``super()``) for a value that may come from either
        options or credentials.
        """
        for name in self.required_secrets:
            source.secret(name)

    def accounts(self) -> list[str]:
        """Account ids this source covers (shops of one seller, ...); default: one, named like the source."""
        return [getattr(self.options, "account_id", None) or self.source_name]

    def extract(self, ctx: ExtractContext) -> Iterator[Page]:
        """Yield every page of this account for the run's window (``ctx.window(cursor)``, up to ``ctx.until``)."""
        raise NotImplementedError

    def authorize(self, source: SourceConfig, tokens: TokenStore, ask: Callable[[str], str],
                  accounts: Sequence[str]) -> list[str]:
        """Link ``accounts`` (ids from :meth:`accounts`) interactively (``shipetl auth PIPELINE SOURCE[/ACCOUNT]``).

        For providers whose accounts must be authorized by a person once (OAuth-style codes): show the
        link with ``ask(text)``, which prints ``text`` and returns what the user pasted back, exchange the
        code and store the first token pair in ``tokens``. Returns one line per account for the user.
        :raises ConfigError: this provider needs no authorization (the default).
        """
        from .errors import ConfigError

        raise ConfigError(f"provider {self.name} needs no authorization: its credentials go in the pipeline file "
                          f"(source {self.source_name})")
