"""A live progress line per source on a terminal; nothing at all under cron."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.live import Live
from rich.table import Table


@contextmanager
def display(enabled: bool | None = None) -> Iterator[Callable[[str, int], None] | None]:
    """Yield a ``tick(source_label, pages)`` callback, or None when the display is off (default: off unless a TTY)."""
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        yield None
        return
    pages: dict[str, int] = {}
    lock = threading.Lock()

    def render() -> Table:
        table = Table.grid(padding=(0, 2))
        for label, n in sorted(pages.items()):
            table.add_row(label, f"{n} pages fetched")
        return table

    with Live(render(), console=Console(stderr=True), refresh_per_second=4, transient=True) as live:
        def tick(label: str, n: int) -> None:
            with lock:
                pages[label] = n
                live.update(render())

        yield tick
