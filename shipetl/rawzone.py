"""Keeps each provider page as received (secrets masked), so a run can be replayed and nothing is lost.

Layout: ``<raw>/<provider>/<account>/<YYYY-MM-DD>/<run_id>/<stream>-<nnnnn>.ndjson.zst``, one page a
line as ``{"meta": ..., "body": ...}``; files rotate at ``rotate_bytes`` of uncompressed text and each
closed file is handed to ``on_close``, so the transform stage reads these same files while extraction
goes on: what is loaded is exactly what was kept.
"""

from __future__ import annotations

import re
import shutil
from datetime import date, datetime
from collections.abc import Callable
from pathlib import Path

import orjson
import zstandard

from .provider import Page
from .redact import redact_bytes

SAFE = re.compile(r"[^A-Za-z0-9_.=-]+")


def safe_name(text: str) -> str:
    """A path segment for any account or stream name."""
    return SAFE.sub("_", text) or "_"


def page_line(page: Page) -> bytes:
    """One NDJSON line for a page (without its newline); a body given as bytes is kept byte for byte unless it spans lines."""
    meta = orjson.dumps(page.meta, option=orjson.OPT_NON_STR_KEYS)
    body = page.body
    if isinstance(body, (bytes, bytearray, memoryview)):
        body = bytes(body)
        if body[:1].isspace() or body[-1:].isspace():
            body = body.strip()
        if b"\n" in body or b"\r" in body:
            body = orjson.dumps(orjson.loads(body))
    else:
        body = orjson.dumps(body, option=orjson.OPT_NON_STR_KEYS)
    return b"".join((b'{"meta":', meta, b',"body":', body or b"null", b"}"))


def account_dir(root: Path, provider: str, account_id: str) -> Path:
    """The folder of one provider account's raw pages, one ``<YYYY-MM-DD>`` folder per run day inside."""
    return Path(root) / safe_name(provider) / safe_name(account_id)


def prune(root: Path, provider: str, account_id: str, before: date) -> int:
    """Delete the account's run days older than ``before``; returns how many day folders went."""
    removed = 0
    folder = account_dir(root, provider, account_id)
    for day in sorted(folder.iterdir()) if folder.is_dir() else ():
        try:
            old = date.fromisoformat(day.name) < before
        except ValueError:
            continue  # not a folder this module wrote
        if old and day.is_dir():
            shutil.rmtree(day)
            removed += 1
    return removed


def compressor() -> zstandard.ZstdCompressor:
    """The raw zone's zstd settings: the fastest level, on every core."""
    return zstandard.ZstdCompressor(level=1, threads=-1)


def _named(exc: OSError, path: Path) -> OSError:
    """``exc``, raised while writing ``path``, with that file's name if it has none (the compressor's full disk)."""
    if exc.filename:
        return exc
    named = OSError(exc.errno, exc.strerror, str(path))
    named.__cause__ = exc
    return named


class RawZoneWriter:
    """Appends pages of one run of one account, stream by stream.

    ``rotate_bytes`` bounds what one transform worker parses at once; two workers each hold one file's pages
    under ``warehouse.memory_limit`` (512MB by default). 64 MiB would save a fixed 0.1-0.2 s of planning per
    file (the ShipEngine replay ran 7% faster) but ran Shopee's order details out of DuckDB memory one run in
    three (``tests/benchmarks/bench_pipeline.py --provider shopee``).
    """

    def __init__(self, root: Path, provider: str, account_id: str, run_id: str, started_at: datetime,
                 rotate_bytes: int = 32 << 20, on_close: Callable[[str, Path], None] | None = None):
        self.dir = account_dir(root, provider, account_id) / started_at.strftime("%Y-%m-%d") / run_id
        self.rotate_bytes = rotate_bytes
        self._open: dict[str, tuple[object, object, int]] = {}
        self._files: dict[str, list[Path]] = {}
        self.pages = 0
        self._on_close = on_close

    def write(self, page: Page) -> None:
        """Mask secrets in the page and append it to its stream's current file."""
        line = redact_bytes(page_line(page))  # masking may re-serialize: still one page a line
        fh, writer, size = self._open.get(page.stream) or self._start(page.stream)
        try:  # a try, not a context manager: this runs once per page
            writer.write(line)
            writer.write(b"\n")
        except OSError as exc:
            raise _named(exc, self._files[page.stream][-1])
        size += len(line) + 1
        self._open[page.stream] = (fh, writer, size)
        self.pages += 1
        if size >= self.rotate_bytes:
            self._finish(page.stream)

    def _start(self, stream: str):
        self.dir.mkdir(parents=True, exist_ok=True)
        files = self._files.setdefault(stream, [])
        path = self.dir / f"{safe_name(stream)}-{len(files) + 1:05d}.ndjson.zst"
        files.append(path)
        fh = open(path, "wb")
        writer = compressor().stream_writer(fh)
        return fh, writer, 0

    def _finish(self, stream: str) -> None:
        fh, writer, _ = self._open.pop(stream)
        try:
            writer.close()  # also closes fh
        except OSError as exc:
            raise _named(exc, self._files[stream][-1])
        if self._on_close:
            self._on_close(stream, self._files[stream][-1])

    def close(self) -> dict[str, list[Path]]:
        """Flush every file; return ``{stream: [files]}`` for the transform stage."""
        for stream in list(self._open):
            self._finish(stream)
        return {s: list(f) for s, f in self._files.items()}

    def __enter__(self) -> RawZoneWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
