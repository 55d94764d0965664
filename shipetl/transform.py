"""Turns a run's raw pages into typed canonical rows, staged as Parquet, and splits off rejects.

Everything happens in DuckDB, column by column: the provider's mapping SQL picks fields from the pages,
then the wrapper built here casts each column to its canonical type, converts times to UTC, fills
statuses, computes event ids and snapshot hashes, and gives every bad row its reason.
"""

from __future__ import annotations

import tempfile
import threading
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import duckdb
import pyarrow as pa

from . import countries, keys, statuses, timestamps
from .errors import PluginError
from .provider import Stream, TableMapping
from .schema import COMMON, TABLES, Table
from .sqltext import sql_literal

COMMON_NAMES = {f.name for f in COMMON}
COUNTRY_COLUMNS = {"destination_country", "origin_country", "country"}
SPECIAL = {"reject_reason", "time_zone"}  # mapped columns core reads but no table stores


def duckdb_type(t: pa.DataType) -> str:
    """DuckDB column type for a canonical Arrow type."""
    if pa.types.is_timestamp(t):
        return "TIMESTAMPTZ"
    if pa.types.is_decimal(t):
        return f"DECIMAL({t.precision}, {t.scale})"
    return {pa.string(): "VARCHAR", pa.int32(): "INTEGER", pa.int64(): "BIGINT", pa.float64(): "DOUBLE", pa.bool_(): "BOOLEAN"}[t]


@dataclass
class TableCounts:
    mapped: int = 0
    rejected: int = 0


@dataclass
class TransformResult:
    """Counts per table, unmapped status codes, and the connection whose temp views hold the staged rows.

    Each part under ``staging`` holds every row one mapping made of one raw file, rejected ones too, with
    its ``__reason``; ``Transformer.finish`` puts a ``temp.main.staged_<table>`` view over each table's
    parts showing only the rows that load, until ``warehouse.commit`` attaches the warehouse to the same
    connection and moves them in.
    """

    con: duckdb.DuckDBPyConnection
    staging: Path
    tables: dict[str, TableCounts] = field(default_factory=dict)
    unmapped: Counter = field(default_factory=Counter)
    unknown_countries: Counter = field(default_factory=Counter)
    counters: Counter = field(default_factory=Counter)
    parts: dict[str, list[Path]] = field(default_factory=dict)

    @property
    def staged(self) -> set[str]:
        """Tables with staged rows (a view ``staged_<table>`` each)."""
        return set(self.parts)


