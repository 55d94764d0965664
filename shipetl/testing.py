"""The provider contract suite, shipped to plugin authors: the checks every provider must pass.

Subclass :class:`ProviderContract` in your plugin's tests and point it at your plugin module and its
captured-shape JSON fixtures; pytest then runs every ``test_*`` method of the contract::

    from pathlib import Path
    import shipetl_dhl
    from shipetl.testing import ErrorFixture, ProviderContract

    class TestDhlContract(ProviderContract):
        plugin = shipetl_dhl
        fixtures = Path(shipetl_dhl.__file__).parent / "fixtures"
        routes = {"GET /v1/shipments?page=1": "shipments_page_1.json",
                  "GET /v1/shipments?page=2": "shipments_last_page.json"}
        errors = {"auth": ErrorFixture(401, "error_401.json"),
                  "rate_limit": ErrorFixture(429, "error_429.json", {"Retry-After": "1"}),
                  "bad_input": ErrorFixture(400, "error_400.json")}

The provider's ``extract`` runs against an ``httpx.MockTransport`` that answers each request from the
fixture named by its route (or against a live loopback server: override :meth:`contract_base_url`);
its pages go through the real raw zone and the real transform. Checked: the plugin loads through the
hooks; every request stays under the configured ``base_url``; paging ends; every table has every
canonical column with its canonical Arrow type; instants are UTC and do not depend on the session time
zone; statuses are in the vocabulary and raw codes are mapped; ``event_id``s and snapshot hashes are
stable; a second run, started from the cursors, open shipments and warehouse the first run's commit left,
adds nothing; every fixture route that answers without an error is requested by one of the two runs;
rows equal ``expected_<table>.json`` where given; auth, rate-limit and bad-input replies raise
``AuthError``, ``TransientError`` and ``TerminalError``; no credential reaches logs, stdout, the raw
zone, rows or error messages.
"""

from __future__ import annotations

import contextlib
import io
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

import httpx
import orjson
import pyarrow as pa
import pytest
import structlog
import zstandard

from . import redact, statuses, transform, warehouse
from .context import RunBookkeeping
from .errors import AuthError, ConfigError, TerminalError, TransientError
from .httpclient import http_client
from .log import configure as configure_logging
from .plugins import registry_from_modules
from .provider import Page, Provider
from .rawzone import RawZoneWriter
from .runs import SourceRun
from .schema import TABLES
from .tokens import TokenStore

__all__ = ["ContractContext", "ErrorFixture", "FixtureTransport", "Harvest", "ProviderContract", "Reply", "Rerun"]

CONTRACT_BASE_URL = "http://contract.test/base-url-check"
ERROR_KINDS: dict[str, type[Exception]] = {"auth": AuthError, "rate_limit": TransientError, "bad_input": TerminalError}
MAX_REQUESTS = 2000  # more than this from fixtures means paging never ends
# Instants must not move when the DuckDB session zone does; this one is +05:45, so any drift shows.
FAR_ZONE = "Asia/Kathmandu"


@dataclass(frozen=True)
class Reply:
    """An HTTP reply served from a fixture file (``None``: empty body)."""

    status: int = 200
    file: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


ErrorFixture = Reply  # an error reply: ``ErrorFixture(401, "error_401.json")``


def _reply(value: str | Reply) -> Reply:
    """A route's reply: a fixture file name is a 200 with that body."""
    return value if isinstance(value, Reply) else Reply(200, value)


def _route(key: str) -> tuple[str, str, dict[str, str]]:
    method, _, target = key.strip().partition(" ")
    url = httpx.URL(target.strip() or "/")
    return method.upper(), "/" + url.path.strip("/"), dict(url.params)


