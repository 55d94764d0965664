"""Turns a run's raw pages into typed canonical rows, staged as Parquet, and splits off rejects.

Everything happens in DuckDB, column by column: the provider's mapping SQL picks fields from the pages,
then the wrapper built here casts each column to its canonical type, converts times to UTC, fills
statuses, computes event ids and snapshot hashes, and gives every bad row its reason.
"""

from __future__ import annotations

import tempfile
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

COMMON_NAMES = {f.name for f in COMMON}
COUNTRY_COLUMNS = {"destination_country", "origin_country", "country"}
SPECIAL = {"reject_reason"}


def duckdb_type(t: pa.DataType) -> str:
    """DuckDB column type for a canonical Arrow type."""
    if pa.types.is_timestamp(t):
        return "TIMESTAMPTZ"
    if pa.types.is_decimal(t):
        return f"DECIMAL({t.precision}, {t.scale})"
    return {pa.string(): "VARCHAR", pa.int32(): "INTEGER", pa.int64(): "BIGINT", pa.float64(): "DOUBLE", pa.bool_(): "BOOLEAN"}[t]


def quote(value: str) -> str:
    """A SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


@dataclass
class TableCounts:
    mapped: int = 0
    rejected: int = 0


@dataclass
class TransformResult:
    """Counts per table, unmapped status codes, and the connection whose temp views hold the staged rows.

    Staged rows are Parquet parts under ``staging`` behind ``temp.main.staged_<table>`` views until
    ``warehouse.commit`` attaches the warehouse to the same connection and moves them in.
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
    """An in-memory DuckDB with shipetl's macros, bounded memory and a spill directory."""
    con = duckdb.connect(config={"memory_limit": memory_limit, "preserve_insertion_order": False})
    if temp_dir:
        Path(temp_dir).mkdir(parents=True, exist_ok=True)
        con.execute(f"SET temp_directory = {quote(str(temp_dir))}")
    timestamps.install_macros(con)
    statuses.install(con, status_tables or statuses.StatusTables())
    countries.install(con)
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
                f"ELSE 'h:' || left(sha256({quote(key)} || chr(31) || CAST(x AS VARCHAR)), 32) END")
    else:
        body = ("CASE WHEN x IS NULL THEN NULL ELSE error('pii: hash needs credentials.pii_key "
                "(a secret from the environment), or set pii: drop') END")
    con.execute(f"CREATE OR REPLACE TEMP MACRO pii(x) AS {body}")


