"""Read-only access for people: ``shipetl sql``, ``shipetl runs``, ``shipetl state``.

Every session opens the warehouse read-only, waits a little while a run is committing (the only moment
a run holds the file) and then gives up with one line saying so. A session reads files only in the
pipeline's lake and raw zone, and ``shipetl sql`` refuses statements that write files or reach other
databases, so a query can change nothing on disk. Results stream out in batches, so
``--format csv|json|parquet`` handles results larger than memory.
"""

from __future__ import annotations

import errno
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import click
import orjson
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
from rich.table import Table

from . import marts, polling, runs, state, warehouse
from .config import PipelineConfig
from .errors import ShipetlError
from .summary import stdout_console

FORMATS = ("table", "csv", "json", "parquet")
TABLE_ROW_LIMIT = 1000
DEFAULT_WAIT = 10.0


@contextmanager
def session(pipeline: PipelineConfig, wait: float = DEFAULT_WAIT) -> Iterator:
    """A read-only connection to the pipeline's warehouse, with the marts and the pipeline's analytics settings.

    The marts are (re)defined as temporary views, so they match this version of shipetl even on a file last
    written by an older one. Raises ShipetlError when there is no warehouse, WarehouseBusyError when a run
    still holds it after ``wait`` seconds.
    """
    path = Path(pipeline.warehouse.path)
    if not path.exists():
        raise ShipetlError(f"{path}: no warehouse yet; run `shipetl run {pipeline.path}` first")
    with warehouse.connect(path, read_only=True, timeout=wait) as con:
        marts.install(con, pipeline.analytics, temporary=True)
        _confine(con, pipeline)
        yield con


def _readable(pipeline: PipelineConfig) -> list[str]:
    """The folders a ``shipetl sql`` session may open files under, in full: the lake, then the raw zone."""
    return [str(Path(p).resolve()) + "/" for p in (pipeline.warehouse.lake, pipeline.warehouse.raw)]


def _confine(con, pipeline: PipelineConfig) -> None:
    """Let the session open files only under the lake and the raw zone; for good (DuckDB refuses to undo it)."""
    con.execute("SET allowed_directories = ?", [_readable(pipeline)])
    con.execute("SET enable_external_access = false")


def _outside_hint(exc: Exception, pipeline: PipelineConfig) -> str:
    """For a file the session may not open, where it may (a relative path is the command's working directory's)."""
    if "file system operations are disabled" not in str(exc):
        return ""
    lake, raw = _readable(pipeline)
    return f"; shipetl sql reads files only under the lake ({lake}) and the raw zone ({raw}): give such a path in full"


# Statements that write files, load code or open other databases; a SELECT, EXPLAIN, PRAGMA, SET or a
# temporary view or macro is fine (the warehouse itself is open read-only).
_REFUSED = {"COPY": "COPY", "EXPORT": "EXPORT DATABASE", "COPY_DATABASE": "COPY FROM DATABASE", "ATTACH": "ATTACH",
            "DETACH": "DETACH", "LOAD": "INSTALL or LOAD", "EXTENSION": "an extension statement"}


def _check_read_only(con, query: str) -> None:
    """Raise ShipetlError for a statement ``shipetl sql`` does not run (see ``_REFUSED``)."""
    import duckdb

    try:
        statements = con.extract_statements(query)
    except duckdb.Error as exc:
        raise ShipetlError(f"query failed: {str(exc).splitlines()[0]}") from None
    for statement in statements:
        refused = _REFUSED.get(statement.type.name)
        if refused:
            raise ShipetlError(f"shipetl sql only reads: {refused} is not allowed (use --out FILE to save a result)")


def _print_rows(columns: list[str], rows: list[tuple], truncated: bool = False) -> None:
    table = Table(*columns)
    for row in rows:
        table.add_row(*("" if v is None else str(v) for v in row))
    stdout_console().print(table)  # piped, values are never cut to a terminal's width
    if truncated:
        click.echo(f"... more rows not shown (first {len(rows)} only); use --format csv or json for all", err=True)


def _write_csv(reader: pa.RecordBatchReader, sink: IO[bytes]) -> int:
    rows = 0
    with pa_csv.CSVWriter(sink, reader.schema) as writer:
        for batch in reader:
            writer.write_batch(batch)
            rows += batch.num_rows
    return rows


def _write_json_lines(reader: pa.RecordBatchReader, sink: IO[bytes]) -> int:
    rows = 0
    for batch in reader:
        # Decimals and other types JSON lacks are written as text, never rounded through float.
        sink.write(b"".join(orjson.dumps(row, default=str, option=orjson.OPT_APPEND_NEWLINE)
                            for row in batch.to_pylist()))
        rows += batch.num_rows
    return rows


