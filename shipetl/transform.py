"""Turns a run's raw pages into typed canonical rows, staged as Parquet, and splits off rejects.

Everything happens in DuckDB, column by column: the provider's mapping SQL picks fields from the pages,
then the SQL of :mod:`shipetl.canonical_sql` around it casts each column to its canonical type, converts
times to UTC, fills statuses, computes event ids and snapshot hashes, and gives every bad row its reason.
This module runs that per raw file, stages the rows as Parquet parts and counts what it saw.
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

from . import countries, raw_pages, statuses, timestamps
from .canonical_sql import CanonicalSql
from .errors import PluginError, ShipetlError
from .provider import Stream, TableMapping
from .schema import TABLES
from .sqltext import sql_literal


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
    counted: set[str] = field(default_factory=set)  # tables whose mappings count something: staged_counters_<table>
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


def memory_error(exc: Exception, memory_limit: str, pipeline_path: Path | str) -> ShipetlError | None:
    """The one line for DuckDB running out of a run connection's ``memory_limit`` (``warehouse.memory_limit``),
    naming the setting to raise; None for any other error."""
    if not isinstance(exc, duckdb.OutOfMemoryException):
        return None
    detail = str(exc).splitlines()[0].removeprefix("Out of Memory Error: ")
    return ShipetlError(f"DuckDB ran out of memory within warehouse.memory_limit {memory_limit} ({detail}); raise "
                        f"warehouse.memory_limit in {pipeline_path}, doubling it for a start")


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
        self._wrappers: dict[str, list[CanonicalSql]] = {}
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

    def add(self, stream_name: str, path: Path, order: int = 0) -> None:
        """Map, type and validate every page of one raw file; ``order`` is its place among the run's raw files
        (of two snapshots of one entity in a run, the later file's is the one that loads)."""
        stream = self._streams.get(stream_name)
        if stream is None or not stream.mappings:
            return
        con, provider = self._cursor(), self._args[0]
        misfits = raw_pages.load(con, stream, path, provider, self.result.staging)
        if misfits:
            self._stage_misfits(con, stream, misfits)
        with self._lock:
            if stream.name not in self._wrappers:
                self._wrappers[stream.name] = [_wrapper_for(con, stream, m, provider, self._timezone, self._status_map)
                                               for m in stream.mappings]
        for wrapper in self._wrappers[stream.name]:
            _stage(con, self.result, self._lock, wrapper, order, *self._args)
        con.execute("DROP TABLE pages")

    def _stage_misfits(self, con, stream: Stream, misfits: list[tuple[str, str]]) -> None:
        """Stage each page :func:`raw_pages.load` left out as a reject of every table the stream maps to, counted as
        mapped and rejected: the pages of every other record load, and the misfit is there to see."""
        tables = sorted({mapping.table for mapping in stream.mappings})
        with self._lock:
            part = _next_part(self.result, "rejects")
            for table in tables:
                counts = self.result.tables.setdefault(table, TableCounts())
                counts.mapped += len(misfits)
                counts.rejected += len(misfits)
        con.execute("CREATE OR REPLACE TEMP TABLE misfits (reason VARCHAR, record VARCHAR)")
        con.executemany("INSERT INTO misfits VALUES (?, ?)", misfits)
        con.execute(
            f"COPY (SELECT {_run_columns(*self._args)}, t.table_name, reason, record FROM misfits, "
            f"(SELECT unnest({_sql_list(tables)}) AS table_name) t) TO {sql_literal(str(part))} (FORMAT parquet, COMPRESSION lz4_raw)")
        con.execute("DROP TABLE misfits")

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
            if table != "rejects":
                self.result.con.execute(f"CREATE OR REPLACE TEMP VIEW staged_in_order_{table} AS SELECT {select}, __order "
                                        f"FROM read_parquet([{files}]){where}")
            if table in self.result.counted:
                keys = ", ".join(TABLES[table].key)
                self.result.con.execute(f"CREATE OR REPLACE TEMP VIEW staged_counters_{table} AS SELECT {keys}, __counters "
                                        f"FROM read_parquet([{files}]) WHERE __reason IS NULL AND __counters <> ''")
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
    order = 0
    for stream in streams:
        for path in raw_files.get(stream.name, ()):
            transformer.add(stream.name, path, order)
            order += 1
    return transformer.finish()


def staged_table(table: str) -> str:
    """Name of the temp view over one canonical table's staged rows of this run, until they are committed."""
    return f"temp.main.staged_{table}"


def staged_in_order(table: str) -> str:
    """Name of the temp view of the same rows as :func:`staged_table` with ``__order``, the place of the raw file
    each came from among the run's files."""
    return f"temp.main.staged_in_order_{table}"


def staged_counters(table: str) -> str:
    """Name of the temp view of the key and the counter names (``chr(30)``-joined) of each staged row of ``table``
    a mapping's ``counters`` counted (only for a table whose mappings have counters)."""
    return f"temp.main.staged_counters_{table}"


def staged_unmapped(table: str) -> str:
    """Name of the temp view of the key and raw status code of each staged row of ``table`` whose code no
    status table knows (only for a table with such rows)."""
    return f"temp.main.staged_unmapped_{table}"


def _run_columns(provider: str, account_id: str, run_id: str, extracted_at: datetime) -> str:
    """The columns every reject of one source account's run starts with, as SQL literals."""
    return (f"{sql_literal(provider)} AS provider, {sql_literal(account_id)} AS account_id, {sql_literal(run_id)} AS run_id, "
            f"TIMESTAMPTZ {sql_literal(extracted_at.isoformat())} AS extracted_at")


def _sql_list(values: Sequence[str]) -> str:
    return "[" + ", ".join(sql_literal(v) for v in values) + "]"


def _next_part(result: TransformResult, table: str) -> Path:
    """Path of ``table``'s next Parquet part in the staging folder, recorded in ``result.parts`` (hold the lock)."""
    parts = result.staging / table
    parts.mkdir(parents=True, exist_ok=True)
    part = parts / f"{len(result.parts.setdefault(table, [])):05d}.parquet"
    result.parts[table].append(part)
    return part


def _wrapper_for(con, stream: Stream, mapping: TableMapping, provider: str, timezone: str | None,
                 status_map: Mapping[str, Mapping[str, str]]) -> CanonicalSql:
    """The typing SQL around one mapping; a PluginError naming provider and stream if the mapping is wrong."""
    where = f"provider {provider}, stream {stream.name}"
    table = TABLES.get(mapping.table)
    if table is None:
        raise PluginError(f"{where}: mapping targets unknown table {mapping.table!r}; tables: {', '.join(TABLES)}")
    try:
        rel = con.sql(mapping.sql)
    except duckdb.Error as exc:
        raise PluginError(f"{where}: mapping to {table.name} is not valid SQL for its pages: {exc}") from exc
    try:
        return CanonicalSql(table, mapping, {c: str(t) for c, t in zip(rel.columns, rel.types)}, provider, timezone,
                            status_map.get(table.name))
    except PluginError as exc:
        raise PluginError(f"{where}: {exc}") from None


def _stage(con, result: TransformResult, lock: threading.Lock, wrapper: CanonicalSql, order: int, provider, account_id, run_id,
           extracted_at) -> None:
    """Type one mapping's rows of one raw file into one Parquet part, in one pass; stage its rejects apart.

    The part holds every mapped row with its ``__reason``: the staged view shows those without one, and
    the counts and rejects are read back from the part's few small columns.
    """
    table = wrapper.table
    with lock:
        part = _next_part(result, table.name)
    con.execute(f"COPY (SELECT *, {int(order)} AS __order FROM ({wrapper.sql(run_id, account_id, extracted_at)})) "
                f"TO {sql_literal(str(part))} (FORMAT parquet, COMPRESSION lz4_raw)")
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
            f"COPY (SELECT {_run_columns(provider, account_id, run_id, extracted_at)}, {sql_literal(table.name)} AS table_name, "
            f"__reason AS reason, __record AS record FROM {rows} WHERE __reason IS NOT NULL) "
            f"TO {sql_literal(str(rejects))} (FORMAT parquet, COMPRESSION lz4_raw)")
    with lock:
        counts = result.tables.setdefault(table.name, TableCounts())
        counts.mapped += total
        counts.rejected += rejected
        result.unmapped.update({(table.name, code): n for code, n in unmapped})
        result.unknown_countries.update(dict(countries))
        result.counters.update(dict(counters))
        if wrapper.mapping.counters:
            result.counted.add(table.name)