class _Wrapper:
    """Builds the typing SQL around one table mapping."""

    def __init__(self, table: Table, mapping: TableMapping, mapped_columns: Sequence[str], provider: str, zone: str | None):
        self.table, self.mapping, self.provider = table, mapping, provider
        self.cols = set(mapped_columns)
        self.zone_sql = quote(zone) if zone else "NULL"
        unknown = self.cols - set(table.column_names) - SPECIAL
        if unknown:
            raise PluginError(f"mapping of {table.name} outputs unknown column(s) {', '.join(sorted(unknown))}; see `shipetl schema`")
        bad_kinds = {c: k for c, k in mapping.times.items() if k not in timestamps.TIME_KINDS}
        if bad_kinds:
            raise PluginError(f"mapping of {table.name}: unknown time kind(s) {bad_kinds}; use one of {timestamps.TIME_KINDS}")
        if "local" in mapping.times.values() and not zone:
            raise PluginError(f"mapping of {table.name} reads naive local times but the source has no timezone")

    def _typed(self, f: pa.Field) -> tuple[str, str | None]:
        """(SQL for the typed value, SQL for its reject reason or None)."""
        name, src = f.name, f'm."{f.name}"'
        if name not in self.cols:
            return f"CAST(NULL AS {duckdb_type(f.type)})", None  # typed, so staged rows and Parquet keep the canonical types
        if name in self.mapping.times:
            kind = self.mapping.times[name]
            return (timestamps.sql_expr(kind, src, self.zone_sql),
                    timestamps.reject_reason_sql(kind, name, src, self.zone_sql))
        if name == "extras":
            reason = f"CASE WHEN {src} IS NOT NULL AND TRY_CAST({src} AS JSON) IS NULL THEN 'extras: not valid JSON' END"
            return f"CAST(TRY_CAST({src} AS JSON) AS VARCHAR)", reason
        if name in COUNTRY_COLUMNS:
            return f'"cn_{name}".alpha2', None
        dtype = duckdb_type(f.type)
        if dtype == "VARCHAR":
            return f"nullif(trim(CAST({src} AS VARCHAR)), '')", None
        text = f"nullif(trim(CAST({src} AS VARCHAR)), '')"
        reason = f"CASE WHEN {text} IS NOT NULL AND TRY_CAST({text} AS {dtype}) IS NULL THEN {quote(name + ': ')} || left({text}, 60) || ' is not a valid {dtype}' END"
        return f"TRY_CAST({text} AS {dtype})", reason

    def sql(self, run_id: str, account_id: str, extracted_at: datetime) -> str:
        consts = {
            "provider": quote(self.provider), "account_id": quote(account_id), "run_id": quote(run_id),
            "extracted_at": f"TIMESTAMPTZ {quote(extracted_at.isoformat())}",
        }
        inner, reasons = [], []
        for f in self.table.columns:
            if f.name in COMMON_NAMES:
                inner.append(f'{consts[f.name]} AS "{f.name}"')
                continue
            expr, reason = self._typed(f)
            if f.name == "status":
                expr = f"coalesce({expr}, 'unknown')"
            if f.name == "status" and "status" in self.cols:
                reasons.append(f"CASE WHEN m.status IS NOT NULL AND m.status NOT IN ({', '.join(map(quote, statuses.STATUSES))}) "
                               f"THEN 'status: ' || m.status || ' is not a canonical status' END")
            if f.name in ("event_id", "record_hash", "is_final") and f.name not in self.cols:
                expr = "NULL"
            inner.append(f'{expr} AS "{f.name}"')
            if reason:
                reasons.append(reason)
        if "reject_reason" in self.cols:
            reasons.append("m.reject_reason")
        unmapped = "m.status IS NULL AND m.status_raw IS NOT NULL" if {"status", "status_raw"} <= self.cols else "false"
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
        return f"SELECT {', '.join(inner)} FROM ({self.mapping.sql}) AS m{joins}"

    def outer(self, inner_table: str) -> str:
        """Derived columns (event_id, is_final, record_hash) and the not-null checks, over typed values."""
        t = self.table
        derived = {}
        if "event_id" in t.column_names and "event_id" not in self.cols:
            derived["event_id"] = keys.event_id_sql(quote(self.provider), "coalesce(tracking_number, shipment_id)",
                                                    "occurred_at", "status_raw", "description")
        if "is_final" in t.column_names and "is_final" not in self.cols:
            derived["is_final"] = f"status IN ({', '.join(map(quote, sorted(statuses.ALWAYS_FINAL)))})"
        elif "is_final" in t.column_names:
            derived["is_final"] = f"coalesce(is_final, status IN ({', '.join(map(quote, sorted(statuses.ALWAYS_FINAL)))}))"
        if "record_hash" in t.column_names:
            content = [c for c in t.column_names if c not in COMMON_NAMES and c != "record_hash"]
            derived["record_hash"] = keys.record_hash_sql([f"\"{c}\"" for c in content])

        def ref(c: str) -> str:
            return derived.get(c, f'"{c}"')

        select = [f'{ref(c)} AS "{c}"' for c in t.column_names]
        missing = [f"CASE WHEN {ref(f.name)} IS NULL THEN '{f.name}: missing' END"
                   for f in t.columns if not f.nullable and f.name not in COMMON_NAMES and f.name != "record_hash"]
        reason = f"nullif(concat_ws('; ', __reason_inner, {', '.join(missing) or 'NULL'}), '')"
        status_raw = "status_raw" if "status_raw" in t.column_names else "NULL"
        typed = f"SELECT {', '.join(select)}, {reason} AS __reason, __unmapped, {status_raw} AS __status_raw, __country_raw, __counters, __m FROM {inner_table}"
        return f"SELECT * EXCLUDE (__m), CASE WHEN __reason IS NOT NULL THEN CAST(to_json(__m) AS VARCHAR) END AS __record FROM ({typed})"


