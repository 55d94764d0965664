"""Ctrl-C or SIGTERM during ``shipetl run``: fetching stops, nothing half-loaded, a summary, exit 130 (143); the
next run loads all."""

from __future__ import annotations

import signal

import duckdb
import httpx
import pytest
from background import BackgroundRun
from sources import shipengine_source


@pytest.mark.parametrize("signum, exit_code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_or_sigterm_stops_the_run_loads_nothing_half_and_the_next_run_loads_everything(
        sandbox, make_pipeline, run_cli, tmp_path, signum, exit_code):
    pipeline = make_pipeline(shipengine_source(sandbox, name="first") + shipengine_source(sandbox, name="second"),
                             run={"max_parallel_sources": 1})
    httpx.post(f"{sandbox}/_sandbox/faults", json={"latency_ms": 100}).raise_for_status()  # 2000 polls: 12 s
    run = BackgroundRun(pipeline, tmp_path)
    try:
        assert run.polling.wait(120), run.log_tail()
        run.process.send_signal(signum)
        stdout = run.process.stdout.read()
        assert run.process.wait(timeout=120) == exit_code, run.log_tail(3000)
    finally:
        run.end()
    rows = {line.split("│")[1].strip(): line for line in stdout.splitlines() if line.startswith("│")}
    assert "interrupted (Ctrl-C or SIGTERM) before its commit" in rows["first"], stdout + run.log_tail(3000)
    assert "not started: the run was interrupted" in rows["second"], stdout
    assert "Traceback" not in "".join(run.log)
    db = tmp_path / "warehouse.duckdb"
    if db.exists():  # the failures were recorded, no row of either source was loaded
        con = duckdb.connect(str(db), read_only=True)
        assert con.execute("SELECT count(*) FROM tracking_events").fetchone() == (0,)
        con.close()

    httpx.post(f"{sandbox}/_sandbox/faults", json={"latency_ms": 0}).raise_for_status()
    again = run_cli("run", str(pipeline))
    assert again.returncode == 0, again.stderr[-2000:]
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("SELECT count(DISTINCT account_id) FROM shipments").fetchone() == (2,)