class FixtureTransport(httpx.MockTransport):
    """Answers requests under ``base_url`` from fixture files by route, and records every request.

    A route is ``"METHOD /path"`` plus optional query parameters that must match
    (``"GET /v1/orders?page=2"``); the route naming most parameters wins, and counts the request in
    ``answered`` under its key. ``reply_all`` answers every request with one reply (error cases). A
    request outside ``base_url`` or matching no route gets a 404 and is recorded in ``unmatched``.
    """

    def __init__(self, base_url: str, fixtures: Path, routes: Mapping[str, str | Reply] | None = None,
                 reply_all: Reply | None = None) -> None:
        self.base = httpx.URL(base_url.rstrip("/"))
        self.fixtures = Path(fixtures)
        self.routes = [(key, _route(key), _reply(value)) for key, value in (routes or {}).items()]
        self.reply_all = reply_all
        self.requests: list[httpx.Request] = []
        self.unmatched: list[str] = []
        self.answered: Counter[str] = Counter()
        super().__init__(self._handle)

    def _body(self, reply: Reply) -> bytes:
        return (self.fixtures / reply.file).read_bytes() if reply.file else b""

    def _respond(self, reply: Reply) -> httpx.Response:
        headers = {"content-type": "application/json", **reply.headers}
        return httpx.Response(reply.status, content=self._body(reply), headers=headers)

    def _handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if len(self.requests) > MAX_REQUESTS:
            raise RuntimeError(f"more than {MAX_REQUESTS} requests: paging does not end")
        prefix = self.base.path.rstrip("/")
        url = request.url
        if (url.scheme, url.host, url.port) != (self.base.scheme, self.base.host, self.base.port) \
                or not (url.path == prefix or url.path.startswith(prefix + "/")):
            self.unmatched.append(f"{request.method} {url} (outside base_url {self.base})")
            return httpx.Response(404, json={"error": "outside base_url"})
        if self.reply_all is not None:
            return self._respond(self.reply_all)
        path, params = "/" + url.path[len(prefix):].strip("/"), dict(url.params)
        candidates = [(len(p), key, reply) for key, (m, rp, p), reply in self.routes
                      if m == request.method and rp == path and all(params.get(k) == v for k, v in p.items())]
        if not candidates:
            self.unmatched.append(f"{request.method} {path}?{url.query.decode()} (no fixture route)")
            return httpx.Response(404, json={"error": "no fixture route"})
        _, key, reply = max(candidates, key=lambda c: c[0])
        self.answered[key] += 1
        return self._respond(reply)


class _Recording(httpx.BaseTransport):
    """Forwards to a real transport (a live loopback server) and records the requests."""

    def __init__(self, base_url: str) -> None:
        self.inner, self.base = httpx.HTTPTransport(), base_url.rstrip("/")
        self.requests: list[httpx.Request] = []
        self.unmatched: list[str] = []
        self.answered: Counter[str] = Counter()  # stays empty: a live server has no fixture routes

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if not str(request.url).startswith(self.base):
            self.unmatched.append(f"{request.method} {request.url} (outside base_url {self.base})")
        return self.inner.handle_request(request)


class ContractContext(RunBookkeeping):
    """An :class:`~shipetl.provider.ExtractContext` for one extract over a given transport.

    A first run unless given what an earlier run's commit left: its ``cursors``, its ``open_shipments``
    (rows of ``shipments`` not final) and the ``warehouse_path`` that ``query`` reads.
    """

    def __init__(self, provider_cls: type[Provider], options: Any, *, base_url: str, transport: httpx.BaseTransport,
                 credentials: Mapping[str, str], since: datetime, until: datetime, tmp: Path,
                 timezone_name: str | None, open_shipments: Sequence[dict[str, Any]],
                 cursors: Mapping[str, Any] | None = None, warehouse_path: Path | None = None) -> None:
        self.source_name = self.account_id = provider_cls.name
        self.options, self.since, self.until = options, since, until
        self.timezone = timezone_name or provider_cls.default_timezone
        self.log = structlog.get_logger(source=provider_cls.name)
        self.tokens = TokenStore(tmp / "tokens")
        self.auth_command = f"shipetl auth PIPELINE {provider_cls.name}"
        self._cursors: dict[str, Any] = dict(cursors or {})
        self.new_cursors: dict[str, Any] = {}
        self.counters: Counter = Counter()
        self._provider, self._base_url, self._transport = provider_cls, base_url, transport
        self._credentials, self._open = dict(credentials), open_shipments
        self._warehouse_path = warehouse_path

    def window(self, cursor_key: str) -> tuple[datetime, datetime]:
        return self.since, self.until

    def http(self, *, rate_limit_key: str | None = None, **overrides: Any):
        kwargs: dict[str, Any] = {"base_url": self._base_url, "source": self.source_name, "max_retries": 2,
                                  "sleep": lambda _s: None}
        kwargs.update(overrides)
        kwargs["transport"] = self._transport  # the contract's, whatever the plugin passes
        return http_client(**kwargs)

    def secret(self, name: str) -> str:
        if name not in self._credentials:
            raise ConfigError(f"credentials.{name}: missing; list it in {self._provider.__name__}.secrets "
                              f"or in the contract's credentials")
        return self._credentials[name]

    def query(self, sql: str, params: list[Any] | None = None) -> list[tuple]:
        if self._warehouse_path is None:
            return []  # a first run: nothing committed yet
        return warehouse.query(self._warehouse_path, sql, params)


