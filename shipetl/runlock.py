"""One ``shipetl run`` of a warehouse at a time, and a note in its lock of the source accounts it has yet to finish.

The lock is the operating system's (``flock`` on ``<warehouse>.run.lock``), so a killed run leaves no lock
behind. It does leave its note: a source account's run record is written by its commit (or its failure), so
an account a SIGKILL, the out-of-memory killer or a reboot stopped first would have no line in
``shipetl runs`` at all. The next run reads the note and records each such account as failed, saying so.

The file's first line says who holds the lock (``pid 4242, started 2025-05-10 02:00:00 UTC``); while the
run goes on, a second line (JSON) names its run id and the accounts not finished yet.
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import orjson

from .errors import RunInProgressError, ShipetlError


def lock_file(warehouse_path: Path | str) -> Path:
    """The file a run holds locked for as long as it lasts, beside the warehouse file."""
    path = Path(warehouse_path)
    return path.with_name(path.name + ".run.lock")


@dataclass(frozen=True)
class KilledRun:
    """A run that ended without finishing some of its source accounts, as its note in the lock tells."""

    run_id: str
    started_at: datetime
    holder: str
    accounts: tuple[tuple[str, str, str], ...]
    """(source, provider, account_id) of each account it had not finished."""


class RunLock:
    """The lock one run holds: :meth:`begin` notes its accounts, :meth:`finished` each one done, :meth:`end` all done.

    Safe to call from the run's worker threads.
    """

    def __init__(self, fh, carried: str = "") -> None:
        """``carried``: the note of a killed run, kept in the file until :meth:`begin` (its accounts recorded by then)."""
        self._fh = fh
        self._guard = threading.Lock()
        self._holder = f"pid {os.getpid()}, started {datetime.now(timezone.utc):%Y-%m-%d %H:%M:%S} UTC"
        self._run_id: str | None = None
        self._started_at: datetime | None = None
        self._open: list[tuple[str, str, str]] = []
        self._carried = carried
        self._write()

    def begin(self, run_id: str, started_at: datetime, accounts: Iterable[tuple[str, str, str]]) -> None:
        """Note the run and the (source, provider, account_id) of each account it is about to run."""
        with self._guard:
            self._run_id, self._started_at, self._open = run_id, started_at, list(accounts)
            self._carried = ""
            self._write()

    def finished(self, source: str, account_id: str) -> None:
        """Note that one account has its run record (committed, failed, or never started)."""
        with self._guard:
            self._open = [a for a in self._open if (a[0], a[2]) != (source, account_id)]
            self._write()

    def end(self) -> None:
        """Note that the run finished: nothing of it is left to record."""
        with self._guard:
            self._run_id, self._open, self._carried = None, [], ""
            self._write()

    def _write(self) -> None:
        note = self._holder + "\n" + self._carried
        if self._run_id and self._open:
            note += orjson.dumps({"run_id": self._run_id, "started_at": self._started_at.isoformat(),
                                  "unfinished": self._open}).decode() + "\n"
        self._fh.seek(0)
        self._fh.truncate()
        self._fh.write(note)
        self._fh.flush()


def _killed_run(note: str) -> KilledRun | None:
    """The run a lock's note left unfinished, or None (a finished run, an older shipetl's note, a torn write)."""
    holder, _, rest = note.partition("\n")
    try:
        data = orjson.loads(rest)
        return KilledRun(data["run_id"], datetime.fromisoformat(data["started_at"]), holder.strip(),
                         tuple((str(s), str(p), str(a)) for s, p, a in data["unfinished"]))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None


@contextmanager
def hold(warehouse_path: Path | str) -> Iterator[tuple[RunLock, KilledRun | None]]:
    """Hold the warehouse's run lock for the block; yields it and what a killed run before left unfinished.

    Two overlapping runs (a slow night meeting the next cron start) would fetch everything twice, against
    the same rate limits, for nothing: the second adds no row. So a second one raises RunInProgressError
    naming the holder, and fetches nothing.
    """
    lock = lock_file(warehouse_path)
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
        fh = open(lock, "a+", encoding="utf-8")
    except OSError as exc:  # the first file a run makes beside the warehouse: its folder is to blame (even /proc's ENOENT)
        raise ShipetlError(f"cannot write warehouse.path ({lock.parent}): {exc.strerror or exc}") from None
    with fh:
        fh.seek(0)
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = fh.readline().strip() or "unknown"
            raise RunInProgressError(
                f"{warehouse_path}: another `shipetl run` of this warehouse is under way ({holder}); this "
                "one fetched nothing. If a nightly run lasts into the next, schedule them further apart") from None
        try:
            note = fh.read()
            killed = _killed_run(note)
            yield RunLock(fh, note.partition("\n")[2] if killed else ""), killed
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
