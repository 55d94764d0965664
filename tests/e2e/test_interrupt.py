"""Ctrl-C or SIGTERM during ``shipetl run``: fetching stops, what was fetched loads with the cursors of the provider's
last checkpoint, a summary, exit 130 (143); the next run goes on from there and ends with every scan, none twice."""

from __future__ import annotations

import signal
import time
from datetime import datetime

import duckdb
import httpx
import orjson
import pytest
from background import BackgroundRun
from ground_truth import expected_event_keys, loaded_event_keys, warehouse_rows
from shipetl_shipengine.sandbox import build_world
from sources import shipengine_source


@pytest.mark.parametrize("signum, exit_code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_or_sigterm_loads_what_was_fetched_and_the_next_run_goes_on_from_the_checkpoint(
        sandbox, make_pipeline, run_cli, tmp_path, signum, exit_code):
    pipeline = make_pipeline(shipengine_source(sandbox, name="first") + shipengine_source(sandbox, name="second"),
                             run={"max_parallel_sources": 1})
    httpx.post(f"{sandbox}/_sandbox/faults", json={"latency_ms": 100}).raise_for_status()  # 2000 polls: 12 s
    run = BackgroundRun(pipeline, tmp_path)
    try:
        assert run.polling.wait(120), run.log_tail()
        time.sleep(3)  # a few pages of labels polled: past a checkpoint, far from the end
        run.process.send_signal(signum)
        stdout = run.process.stdout.read()
        assert run.process.wait(timeout=120) == exit_code, run.log_tail(3000)
    finally:
        run.end()
    rows = {line.split("│")[1].strip(): line for line in stdout.splitlines() if line.startswith("│")}
    assert "INTERRUPTED" in rows["first"] and "goes on from its last checkpoint" in rows["first"], stdout
    assert "not started: the run was interrupted" in rows["second"], stdout
    assert "1 of 2 source(s) interrupted: what they fetched is loaded" in stdout
    assert "Traceback" not in "".join(run.log)
    expected = expected_event_keys()
    loaded = loaded_event_keys(tmp_path, "first")
    assert 0 < len(loaded) < len(expected) and loaded <= expected
    assert warehouse_rows(tmp_path, "SELECT status FROM runs WHERE source = 'first'") == [("interrupted",)]
    (cursor,), = warehouse_rows(tmp_path, "SELECT value FROM source_state WHERE source = 'first' "
                                          "AND key = 'labels_created_at'")
    # What the checkpoint claims holds: every scan of every label created up to the cursor is loaded.
    cutoff = datetime.fromisoformat(orjson.loads(cursor))
    covered = {s.tracking_number for s in build_world(42).labels() if s.created_at <= cutoff}
    claimed = {key for key in expected if key[0] in covered}
    assert claimed and claimed <= loaded

    httpx.post(f"{sandbox}/_sandbox/faults", json={"latency_ms": 0}).raise_for_status()
    again = run_cli("run", str(pipeline))
    assert again.returncode == 0, again.stderr[-2000:]
    assert loaded_event_keys(tmp_path, "first") == expected  # (the second's scans are the same events: not again)
    assert warehouse_rows(tmp_path, "SELECT count(*) - count(DISTINCT event_id) FROM tracking_events") == [(0,)]
    assert warehouse_rows(tmp_path, "SELECT count(DISTINCT account_id) FROM shipments") == [(2,)]


def test_a_second_sigterm_stops_at_once_loading_nothing_more_and_the_next_run_loads_everything(
        sandbox, make_pipeline, run_cli, tmp_path):
    pipeline = make_pipeline(shipengine_source(sandbox), commit_timeout=60)
    db = tmp_path / "warehouse.duckdb"
    duckdb.connect(str(db)).close()
    reader = duckdb.connect(str(db), read_only=True)  # an analyst's session: a commit waits for it to end
    httpx.post(f"{sandbox}/_sandbox/faults", json={"latency_ms": 100}).raise_for_status()
    run = BackgroundRun(pipeline, tmp_path)
    try:
        assert run.polling.wait(120), run.log_tail()
        run.process.send_signal(signal.SIGTERM)
        assert run.wait_for("source_interrupted", 60), run.log_tail()  # its commit now waits for the reader
        time.sleep(0.5)
        run.process.send_signal(signal.SIGTERM)
        assert run.process.wait(timeout=30) == 143, run.log_tail(3000)
    finally:
        reader.close()
        run.end()
    log = "".join(run.log)
    assert '"event":"run_stopped_at_once"' in log and "Traceback" not in log, run.log_tail(3000)
    assert '"event":"source_committed"' not in log
    with duckdb.connect(str(db), read_only=True) as con:  # nothing of the run went in
        assert con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = 'tracking_events'"
                           ).fetchone() == (0,)

    httpx.post(f"{sandbox}/_sandbox/faults", json={"latency_ms": 0}).raise_for_status()
    again = run_cli("run", str(pipeline))
    assert again.returncode == 0, again.stderr[-2000:]
    assert loaded_event_keys(tmp_path, "se") == expected_event_keys()


def test_sigterm_ends_a_wait_for_retry_after_instead_of_sitting_it_out(sandbox, make_pipeline, tmp_path):
    pipeline = make_pipeline(shipengine_source(sandbox))
    httpx.post(f"{sandbox}/_sandbox/faults", json={"rate_429": 0.05, "retry_after_s": 600}).raise_for_status()
    run = BackgroundRun(pipeline, tmp_path)
    try:
        # Told to wait ten minutes, a request waits core's longest backoff (30 s), and the limiter with it.
        assert run.wait_for("http_retry", 120), run.log_tail()
        run.process.send_signal(signal.SIGTERM)
        assert run.process.wait(timeout=20) == 143, run.log_tail(3000)  # without waiting that out
        stdout = run.process.stdout.read()
    finally:
        run.end()
    row = next(line for line in stdout.splitlines() if line.startswith("│ se "))
    assert "INTERRUPTED" in row and "Traceback" not in "".join(run.log), stdout + run.log_tail(3000)
    assert warehouse_rows(tmp_path, "SELECT status FROM runs") == [("interrupted",)]
