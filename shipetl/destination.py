"""The built-in ``duckdb`` destination: the DuckDB + Parquet warehouse, registered as any plugin's would be.

It is a plugin module of core itself (entry point ``duckdb = "shipetl.destination"``), so the
``register_destinations`` hook is exercised on every run, and a third-party destination is picked the
same way: the pipeline's ``destination:`` key names it.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import warehouse
from .hookspecs import API_VERSION, hookimpl
from .log import get_logger
from .polling import asked_all_since
from .runs import INTERRUPTED

if TYPE_CHECKING:
    from collections.abc import Sequence

    from .config import PipelineConfig
    from .runs import SourceRun
    from .transform import TransformResult

NAME = "duckdb"
FAILURE_RECORD_WAIT = 5.0  # seconds


class DuckDBDestination:
    """Loads into the pipeline's ``warehouse:`` (DuckDB file, Parquet lake), one transaction per source."""

    def __init__(self, pipeline: PipelineConfig) -> None:
        self.settings = pipeline.warehouse
        self.expire_after = timedelta(days=pipeline.run.expire_after_days)
        self.analytics = pipeline.analytics
        self.pipeline_file = pipeline.path

    def commit(self, staged: TransformResult, run: SourceRun, cursors: dict[str, Any]) -> dict[str, int]:
        return warehouse.commit(Path(self.settings.path), Path(self.settings.lake), staged, run, cursors,
                                timeout=self.settings.commit_timeout, expire_before=self.expire_before(run, cursors),
                                analytics=self.analytics, pipeline_file=self.pipeline_file)

    def expire_before(self, run: SourceRun, cursors: dict[str, Any]) -> datetime | None:
        """Open shipments with no news since this instant are silent and get an ``expired`` snapshot (None: none
        is judged this run). Silence is judged only on what was asked: a run stopped early asked only some open
        shipments, so none; a run that asked its share of a round (``max_open_polls``) judges as of when the
        turns that went once round began, and none before they have."""
        if run.status == INTERRUPTED:
            return None
        asked = asked_all_since(run.started_at, cursors)
        if asked is None:
            get_logger().info("expiry_waits", source=run.label,
                              reason="the capped polls (max_open_polls) have not yet gone round the open records")
            return None
        return min(asked, run.started_at) - self.expire_after

    def record_failure(self, run: SourceRun) -> None:
        # A failure record is not worth a second long wait (a busy warehouse may be why the source failed):
        # after a short one it is set aside for the next commit.
        warehouse.record_failure(Path(self.settings.path), run, timeout=min(self.settings.commit_timeout, FAILURE_RECORD_WAIT),
                                 analytics=self.analytics)

    def start_state(self, source: str, provider: str, account_id: str) -> tuple[dict[str, Any], Sequence[dict[str, Any]]]:
        return warehouse.start_state(Path(self.settings.path), source, provider, account_id, timeout=self.settings.commit_timeout)

    def query(self, sql: str, params: list[Any] | None = None) -> list[tuple]:
        return warehouse.query(Path(self.settings.path), sql, params, timeout=self.settings.commit_timeout)


@hookimpl
def shipetl_api_version() -> int:
    return API_VERSION


@hookimpl
def register_destinations(register) -> None:
    register(NAME, DuckDBDestination)
