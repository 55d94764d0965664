"""Named points where a test can kill the process (``SHIPETL_KILL_AT=<point>``), to prove crash safety.

Off unless the variable is set; it costs one dictionary lookup per point. The end-to-end tests set it in
a subprocess to die with SIGKILL at a chosen point of a commit, then rerun and compare with a clean run.
"""

from __future__ import annotations

import os
import signal

ENV = "SHIPETL_KILL_AT"  # points: lake_staged, committed, lake_half_published (warehouse.commit, lake.publish)


def reached(point: str) -> None:
    """SIGKILL this process if ``SHIPETL_KILL_AT`` names ``point``."""
    if os.environ.get(ENV) == point:
        os.kill(os.getpid(), signal.SIGKILL)