def connect(memory_limit: str = "512MB", temp_dir: Path | None = None, status_tables: statuses.StatusTables | None = None,
            pii: str = "keep", pii_key: str | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with shipetl's macros, bounded memory and a spill directory.

    The macros and the country table live in the in-memory database itself, not TEMP, so every cursor of
    the connection (one per transform worker) sees them.
    """
    con = duckdb.connect(config={"memory_limit": memory_limit, "preserve_insertion_order": False})
    con.execute("SET GLOBAL TimeZone = 'UTC'")
    if temp_dir:
        Path(temp_dir).mkdir(parents=True, exist_ok=True)
        con.execute(f"SET temp_directory = {sql_literal(str(temp_dir))}")
    timestamps.install_macros(con, temp=False)
    statuses.install(con, status_tables or statuses.StatusTables(), temp=False)
    countries.install(con, temp=False)
    install_pii(con, pii, pii_key)
    return con


def install_pii(con, mode: str, key: str | None) -> None:
    """The ``pii(x)`` macro mappings wrap personal fields in: keyed SHA-256 (``hash``), NULL (``drop``) or as sent (``keep``)."""
    if mode == "keep":
        body = "x"
    elif mode == "drop":
        body = "CAST(NULL AS VARCHAR)"
    elif key:
        body = (f"CASE WHEN nullif(trim(CAST(x AS VARCHAR)), '') IS NULL THEN NULL "
                f"ELSE 'h:' || left(sha256({sql_literal(key)} || chr(31) || CAST(x AS VARCHAR)), 32) END")
    else:
        body = ("CASE WHEN x IS NULL THEN NULL ELSE error('pii: hash needs credentials.pii_key "
                "(a secret from the environment), or set pii: drop') END")
    con.execute(f"CREATE OR REPLACE MACRO pii(x) AS {body}")


# A mapping's per-row ``time_zone``: blank means the source's own, an unknown name means none (a reject).
_ROW_ZONE_TEXT = "nullif(trim(CAST(m.time_zone AS VARCHAR)), '')"
_ROW_ZONE = "CASE WHEN " + _ROW_ZONE_TEXT + " IS NULL THEN {source} ELSE \"tz\".name END"


def _trimmed(text: str) -> str:
    """SQL for ``text`` without surrounding spaces, NULL when empty; trims only the few values that need it."""
    return (f"CASE WHEN {text} = '' THEN NULL WHEN starts_with({text}, ' ') OR ends_with({text}, ' ') "
            f"THEN nullif(trim({text}), '') ELSE {text} END")


def _same_type(mapped: str, canonical: str) -> bool:
    """Whether a mapped column's DuckDB type already is the canonical one (no cast needed)."""
    norm = {"TIMESTAMP WITH TIME ZONE": "TIMESTAMPTZ"}
    mapped = norm.get(mapped, mapped).replace(" ", "")
    return mapped == canonical.replace(" ", "")


class _Wrapper:
    """Builds the typing SQL around one table mapping.

    Two layers over the mapping's rows ``m``: the inner one types each column (keeping the raw value of
    every column whose conversion can fail), the outer one derives event ids, finality and snapshot
    hashes and gives a reason to every row that cannot load. A reason is worked out only for a value
    that came out NULL, so valid rows pay for one conversion per column.
    """

    def __init__(self, table: Table, mapping: TableMapping, mapped_types: Mapping[str, str], provider: str, zone: str | None,
                 status_map: Mapping[str, str] | None = None):
        self.table, self.mapping, self.provider = table, mapping, provider
        self.types = dict(mapped_types)
        self.cols = set(mapped_types)
        self.by_hand = self._by_hand(status_map or {})
        self.zone_sql = sql_literal(zone) if zone else "NULL"
        self.row_zone = "time_zone" in self.cols
        unknown = self.cols - set(table.column_names) - SPECIAL
        if unknown:
            raise PluginError(f"mapping of {table.name} outputs unknown column(s) {', '.join(sorted(unknown))}; see `shipetl schema`")
        bad_kinds = {c: k for c, k in mapping.times.items() if k not in timestamps.TIME_KINDS}
        if bad_kinds:
            raise PluginError(f"mapping of {table.name}: unknown time kind(s) {bad_kinds}; use one of {timestamps.TIME_KINDS}")
        if "local" in mapping.times.values() and not zone and not self.row_zone:
            raise PluginError(f"mapping of {table.name} reads naive local times but neither the source has a timezone "
                              "nor the mapping a time_zone column")

    def _typed(self, f: pa.Field) -> tuple[str, str | None]:
        """(SQL for the typed value, SQL for its reject reason over the raw value ``__raw_<name>``, or None).

        The reason is only evaluated where the typed value is NULL.
        """
        name, src, raw = f.name, f'm."{f.name}"', f'"__raw_{f.name}"'
        dtype = duckdb_type(f.type)
        if name not in self.cols:
            return f"CAST(NULL AS {dtype})", None  # typed, so staged rows and Parquet keep the canonical types
        mapped = self.types[name]
        if name in self.mapping.times:
            kind = self.mapping.times[name]
            if not self.row_zone:
                return (timestamps.sql_expr(kind, src, self.zone_sql),
                        timestamps.reject_reason_sql(kind, name, raw, self.zone_sql))
            # A row whose own zone is unknown gets that reason (below), not one per time column.
            return (timestamps.sql_expr(kind, src, _ROW_ZONE.format(source=self.zone_sql)),
                    f"CASE WHEN NOT __zone_unknown THEN {timestamps.reject_reason_sql(kind, name, raw, '__zone')} END")
        if name == "extras":
            if mapped == "JSON":
                return f"CAST({src} AS VARCHAR)", None
            return (f"CAST(TRY_CAST({src} AS JSON) AS VARCHAR)",
                    f"CASE WHEN {raw} IS NOT NULL THEN 'extras: not valid JSON' END")
        if name in COUNTRY_COLUMNS:
            return f'"cn_{name}".alpha2', None
        if dtype == "VARCHAR":
            return _trimmed(src if mapped == "VARCHAR" else f"CAST({src} AS VARCHAR)"), None
        if _same_type(mapped, dtype):
            return src, None
        text = f"nullif(trim(CAST({raw} AS VARCHAR)), '')"
        reason = f"CASE WHEN {text} IS NOT NULL THEN {sql_literal(name + ': ')} || left({text}, 60) || ' is not a valid {dtype}' END"
        return f"TRY_CAST(nullif(trim(CAST({src} AS VARCHAR)), '') AS {dtype})", reason

    def _by_hand(self, status_map: Mapping[str, str]) -> str:
        """SQL for the status the source's ``status_map`` gives the row's raw code (NULL if none); "" without a map.

        A key ``<carrier_code>/<code>`` is that carrier's code only, and wins over the bare ``<code>``.
        """
        if not status_map or not {"status", "status_raw"} <= self.cols:
            return ""
        items = ", ".join(f"{sql_literal(code)}: {sql_literal(status)}" for code, status in sorted(status_map.items()))
        code = _trimmed("CAST(m.status_raw AS VARCHAR)")
        if "carrier_code" in self.cols and any("/" in key for key in status_map):
            carrier = _trimmed("CAST(m.carrier_code AS VARCHAR)")
            return f"coalesce(MAP {{{items}}}[{carrier} || '/' || {code}], MAP {{{items}}}[{code}])"
        return f"MAP {{{items}}}[{code}]"

    def _inner(self, run_id: str, account_id: str, extracted_at: datetime) -> tuple[str, dict[str, str]]:
        """The typing layer over the mapping, and the reason per column the outer layer checks (over typed columns)."""
        consts = {
            "provider": sql_literal(self.provider), "account_id": sql_literal(account_id), "run_id": sql_literal(run_id),
            "extracted_at": f"TIMESTAMPTZ {sql_literal(extracted_at.isoformat())}",
        }
        inner, outer_reasons, reasons = [], {}, []
        for f in self.table.columns:
            if f.name in COMMON_NAMES:
                inner.append(f'{consts[f.name]} AS "{f.name}"')
                continue
            expr, reason = self._typed(f)
            if f.name == "status":
                expr = f"coalesce({', '.join(filter(None, (expr, self.by_hand, sql_literal('unknown'))))})"
            if f.name == "status" and "status" in self.cols:
                reasons.append(f"CASE WHEN m.status IS NOT NULL AND m.status NOT IN ({', '.join(map(sql_literal, statuses.STATUSES))}) "
                               f"THEN 'status: ' || m.status || ' is not a canonical status' END")
            if f.name in ("event_id", "record_hash", "is_final") and f.name not in self.cols:
                expr = "NULL"
            inner.append(f'{expr} AS "{f.name}"')
            if reason:
                inner.append(f'm."{f.name}" AS "__raw_{f.name}"')
                outer_reasons[f.name] = f'CASE WHEN "{f.name}" IS NULL THEN {reason} END'
        if "reject_reason" in self.cols:
            reasons.append("m.reject_reason")
        if self.row_zone:
            unknown_zone = f'({_ROW_ZONE_TEXT} IS NOT NULL AND "tz".name IS NULL)'
            reasons.append(f"CASE WHEN {unknown_zone} THEN 'time_zone: ' || {_ROW_ZONE_TEXT} "
                           "|| ' is not a time zone name (IANA, e.g. Europe/Paris)' END")
            inner.append(f"{_ROW_ZONE.format(source=self.zone_sql)} AS __zone")
            inner.append(f"{unknown_zone} AS __zone_unknown")
        unmapped = "m.status IS NULL AND m.status_raw IS NOT NULL" if {"status", "status_raw"} <= self.cols else "false"
        if self.by_hand:
            unmapped += f" AND {self.by_hand} IS NULL"
        countries = sorted(COUNTRY_COLUMNS & self.cols)
        unknown = [f'CASE WHEN "cn_{c}".alpha2 IS NULL THEN nullif(trim(CAST(m."{c}" AS VARCHAR)), \'\') END' for c in countries]
        inner.append(f"{unmapped} AS __unmapped")
        inner.append(f"coalesce({', '.join(unknown) or 'NULL'}) AS __country_raw")
        counters = " || ".join(f"coalesce(({expr}) || chr(30), '')" for expr in self.mapping.counters)
        inner.append(f"{counters or chr(39) + chr(39)} AS __counters")
        inner.append(f"nullif(concat_ws('; ', {', '.join(reasons) or 'NULL'}), '') AS __reason_inner")
        inner.append("m AS __m")
        joins = "".join(
            f' LEFT JOIN country_names AS "cn_{c}" ON "cn_{c}".name = lower(trim(CAST(m."{c}" AS VARCHAR)))'
            for c in countries)
        if self.row_zone:
            joins += f' LEFT JOIN time_zone_names AS "tz" ON "tz".key = lower({_ROW_ZONE_TEXT})'
        return f"SELECT {', '.join(inner)} FROM ({self.mapping.sql}) AS m{joins}", outer_reasons

    def sql(self, run_id: str, account_id: str, extracted_at: datetime) -> str:
        """Every mapped row, typed, with ``__reason`` (NULL for a row that loads), ``__record`` (the mapped
        row as JSON, for rejects) and the bookkeeping columns ``__unmapped``, ``__status_raw``,
        ``__country_raw`` and ``__counters``."""
        inner, type_reasons = self._inner(run_id, account_id, extracted_at)
        t = self.table
        final = f"status IN ({', '.join(map(sql_literal, sorted(statuses.ALWAYS_FINAL)))})"
        derived = {}
        if "event_id" in t.column_names and "event_id" not in self.cols:
            derived["event_id"] = keys.event_id_sql(sql_literal(self.provider), "coalesce(tracking_number, shipment_id)",
                                                    "occurred_at", "status_raw", "description")
        if "is_final" in t.column_names:
            derived["is_final"] = final if "is_final" not in self.cols else f"coalesce(is_final, {final})"
        if "record_hash" in t.column_names:
            content = [c for c in t.column_names if c not in COMMON_NAMES and c != "record_hash"]
            derived["record_hash"] = keys.record_hash_sql([f"\"{c}\"" for c in content])

        def ref(c: str) -> str:
            return derived.get(c, f'"{c}"')

        select = [f'{ref(c)} AS "{c}"' for c in t.column_names]
        # A derived event_id or snapshot hash is an MD5, never NULL: only mapped values can be missing.
        # A value that came but could not be read has its own reason: "missing" is for one that did not come.
        # So is a time in a zone that is not one: the row's time_zone reason says why.
        def unread(name: str) -> str:
            zone = "AND NOT __zone_unknown " if self.row_zone and name in self.mapping.times else ""
            return (f"AND ({type_reasons[name]}) IS NULL " if name in type_reasons else "") + zone

        missing = [f"CASE WHEN {ref(f.name)} IS NULL {unread(f.name)}THEN '{f.name}: missing' END"
                   for f in t.columns if not f.nullable and f.name not in COMMON_NAMES and f.name != "record_hash"
                   and not (f.name == "event_id" and "event_id" in derived)]
        reason = f"nullif(concat_ws('; ', __reason_inner, {', '.join([*type_reasons.values(), *missing]) or 'NULL'}), '')"
        status_raw = "status_raw" if "status_raw" in t.column_names else "NULL"
        typed = (f"SELECT {', '.join(select)}, {reason} AS __reason, __unmapped, {status_raw} AS __status_raw, "
                 f"__country_raw, __counters, __m FROM ({inner})")
        return f"SELECT * EXCLUDE (__m), CASE WHEN __reason IS NOT NULL THEN CAST(to_json(__m) AS VARCHAR) END AS __record FROM ({typed})"


class Transformer:
    """Types one run's raw files as they are closed, each into Parquet parts, several files at once.

    Feeding it each raw file as soon as the raw zone rotates lets mapping overlap with extraction, and keeps
    memory bounded by the rotation size however many pages a run fetches; each file's JSON is parsed once.
    ``add`` may be called from several threads (the runner uses two): each gets its own cursor of the
    connection, since a zstd file is parsed on one thread. ``finish`` makes the staged views.
    """

    def __init__(self, con: duckdb.DuckDBPyConnection, streams: Sequence[Stream], *, provider: str, account_id: str,
                 run_id: str, extracted_at: datetime, timezone: str | None, staging: Path | None = None,
                 status_map: Mapping[str, Mapping[str, str]] | None = None) -> None:
        """``status_map``: per table, raw codes the provider's tables leave unknown with the status to give them."""
        self.result = TransformResult(con, Path(staging) if staging else Path(tempfile.mkdtemp(prefix="shipetl-staging-")))
        self._status_map = status_map or {}
        self._streams = {s.name: s for s in streams}
        self._wrappers: dict[str, list[_Wrapper]] = {}
        self._args = (provider, account_id, run_id, extracted_at)
        self._timezone = timezone
        self._lock = threading.Lock()
        self._local = threading.local()
        self._cursors: list[duckdb.DuckDBPyConnection] = []

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        """This thread's cursor (its own TEMP ``pages``), created on first use."""
        cur = getattr(self._local, "cursor", None)
        if cur is None:
            cur = self._local.cursor = self.result.con.cursor()
            cur.execute("SET TimeZone = 'UTC'")
            with self._lock:
                self._cursors.append(cur)
        return cur

    def add(self, stream_name: str, path: Path) -> None:
        """Map, type and validate every page of one raw file."""
        stream = self._streams.get(stream_name)
        if stream is None or not stream.mappings:
            return
        con, provider = self._cursor(), self._args[0]
        columns = "{'meta': 'JSON', 'body': " + sql_literal(stream.body_type) + "}"
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE pages AS SELECT * FROM read_json({sql_literal(str(path))}, "
            f"format='newline_delimited', columns={columns}, compression='zstd', maximum_object_size=33554432)"
        )
        with self._lock:
            if stream.name not in self._wrappers:
                self._wrappers[stream.name] = [_wrapper_for(con, stream, m, provider, self._timezone, self._status_map)
                                               for m in stream.mappings]
        for wrapper in self._wrappers[stream.name]:
            _stage(con, self.result, self._lock, wrapper, *self._args)
        con.execute("DROP TABLE pages")

    def close(self) -> None:
        """Close the workers' cursors (safe to call twice; ``finish`` does it)."""
        with self._lock:
            for cur in self._cursors:
                cur.close()
            self._cursors.clear()

    def finish(self) -> TransformResult:
        """Close the workers' cursors and point a ``staged_<table>`` view at each table's parts."""
        self.close()
        unmapped = {table for table, _ in self.result.unmapped}
        for table, parts in self.result.parts.items():
            files = ", ".join(sql_literal(str(p)) for p in parts)
            select = "*" if table == "rejects" else ", ".join(f'"{c}"' for c in TABLES[table].column_names)
            where = "" if table == "rejects" else " WHERE __reason IS NULL"
            self.result.con.execute(f"CREATE OR REPLACE TEMP VIEW staged_{table} AS SELECT {select} FROM read_parquet([{files}]){where}")
            if table in unmapped:
                keys = ", ".join(TABLES[table].key)
                self.result.con.execute(f"CREATE OR REPLACE TEMP VIEW staged_unmapped_{table} AS SELECT {keys}, __status_raw "
                                        f"FROM read_parquet([{files}]) WHERE __reason IS NULL AND __unmapped")
        return self.result


def transform(
    con: duckdb.DuckDBPyConnection,
    streams: Sequence[Stream],
    raw_files: Mapping[str, Sequence[Path]],
    *,
    provider: str,
    account_id: str,
    run_id: str,
    extracted_at: datetime,
    timezone: str | None,
    staging: Path | None = None,
    status_map: Mapping[str, Mapping[str, str]] | None = None,
) -> TransformResult:
    """Map, type and validate every page of ``raw_files`` ({stream: files}); stage rows and rejects as Parquet parts.

    ``staging`` is where the parts go (default: a new temporary folder the caller may delete after the commit).
    """
    transformer = Transformer(con, streams, provider=provider, account_id=account_id, run_id=run_id,
                              extracted_at=extracted_at, timezone=timezone, staging=staging, status_map=status_map)
    for stream in streams:
        for path in raw_files.get(stream.name, ()):
            transformer.add(stream.name, path)
    return transformer.finish()


def staged_table(table: str) -> str:
    """Name of the temp view over one canonical table's staged rows of this run, until they are committed."""
    return f"temp.main.staged_{table}"


def staged_unmapped(table: str) -> str:
    """Name of the temp view of the key and raw status code of each staged row of ``table`` whose code no
    status table knows (only for a table with such rows)."""
    return f"temp.main.staged_unmapped_{table}"


def _next_part(result: TransformResult, table: str) -> Path:
    """Path of ``table``'s next Parquet part in the staging folder, recorded in ``result.parts`` (hold the lock)."""
    parts = result.staging / table
    parts.mkdir(parents=True, exist_ok=True)
    part = parts / f"{len(result.parts.setdefault(table, [])):05d}.parquet"
    result.parts[table].append(part)
    return part


def _wrapper_for(con, stream: Stream, mapping: TableMapping, provider: str, timezone: str | None,
                 status_map: Mapping[str, Mapping[str, str]]) -> _Wrapper:
    table = TABLES.get(mapping.table)
    if table is None:
        raise PluginError(f"stream {stream.name}: mapping targets unknown table {mapping.table!r}; tables: {', '.join(TABLES)}")
    try:
        rel = con.sql(mapping.sql)
    except duckdb.Error as exc:
        raise PluginError(f"mapping {stream.name} -> {table.name} is not valid SQL for its pages: {exc}") from exc
    return _Wrapper(table, mapping, {c: str(t) for c, t in zip(rel.columns, rel.types)}, provider, timezone,
                    status_map.get(table.name))


def _stage(con, result: TransformResult, lock: threading.Lock, wrapper: _Wrapper, provider, account_id, run_id, extracted_at) -> None:
    """Type one mapping's rows of one raw file into one Parquet part, in one pass; stage its rejects apart.

    The part holds every mapped row with its ``__reason``: the staged view shows those without one, and
    the counts and rejects are read back from the part's few small columns.
    """
    table = wrapper.table
    with lock:
        part = _next_part(result, table.name)
    con.execute(f"COPY ({wrapper.sql(run_id, account_id, extracted_at)}) TO {sql_literal(str(part))} (FORMAT parquet, COMPRESSION lz4_raw)")
    rows = f"read_parquet({sql_literal(str(part))})"
    total, rejected = con.execute(f"SELECT count(*), count(__reason) FROM {rows}").fetchone()
    unmapped = con.execute(f"SELECT __status_raw, count(*) FROM {rows} WHERE __unmapped AND __reason IS NULL GROUP BY 1").fetchall()
    countries = con.execute(f"SELECT __country_raw, count(*) FROM {rows} WHERE __country_raw IS NOT NULL GROUP BY 1").fetchall()
    counters = con.execute(
        f"SELECT name, count(*) FROM (SELECT unnest(string_split(__counters, chr(30))) AS name FROM {rows} "
        "WHERE __counters <> '') WHERE name <> '' GROUP BY 1"
    ).fetchall() if wrapper.mapping.counters else []
    if rejected:
        with lock:
            rejects = _next_part(result, "rejects")
        con.execute(
            f"COPY (SELECT {sql_literal(provider)} AS provider, {sql_literal(account_id)} AS account_id, {sql_literal(run_id)} AS run_id, "
            f"TIMESTAMPTZ {sql_literal(extracted_at.isoformat())} AS extracted_at, {sql_literal(table.name)} AS table_name, "
            f"__reason AS reason, __record AS record FROM {rows} WHERE __reason IS NOT NULL) "
            f"TO {sql_literal(str(rejects))} (FORMAT parquet, COMPRESSION lz4_raw)")
    with lock:
        counts = result.tables.setdefault(table.name, TableCounts())
        counts.mapped += total
        counts.rejected += rejected
        result.unmapped.update({(table.name, code): n for code, n in unmapped})
        result.unknown_countries.update(dict(countries))
        result.counters.update(dict(counters))
