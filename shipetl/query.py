"""Read-only access for people: ``shipetl sql``, ``shipetl runs``, ``shipetl state``."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from . import runs, state, warehouse
from .config import PipelineConfig
from .errors import ShipetlError


def _open(pipeline: PipelineConfig):
    path = Path(pipeline.warehouse.path)
    if not path.exists():
        raise ShipetlError(f"{path}: no warehouse yet; run `shipetl run {pipeline.path}` first")
    return warehouse.connect(path, read_only=True, timeout=10)


def _print_rows(columns: list[str], rows: list[tuple]) -> None:
    table = Table(*columns)
    for row in rows:
        table.add_row(*("" if v is None else str(v) for v in row))
    Console().print(table)


def run(pipeline: PipelineConfig, query: str, fmt: str, out: str | None) -> None:
    """Run ``query`` read-only and print or write it as a table, CSV, JSON lines or Parquet."""
    import duckdb

    with _open(pipeline) as con:
        try:
            rel = con.sql(query)
        except duckdb.Error as exc:
            raise ShipetlError(f"query failed: {str(exc).splitlines()[0]}") from None
        if rel is None:
            return
        if fmt == "table":
            _print_rows(rel.columns, rel.fetchall())
            return
        if fmt == "parquet" and not out:
            raise ShipetlError("--format parquet needs --out FILE")
        target = out or "/dev/stdout"
        if fmt == "parquet":
            rel.write_parquet(target)
        elif fmt == "csv":
            rel.write_csv(target)
        else:
            con.execute(f"COPY ({query}) TO '{target}' (FORMAT json)")
        if out:
            click.echo(f"wrote {out}", err=True)


def run_history(pipeline: PipelineConfig, limit: int) -> None:
    with _open(pipeline) as con:
        _print_rows(["run_id", "source", "account", "status", "started_at", "seconds", "extracted", "loaded",
                     "dedup", "rejected", "unmapped", "error"], runs.history(con, limit))


def show_state(pipeline: PipelineConfig) -> None:
    with _open(pipeline) as con:
        _print_rows(["source", "account", "key", "value", "run_id", "updated_at"], state.list_all(con))
    sys.stdout.flush()