def _write_parquet(reader: pa.RecordBatchReader, sink: IO[bytes]) -> int:
    rows = 0
    with pq.ParquetWriter(sink, reader.schema, compression="zstd") as writer:
        for batch in reader:
            writer.write_batch(batch)
            rows += batch.num_rows
    return rows


WRITERS = {"csv": _write_csv, "json": _write_json_lines, "parquet": _write_parquet}


def _format_for(fmt: str, out: str | None) -> str:
    """``--format``, or for a table with ``--out`` the format its file name ends with."""
    if fmt not in FORMATS:
        raise ShipetlError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    if fmt != "table" or not out:
        return fmt
    suffix = Path(out).suffix.lower().lstrip(".")
    inferred = {"csv": "csv", "json": "json", "jsonl": "json", "ndjson": "json", "parquet": "parquet"}.get(suffix)
    if inferred is None:
        raise ShipetlError(f"--out {out}: give --format csv, json or parquet (or a .csv, .jsonl or .parquet name)")
    return inferred


def run(pipeline: PipelineConfig, query: str, fmt: str = "table", out: str | None = None,
        wait: float = DEFAULT_WAIT) -> int | None:
    """Run ``query`` read-only; print a table, or write CSV, JSON lines or Parquet to ``out`` (or stdout).

    Returns the rows written (None for a statement with no result). Raises ShipetlError with one line for a
    failed query, a busy warehouse or parquet without ``out``.
    """
    import duckdb

    fmt = _format_for(fmt, out)
    if fmt == "parquet" and not out:
        raise ShipetlError("--format parquet writes a binary file: give it --out FILE")
    with session(pipeline, wait) as con:
        _check_read_only(con, query)
        try:
            rel = con.sql(query)
            if rel is None:
                return None
            if fmt == "table":
                rows = rel.limit(TABLE_ROW_LIMIT + 1).fetchall()  # one more tells whether there are more
                _print_rows(rel.columns, rows[:TABLE_ROW_LIMIT], truncated=len(rows) > TABLE_ROW_LIMIT)
                return min(len(rows), TABLE_ROW_LIMIT)
            writer = WRITERS[fmt]
            reader = rel.to_arrow_reader()
            if out:
                with open(out, "wb") as sink:
                    count = writer(reader, sink)
                click.echo(f"wrote {count} row(s) to {out}", err=True)
            else:
                count = writer(reader, sys.stdout.buffer)
                sys.stdout.buffer.flush()
            return count
        except duckdb.Error as exc:
            raise ShipetlError(f"query failed: {str(exc).splitlines()[0]}{_outside_hint(exc, pipeline)}") from None
        except (pa.ArrowNotImplementedError, pa.ArrowInvalid) as exc:  # CSV has no lists nor structs
            raise ShipetlError(f"cannot write this result as {fmt}: {str(exc).splitlines()[0]}; try --format json or "
                               "parquet, or turn the column to text in the query (to_json(x))") from None
        except OSError as exc:
            if not out and (isinstance(exc, BrokenPipeError) or exc.errno == errno.EPIPE):
                raise BrokenPipeError(errno.EPIPE, "Broken pipe") from None  # `| head` closed stdout: the CLI ends quietly
            raise ShipetlError(f"cannot write {out or 'stdout'}: {exc.strerror or exc}") from None


def run_history(pipeline: PipelineConfig, limit: int) -> None:
    with session(pipeline) as con:
        _print_rows(["run_id", "source", "account", "status", "started (UTC)", "seconds", "extracted", "loaded",
                     "dedup", "rejected", "unmapped", "error"], runs.history(con, limit))
    pending = warehouse.pending_runs_file(Path(pipeline.warehouse.path))
    if pending.is_file():
        waiting = len(pending.read_bytes().splitlines())
        click.echo(f"note: {waiting} failure record(s) wait in {pending} (the warehouse was busy when their "
                   "sources failed); the next commit stores them", err=True)


def show_state(pipeline: PipelineConfig) -> None:
    """Print every stored cursor, core's polling cursors in words (:func:`shipetl.polling.describe_cursor`)."""
    with session(pipeline) as con:
        rows = [(source, account, key, polling.describe_cursor(key, orjson.loads(value)) or value, run_id, updated_at)
                for source, account, key, value, run_id, updated_at in state.list_all(con)]
    _print_rows(["source", "account", "key", "value", "run_id", "updated_at"], rows)
    sys.stdout.flush()
