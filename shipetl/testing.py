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
stable, so a rerun through ``warehouse.commit`` adds nothing; rows equal ``expected_<table>.json``
where given; auth, rate-limit and bad-input replies raise ``AuthError``, ``TransientError`` and
``TerminalError``; no credential reaches logs, stdout, the raw zone, rows or error messages.
"""

from __future__ import annotations

import contextlib
import io
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
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

__all__ = ["ContractContext", "ErrorFixture", "FixtureTransport", "Harvest", "ProviderContract", "Reply"]

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


def _route(key: str) -> tuple[str, str, dict[str, str]]:
    method, _, target = key.strip().partition(" ")
    url = httpx.URL(target.strip() or "/")
    return method.upper(), "/" + url.path.strip("/"), dict(url.params)


class FixtureTransport(httpx.MockTransport):
    """Answers requests under ``base_url`` from fixture files by route, and records every request.

    A route is ``"METHOD /path"`` plus optional query parameters that must match
    (``"GET /v1/orders?page=2"``); the route naming most parameters wins. ``reply_all`` answers
    every request with one reply (error cases). A request outside ``base_url`` or matching no route
    gets a 404 and is recorded in ``unmatched``.
    """

    def __init__(self, base_url: str, fixtures: Path, routes: Mapping[str, str | Reply] | None = None,
                 reply_all: Reply | None = None) -> None:
        self.base = httpx.URL(base_url.rstrip("/"))
        self.fixtures = Path(fixtures)
        self.routes = [(_route(k), v if isinstance(v, Reply) else Reply(200, v)) for k, v in (routes or {}).items()]
        self.reply_all = reply_all
        self.requests: list[httpx.Request] = []
        self.unmatched: list[str] = []
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
        candidates = [(len(p), reply) for (m, rp, p), reply in self.routes
                      if m == request.method and rp == path and all(params.get(k) == v for k, v in p.items())]
        if not candidates:
            self.unmatched.append(f"{request.method} {path}?{url.query.decode()} (no fixture route)")
            return httpx.Response(404, json={"error": "no fixture route"})
        return self._respond(max(candidates, key=lambda c: c[0])[1])


class _Recording(httpx.BaseTransport):
    """Forwards to a real transport (a live loopback server) and records the requests."""

    def __init__(self, base_url: str) -> None:
        self.inner, self.base = httpx.HTTPTransport(), base_url.rstrip("/")
        self.requests: list[httpx.Request] = []
        self.unmatched: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if not str(request.url).startswith(self.base):
            self.unmatched.append(f"{request.method} {request.url} (outside base_url {self.base})")
        return self.inner.handle_request(request)


class ContractContext(RunBookkeeping):
    """An :class:`~shipetl.provider.ExtractContext` for one extract over a given transport, no warehouse."""

    def __init__(self, provider_cls: type[Provider], options: Any, *, base_url: str, transport: httpx.BaseTransport,
                 credentials: Mapping[str, str], since: datetime, until: datetime, tmp: Path,
                 timezone_name: str | None, open_shipments: list[dict[str, Any]]) -> None:
        self.source_name = self.account_id = provider_cls.name
        self.options, self.since, self.until = options, since, until
        self.timezone = timezone_name or provider_cls.default_timezone
        self.log = structlog.get_logger(source=provider_cls.name)
        self.tokens = TokenStore(tmp / "tokens")
        self.auth_command = f"shipetl auth PIPELINE {provider_cls.name}"
        self._cursors: dict[str, Any] = {}  # a first run: nothing committed yet
        self.new_cursors: dict[str, Any] = {}
        self.counters: Counter = Counter()
        self._provider, self._base_url, self._transport = provider_cls, base_url, transport
        self._credentials, self._open = dict(credentials), open_shipments

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
        return []  # the contract runs as a first run: nothing committed yet


@dataclass
class Harvest:
    """One extract + transform of the fixtures: what the checks look at."""

    provider: type[Provider]
    requests: list[httpx.Request]
    unmatched: list[str]
    pages: list[Page]
    raw_files: dict[str, list[Path]]
    raw_dir: Path
    result: transform.TransformResult
    tables: dict[str, pa.Table]
    output: str  # logs, stdout and stderr of the extract and transform
    base_url: str
    run_id: str = "contract-run-1"


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
        tmp = tmp_path_factory.mktemp("contract")
        base_url = contract_base_url or CONTRACT_BASE_URL
        transport = _Recording(base_url) if contract_base_url else FixtureTransport(base_url, cls.fixtures, cls.routes)
        run_id, started = "contract-run-1", cls.until
        with _captured_output() as out:
            pages = cls._extract(contract_provider, contract_secrets, base_url, transport, tmp)
            with RawZoneWriter(tmp / "raw", contract_provider.name, contract_provider.name, run_id, started) as raw:
                for page in pages:
                    raw.write(page)
                files = raw.close()
            result = cls._transform(contract_registry, contract_provider, files, run_id)
        try:
            tables = {name: _staged(result, name) for name in sorted(result.staged)}
            yield Harvest(contract_provider, transport.requests, transport.unmatched, pages, files, tmp / "raw",
                          result, tables, out.getvalue(), base_url, run_id)
        finally:
            result.con.close()
            redact.clear_secrets()

    # -- helpers a subclass may reuse -------------------------------------------------------------

    @classmethod
    def _plugin_name(cls) -> str:
        return getattr(cls.plugin, "__name__", "plugin").removeprefix("shipetl_")

    @classmethod
    def _extract(cls, provider_cls: type[Provider], secrets: Mapping[str, str], base_url: str,
                 transport: httpx.BaseTransport, tmp: Path) -> list[Page]:
        for value in secrets.values():
            redact.register_secret(value)  # as config.load does for a real pipeline
        options = provider_cls.options_model.model_validate(dict(cls.options))
        ctx = ContractContext(provider_cls, options, base_url=base_url, transport=transport, credentials=secrets,
                              since=cls.until - cls.window, until=cls.until, tmp=tmp,
                              timezone_name=cls.timezone, open_shipments=list(cls.open_shipments))
        provider = provider_cls(provider_cls.name, options)
        pages = []
        for account in provider.accounts():
            ctx.account_id = account
            pages.extend(provider.extract(ctx))
        return pages

    @classmethod
    def _transform(cls, registry, provider_cls: type[Provider], files, run_id: str, session_zone: str = "UTC",
                   extracted_at: datetime | None = None) -> transform.TransformResult:
        con = transform.connect("256MB", None, registry.statuses)
        con.execute(f"SET TimeZone = '{session_zone}'")
        return transform.transform(con, provider_cls.streams, files, provider=provider_cls.name,
                                   account_id=provider_cls.name, run_id=run_id,
                                   extracted_at=extracted_at or cls.until,
                                   timezone=cls.timezone or provider_cls.default_timezone)

    @classmethod
    def _error_transport(cls, kind: str) -> FixtureTransport:
        assert kind in cls.errors, (f"declare errors[{kind!r}] = ErrorFixture(status, 'file.json'): the body the API "
                                     f"sends for {kind.replace('_', ' ')}, so the contract can check it becomes "
                                     f"{ERROR_KINDS[kind].__name__}")
        return FixtureTransport(CONTRACT_BASE_URL, cls.fixtures, reply_all=cls.errors[kind])

    # -- the contract -----------------------------------------------------------------------------

    def test_plugin_loads_through_hooks(self, contract_registry, contract_provider):
        broken = {p.label: p.error for p in contract_registry.broken()}
        assert not broken, f"plugin is broken: {broken}"
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
        rejects = harvest.tables.get("rejects")
        reasons = rejects.column("reason").to_pylist() if rejects is not None else []
        unexpected = [r for r in reasons if not any(a in r for a in self.allow_rejects)]
        assert not unexpected, f"rows rejected: {unexpected[:5]}"

    def test_instants_are_utc_whatever_the_session_zone(self, harvest: Harvest, contract_registry):
        other = self._transform(contract_registry, harvest.provider, harvest.raw_files, harvest.run_id, FAR_ZONE)
        try:
            for name, table in harvest.tables.items():
                again = _staged(other, name)
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
                key = "event_id" if "event_id" in table.column_names else "record_hash"
                if name == "rejects":
                    continue
                again = later.con.execute(f"SELECT {key} FROM {transform.staged_table(name)}").fetchall()
                assert sorted(table.column(key).to_pylist()) == sorted(v for (v,) in again), \
                    f"{name}.{key} changes between two runs over the same pages"
        finally:
            later.con.close()

    def test_rerun_adds_nothing(self, harvest: Harvest, contract_registry, tmp_path):
        wh, lake = tmp_path / "warehouse.duckdb", tmp_path / "lake"
        loads = []
        for n in (1, 2):
            staged = self._transform(contract_registry, harvest.provider, harvest.raw_files, f"rerun-{n}",
                                     extracted_at=self.until + timedelta(hours=n))
            run = SourceRun(f"rerun-{n}", harvest.provider.name, harvest.provider.name, harvest.provider.name,
                            self.until + timedelta(hours=n))
            try:
                loads.append(warehouse.commit(wh, lake, staged, run, {}))
            finally:
                staged.con.close()
        first, second = ({t: n for t, n in load.items() if t != "rejects"} for load in loads)
        assert sum(first.values()) > 0, "the first run loaded nothing"
        assert not any(second.values()), f"a rerun over the same pages loaded more rows: {second}"

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
