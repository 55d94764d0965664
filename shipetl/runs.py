"""One record per source account per run, and the history ``shipetl runs`` shows."""

from __future__ import annotations

import fcntl
import os
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson

DDL = """CREATE TABLE IF NOT EXISTS runs (
    run_id VARCHAR NOT NULL, source VARCHAR NOT NULL, provider VARCHAR NOT NULL, account_id VARCHAR NOT NULL,
    started_at TIMESTAMPTZ NOT NULL, finished_at TIMESTAMPTZ, status VARCHAR NOT NULL, error VARCHAR,
    pages BIGINT, extracted BIGINT, loaded BIGINT, deduplicated BIGINT, rejected BIGINT, unmapped BIGINT,
    commit_id VARCHAR, details JSON)"""


def new_run_id(now: datetime | None = None) -> str:
    """Sortable and unique: ``20261127T142241Z-3fa9c1``."""
    now = now or datetime.now(timezone.utc)
    return now.strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


def account_label(source: str, account_id: str) -> str:
    """How logs and summaries name a source account: ``source``, or ``source/account`` for multi-account sources."""
    return source if account_id == source else f"{source}/{account_id}"


INTERRUPTED = "interrupted"
"""The status of a source stopped early (Ctrl-C, SIGTERM) that loaded what it had fetched."""


@dataclass
class SourceRun:
    """What happened to one account of one source in one run; the summary table is made of these."""

    run_id: str
    source: str
    provider: str
    account_id: str
    started_at: datetime
    finished_at: datetime | None = None
    status: str = "running"
    error: str | None = None
    pages: int = 0
    extracted: dict[str, int] = field(default_factory=dict)
    loaded: dict[str, int] = field(default_factory=dict)
    rejected: dict[str, int] = field(default_factory=dict)
    unmapped: dict[str, int] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)
    unheard: set[str] = field(default_factory=set)
    """Shipments whose latest poll failed (in this run, or in one whose turn has not come round again): their news
    is unknown, so the commit expires none of them."""
    seconds: dict[str, float] = field(default_factory=dict)
    """Wall time of each phase: ``fetch_and_map`` (extract, raw zone, transform), ``commit`` (waiting for the
    warehouse file, the inserts and the lake's files, up to the run record), and ``lake`` (its Parquet part)."""

    @contextmanager
    def timed(self, phase: str) -> Iterator[None]:
        """Record in ``seconds`` how long the block took, once it has finished without an error."""
        started = time.perf_counter()
        yield
        self.seconds[phase] = round(time.perf_counter() - started, 3)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def committed(self) -> bool:
        """Whether its rows were loaded: all of them (``ok``), or those fetched before a stop (``interrupted``)."""
        return self.status in ("ok", INTERRUPTED)

    @property
    def label(self) -> str:
        return account_label(self.source, self.account_id)

    def totals(self) -> tuple[int, int, int, int]:
        """(extracted, loaded, deduplicated, rejected) over all tables; a failed source deduplicated nothing."""
        ext, load, rej = sum(self.extracted.values()), sum(self.loaded.values()), sum(self.rejected.values())
        return ext, load, max(ext - rej - load, 0) if self.committed else 0, rej

    def record(self, commit_id: str | None) -> list[Any]:
        ext, load, dedup, rej = self.totals()
        details = {"extracted": self.extracted, "loaded": self.loaded, "rejected": self.rejected,
                   "unmapped": self.unmapped, "counters": self.counters, "seconds": self.seconds}
        return [self.run_id, self.source, self.provider, self.account_id, self.started_at, self.finished_at,
                self.status, self.error, self.pages, ext, load, dedup, rej, sum(self.unmapped.values()),
                commit_id, orjson.dumps(details).decode()]


def insert(con, run: SourceRun, commit_id: str | None) -> int:
    """Store one run record unless ``runs`` has one for its run and account already; returns 1 if stored, else 0.

    A killed run's account is recorded by the next run (:mod:`shipetl.runlock`), which cannot tell a kill just
    after that account's commit from one before it: the commit's own record stands.
    """
    return _insert_record(con, run.record(commit_id))


def _insert_record(con, record: list[Any]) -> int:
    run_id, source, _, account_id = record[:4]
    return con.execute(
        "INSERT INTO runs SELECT " + ", ".join("?" * 16) + " WHERE NOT EXISTS "
        "(SELECT 1 FROM runs WHERE run_id = ? AND source = ? AND account_id = ?)",
        [*record, run_id, source, account_id]).fetchone()[0]


def set_aside(file: Path, run: SourceRun) -> None:
    """Append a failed run's record to ``file``, for :func:`move_in` to store once the warehouse is free.

    Appends hold an exclusive lock on the file; one that finds the file already moved in (unlinked)
    starts a new one, so no record is written where nobody reads.
    """
    line = orjson.dumps(run.record(None)) + b"\n"
    file.parent.mkdir(parents=True, exist_ok=True)
    while True:
        with open(file, "ab") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            if os.fstat(fh.fileno()).st_nlink:
                fh.write(line)
                return


def move_in(con, file: Path) -> int:
    """Store the records set aside in ``file`` that ``runs`` lacks, then delete the file; returns how many.

    Call it on a connection that writes the warehouse, outside a transaction: each record is committed
    before the file goes, and one already stored (a crash before the delete) is not stored twice.
    """
    try:
        fh = open(file, "rb")
    except FileNotFoundError:
        return 0
    moved = 0
    with fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        for line in fh.read().splitlines():
            moved += _insert_record(con, orjson.loads(line))
        file.unlink()
    return moved


COMMITTED_IDS = "SELECT commit_id FROM runs WHERE commit_id IS NOT NULL"
"""SQL of every commit id the warehouse records."""


def committed_ids(con) -> set[str]:
    return {r[0] for r in con.execute(COMMITTED_IDS).fetchall()}


def newest_commit_id(con) -> str | None:
    """The commit id of the run that committed last, or None."""
    row = con.execute("SELECT commit_id FROM runs WHERE commit_id IS NOT NULL ORDER BY finished_at DESC LIMIT 1").fetchone()
    return row[0] if row else None


def history(con, limit: int = 20) -> list[tuple]:
    """Latest runs first, one row per source account."""
    return con.execute(
        "SELECT run_id, source, account_id, status, "
        "strftime(timezone('UTC', started_at), '%Y-%m-%d %H:%M:%S') AS started_at_utc, "
        "round(epoch(finished_at - started_at), 1) AS seconds, "
        "extracted, loaded, deduplicated, rejected, unmapped, error FROM runs ORDER BY started_at DESC, source LIMIT ?",
        [limit],
    ).fetchall()
