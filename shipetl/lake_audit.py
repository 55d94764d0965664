"""``shipetl lake``: does the Parquet lake hold exactly the warehouse's rows, partition by partition? Rebuild what not.

The lake is written only by commits, so it drifts from the warehouse only when something outside shipetl
touches it (a partition file deleted, a folder restored from an old backup). The audit counts rows per
table, provider and day on both sides; a rebuild rewrites each differing partition from the warehouse,
holding the warehouse's write lock so that no commit runs meanwhile.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

from rich.table import Table

from . import lake, runs, warehouse
from .config import PipelineConfig
from .errors import ShipetlError
from .schema import DATA_TABLES, TABLES
from .sqltext import sql_literal
from .summary import stdout_console

EPOCH = date(1970, 1, 1)


@dataclass(frozen=True)
class Drift:
    """One partition whose row count differs between the warehouse and the lake."""

    table: str
    provider: str
    day: date
    warehouse_rows: int
    lake_rows: int


def _lake_counts(con, lake_root: Path, table: str) -> dict[tuple[str, date], int]:
    pattern = "provider=*/date=*/*.parquet"
    if next((lake_root / table).glob(pattern), None) is None:
        return {}  # DuckDB refuses a pattern that matches no file
    files = sql_literal(str(lake_root / table / pattern))
    rows = con.execute(f"SELECT provider, CAST(date AS DATE), count(*) FROM read_parquet({files}, "
                       "hive_partitioning = true, hive_types = {'date': VARCHAR}) GROUP BY ALL").fetchall()
    return {(provider, day): n for provider, day, n in rows}


def _warehouse_counts(con, table: str) -> dict[tuple[str, date], int]:
    day = lake.day_sql(TABLES[table])
    rows = con.execute(f"SELECT provider, {day}, count(*) FROM {table} GROUP BY ALL").fetchall()
    return {(provider, EPOCH + timedelta(days=n)): count for provider, n, count in rows}


def _drifts(con, lake_root: Path) -> list[Drift]:
    out = []
    for table in (*DATA_TABLES, "rejects"):
        stored, mirrored = _warehouse_counts(con, table), _lake_counts(con, lake_root, table)
        for key in sorted(stored.keys() | mirrored.keys()):
            if stored.get(key, 0) != mirrored.get(key, 0):
                out.append(Drift(table, key[0], key[1], stored.get(key, 0), mirrored.get(key, 0)))
    return out


def audit(pipeline: PipelineConfig) -> list[Drift]:
    """Every partition of every table whose lake rows differ from the warehouse's (read-only)."""
    with warehouse.connect(Path(pipeline.warehouse.path), read_only=True,
                           timeout=pipeline.warehouse.commit_timeout) as con:
        if con is None:
            raise ShipetlError(f"{pipeline.warehouse.path}: no warehouse yet; run `shipetl run {pipeline.path}` first")
        return _drifts(con, Path(pipeline.warehouse.lake))


def rebuild(pipeline: PipelineConfig) -> list[Drift]:
    """Rewrite every drifted partition from the warehouse; returns what was rebuilt.

    Staging areas a crash left are settled first, as a commit would (a committed one published, any other
    deleted), so that no later commit publishes rows the rebuild has already written. The new files are
    staged first and the old ones removed just before they move in; a rebuild cut short leaves a partition
    short, never doubled, and running it again finishes the job. Only a finished rebuild records the
    warehouse's newest commit in the lake's marker, so until then a run still refuses a lake holding commits
    its warehouse has no record of.
    """
    lake_root = Path(pipeline.warehouse.lake)
    path = Path(pipeline.warehouse.path)
    with warehouse.connect(path, read_only=False, timeout=pipeline.warehouse.commit_timeout) as con:
        warehouse.ensure_schema(con, pipeline.analytics)  # a warehouse started over may have none yet
        lake.claim(lake_root, path)
        lake.repair(lake_root, runs.committed_ids(con), record=False)
        drifts = _drifts(con, lake_root)
        commit_id = "rebuild-" + datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        for table in sorted({d.table for d in drifts}):
            wanted = [d for d in drifts if d.table == table]
            keys = ", ".join(f"({sql_literal(d.provider)}, {(d.day - EPOCH).days})" for d in wanted)
            rows = f"(SELECT * FROM {table} WHERE (provider, {lake.day_sql(TABLES[table])}) IN ({keys}))"
            lake.write_staging(con, TABLES[table], rows, lake_root, commit_id)
            for d in wanted:
                shutil.rmtree(lake_root / table / f"provider={d.provider}" / f"date={d.day.isoformat()}",
                              ignore_errors=True)
        if drifts:
            lake.publish(lake_root, commit_id, record=False)
        lake.mark_rebuilt(lake_root, path, runs.newest_commit_id(con))
    return drifts


def render(drifts: list[Drift], title: str) -> None:
    """One line per partition: table, provider, day, and the rows each side holds."""
    table = Table(title=title)
    for name in ("table", "provider", "date", "warehouse rows", "lake rows"):
        table.add_column(name, justify="right" if name.endswith("rows") else "left")
    for d in drifts:
        table.add_row(d.table, d.provider, d.day.isoformat(), str(d.warehouse_rows), str(d.lake_rows))
    stdout_console().print(table)
