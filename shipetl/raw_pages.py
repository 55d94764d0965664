"""Reads one raw file's pages into DuckDB, setting apart the pages that do not fit their stream's body type.

DuckDB's own JSON reader types each page's body as the stream declares (``Stream.body_type``). One value an API
sends in a shape the plugin did not expect (``""`` where it reads a number) would fail the whole file, and the
source with it, night after night. Such a page is left out instead: the reader names it, the rest is read again
by the same reader (so what loads is exactly what a file without it gives), and the page comes back with DuckDB's
reason, for the transform to stage as a reject. More than ``MAX_MISFITS_PER_FILE`` in one file mean the body
type is wrong, not a page: a PluginError.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import duckdb
import orjson
import zstandard

from .errors import PluginError
from .provider import Stream
from .sqltext import sql_literal

# DuckDB's error for a page that is JSON but does not fit the body type, and where it names the page.
_MISFIT_ERROR = "Invalid Input Error: JSON transform error"
_MISFIT_LINE = re.compile(r"in line (\d+): (.*)$")
MAX_MISFITS_PER_FILE = 20


def load(con, stream: Stream, path: Path, provider: str, scratch: Path) -> list[tuple[str, str]]:
    """Fill the TEMP table ``pages`` of ``con`` (columns ``meta`` JSON, ``body`` as the stream's body type) with the
    raw file's pages; returns the (reason, body) of each page left out as a misfit. ``scratch``: a folder for the
    file of the pages that fit, while they are read again."""
    try:
        con.execute(f"CREATE OR REPLACE TEMP TABLE pages AS SELECT * FROM {read_sql(path, stream.body_type)}")
        return []
    except duckdb.InvalidInputException as exc:
        if not str(exc).startswith(_MISFIT_ERROR):
            raise _not_json_error(provider, stream, exc) from None
        return _read_fitting(con, stream, path, exc, provider, scratch)


def read_sql(path: Path, body_type: str) -> str:
    """SQL reading one raw file's pages, the body as ``body_type``."""
    columns = "{'meta': 'JSON', 'body': " + sql_literal(body_type) + "}"
    return (f"read_json({sql_literal(str(path))}, format='newline_delimited', columns={columns}, compression='zstd', "
            "maximum_object_size=33554432)")


def _read_fitting(con, stream: Stream, path: Path, error: duckdb.Error, provider: str, scratch: Path) -> list[tuple[str, str]]:
    """Leave out the page DuckDB's ``error`` names and read the rest into ``pages`` with the same reader, again
    until every page left fits; returns the (reason, body) of each page left out."""
    with zstandard.ZstdDecompressor().stream_reader(open(path, "rb"), closefd=True) as raw:
        lines = raw.read().splitlines()
    kept = list(range(len(lines)))  # the lines still read, by their index in the raw file
    scratch.mkdir(parents=True, exist_ok=True)
    rest = scratch / f"{path.name}.fitting.zst"  # read as the raw file is: zstd, on one thread
    misfits: list[tuple[str, str]] = []
    try:
        while True:
            found = _MISFIT_LINE.search(str(error).splitlines()[0])
            if found is None or len(misfits) == MAX_MISFITS_PER_FILE:
                raise _misfits_error(provider, stream, path, error, len(misfits))
            line = kept.pop(int(found.group(1)) - 1)
            body = orjson.dumps(orjson.loads(lines[line]).get("body")).decode()
            # DuckDB names the first page of a batch that fails but may quote another's value: read it alone.
            _write_pages(rest, [lines[line]])
            misfits.append((f"page does not fit the body type of stream {stream.name} "
                            f"({_misfit_detail(con, rest, stream.body_type)}); the plugin should read such a field "
                            f"as VARCHAR; the page is line {line + 1} of {path.name} in the raw zone", body))
            _write_pages(rest, [lines[i] for i in kept])
            try:
                con.execute(f"CREATE OR REPLACE TEMP TABLE pages AS SELECT * FROM {read_sql(rest, stream.body_type)}")
                return misfits
            except duckdb.InvalidInputException as exc:
                if not str(exc).startswith(_MISFIT_ERROR):
                    raise _not_json_error(provider, stream, exc) from None
                error = exc
    finally:
        rest.unlink(missing_ok=True)


def _write_pages(path: Path, lines: Sequence[bytes]) -> None:
    """Write raw-zone lines as a raw file is written: zstd, one page a line."""
    path.write_bytes(zstandard.ZstdCompressor(level=1).compress(b"".join(line + b"\n" for line in lines)))


def _misfit_detail(con, path: Path, body_type: str) -> str:
    """DuckDB's reason for the one page in ``path`` not fitting ``body_type``."""
    try:
        con.execute(f"SELECT body FROM {read_sql(path, body_type)}").fetchall()
    except duckdb.InvalidInputException as exc:
        found = _MISFIT_LINE.search(str(exc).splitlines()[0])
        return found.group(2) if found else str(exc).splitlines()[0]
    return "it does not fit"


def _misfits_error(provider: str, stream: Stream, path: Path, error: duckdb.Error, misfits: int) -> PluginError:
    """The one line for a raw file whose pages do not fit the stream's body type beyond a few misfits."""
    detail = str(error).splitlines()[0].removeprefix("Invalid Input Error: ")
    which = f"more than {misfits} pages of {path.name} do" if misfits else f"a page of {path.name} does"
    return PluginError(f"provider {provider}, stream {stream.name}: {which} not fit the stream's body type ({detail}): the plugin should read such a field as VARCHAR and let its mapping cast it; "
                       f"nothing of the source is committed, so the next run fetches it again")


def _not_json_error(provider: str, stream: Stream, exc: duckdb.Error) -> PluginError:
    """The one line for a raw file DuckDB cannot read as JSON (it names the file and line)."""
    detail = str(exc).splitlines()[0].removeprefix("Invalid Input Error: ")
    return PluginError(f"provider {provider}, stream {stream.name}: a page is not JSON ({detail}); the plugin yielded a "
                       f"body that is not JSON (give Page a dict, or bytes of JSON); nothing of the source is committed, "
                       f"so the next run fetches it again")
