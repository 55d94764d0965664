"""Counts per source and the table printed when a run ends."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from .runner import RunResult


def render(result: RunResult, console: Console | None = None) -> None:
    """Print one line per source account: extracted, loaded, deduplicated, rejected, and why it failed."""
    console = console or Console(width=max(Console().width, 140))
    table = Table(title=f"run {result.run_id}", show_lines=False)
    for name in ("source", "status", "pages", "extracted", "loaded", "dedup", "rejected", "unmapped", "notes"):
        table.add_column(name, justify="right" if name in ("pages", "extracted", "loaded", "dedup", "rejected", "unmapped") else "left")
    for run in result.sources:
        ext, load, dedup, rej = run.totals()
        notes = run.error or ", ".join(f"{k}={v}" for k, v in sorted(run.counters.items()))
        table.add_row(run.label, "ok" if run.ok else "FAILED", str(run.pages), str(ext), str(load), str(dedup), str(rej),
                      str(sum(run.unmapped.values())), notes, style=None if run.ok else "red")
    console.print(table)
    for name, error in result.broken_plugins.items():
        console.print(f"[yellow]plugin {name} not loaded: {error}[/yellow]")
    failed = [r for r in result.sources if not r.ok]
    if failed:
        console.print(f"[red]{len(failed)} of {len(result.sources)} source(s) failed[/red]")
