"""The DuckDB warehouse: tables and ``*_latest`` views from the schema, duplicate-free inserts, per-source commits.

DuckDB lets one process write a file and no other process read it meanwhile, so a run opens the file for
writing only inside :func:`commit`, for as long as one source's rows take to insert. Within this process,
one lock serializes every open of the file (DuckDB refuses a read-only and a read-write handle at once).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import duckdb

from . import faultpoints, lake, marts, runs, state
from .canonical_sql import COMMON_NAMES, duckdb_type
from .errors import ConfigError, WarehouseBusyError
from .keys import record_hash_sql
from .log import get_logger
from .rawzone import safe_name
from .schema import DATA_TABLES, TABLES, Table
from .snapshots import Snapshots
from .sqltext import sql_literal
from .transform import TransformResult, staged_counters, staged_in_order, staged_table, staged_unmapped

_LOCK = threading.RLock()
# The file format the warehouse is written in: DuckDB 1.0 and every later release can read it, so analysts'
# tools (a BI driver, a notebook, dbt) need not run the duckdb that shipetl runs. A file first written in a
# newer format (by shipetl before this setting, or by hand) keeps its format and stays readable to shipetl.
STORAGE_VERSION = "v1.0.0"
LOCK_MARKERS = ("Could not set lock", "Conflicting lock", "database is locked", "being used by another process")


def table_ddl(table: Table) -> str:
    """CREATE TABLE for one canonical table, generated from the schema."""
    cols = ", ".join(f'"{f.name}" {duckdb_type(f.type)}{"" if f.nullable else " NOT NULL"}' for f in table.columns)
    return f"CREATE TABLE IF NOT EXISTS {table.name} ({cols})"


def latest_view_ddl(table: Table) -> str:
    """The ``<table>_latest`` view: the newest snapshot of each entity, by ``(extracted_at, run_id)``.

    A join to each entity's newest (extracted_at, run_id) rather than a window: the window sorts every
    column of every snapshot, the aggregate reads four key columns, and a filter on the entity key
    (``WHERE shipment_id = ...``) reaches both sides. A commit stores at most one snapshot per entity and
    run, so exactly one row matches.
    """
    keys = ", ".join(table.entity_key)
    return (f"CREATE OR REPLACE VIEW {table.name}_latest AS SELECT s.* FROM {table.name} AS s JOIN "
            f"(SELECT {keys}, max({{'extracted_at': extracted_at, 'run_id': run_id}}) AS newest "
            f"FROM {table.name} GROUP BY {keys}) AS n USING ({keys}) "
            f"WHERE s.extracted_at = n.newest.extracted_at AND s.run_id = n.newest.run_id")


def ensure_schema(con, analytics=None) -> None:
    """Create every table and view that is missing; safe to run on every commit.

    ``analytics`` (the pipeline's ``analytics:`` settings) is stored in the marts' macros, so any client
    opening the file sees the pipeline's stuck threshold.
    """
    for table in TABLES.values():
        con.execute(table_ddl(table))
    for name in ("orders", "order_items", "shipments"):
        con.execute(latest_view_ddl(TABLES[name]))
    con.execute(runs.DDL)
    state.ensure(con)
    marts.install(con, analytics)


def _is_lock_error(exc: Exception) -> bool:
    return any(m in str(exc) for m in LOCK_MARKERS)


def _retry_locked(open_fn, path: Path, mode: str, timeout: float):
    """Call ``open_fn`` until the file lock is ours, waiting up to ``timeout`` s with growing pauses."""
    deadline = time.monotonic() + timeout
    delay = 0.05
    while True:
        try:
            return open_fn()
        except duckdb.Error as exc:
            if not _is_lock_error(exc):
                raise
            if time.monotonic() >= deadline:
                hint = ("a shipetl run's commit holds it for a few seconds at a time, so try again in a moment; a "
                        "notebook or BI tool connected read-write holds it until it closes (connect it with "
                        "read_only=True)" if mode == "read" else
                        "close the connection holding it (a notebook or BI tool left open?), or raise "
                        "warehouse.commit_timeout")
                raise WarehouseBusyError(f"{path}: another process holds the warehouse, so it cannot be opened to "
                                         f"{mode} (waited {timeout:.0f} s); {hint}") from None
            time.sleep(delay)
            delay = min(delay * 2, 1.0)


@contextmanager
def connect(path: Path, *, read_only: bool, timeout: float = 60.0):
    """Open the warehouse, waiting up to ``timeout`` s while another process holds it; None if a reader finds no file."""
    path = Path(path)
    if read_only and not path.exists():
        yield None
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with _LOCK:
        config = {"storage_compatibility_version": STORAGE_VERSION}
        con = _retry_locked(lambda: duckdb.connect(str(path), read_only=read_only, config=config), path,
                            "read" if read_only else "write", timeout)
        try:
            con.execute("SET TimeZone = 'UTC'")
            yield con
        finally:
            con.close()


@contextmanager
def attached(con, path: Path, timeout: float = 60.0):
    """Attach the warehouse for writing to ``con`` (which holds a run's staged rows) and make it current."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _LOCK:
        con.execute(f"SET storage_compatibility_version = {sql_literal(STORAGE_VERSION)}")
        _retry_locked(lambda: con.execute(f"ATTACH {sql_literal(str(path))} AS wh"), path, "write", timeout)
        try:
            con.execute("USE wh")
            yield con
        finally:
            con.execute("USE memory")
            con.execute("DETACH wh")


def _has_schema(con) -> bool:
    """Whether a connection (None: no file yet) holds shipetl's tables; a file opened by hand first holds none."""
    return con is not None and bool(con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'source_state'").fetchone()[0])


def start_state(path: Path, source: str, provider: str, account_id: str,
                timeout: float = 60.0) -> tuple[dict[str, Any], Sequence[dict[str, Any]]]:
    """An account's committed cursors and its open shipments (latest snapshots not final), in one short read.

    The shipments stay Arrow until the provider iterates them (:class:`~shipetl.snapshots.Snapshots`).
    """
    with connect(path, read_only=True, timeout=timeout) as con:
        if not _has_schema(con):
            return {}, []
        cursors = state.read(con, source, account_id)
        rows = con.sql("SELECT * FROM shipments_latest WHERE provider = $provider AND account_id = $account AND NOT is_final",
                       params={"provider": provider, "account": account_id}).to_arrow_table()
        return cursors, Snapshots(rows)


def query(path: Path, sql: str, params: list[Any] | None = None, timeout: float = 60.0) -> list[tuple]:
    """Rows of a read-only query over the warehouse as the last commit left it; [] if there is none yet.

    :raises ConfigError: the query failed (unknown table, syntax, an attempt to write).
    """
    with connect(path, read_only=True, timeout=timeout) as con:
        if not _has_schema(con):  # no file, or one no run has committed to yet
            return []
        try:
            return con.execute(sql, params or []).fetchall()
        except duckdb.Error as exc:
            raise ConfigError(f"warehouse query failed: {str(exc).splitlines()[0]}") from None


def _insert_new_rows(con, table: Table) -> int:
    """Insert the run's staged rows of ``table`` that the warehouse does not hold yet; returns how many."""
    staged = staged_table(table.name)
    cols = ", ".join(f'"{c}"' for c in table.column_names)
    if table.name == "rejects":
        return _insert(con, table, f"SELECT {cols} FROM {staged}")
    within_run = ", ".join(table.entity_key)
    total, distinct = con.execute(f"SELECT count(*), count(DISTINCT ({within_run})) FROM {staged}").fetchone()
    # A scan repeated in one reply, or an entity seen twice in one run: the snapshot of the later raw file, else
    # the newer by the table's own columns, loads (a fixed order of the keys breaks what is left of a tie).
    newest = ", ".join(("__order DESC", *table.newest_first, *table.key))
    deduped = f"SELECT {cols} FROM {staged}" if total == distinct else (
        f"SELECT {cols} FROM {staged_in_order(table.name)} QUALIFY row_number() OVER (PARTITION BY {within_run} "
        f"ORDER BY {newest}) = 1")
    target = f"{table.name}_latest" if table.entity_key != table.key else table.name
    keys = ", ".join(table.key)
    # Count the new keys first: DuckDB builds that anti join's hash table on the smaller side's keys alone.
    # All new (a first load, a backfill) inserts the rows with no join; some new, the rows stream through a
    # semi join on the new keys. An anti join of whole rows would hold every staged row in its hash table
    # once the warehouse is the larger side, spilling (a million new scans into five million: 6 s -> 3.3 s),
    # and a semi join on every key when all are new costs more than the insert (five million: 21 s against 8 s).
    # Key columns are never NULL, so these forms keep the same rows.
    new_keys = f"SELECT {keys} FROM ({deduped}) ANTI JOIN (SELECT {keys} FROM {target}) USING ({keys})"
    new = con.execute(f"SELECT count(*) FROM ({new_keys})").fetchone()[0]
    if new == 0:
        return 0
    if new == distinct:
        return _insert(con, table, deduped)
    return _insert(con, table, f"SELECT s.* FROM ({deduped}) s SEMI JOIN ({new_keys}) n USING ({keys})")


def _insert(con, table: Table, select: str) -> int:
    cols = ", ".join(f'"{c}"' for c in table.column_names)
    return con.execute(f"INSERT INTO {table.name} ({cols}) {select}").fetchone()[0]


def _all_loaded(staged: TransformResult, name: str, loaded: dict[str, int]) -> bool:
    counts = staged.tables[name]
    return loaded.get(name, 0) == counts.mapped - counts.rejected


def _inserted(run: runs.SourceRun, name: str) -> str:
    """SQL of the keys of the rows of ``name`` this run's commit inserted."""
    return (f"SELECT {', '.join(TABLES[name].key)} FROM {name} WHERE run_id = {sql_literal(run.run_id)} "
            f"AND provider = {sql_literal(run.provider)} AND account_id = {sql_literal(run.account_id)}")


def _tally_inserted(con, run: runs.SourceRun, name: str, rows: str, label: str) -> dict[str, int]:
    """Per value of ``label`` in ``rows`` (SQL of keys of table ``name`` with that column), how many of the rows
    this run's commit inserted carry it."""
    keys = ", ".join(TABLES[name].key)
    return dict(con.execute(f"SELECT {label}, count(DISTINCT ({keys})) FROM ({rows}) "
                            f"SEMI JOIN ({_inserted(run, name)}) USING ({keys}) GROUP BY 1").fetchall())


def _count_unmapped_loaded(con, staged: TransformResult, run: runs.SourceRun, loaded: dict[str, int]) -> None:
    """Keep in ``run.unmapped`` only the unmapped codes of rows this commit inserted.

    A parcel polled again brings its old scans back; they are deduplicated, and were counted by the run
    that loaded them. Where every staged row went in, the transform's counts stand as they are.
    """
    for name in sorted({table for table, _ in staged.unmapped}):
        if _all_loaded(staged, name, loaded):
            continue
        kept = _tally_inserted(con, run, name, f"SELECT * FROM {staged_unmapped(name)}", "__status_raw")
        run.unmapped = {k: n for k, n in run.unmapped.items() if not k.startswith(f"{name}:")}
        run.unmapped.update({f"{name}:{code}": n for code, n in kept.items()})


def _count_counters_loaded(con, staged: TransformResult, run: runs.SourceRun, loaded: dict[str, int]) -> None:
    """Keep in ``run.counters``, of what the mappings' ``counters`` counted, only the rows this commit inserted
    (ShipEngine's ``time_conflicts`` of scans polled again were counted by the run that loaded them)."""
    for name in sorted(staged.counted):
        if _all_loaded(staged, name, loaded):
            continue
        split = (f"SELECT * FROM (SELECT {', '.join(TABLES[name].key)}, unnest(string_split(__counters, chr(30))) AS "
                 f"counter FROM {staged_counters(name)}) WHERE counter <> ''")
        staged_counts = con.execute(f"SELECT counter, count(*) FROM ({split}) GROUP BY 1").fetchall()
        kept = _tally_inserted(con, run, name, split, "counter")
        for counter, n in staged_counts:
            left = run.counters.get(counter, 0) - n + kept.get(counter, 0)
            if left:
                run.counters[counter] = left
            else:
                run.counters.pop(counter, None)


def _expire_silent_shipments(con, run: runs.SourceRun, cutoff: datetime) -> int:
    """New ``expired`` snapshots of this account's open shipments with no news since ``cutoff``.

    News is the shipment's ``last_event_at`` (else its creation, else its first sighting) or any stored
    scan of it since ``cutoff``: a mapping that leaves ``last_event_at`` empty does not expire live parcels.
    A shipment whose latest poll failed (``run.unheard``) is not expired: its latest news is unknown.
    """
    table = TABLES["shipments"]
    content = [c for c in table.column_names if c not in COMMON_NAMES and c != "record_hash"]
    since = f"TIMESTAMPTZ {sql_literal(cutoff.isoformat())}"
    con.execute("CREATE OR REPLACE TEMP TABLE unheard AS SELECT unnest(CAST(? AS VARCHAR[])) AS shipment_id",
                [sorted(run.unheard)])
    changed = (f"SELECT * REPLACE ({sql_literal(run.run_id)} AS run_id, TIMESTAMPTZ {sql_literal(run.started_at.isoformat())} AS extracted_at, "
               f"'expired' AS status, true AS is_final) FROM shipments_latest AS s "
               f"WHERE provider = {sql_literal(run.provider)} AND account_id = {sql_literal(run.account_id)} AND NOT is_final "
               f"AND run_id <> {sql_literal(run.run_id)} "
               f"AND coalesce(last_event_at, created_at, extracted_at) < {since} "
               f"AND shipment_id NOT IN (SELECT shipment_id FROM temp.main.unheard) "
               f"AND NOT EXISTS (SELECT 1 FROM tracking_events AS e WHERE e.provider = s.provider "
               f"AND e.shipment_id = s.shipment_id AND e.occurred_at >= {since})")
    rehashed = f"SELECT * REPLACE ({record_hash_sql([chr(34) + c + chr(34) for c in content])} AS record_hash) FROM ({changed})"
    return _insert(con, table, rehashed)


def _stage_lake(con, run: runs.SourceRun, tables: list[str], lake_root: Path, commit_id: str) -> None:
    """Stage, for the lake, exactly the rows this commit inserted (they carry its run, provider and account)."""
    for name in tables:
        rows = (f"(SELECT * FROM {name} WHERE run_id = {sql_literal(run.run_id)} AND provider = {sql_literal(run.provider)} "
                f"AND account_id = {sql_literal(run.account_id)})")
        lake.write_staging(con, TABLES[name], rows, lake_root, commit_id)


def commit(path: Path, lake_root: Path, staged: TransformResult, run: runs.SourceRun, cursors: dict[str, Any],
           timeout: float = 60.0, expire_before: datetime | None = None, analytics=None,
           pipeline_file: str | Path = "<pipeline>") -> dict[str, int]:
    """Insert one source account's staged rows, cursors and run record in one transaction, then publish its Parquet.

    Open shipments of the account with no event since ``expire_before`` get an ``expired`` snapshot.

    Returns rows inserted per table. A crash before COMMIT leaves the warehouse as it was (staging
    files are discarded by the next commit); a crash after it leaves files the next commit publishes.
    """
    loaded: dict[str, int] = {}
    commit_id = f"{run.run_id}-{safe_name(run.label)}"
    started = time.perf_counter()
    with attached(staged.con, path, timeout) as con:
        ensure_schema(con, analytics)
        committed = runs.committed_ids(con)
        lake.claim(lake_root, path, committed, pipeline_file)
        lake.repair(lake_root, committed)
        _move_in_pending_runs(con, path)
        con.execute("BEGIN TRANSACTION")
        try:
            for name in (*DATA_TABLES, "rejects"):
                if name in staged.staged:
                    loaded[name] = _insert_new_rows(con, TABLES[name])
            _count_unmapped_loaded(con, staged, run, loaded)
            _count_counters_loaded(con, staged, run, loaded)
            expired = _expire_silent_shipments(con, run, expire_before) if expire_before is not None else 0
            if expired:
                run.counters["expired"] = expired
                loaded["shipments"] = loaded.get("shipments", 0) + expired
            with run.timed("lake"):
                _stage_lake(con, run, [name for name, n in loaded.items() if n], lake_root, commit_id)
            run.loaded = {k: v for k, v in loaded.items() if k != "rejects"}
            state.write(con, run.source, run.account_id, run.run_id, cursors)
            run.seconds["commit"] = round(time.perf_counter() - started, 3)
            run.finished_at = datetime.now(timezone.utc)  # the record's own duration includes its commit
            runs.insert(con, run, commit_id)
            faultpoints.reached("lake_staged")
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        # Publish while still holding the write lock: another account's commit in this process would
        # otherwise find this committed staging area in its repair and move the same files at once.
        faultpoints.reached("committed")
        try:
            lake.publish(lake_root, commit_id)
        except OSError as exc:  # committed all the same: the next commit's repair publishes the files
            run.counters["lake_publish_deferred"] = 1
            get_logger().warning("lake_publish_deferred", source=run.label, commit_id=commit_id, error=str(exc))
    get_logger().info("source_committed", source=run.label, run_id=run.run_id, loaded=run.loaded)
    return loaded


def pending_runs_file(path: Path) -> Path:
    """Where failure records wait while another process holds the warehouse (beside it)."""
    return Path(path).with_name(Path(path).name + ".pending-runs.ndjson")


def _move_in_pending_runs(con, path: Path) -> None:
    moved = runs.move_in(con, pending_runs_file(path))
    if moved:
        get_logger().info("run_records_moved_in", records=moved)


def record_failure(path: Path, run: runs.SourceRun, timeout: float = 60.0, analytics=None) -> None:
    """Store the run record of a failed source; its rows and cursors stay as they were. ``analytics``: as for
    :func:`ensure_schema` (without it, the marts' stored settings go back to their defaults).

    While another process holds the warehouse past ``timeout``, the record is set aside in a file beside
    it, and the next commit or failure record stores it.
    """
    try:
        with connect(path, read_only=False, timeout=timeout) as con:
            ensure_schema(con, analytics)
            _move_in_pending_runs(con, path)
            runs.insert(con, run, None)
    except WarehouseBusyError:
        runs.set_aside(pending_runs_file(path), run)
        get_logger().warning("run_record_deferred", source=run.label, file=str(pending_runs_file(path)),
                             reason="another process holds the warehouse; the next commit stores the record")
