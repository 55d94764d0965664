"""The checks themselves: :class:`ProviderContract`, whose ``test_*`` methods pytest runs in a plugin's tests.

It stays one module past 400 lines on purpose: the contract is one class a plugin's tests subclass, and a plugin
author reads every check it makes in this one file.
"""

from __future__ import annotations

import contextlib
import io
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping
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

from .. import redact, statuses, transform, warehouse
from ..errors import AuthError, ConfigError, TerminalError, TransientError
from ..log import configure as configure_logging
from ..plugins import registry_from_modules
from ..provider import Page, Provider
from ..rawzone import RawZoneWriter
from ..runs import SourceRun
from ..schema import TABLES
from .context import ContractContext, Harvest, Rerun
from .transport import FixtureTransport, RecordingTransport, Reply, as_reply, request_params

CONTRACT_BASE_URL = "http://contract.test/base-url-check"
ERROR_KINDS: dict[str, type[Exception]] = {"auth": AuthError, "rate_limit": TransientError, "bad_input": TerminalError}
# Instants must not move when the DuckDB session zone does; this one is +05:45, so any drift shows.
FAR_ZONE = "Asia/Kathmandu"


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


def _check_expected_columns(path: Path, table, expected: list[dict[str, Any]]) -> None:
    """Every row of an ``expected_<table>.json`` lists the same columns, each a column of the table: the rows are
    compared on those, so a misspelt or missing one would check nothing."""
    unknown = sorted(set().union(*expected) - set(table.column_names))
    assert not unknown, f"{path.name}: no column(s) {unknown} in {table.name}; see `shipetl schema`"
    first = set(expected[0]) if expected else set()
    odd = [i for i, row in enumerate(expected) if set(row) != first]
    assert not odd, (f"{path.name}: row(s) {odd} list other columns than the first row ({sorted(first)}); "
                     "give every row the same columns")


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
    """``"GET /path?param=value"`` -> fixture file (or :class:`Reply`), relative to the base URL; the parameters
    match the query string, and a form POST's fields (``"POST /sync?method=orders.get"``)."""
    errors: ClassVar[Mapping[str, Reply]] = {}
    """``auth``, ``rate_limit``, ``bad_input`` -> the error reply the API sends in that case."""
    options: ClassVar[Mapping[str, Any]] = {}
    """The source's ``options:`` (validated by the provider's ``options_model``); they must give one account."""
    credentials: ClassVar[Mapping[str, str]] = {}
    """Values for the provider's ``secrets``; unlisted ones get a made-up value."""
    timezone: ClassVar[str | None] = None
    """The source's ``timezone:``; None: the provider's ``default_timezone``."""
    until: ClassVar[datetime] = datetime(2025, 1, 31, tzinfo=UTC)
    """The run's ``ctx.until``, also the ``extracted_at`` of the first run's rows."""
    window: ClassVar[timedelta] = timedelta(days=30)
    """How far before ``until`` a first run's ``ctx.window`` starts; a second run's window starts at the cursor the
    first committed, as in ``shipetl run`` (whose ``ctx.since``, the ``--since`` override, is None here too)."""
    open_shipments: ClassVar[list[dict[str, Any]]] = []
    """Rows of ``shipments`` (not final) the first run's ``ctx.open_shipments()`` hands the extract."""
    allow_unknown: ClassVar[frozenset[str]] = frozenset()
    """Raw codes that may stay ``unknown`` (documented as unmapped); any other unknown code fails."""
    allow_rejects: ClassVar[tuple[str, ...]] = ()
    """Substrings of reject reasons the fixtures are meant to produce; any other reject fails."""
    failing_poll: ClassVar[tuple[str, str] | None] = None
    """``(route, shipment_id)``: a route of ``routes`` that answers one shipment's own poll, and the
    ``shipment_id`` its rows carry. The contract answers it 503 on every try and checks the extract goes on
    without it and names the shipment in its ``Skip``. None (an API with no per-shipment request) skips that check."""

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
        account = cls._account(harvest.provider)
        # The first run's rows again, on a connection of their own: a commit attaches the warehouse to it.
        staged = cls._transform(contract_registry, harvest.provider, harvest.raw_files, harvest.run_id)
        try:
            first_loaded = cls._commit(wh, lake, staged, harvest)
        finally:
            staged.con.close()
        cursors, open_shipments = warehouse.start_state(wh, name, name, account)  # what `shipetl run` reads
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
        transport = RecordingTransport(base_url) if live_url else FixtureTransport(base_url, cls.fixtures, cls.routes)
        with _captured_output() as out:
            pages, ctx = cls._extract(provider_cls, secrets, base_url, transport, tmp, **earlier)
            with RawZoneWriter(tmp / "raw", provider_cls.name, provider_cls.name, run_id, started) as raw:
                for page in pages:
                    raw.write(page)
                files = raw.close()
            result = cls._transform(registry, provider_cls, files, run_id, extracted_at=started)
        try:
            yield Harvest(provider_cls, transport.requests, transport.unmatched, transport.answered, pages,
                          ctx.new_cursors, ctx.windows_read,
                          files, tmp / "raw", result, _staged_tables(result), out.getvalue(), base_url, run_id, started)
        finally:
            result.con.close()
            redact.clear_secrets()

    @classmethod
    def _extract(cls, provider_cls: type[Provider], secrets: Mapping[str, str], base_url: str,
                 transport: httpx.BaseTransport, tmp: Path, **earlier: Any) -> tuple[list[Page], ContractContext]:
        """The account's pages, and the context the extract ran in (its cursors, the windows it read); a first run
        unless ``earlier`` says otherwise."""
        provider = cls._provider(provider_cls)
        ctx = cls._context(provider, secrets, base_url, transport, tmp, **earlier)
        return list(provider.extract(ctx)), ctx

    @classmethod
    def _context(cls, provider: Provider, secrets: Mapping[str, str], base_url: str, transport: httpx.BaseTransport,
                 tmp: Path, **earlier: Any) -> ContractContext:
        """The ExtractContext of one extract by ``provider``; a first run unless ``earlier`` says otherwise."""
        for value in secrets.values():
            redact.register_secret(value)  # as config.load does for a real pipeline
        provider_cls = type(provider)
        state = {"open_shipments": list(cls.open_shipments), **earlier}
        ctx = ContractContext(provider_cls, provider.options, base_url=base_url, transport=transport, credentials=secrets,
                              first_since=cls.until - cls.window, until=cls.until, tmp=tmp, timezone_name=cls.timezone,
                              **state)
        ctx.account_id = cls._account(provider_cls)
        return ctx

    @classmethod
    def _provider(cls, provider_cls: type[Provider]) -> Provider:
        """The provider as a source named after it with the class's ``options`` would have it."""
        return provider_cls(provider_cls.name, provider_cls.options_model.model_validate(dict(cls.options)))

    @classmethod
    def _account(cls, provider_cls: type[Provider]) -> str:
        """The one account the class's options give: the extract's, and the one its rows and commits carry."""
        accounts = cls._provider(provider_cls).accounts()
        if len(accounts) != 1:
            # One context holds one account's cursors, open shipments and rows, as `shipetl run` gives each.
            raise ConfigError(f"{cls.__name__}.options give {provider_cls.name} {len(accounts)} accounts "
                              f"({', '.join(map(str, accounts)) or 'none'}); the contract runs exactly one: "
                              "list one (test another in a subclass with its own options)")
        return accounts[0]

    @classmethod
    def _transform(cls, registry, provider_cls: type[Provider], files, run_id: str, session_zone: str = "UTC",
                   extracted_at: datetime | None = None) -> transform.TransformResult:
        con = transform.connect("256MB", None, registry.statuses)
        con.execute(f"SET TimeZone = '{session_zone}'")
        return transform.transform(con, provider_cls.streams, files, provider=provider_cls.name,
                                   account_id=cls._account(provider_cls), run_id=run_id,
                                   extracted_at=extracted_at or cls.until,
                                   timezone=cls.timezone or provider_cls.default_timezone)

    @classmethod
    def _commit(cls, wh: Path, lake: Path, staged: transform.TransformResult, harvest: Harvest) -> dict[str, int]:
        """Commit a harvest's staged rows and cursors as ``shipetl run`` would; rows inserted per table, no rejects."""
        name = harvest.provider.name
        run = SourceRun(harvest.run_id, name, name, cls._account(harvest.provider), harvest.extracted_at)
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

    def test_no_unexpected_rejects(self, harvest: Harvest, contract_base_url):
        reasons = harvest.tables["rejects"].column("reason").to_pylist()
        unexpected = [r for r in reasons if not any(a in r for a in self.allow_rejects)]
        assert not unexpected, (f"rows rejected: {unexpected[:5]}; fix the mapping, or list a part of each reason "
                                f"your fixtures are meant to produce in allow_rejects")
        stale = [a for a in self.allow_rejects if not any(a in r for r in reasons)]
        assert contract_base_url or not stale, f"allow_rejects {stale} match no reject of the fixtures: remove them"

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

    def test_every_window_cursor_is_set(self, harvest: Harvest):
        unset = sorted(harvest.windows_read - set(harvest.cursors))
        assert not unset, (f"the extract takes its window from cursor(s) {unset} but never sets them with "
                           "ctx.set_cursor: every run would fetch from the source's start: again")

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
        unused = [key for key, value in self.routes.items() if as_reply(value).status < 400 and key not in answered]
        assert not unused, (f"no request of the first run or the second reached route(s) {unused}: the extract "
                            f"stops early, or the routes are stale")

    def test_rows_match_expected(self, harvest: Harvest, contract_base_url):
        if contract_base_url:
            pytest.skip("expected_<table>.json lists the fixtures' rows; a live server answers with its own data")
        files = sorted(Path(self.fixtures).glob("expected_*.json"))
        made = {name for name, rows in harvest.tables.items() if rows.num_rows and name != "rejects"}
        unchecked = sorted(made - {path.stem.removeprefix("expected_") for path in files})
        assert not unchecked, (f"the fixtures give rows of {', '.join(unchecked)} and no expected_<table>.json beside them "
                               f"({self.fixtures}) says what they must be: list them (a row per line of the table, with "
                               f"at least its key and its times in UTC), so a wrong zone, status or id fails")
        for path in files:
            name = path.stem.removeprefix("expected_")
            assert name in TABLES, f"{path.name}: no canonical table {name!r}"
            expected = orjson.loads(path.read_bytes())
            _check_expected_columns(path, TABLES[name], expected)
            rows = harvest.tables[name].to_pylist() if name in harvest.tables else []
            assert len(rows) == len(expected), f"{name}: {len(rows)} rows, {path.name} lists {len(expected)}"
            if not expected:
                continue
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

    def test_a_poll_failing_after_retries_costs_that_shipment_alone(self, contract_provider, contract_secrets,
                                                                   contract_base_url, tmp_path):
        if self.failing_poll is None or contract_base_url:
            pytest.skip("a live server has no fixture route to fail" if contract_base_url else
                        "no failing_poll declared: (a route answering one shipment's poll, that shipment's id)")
        route, shipment_id = self.failing_poll
        assert route in self.routes, f"failing_poll names {route!r}, which routes does not list"
        transport = FixtureTransport(CONTRACT_BASE_URL, self.fixtures, {**self.routes, route: Reply(503)})
        provider = self._provider(contract_provider)
        ctx = self._context(provider, contract_secrets, CONTRACT_BASE_URL, transport, tmp_path)
        try:
            with _captured_output():
                pages = list(provider.extract(ctx))
        except TransientError as exc:
            pytest.fail(f"one shipment's failing poll failed the extract ({exc}): fetch it through shipetl.Polls and "
                        "return a Skip for it")
        finally:
            redact.clear_secrets()
        assert transport.answered[route] > 1, f"{route} answered 503 and was not asked again: a 5xx is transient"
        assert pages, "the extract yielded nothing once one poll failed"
        assert shipment_id in ctx.unheard, (f"the Skip of the failed poll does not name {shipment_id!r}: give it "
                                            f"shipment_ids=({shipment_id!r},), so core does not expire the shipment "
                                            "on a night its news is unknown")

    def test_no_secret_in_logs_raw_zone_or_rows(self, harvest: Harvest, contract_secrets):
        sent = {v for r in harvest.requests for k, v in r.headers.items() if redact.is_secret_key(k)}
        sent |= {v for r in harvest.requests for k, v in request_params(r).items() if redact.is_secret_key(k)}
        secrets = {v for v in {*contract_secrets.values(), *sent} if len(v) >= 6}
        raw = b"".join(zstandard.ZstdDecompressor().decompress(p.read_bytes(), max_output_size=1 << 30)
                       for p in harvest.raw_dir.rglob("*.zst")).decode("utf-8", "replace")
        rows = orjson.dumps({n: t.to_pylist() for n, t in harvest.tables.items()}, default=str).decode()
        for where, text in (("logs or stdout", harvest.output), ("the raw zone", raw), ("the rows", rows)):
            leaked = sorted(s for s in secrets if s in text)
            assert not leaked, f"a credential appears in {where}"