@dataclass
class Harvest:
    """One extract + transform of the fixtures: what the checks look at."""

    provider: type[Provider]
    requests: list[httpx.Request]
    unmatched: list[str]
    answered: Counter[str]  # fixture route -> requests it answered
    pages: list[Page]
    cursors: dict[str, Any]  # what the extract set with ``ctx.set_cursor``
    raw_files: dict[str, list[Path]]
    raw_dir: Path
    result: transform.TransformResult
    tables: dict[str, pa.Table]  # staged rows per table; ``rejects`` always, empty when nothing was rejected
    output: str  # logs, stdout and stderr of the extract and transform
    base_url: str
    run_id: str
    extracted_at: datetime


@dataclass
class Rerun:
    """A second run over the same fixtures, started from what the first run's commit left."""

    harvest: Harvest
    open_shipments: int  # how many the second extract was handed
    loaded: tuple[dict[str, int], dict[str, int]]  # rows each commit inserted per table, rejects left out


def pytest_report_header(config) -> str:
    """With ``pytest_plugins = ["shipetl.testing"]``, a plugin's test log says what it was checked against."""
    from . import __version__
    from .hookspecs import API_VERSION

    return f"shipetl {__version__}, hook API version {API_VERSION}, provider contract suite"


def _render(value: Any) -> Any:
    """Values as ``expected_<table>.json`` writes them: instants as UTC ISO with ``Z``, decimals as text."""
    if isinstance(value, datetime):
        text = value.astimezone(UTC).replace(tzinfo=None).isoformat()
        return text + "Z"
    if isinstance(value, (Decimal, date)):
        return str(value)
    return value


def _staged(result: transform.TransformResult, table: str) -> pa.Table:
    """One table's staged rows of a transform, as Arrow."""
    relation = result.con.sql(f"SELECT * FROM {transform.staged_table(table)}")
    return relation.to_arrow_table() if hasattr(relation, "to_arrow_table") else relation.arrow()  # DuckDB < 1.4


def _staged_tables(result: transform.TransformResult) -> dict[str, pa.Table]:
    """Every table a transform staged rows for, and ``rejects`` always (empty when nothing was rejected)."""
    tables = {name: _staged(result, name) for name in sorted(result.staged)}
    tables.setdefault("rejects", TABLES["rejects"].schema.empty_table())
    return tables


@contextlib.contextmanager
def _captured_output() -> Iterator[io.StringIO]:
    """Logs (rendered as JSON lines, through shipetl's real redaction), stdout and stderr, in one buffer."""
    buffer, saved = io.StringIO(), structlog.get_config()
    configure_logging("json", "debug", stream=buffer)
    try:
        with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
            yield buffer
    finally:
        structlog.configure(**saved)


