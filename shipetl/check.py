"""``shipetl check``: does every source account answer with its credentials, before the first nightly run?

Each account starts its extraction as a first run would and stops at the first page the provider yields:
that proves the base URL, the network path, the credentials (tokens refreshed on the way are kept, as a
run keeps them) and the provider's first request. Nothing is written to the raw zone or the warehouse.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from rich.console import Console
from rich.table import Table

from . import jobs, runner
from .config import PipelineConfig
from .log import get_logger
from .plugins import load_registry
from .registry import Registry
from .runs import account_label
from .summary import stdout_console


@dataclass
class CheckResult:
    """One source account's answer: ``detail`` says what came back, or in one line why nothing did."""

    label: str
    provider: str
    ok: bool
    detail: str
    seconds: float = 0.0


def _check_account(pipeline: PipelineConfig, job: jobs.AccountJob) -> CheckResult:
    provider_name = job.provider_cls.name
    label = account_label(job.source.name, job.account_id)
    started = time.perf_counter()
    pages = None
    try:
        ctx = jobs.source_context(pipeline, job, label, get_logger(source=label, check=True))
        pages = iter(job.provider_cls(job.source.name, job.options).extract(ctx))
        page = next(pages, None)
        detail = f"answered: first {page.stream} page" if page else "answered: nothing to fetch"
        ok = True
    except Exception as exc:  # one account's failure is its line, never the others'
        detail, ok = runner.error_line(exc, provider_name), False
    finally:
        if pages is not None and hasattr(pages, "close"):
            pages.close()  # ends the extraction: its HTTP client closes, no further request is made
    return CheckResult(label, provider_name, ok, detail, time.perf_counter() - started)


def check_pipeline(pipeline: PipelineConfig, only: Sequence[str] = (), registry: Registry | None = None) -> list[CheckResult]:
    """Check every enabled source account of ``pipeline`` (or of the sources in ``only``), one after another."""
    planned, refused = jobs.plan(pipeline, registry or load_registry(), only)
    results = [CheckResult(src.name, src.provider, False, runner.error_line(exc, src.provider)) for src, exc in refused]
    return results + [_check_account(pipeline, job) for job in planned]


def render(results: Sequence[CheckResult], console: Console | None = None) -> None:
    """One line per source account: ok or FAILED, with what it answered or why not."""
    table = Table(title="check", show_lines=False)
    for name in ("source", "provider", "status", "seconds", "detail"):
        table.add_column(name, justify="right" if name == "seconds" else "left")
    for r in results:
        table.add_row(r.label, r.provider, "ok" if r.ok else "FAILED", f"{r.seconds:.1f}", r.detail,
                      style=None if r.ok else "red")
    (console or stdout_console(min_width=120)).print(table)
