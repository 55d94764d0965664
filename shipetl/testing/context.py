"""What one contract extract runs in and yields: its ExtractContext, and the harvest the checks read."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import structlog

from .. import transform, warehouse
from ..context import RunBookkeeping
from ..errors import ConfigError
from ..httpclient import http_client
from ..provider import Page, Provider
from ..ratelimit import RateLimit
from ..tokens import TokenStore


class ContractContext(RunBookkeeping):
    """An :class:`~shipetl.provider.ExtractContext` for one extract over a given transport.

    A first run unless given what an earlier run's commit left: its ``cursors``, its ``open_shipments``
    (rows of ``shipments`` not final) and the ``warehouse_path`` that ``query`` reads.
    """

    def __init__(self, provider_cls: type[Provider], options: Any, *, base_url: str, transport: httpx.BaseTransport,
                 credentials: Mapping[str, str], first_since: datetime, until: datetime, tmp: Path,
                 timezone_name: str | None, open_shipments: Sequence[dict[str, Any]],
                 cursors: Mapping[str, Any] | None = None, warehouse_path: Path | None = None) -> None:
        self.source_name = self.account_id = provider_cls.name
        # A plain run (no --since, so ``since`` is None): a first one fetches first_since..until, a later one
        # from its stored cursors, as core's window rule says.
        self.options, self.since, self.until = options, None, until
        self._since_override, self._lookback, self._first_since = None, timedelta(0), first_since
        self.timezone = timezone_name or provider_cls.default_timezone
        self.log = structlog.get_logger(source=provider_cls.name)
        self.tokens = TokenStore(tmp / "tokens")
        self.auth_command = f"shipetl auth PIPELINE {provider_cls.name}"
        self._cursors: dict[str, Any] = dict(cursors or {})
        self.new_cursors: dict[str, Any] = {}
        self.counters: Counter = Counter()
        self.unheard: set[str] = set()
        self._provider, self._base_url, self._transport = provider_cls, base_url, transport
        self._credentials, self._open = dict(credentials), open_shipments
        self._warehouse_path = warehouse_path
        self.windows_read: set[str] = set()  # cursors the extract took its window from

    def window(self, cursor_key: str) -> tuple[datetime, datetime]:
        self.windows_read.add(cursor_key)
        return super().window(cursor_key)

    def http(self, *, rate_limit_key: str | None = None, default_rate_limit: RateLimit | None = None,
             **overrides: Any):
        """A client on the contract's transport; no rate limit (the fixtures answer at once)."""
        kwargs: dict[str, Any] = {"base_url": self._base_url, "source": self.source_name, "max_retries": 2,
                                  "sleep": lambda _s: None}
        kwargs.update(overrides)
        kwargs["transport"] = self._transport  # the contract's, whatever the plugin passes
        return http_client(**kwargs)

    def secret(self, name: str) -> str:
        if name not in self._credentials:
            raise ConfigError(f"credentials.{name}: missing; list it in {self._provider.__name__}.secrets "
                              f"or in the contract's credentials")
        return self._credentials[name]

    def query(self, sql: str, params: list[Any] | None = None) -> list[tuple]:
        if self._warehouse_path is None:
            return []  # a first run: nothing committed yet
        return warehouse.query(self._warehouse_path, sql, params)


@dataclass
class Harvest:
    """One extract + transform of the fixtures: what the checks look at."""

    provider: type[Provider]
    requests: list[httpx.Request]
    unmatched: list[str]
    answered: Counter[str]  # fixture route -> requests it answered
    pages: list[Page]
    cursors: dict[str, Any]  # what the extract set with ``ctx.set_cursor``
    windows_read: set[str]  # the cursors it took ``ctx.window`` from
    raw_files: dict[str, list[Path]]
    raw_dir: Path
    result: transform.TransformResult
    tables: dict[str, pa.Table]  # staged rows per table; ``rejects`` always, empty when nothing was rejected
    output: str  # logs, stdout and stderr of the extract and transform
    base_url: str
    run_id: str
    extracted_at: datetime


@dataclass
class Rerun:
    """A second run over the same fixtures, started from what the first run's commit left."""

    harvest: Harvest
    open_shipments: int  # how many the second extract was handed
    loaded: tuple[dict[str, int], dict[str, int]]  # rows each commit inserted per table, rejects left out
