"""Counts per source and the table printed when a run ends."""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from .runner import RunResult

# Off a terminal nothing is cut to fit: a table is as wide as its longest values (tables do not expand).
UNLIMITED_WIDTH = 1_000_000


class _StdoutConsole(Console):
    """A rich console whose closed pipe raises BrokenPipeError (the CLI ends quietly) instead of exiting 1."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        raise BrokenPipeError(errno.EPIPE, "Broken pipe")


def stdout_console(min_width: int = 0) -> Console:
    """A console on standard output: the terminal's width (at least ``min_width``), or unlimited when piped."""
    console = _StdoutConsole()
    if not console.is_terminal:
        return _StdoutConsole(width=UNLIMITED_WIDTH)
    if console.width < min_width:
        console.width = min_width
    return console


def log_events(result: RunResult) -> None:
    """One structured log event per source account (``source_summary``) and per plugin not loaded.

    The counts are the summary table's, for a cron job that reads JSON log lines rather than the table
    (the runner's ``run_finished`` event precedes these). A failed source's event has level error and
    ``error`` saying why; one stopped early (status ``interrupted``) has level warning.
    """
    from .log import get_logger

    logger = get_logger(run_id=result.run_id)
    for run in result.sources:
        ext, load, dedup, rej = run.totals()
        fields = {"source": run.label, "provider": run.provider, "status": run.status, "pages": run.pages,
                  "extracted": ext, "loaded": load, "deduplicated": dedup, "rejected": rej,
                  "unmapped": sum(run.unmapped.values()), "counters": dict(sorted(run.counters.items())),
                  "error": run.error}
        level = logger.info if run.ok else logger.warning if run.committed else logger.error
        level("source_summary", **fields)
    for name, error in result.broken_plugins.items():
        logger.warning("plugin_not_loaded", plugin=name, error=error)


def render(result: RunResult, console: Console | None = None) -> None:
    """Print one line per source account: extracted, loaded, deduplicated, rejected, and why it failed."""
    console = console or stdout_console(min_width=140)
    table = Table(title=f"run {result.run_id}", show_lines=False)
    for name in ("source", "status", "pages", "extracted", "loaded", "dedup", "rejected", "unmapped", "notes"):
        table.add_column(name, justify="right" if name in ("pages", "extracted", "loaded", "dedup", "rejected", "unmapped") else "left")
    for run in result.sources:
        ext, load, dedup, rej = run.totals()
        notes = run.error or ", ".join(f"{k}={v}" for k, v in sorted(run.counters.items()))
        table.add_row(run.label, "ok" if run.ok else run.status.upper(), str(run.pages), str(ext), str(load), str(dedup),
                      str(rej), str(sum(run.unmapped.values())), notes,
                      style=None if run.ok else "yellow" if run.committed else "red")
    console.print(table)
    for name, error in result.broken_plugins.items():
        console.print(f"[yellow]plugin {name} not loaded: {error}[/yellow]")
    failed = [r for r in result.sources if not r.committed]
    if failed:
        console.print(f"[red]{len(failed)} of {len(result.sources)} source(s) failed[/red]")
    stopped = [r for r in result.sources if r.committed and not r.ok]
    if stopped:
        console.print(f"[yellow]{len(stopped)} of {len(result.sources)} source(s) interrupted: what they fetched "
                      "is loaded[/yellow]")
