"""One ``shipetl run`` of a warehouse at a time, and a note of the source accounts a run has yet to finish.

The lock is the operating system's (``flock`` on ``<warehouse>.run.lock``, whose one line says who holds it), so
a killed run leaves no lock behind. It does leave its note, ``<warehouse>.run-note.json``: a source account's
run record is written by its commit (or its failure), so an account a SIGKILL, the out-of-memory killer or a
reboot stopped first would have no line in ``shipetl runs`` at all. The next run reads the note, records each
such account as failed, saying so, and only then deletes the note.

The note is replaced whole (a temporary file, fsync, rename), so a kill while it is written leaves the old
note or the new one, never a torn one.
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
from .log import get_logger


def lock_file(warehouse_path: Path | str) -> Path:
    """The file a run holds locked for as long as it lasts, beside the warehouse file."""
    path = Path(warehouse_path)
    return path.with_name(path.name + ".run.lock")


def note_file(warehouse_path: Path | str) -> Path:
    """The note of the source accounts the run under way (or a killed one) has not finished, beside the warehouse."""
    path = Path(warehouse_path)
    return path.with_name(path.name + ".run-note.json")


@dataclass(frozen=True)
class KilledRun:
    """A run that ended without finishing some of its source accounts, as its note tells."""

    run_id: str
    started_at: datetime
    holder: str
    """Who held the lock: ``pid 4242, started 2025-05-10 02:00:00 UTC`` (the pid to look for in the system log)."""
    accounts: tuple[tuple[str, str, str], ...]
    """(source, provider, account_id) of each account it had not finished."""


class RunLock:
    """The lock one run holds: :meth:`begin` notes its accounts, :meth:`finished` each one done, :meth:`end` all done.

    Safe to call from the run's worker threads. After :meth:`freeze` (a run leaving without waiting for its
    workers) nothing more is written: the note stays as it was for the next run.
    """

    def __init__(self, warehouse_path: Path | str, holder: str) -> None:
        self._note = note_file(warehouse_path)
        self._holder = holder
        self._guard = threading.Lock()
        self._run_id: str | None = None
        self._started_at: datetime | None = None
        self._open: list[tuple[str, str, str]] = []
        self._frozen = False

    def begin(self, run_id: str, started_at: datetime, accounts: Iterable[tuple[str, str, str]]) -> None:
        """Note the run and the (source, provider, account_id) of each account it is about to run."""
        with self._guard:
            self._run_id, self._started_at, self._open = run_id, started_at, list(accounts)
            self._write()

    def finished(self, source: str, account_id: str) -> None:
        """Note that one account has its run record (committed, failed, or never started); safe to call twice."""
        with self._guard:
            still = [a for a in self._open if (a[0], a[2]) != (source, account_id)]
            if still != self._open:
                self._open = still
                self._write()

    def end(self) -> None:
        """Note that the run finished, or that a killed run's accounts are recorded: no note is left."""
        with self._guard:
            self._run_id, self._open = None, []
            self._write()

    def freeze(self) -> None:
        """Write nothing more: the process is leaving while workers may still be running."""
        with self._guard:
            self._frozen = True

    def _write(self) -> None:
        """Replace the note with what is unfinished now (none: delete it). Best effort: a note that cannot be written
        costs only the record of a kill, never the run, so the failure is logged and the run goes on."""
        if self._frozen:
            return
        try:
            if not self._open:
                self._note.unlink(missing_ok=True)
                return
            text = orjson.dumps({"run_id": self._run_id, "started_at": self._started_at.isoformat(),
                                 "holder": self._holder, "unfinished": self._open})
            partial = self._note.with_name(self._note.name + ".partial")
            with open(partial, "wb") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(partial, self._note)
        except OSError as exc:
            get_logger().warning("run_note_failed", file=str(self._note), error=str(exc),
                                 hint="a kill of this run would go unrecorded in `shipetl runs`; nothing else is affected")


def _killed_run(warehouse_path: Path | str) -> KilledRun | None:
    """The run whose note was left behind, or None (none was, or it is not one this module wrote)."""
    try:
        data = orjson.loads(note_file(warehouse_path).read_bytes())
        return KilledRun(data["run_id"], datetime.fromisoformat(data["started_at"]), str(data["holder"]),
                         tuple((str(s), str(p), str(a)) for s, p, a in data["unfinished"]))
    except (OSError, orjson.JSONDecodeError, KeyError, TypeError, ValueError):  # OSError: mostly, no note at all
        return None


@contextmanager
def hold(warehouse_path: Path | str) -> Iterator[tuple[RunLock, KilledRun | None]]:
    """Hold the warehouse's run lock for the block; yields it and what a killed run before left unfinished
    (its note stays until :meth:`RunLock.end` or the next :meth:`RunLock.begin`).

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
            holder = f"pid {os.getpid()}, started {datetime.now(timezone.utc):%Y-%m-%d %H:%M:%S} UTC"
            fh.seek(0)
            fh.truncate()
            fh.write(holder + "\n")
            fh.flush()
            yield RunLock(warehouse_path, holder), _killed_run(warehouse_path)
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