class ProviderContract:
    """Base class of a provider's contract tests; set the class attributes below in a subclass."""

    plugin: ClassVar[ModuleType]
    """The module holding the plugin's hook implementations (what its entry point names)."""
    provider: ClassVar[type[Provider] | None] = None
    """The provider under test; default: the one provider the plugin registers."""
    fixtures: ClassVar[Path]
    """Folder of captured-shape JSON replies, error bodies and ``expected_<table>.json`` rows."""
    routes: ClassVar[Mapping[str, str | Reply]] = {}
    """``"GET /path?param=value"`` -> fixture file (or :class:`Reply`), relative to the base URL."""
    errors: ClassVar[Mapping[str, Reply]] = {}
    """``auth``, ``rate_limit``, ``bad_input`` -> the error reply the API sends in that case."""
    options: ClassVar[Mapping[str, Any]] = {}
    credentials: ClassVar[Mapping[str, str]] = {}
    """Values for the provider's ``secrets``; unlisted ones get a made-up value."""
    timezone: ClassVar[str | None] = None
    until: ClassVar[datetime] = datetime(2025, 1, 31, tzinfo=UTC)
    window: ClassVar[timedelta] = timedelta(days=30)
    open_shipments: ClassVar[list[dict[str, Any]]] = []
    allow_unknown: ClassVar[frozenset[str]] = frozenset()
    """Raw codes that may stay ``unknown`` (documented as unmapped); any other unknown code fails."""
    allow_rejects: ClassVar[tuple[str, ...]] = ()
    """Substrings of reject reasons the fixtures are meant to produce; any other reject fails."""

    # -- fixtures ---------------------------------------------------------------------------------

    @pytest.fixture(scope="class")
    @classmethod
    def contract_base_url(cls) -> str | None:
        """Override to return a live loopback server's URL; ``None`` serves ``routes`` from fixtures."""
        return None

    @pytest.fixture(scope="class")
    @classmethod
    def contract_registry(cls):
        return registry_from_modules({cls._plugin_name(): cls.plugin})

    @pytest.fixture(scope="class")
    @classmethod
    def contract_provider(cls, contract_registry) -> type[Provider]:
        broken = [f"plugin {p.label} is broken: {p.error}" for p in contract_registry.broken()]
        assert not broken, "; ".join(broken)
        if cls.provider is not None:
            return cls.provider
        names = sorted(contract_registry.providers)
        assert len(names) == 1, f"plugin registers providers {names}; set `provider =` on the contract class"
        return contract_registry.providers[names[0]]

    @pytest.fixture(scope="class")
    @classmethod
    def contract_secrets(cls, contract_provider) -> dict[str, str]:
        made_up = {name: f"contract-{name}-{uuid.uuid4().hex[:12]}" for name in contract_provider.secrets}
        return {**made_up, **cls.credentials}

    @pytest.fixture(scope="class")
    @classmethod
    def harvest(cls, contract_registry, contract_provider, contract_secrets, contract_base_url,
                tmp_path_factory) -> Iterator[Harvest]:
        """The first run: one extract + transform with no state, but the class's ``open_shipments``."""
        with cls._harvesting(contract_registry, contract_provider, contract_secrets, contract_base_url,
                             tmp_path_factory.mktemp("contract"), "contract-run-1", cls.until) as first:
            yield first

    @pytest.fixture(scope="class")
    @classmethod
    def rerun(cls, harvest: Harvest, contract_registry, contract_secrets, contract_base_url,
              tmp_path_factory) -> Iterator[Rerun]:
        """The first run committed to a real warehouse, then a second run from the state that commit left."""
        tmp = tmp_path_factory.mktemp("rerun")
        wh, lake, name = tmp / "warehouse.duckdb", tmp / "lake", harvest.provider.name
        # The first run's rows again, on a connection of their own: a commit attaches the warehouse to it.
        staged = cls._transform(contract_registry, harvest.provider, harvest.raw_files, harvest.run_id)
        try:
            first_loaded = cls._commit(wh, lake, staged, harvest)
        finally:
            staged.con.close()
        cursors, open_shipments = warehouse.start_state(wh, name, name, name)  # what `shipetl run` reads
        with cls._harvesting(contract_registry, harvest.provider, contract_secrets, contract_base_url, tmp,
                             "contract-run-2", cls.until + timedelta(hours=1), cursors=cursors,
                             open_shipments=open_shipments, warehouse_path=wh) as second:
            second_loaded = cls._commit(wh, lake, second.result, second)
            yield Rerun(second, len(open_shipments), (first_loaded, second_loaded))

    # -- helpers a subclass may reuse -------------------------------------------------------------

    @classmethod
    def _plugin_name(cls) -> str:
        return getattr(cls.plugin, "__name__", "plugin").removeprefix("shipetl_")

    @classmethod
    @contextlib.contextmanager
    def _harvesting(cls, registry, provider_cls: type[Provider], secrets: Mapping[str, str], live_url: str | None,
                    tmp: Path, run_id: str, started: datetime, **earlier: Any) -> Iterator[Harvest]:
        """One extract of the fixtures (or of the live server at ``live_url``) through the raw zone and the
        transform; ``earlier`` is an earlier run's state, as :class:`ContractContext` takes it."""
        base_url = live_url or CONTRACT_BASE_URL
        transport = _Recording(base_url) if live_url else FixtureTransport(base_url, cls.fixtures, cls.routes)
        with _captured_output() as out:
            pages, cursors = cls._extract(provider_cls, secrets, base_url, transport, tmp, **earlier)
            with RawZoneWriter(tmp / "raw", provider_cls.name, provider_cls.name, run_id, started) as raw:
                for page in pages:
                    raw.write(page)
                files = raw.close()
            result = cls._transform(registry, provider_cls, files, run_id, extracted_at=started)
        try:
            yield Harvest(provider_cls, transport.requests, transport.unmatched, transport.answered, pages, cursors,
                          files, tmp / "raw", result, _staged_tables(result), out.getvalue(), base_url, run_id, started)
        finally:
            result.con.close()
            redact.clear_secrets()

    @classmethod
    def _extract(cls, provider_cls: type[Provider], secrets: Mapping[str, str], base_url: str,
                 transport: httpx.BaseTransport, tmp: Path, **earlier: Any) -> tuple[list[Page], dict[str, Any]]:
        """Every account's pages, and the cursors the extract set; a first run unless ``earlier`` says otherwise."""
        for value in secrets.values():
            redact.register_secret(value)  # as config.load does for a real pipeline
        options = provider_cls.options_model.model_validate(dict(cls.options))
        state = {"open_shipments": list(cls.open_shipments), **earlier}
        ctx = ContractContext(provider_cls, options, base_url=base_url, transport=transport, credentials=secrets,
                              since=cls.until - cls.window, until=cls.until, tmp=tmp, timezone_name=cls.timezone,
                              **state)
        provider = provider_cls(provider_cls.name, options)
        accounts = provider.accounts()
        if len(accounts) != 1:
            # One context holds one account's cursors, open shipments and rows, as `shipetl run` gives each.
            raise ConfigError(f"{cls.__name__}.options give {provider_cls.name} {len(accounts)} accounts "
                              f"({', '.join(map(str, accounts)) or 'none'}); the contract runs exactly one: "
                              "list one (test another in a subclass with its own options)")
        ctx.account_id = accounts[0]
        return list(provider.extract(ctx)), ctx.new_cursors

    @classmethod
    def _transform(cls, registry, provider_cls: type[Provider], files, run_id: str, session_zone: str = "UTC",
                   extracted_at: datetime | None = None) -> transform.TransformResult:
        con = transform.connect("256MB", None, registry.statuses)
        con.execute(f"SET TimeZone = '{session_zone}'")
        return transform.transform(con, provider_cls.streams, files, provider=provider_cls.name,
                                   account_id=provider_cls.name, run_id=run_id,
                                   extracted_at=extracted_at or cls.until,
                                   timezone=cls.timezone or provider_cls.default_timezone)

    @staticmethod
    def _commit(wh: Path, lake: Path, staged: transform.TransformResult, harvest: Harvest) -> dict[str, int]:
        """Commit a harvest's staged rows and cursors as ``shipetl run`` would; rows inserted per table, no rejects."""
        name = harvest.provider.name
        run = SourceRun(harvest.run_id, name, name, name, harvest.extracted_at)
        loaded = warehouse.commit(wh, lake, staged, run, harvest.cursors)
        return {table: n for table, n in loaded.items() if table != "rejects"}

    @classmethod
    def _error_transport(cls, kind: str) -> FixtureTransport:
        assert kind in cls.errors, (f"declare errors[{kind!r}] = ErrorFixture(status, 'file.json'): the body the API "
                                     f"sends for {kind.replace('_', ' ')}, so the contract can check it becomes "
                                     f"{ERROR_KINDS[kind].__name__}")
        return FixtureTransport(CONTRACT_BASE_URL, cls.fixtures, reply_all=cls.errors[kind])

    # -- the contract -----------------------------------------------------------------------------

    def test_plugin_loads_through_hooks(self, contract_registry, contract_provider):
        assert contract_registry.providers.get(contract_provider.name) is contract_provider, \
            f"{contract_provider.__name__} is not what register_providers hands in under {contract_provider.name!r}"
        assert contract_provider.default_base_url, "set default_base_url: users override it with base_url"
        streams = [s.name for s in contract_provider.streams]
        assert streams and len(streams) == len(set(streams)), f"streams need unique names, got {streams}"
        assert any(s.mappings for s in contract_provider.streams), "no stream maps to a canonical table"

    def test_requests_stay_under_base_url_and_paging_ends(self, harvest: Harvest):
        assert harvest.requests, "extract made no request"
        assert not harvest.unmatched, "requests the fixtures do not answer:\n" + "\n".join(harvest.unmatched)
        assert all(str(r.url).startswith(harvest.base_url) for r in harvest.requests)

    def test_every_stream_yields_pages(self, harvest: Harvest):
        known = {s.name for s in harvest.provider.streams}
        seen = Counter(p.stream for p in harvest.pages)
        assert set(seen) <= known, f"pages of undeclared streams: {set(seen) - known}"
        missing = {s.name for s in harvest.provider.streams if s.mappings} - set(seen)
        assert not missing, f"no fixture page reached stream(s) {missing}: add a route for them"

    def test_rows_have_the_canonical_schema(self, harvest: Harvest):
        data = [t for t in harvest.tables if t != "rejects"]
        assert data and sum(harvest.tables[t].num_rows for t in data) > 0, "the fixtures produced no rows"
        for name in data:
            table, canonical = harvest.tables[name], TABLES[name].schema
            assert table.column_names == canonical.names, f"{name}: columns differ from `shipetl schema {name}`"
            for f in canonical:
                got = table.schema.field(f.name).type
                if pa.types.is_timestamp(f.type):
                    assert pa.types.is_timestamp(got) and got.unit == "us" and got.tz in ("UTC", "Etc/UTC"), \
                        f"{name}.{f.name}: {got}, expected {f.type}"
                else:
                    assert got == f.type, f"{name}.{f.name}: {got}, expected {f.type}"
                if not f.nullable:
                    assert table.column(f.name).null_count == 0, f"{name}.{f.name} holds nulls"

    def test_no_unexpected_rejects(self, harvest: Harvest):
        reasons = harvest.tables["rejects"].column("reason").to_pylist()
        unexpected = [r for r in reasons if not any(a in r for a in self.allow_rejects)]
        assert not unexpected, f"rows rejected: {unexpected[:5]}"

    def test_instants_are_utc_whatever_the_session_zone(self, harvest: Harvest, contract_registry):
        other = self._transform(contract_registry, harvest.provider, harvest.raw_files, harvest.run_id, FAR_ZONE)
        try:
            tables_again = _staged_tables(other)
            for name, table in harvest.tables.items():
                again = tables_again[name]
                for f in TABLES[name].columns:
                    if pa.types.is_timestamp(f.type):
                        assert sorted(map(str, map(_render, table.column(f.name).to_pylist()))) == \
                            sorted(map(str, map(_render, again.column(f.name).to_pylist()))), \
                            f"{name}.{f.name} moves with the session time zone: declare it in TableMapping.times"
        finally:
            other.con.close()

    def test_statuses_are_canonical_and_mapped(self, harvest: Harvest):
        unmapped = {f"{table}:{code}": n for (table, code), n in harvest.result.unmapped.items()
                    if code not in self.allow_unknown}
        assert not unmapped, f"raw codes no status table maps: {unmapped}; map them, or list them in allow_unknown"
        for name, table in harvest.tables.items():
            if "status" not in table.column_names:
                continue
            rows = table.select(["status", "status_raw"]).to_pylist()
            assert {r["status"] for r in rows} <= set(statuses.STATUSES)
            unknown = {r["status_raw"] for r in rows if r["status"] == "unknown" and r["status_raw"]}
            assert unknown <= self.allow_unknown, \
                f"{name}: raw codes left 'unknown': {sorted(unknown - self.allow_unknown)}; map them in a status table"

    def test_event_ids_and_hashes_are_stable(self, harvest: Harvest, contract_registry):
        later = self._transform(contract_registry, harvest.provider, harvest.raw_files, "contract-run-2",
                                extracted_at=self.until + timedelta(hours=1))
        try:
            for name, table in harvest.tables.items():
                if name == "rejects":
                    continue
                key = "event_id" if "event_id" in table.column_names else "record_hash"
                again = later.con.execute(f"SELECT {key} FROM {transform.staged_table(name)}").fetchall()
                assert sorted(table.column(key).to_pylist()) == sorted(v for (v,) in again), \
                    f"{name}.{key} changes between two runs over the same pages"
        finally:
            later.con.close()

    def test_rerun_adds_nothing(self, rerun: Rerun):
        first, second = rerun.loaded
        assert sum(first.values()) > 0, "the first run loaded nothing"
        assert not rerun.harvest.unmatched, ("requests of the second run the fixtures do not answer:\n"
                                             + "\n".join(rerun.harvest.unmatched))
        assert not any(second.values()), (f"a second run over the same replies, from the first run's cursors and "
                                          f"{rerun.open_shipments} open shipment(s), loaded more rows: {second}")

    def test_every_fixture_route_is_requested(self, harvest: Harvest, rerun: Rerun, contract_base_url):
        if contract_base_url:
            pytest.skip("a live server answers the requests: no fixture routes")
        answered = harvest.answered + rerun.harvest.answered
        unused = [key for key, value in self.routes.items() if _reply(value).status < 400 and key not in answered]
        assert not unused, (f"no request of the first run or the second reached route(s) {unused}: the extract "
                            f"stops early, or the routes are stale")

    def test_rows_match_expected(self, harvest: Harvest):
        files = sorted(Path(self.fixtures).glob("expected_*.json"))
        if not files:
            pytest.skip("no expected_<table>.json beside the fixtures")
        for path in files:
            name = path.stem.removeprefix("expected_")
            assert name in TABLES, f"{path.name}: no canonical table {name!r}"
            expected = orjson.loads(path.read_bytes())
            rows = harvest.tables[name].to_pylist() if name in harvest.tables else []
            assert len(rows) == len(expected), f"{name}: {len(rows)} rows, {path.name} lists {len(expected)}"
            actual = Counter(orjson.dumps({k: _render(r.get(k)) for k in sorted(expected[0])}) for r in rows)
            wanted = Counter(orjson.dumps({k: e.get(k) for k in sorted(expected[0])}) for e in expected)
            assert actual == wanted, (f"{name} differs from {path.name}:\n  missing: "
                                      f"{[orjson.loads(x) for x in (wanted - actual)]}\n  unexpected: "
                                      f"{[orjson.loads(x) for x in (actual - wanted)]}")

    @pytest.mark.parametrize("kind", list(ERROR_KINDS))
    def test_error_replies_raise_typed_errors(self, kind: str, contract_provider, contract_secrets, tmp_path):
        transport = self._error_transport(kind)
        with _captured_output() as out, pytest.raises(ERROR_KINDS[kind]) as caught:
            self._extract(contract_provider, contract_secrets, CONTRACT_BASE_URL, transport, tmp_path)
        if kind != "rate_limit":
            assert not isinstance(caught.value, TransientError), f"{kind} reply is retried as transient"
        assert transport.requests, "extract made no request"
        text = f"{caught.value}\n{out.getvalue()}"
        leaked = [n for n, v in contract_secrets.items() if v in text]
        redact.clear_secrets()
        assert not leaked, f"credential(s) {leaked} appear in the {kind} error or its logs"

    def test_no_secret_in_logs_raw_zone_or_rows(self, harvest: Harvest, contract_secrets):
        sent = {v for r in harvest.requests for k, v in r.headers.items() if redact.is_secret_key(k)}
        sent |= {v for r in harvest.requests for k, v in r.url.params.items() if redact.is_secret_key(k)}
        secrets = {v for v in {*contract_secrets.values(), *sent} if len(v) >= 6}
        raw = b"".join(zstandard.ZstdDecompressor().decompress(p.read_bytes(), max_output_size=1 << 30)
                       for p in harvest.raw_dir.rglob("*.zst")).decode("utf-8", "replace")
        rows = orjson.dumps({n: t.to_pylist() for n, t in harvest.tables.items()}, default=str).decode()
        for where, text in (("logs or stdout", harvest.output), ("the raw zone", raw), ("the rows", rows)):
            leaked = sorted(s for s in secrets if s in text)
            assert not leaked, f"a credential appears in {where}"
