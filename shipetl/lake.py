"""Writes Hive-partitioned Parquet beside the warehouse and removes what a crash left half-published.

Files are written under ``<lake>/_staging/<commit_id>/`` inside the warehouse transaction, then moved
into ``<lake>/<table>/provider=<p>/date=<YYYY-MM-DD>/`` by atomic renames once that transaction has
committed. Readers of ``<lake>/<table>/**`` never see a partial file: a file is either not there or
whole. ``repair`` finishes the moves of committed runs and deletes staging of runs that never committed.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from . import faultpoints
from .errors import ConfigError
from .log import get_logger
from .schema import Table

STAGING = "_staging"
# Days (that have rows) one COPY writes. DuckDB's partitioned writer keeps buffers per open partition and
# spills them under the memory limit: a backfill over a year written in month-sized COPYs took 20% less
# CPU and 150 MB less memory than one COPY (1M events over 365 days); a nightly run needs one COPY.
DAYS_PER_COPY = 31


OWNER = "_warehouse"  # names the one warehouse whose rows this lake mirrors ("_": Parquet readers skip it)


def _marker(lake: Path) -> tuple[str, str | None] | None:
    """(the owning warehouse's path, the last commit published) of a lake's marker; None without one."""
    marker = Path(lake) / OWNER
    if not marker.is_file():
        return None
    lines = marker.read_text(encoding="utf-8").splitlines() or [""]
    return lines[0].strip(), (lines[1].strip() or None) if len(lines) > 1 else None


def _write_marker(lake: Path, owner: str, last_commit: str | None) -> None:
    marker = Path(lake) / OWNER
    marker.parent.mkdir(parents=True, exist_ok=True)
    partial = marker.with_name(OWNER + ".partial")
    partial.write_text(owner + "\n" + (f"{last_commit}\n" if last_commit else ""), encoding="utf-8")
    os.replace(partial, marker)


def owner_problem(lake: Path, warehouse: Path, committed: set[str] | None = None,
                  pipeline_file: str | Path = "<pipeline>") -> str | None:
    """Why ``warehouse`` may not write ``lake``, or None: the lake mirrors another warehouse, or (given the
    warehouse's ``committed`` ids) it holds a commit this warehouse has no record of."""
    found = _marker(lake)
    if found is None:
        return None
    owner, last_commit = found
    if owner != str(Path(warehouse).resolve()):
        return (f"lake {lake} mirrors the warehouse {owner}, not {Path(warehouse).resolve()}: give each warehouse its "
                f"own warehouse.lake (if the warehouse file was moved, delete {Path(lake) / OWNER})")
    if committed is not None and last_commit and last_commit not in committed:
        return (f"lake {lake} holds commit {last_commit}, of which the warehouse {owner} has no record (it was started "
                f"over, or restored from an older copy), so its runs would put rows in the lake a second time: run "
                f"`shipetl lake {pipeline_file} --rebuild` to rewrite the lake from this warehouse first")
    return None


def claim(lake: Path, warehouse: Path, committed: set[str] | None = None, pipeline_file: str | Path = "<pipeline>") -> None:
    """Mark ``lake`` as the mirror of ``warehouse``; ConfigError if another warehouse's rows are in it, or rows this
    warehouse does not hold (see :func:`owner_problem`).

    Two warehouses sharing one lake would each discard the other's committed staging areas as never
    committed, and the lake would stop matching either.
    """
    problem = owner_problem(lake, warehouse, committed, pipeline_file)
    if problem:
        raise ConfigError(problem)
    marker = Path(lake) / OWNER
    if not marker.exists():
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(str(Path(warehouse).resolve()) + "\n", encoding="utf-8")


def mark_rebuilt(lake: Path, warehouse: Path, newest_commit: str | None) -> None:
    """Record that the lake has been rewritten from ``warehouse``, whose newest commit is ``newest_commit``."""
    _write_marker(lake, str(Path(warehouse).resolve()), newest_commit)


def staging_dir(lake: Path, commit_id: str) -> Path:
    return Path(lake) / STAGING / commit_id


def day_sql(table: Table) -> str:
    """SQL for a row's partition day, in days since 1970-01-01: the UTC day of its partition time (else of
    ``extracted_at``), by integer arithmetic, with no time-zone lookup per row."""
    return f"CAST(epoch_us(coalesce(\"{table.partition_time}\", extracted_at)) // 86400000000 AS INTEGER)"


def write_staging(con, table: Table, relation: str, lake: Path, commit_id: str) -> int:
    """COPY ``relation`` (rows of ``table``) into the commit's staging area, partitioned by provider and UTC
    day, a month's worth of days per COPY; returns files written."""
    target = staging_dir(lake, commit_id) / table.name
    target.mkdir(parents=True, exist_ok=True)
    # A backfill can touch hundreds of days; closing and reopening partition files costs more than memory.
    con.execute("SET partitioned_write_max_open_files = 1000")
    # Partitioned COPY buffers this many rows per thread in memory and cannot spill them: keep it well under
    # the memory limit even for wide rows (an order line with its extras is about 1 KB).
    con.execute("SET partitioned_write_flush_threshold = 100000")
    day = day_sql(table)
    days = [d for (d,) in con.execute(f"SELECT DISTINCT {day} FROM {relation} ORDER BY 1").fetchall()]
    for chunk in (days[i:i + DAYS_PER_COPY] for i in range(0, len(days), DAYS_PER_COPY)):
        # Each day falls in one COPY, so file names need no chunk number to stay unique in its folder.
        con.execute(
            f"COPY (SELECT *, CAST(DATE '1970-01-01' + {day} AS VARCHAR) AS date FROM {relation} "
            f"WHERE {day} BETWEEN {chunk[0]} AND {chunk[-1]}) TO '{target}' "
            f"(FORMAT parquet, COMPRESSION snappy, PARTITION_BY (provider, date), OVERWRITE_OR_IGNORE, "
            f"FILENAME_PATTERN '{commit_id}-{{i}}')"
        )
    return sum(1 for _ in target.rglob("*.parquet"))


def publish(lake: Path, commit_id: str, record: bool = True) -> int:
    """Move a committed staging area into place, file by file (each rename is atomic); returns files moved.

    ``record``: note ``commit_id`` in the lake's marker as the last commit published (a run's commit is in the
    warehouse's ``runs``; a rebuild's is not), before the first file moves, so the marker never lags the files.
    """
    root = staging_dir(lake, commit_id)
    found = _marker(lake)
    if record and found is not None:
        _write_marker(lake, found[0], commit_id)
    moved = 0
    for src in sorted(root.rglob("*.parquet")):
        dest = Path(lake) / src.relative_to(root)
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, dest)
        moved += 1
        if moved == 1:
            faultpoints.reached("lake_half_published")
    shutil.rmtree(root, ignore_errors=True)
    return moved


def pending(lake: Path) -> list[str]:
    """Commit ids with a staging area still on disk."""
    root = Path(lake) / STAGING
    return sorted(p.name for p in root.iterdir() if p.is_dir()) if root.exists() else []


def repair(lake: Path, committed: set[str], record: bool = True) -> None:
    """Publish staging areas whose commit is recorded; delete the rest (their transaction never committed).
    ``record`` as for :func:`publish`.

    Call only while holding the warehouse write lock, so no other commit is writing its staging area.
    A committed area that cannot be moved yet (a folder not writable) stays for a later repair: its rows
    are safe in the warehouse, and one stuck folder must not stop every other source's commit.
    """
    log = get_logger()
    for commit_id in pending(lake):
        if commit_id in committed:
            try:
                log.warning("lake_repaired", commit_id=commit_id, files=publish(lake, commit_id, record))
            except OSError as exc:
                log.warning("lake_publish_deferred", commit_id=commit_id, error=str(exc))
        else:
            shutil.rmtree(staging_dir(lake, commit_id), ignore_errors=True)
            log.warning("lake_staging_discarded", commit_id=commit_id)
