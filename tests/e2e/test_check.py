"""``shipetl check``: each account's first request over real loopback HTTP, one line each, nothing stored."""

from __future__ import annotations

import socket

from shipetl_aliexpress.sandbox import build_world as aliexpress_world
from sources import shipengine_source, shopee_source
from test_all_providers import SCALE, SHOPS, pipeline_sources, small_sandbox  # noqa: F401 (fixture)


def _rows(stdout: str) -> dict[str, list[str]]:
    """The check table's rows by source label: [provider, status, seconds, detail]."""
    rows = {}
    for line in stdout.splitlines():
        cells = [c.strip() for c in line.strip("│ ").split("│")]
        if len(cells) == 5 and cells[2] in ("ok", "FAILED"):
            rows[cells[0]] = cells[1:]
    return rows


def test_every_account_of_every_provider_answers_and_nothing_is_written(small_sandbox, make_pipeline, run_cli, tmp_path):
    ids_file = tmp_path / "ae_orders.csv"
    ids_file.write_text("ae_order_id\n" + "".join(f"{o.order_id}\n" for o in aliexpress_world(42, SCALE).orders))
    proc = run_cli("check", str(make_pipeline(pipeline_sources(small_sandbox, ids_file))))
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    rows = _rows(proc.stdout)
    assert set(rows) == {"se", "ae", "fz"} | {f"shopee/shop-{s}" for s in SHOPS}
    assert all(status == "ok" and detail.startswith("answered: first ") for _, status, _, detail in rows.values())
    assert rows["se"][3] == "answered: first labels page"
    assert not (tmp_path / "warehouse.duckdb").exists() and not (tmp_path / "raw").exists()
    assert not (tmp_path / "lake").exists()


def test_a_wrong_key_and_a_dead_host_fail_their_own_line_only(small_sandbox, make_pipeline, run_cli):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    sources = (shipengine_source(small_sandbox, key="not-the-key", name="se-bad-key")
               + shipengine_source(small_sandbox, name="se-good")
               + shipengine_source(dead, name="se-dead")
               + shopee_source(small_sandbox, SHOPS[:1]))
    proc = run_cli("check", str(make_pipeline(sources, run={"expire_after_days": 3650})), timeout=120)
    assert proc.returncode == 1
    rows = _rows(proc.stdout)
    assert rows["se-good"][1] == "ok" and rows[f"shopee/shop-{SHOPS[0]}"][1] == "ok"
    assert rows["se-bad-key"][1] == "FAILED" and "api_key" in rows["se-bad-key"][3]
    assert rows["se-dead"][1] == "FAILED" and "127.0.0.1" in rows["se-dead"][3]
    assert "not-the-key" not in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr


def test_only_checks_the_named_source(small_sandbox, make_pipeline, run_cli):
    pipeline = make_pipeline(shipengine_source(small_sandbox, name="one") + shipengine_source(small_sandbox, name="two"))
    proc = run_cli("check", str(pipeline), "--only", "two")
    assert proc.returncode == 0 and set(_rows(proc.stdout)) == {"two"}
    proc = run_cli("check", str(pipeline), "--only", "three")
    assert proc.returncode == 2 and "--only names no source called three; sources: one, two" in proc.stderr