class Transformer:
    """Types one run's raw files one by one as they are closed, staging rows in its connection's temp tables.

    Feeding it each raw file as soon as the raw zone rotates lets mapping overlap with extraction, and keeps
    memory bounded by the rotation size however many pages a run fetches; each file's JSON is parsed once.
    """

    def __init__(self, con: duckdb.DuckDBPyConnection, streams: Sequence[Stream], *, provider: str, account_id: str,
                 run_id: str, extracted_at: datetime, timezone: str | None, staging: Path | None = None) -> None:
        self.result = TransformResult(con, Path(staging) if staging else Path(tempfile.mkdtemp(prefix="shipetl-staging-")))
        self._streams = {s.name: s for s in streams}
        self._wrappers: dict[str, list[_Wrapper]] = {}
        self._args = (provider, account_id, run_id, extracted_at)
        self._timezone = timezone

    def add(self, stream_name: str, path: Path) -> None:
        """Map, type and validate every page of one raw file."""
        stream = self._streams.get(stream_name)
        if stream is None or not stream.mappings:
            return
        con, provider = self.result.con, self._args[0]
        columns = "{'meta': 'JSON', 'body': " + quote(stream.body_type) + "}"
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE pages AS SELECT * FROM read_json({quote(str(path))}, "
            f"format='newline_delimited', columns={columns}, compression='zstd', maximum_object_size=33554432)"
        )
        if stream.name not in self._wrappers:
            self._wrappers[stream.name] = [_wrapper_for(con, stream, m, provider, self._timezone) for m in stream.mappings]
        for wrapper in self._wrappers[stream.name]:
            _stage(con, self.result, wrapper, *self._args)
        con.execute("DROP TABLE pages")


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
) -> TransformResult:
    """Map, type and validate every page of ``raw_files`` ({stream: files}); stage rows and rejects as Parquet parts.

    ``staging`` is where the parts go (default: a new temporary folder the caller may delete after the commit).
    """
    transformer = Transformer(con, streams, provider=provider, account_id=account_id, run_id=run_id,
                              extracted_at=extracted_at, timezone=timezone, staging=staging)
    for stream in streams:
        for path in raw_files.get(stream.name, ()):
            transformer.add(stream.name, path)
    return transformer.result


def staged_table(table: str) -> str:
    """Name of the temp view over one canonical table's staged rows of this run, until they are committed."""
    return f"temp.main.staged_{table}"


def _append(result: TransformResult, table: str, select: str) -> None:
    """Write one chunk's rows of ``table`` as a Parquet part and point the staged view at every part so far.

    Parts on disk keep memory flat however many pages a run has; appending to one growing in-memory
    table turned out several times slower at each row-group boundary.
    """
    con = result.con
    parts = result.staging / table
    parts.mkdir(parents=True, exist_ok=True)
    part = parts / f"{len(result.parts.setdefault(table, [])):05d}.parquet"
    con.execute(f"COPY ({select}) TO {quote(str(part))} (FORMAT parquet, COMPRESSION lz4_raw)")
    result.parts[table].append(part)
    files = ", ".join(quote(str(p)) for p in result.parts[table])
    con.execute(f"CREATE OR REPLACE TEMP VIEW staged_{table} AS SELECT * FROM read_parquet([{files}])")


def _wrapper_for(con, stream: Stream, mapping: TableMapping, provider: str, timezone: str | None) -> _Wrapper:
    table = TABLES.get(mapping.table)
    if table is None:
        raise PluginError(f"stream {stream.name}: mapping targets unknown table {mapping.table!r}; tables: {', '.join(TABLES)}")
    try:
        mapped_cols = con.sql(mapping.sql).columns
    except duckdb.Error as exc:
        raise PluginError(f"mapping {stream.name} -> {table.name} is not valid SQL for its pages: {exc}") from exc
    return _Wrapper(table, mapping, mapped_cols, provider, timezone)


def _stage(con, result: TransformResult, wrapper: _Wrapper, provider, account_id, run_id, extracted_at) -> None:
    """Type one mapping's rows of one raw file; append valid rows and rejects to the run's staged tables."""
    table = wrapper.table
    inner = wrapper.sql(run_id, account_id, extracted_at)
    con.execute(f"CREATE OR REPLACE TEMP TABLE typed AS {wrapper.outer(f'({inner})')}")
    counts = result.tables.setdefault(table.name, TableCounts())
    total, rejected = con.execute("SELECT count(*), count(__reason) FROM typed").fetchone()
    counts.mapped += total
    counts.rejected += rejected
    _append(result, table.name, f"SELECT {', '.join(chr(34) + c + chr(34) for c in table.column_names)} FROM typed WHERE __reason IS NULL")
    if rejected:
        _append(result, "rejects",
                f"SELECT {quote(provider)} AS provider, {quote(account_id)} AS account_id, {quote(run_id)} AS run_id, "
                f"TIMESTAMPTZ {quote(extracted_at.isoformat())} AS extracted_at, {quote(table.name)} AS table_name, "
                f"__reason AS reason, __record AS record FROM typed WHERE __reason IS NOT NULL")
    for code, count in con.execute("SELECT __status_raw, count(*) FROM typed WHERE __unmapped GROUP BY 1").fetchall():
        result.unmapped[(table.name, code)] += count
    for raw, count in con.execute("SELECT __country_raw, count(*) FROM typed WHERE __country_raw IS NOT NULL GROUP BY 1").fetchall():
        result.unknown_countries[raw] += count
    if wrapper.mapping.counters:
        for name, count in con.execute(
            "SELECT name, count(*) FROM (SELECT unnest(string_split(__counters, chr(30))) AS name FROM typed "
            "WHERE __counters <> '') WHERE name <> '' GROUP BY 1"
        ).fetchall():
            result.counters[name] += count
    con.execute("DROP TABLE typed")
