"""``shipetl run`` in a child process, its JSON log followed, for tests that act while a run goes on."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path


class BackgroundRun:
    """Starts ``shipetl run PIPELINE`` in ``cwd``; ``polling`` is set once a source starts polling tracking.

    The child gets the default SIGINT handler, as from a person's shell: a test run started in the background
    (``make test &``) would otherwise hand it SIGINT ignored.
    """

    def __init__(self, pipeline: Path, cwd: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "shipetl", "--log-format", "json", "run", str(pipeline)], cwd=cwd,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        self.log: list[str] = []
        self.polling = threading.Event()
        self._follower = threading.Thread(target=self._follow, daemon=True)
        self._follower.start()

    def _follow(self) -> None:
        for line in self.process.stderr:
            self.log.append(line)
            if '"shipments_to_poll"' in line:
                self.polling.set()

    def wait_for(self, event: str, timeout: float) -> bool:
        """Whether a log line with ``event`` appears within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(f'"event":"{event}"' in line for line in list(self.log)):
                return True
            time.sleep(0.05)
        return False

    def log_tail(self, chars: int = 2000) -> str:
        return "".join(self.log)[-chars:]

    def end(self) -> None:
        """Kill the child if it is still running, and read its log to the end."""
        if self.process.poll() is None:
            self.process.kill()
        self._follower.join(timeout=30)
