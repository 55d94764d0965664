"""``shipetl lake``: a damaged lake is found partition by partition and rebuilt from the warehouse."""

from __future__ import annotations

import shutil

import duckdb
from sources import shipengine_source


def lake_rows(lake, table: str) -> int:
    return duckdb.sql(f"SELECT count(*) FROM read_parquet('{lake}/{table}/**/*.parquet')").fetchall()[0][0]


def test_a_deleted_and_a_doubled_partition_are_found_and_rebuilt(sandbox, make_pipeline, run_cli, tmp_path):
    pipeline = make_pipeline(shipengine_source(sandbox))
    assert run_cli("run", str(pipeline)).returncode == 0
    lake = tmp_path / "lake"
    clean = run_cli("lake", str(pipeline))
    assert clean.returncode == 0 and "every partition matches the warehouse" in clean.stderr

    partitions = sorted(p for p in (lake / "tracking_events" / "provider=shipengine").iterdir())
    lost, doubled = partitions[0], partitions[-1]
    lost_rows = sum(duckdb.sql(f"SELECT count(*) FROM '{f}'").fetchall()[0][0] for f in lost.glob("*.parquet"))
    doubled_rows = sum(duckdb.sql(f"SELECT count(*) FROM '{f}'").fetchall()[0][0] for f in doubled.glob("*.parquet"))
    shutil.rmtree(lost)  # deleted by hand
    first = next(doubled.glob("*.parquet"))
    shutil.copy(first, doubled / "restored-from-backup.parquet")  # an old copy put back beside the file

    found = run_cli("lake", str(pipeline))
    assert found.returncode == 1
    rows = [[c.strip() for c in line.strip("│ ").split("│")] for line in found.stdout.splitlines() if "│" in line]
    day = {name: p.name.removeprefix("date=") for name, p in (("lost", lost), ("doubled", doubled))}
    assert ["tracking_events", "shipengine", day["lost"], str(lost_rows), "0"] in rows
    first_rows = duckdb.sql(f"SELECT count(*) FROM '{first}'").fetchall()[0][0]
    assert ["tracking_events", "shipengine", day["doubled"], str(doubled_rows), str(doubled_rows + first_rows)] in rows
    assert "2 partition(s) differ" in found.stderr

    rebuilt = run_cli("lake", str(pipeline), "--rebuild")
    assert rebuilt.returncode == 0, rebuilt.stderr[-2000:]
    assert run_cli("lake", str(pipeline)).returncode == 0
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM tracking_events").fetchone()[0] == lake_rows(lake, "tracking_events")
    assert not (lake / "_staging").exists() or not any((lake / "_staging").iterdir())


def test_a_rebuild_after_a_crash_between_commit_and_publish_leaves_nothing_for_the_next_run_to_double(
        sandbox, make_pipeline, run_cli, tmp_path):
    pipeline = make_pipeline(shipengine_source(sandbox))
    killed = run_cli("run", str(pipeline), env={"SHIPETL_KILL_AT": "committed"})
    assert killed.returncode == -9  # committed, its Parquet still in the lake's staging area
    assert run_cli("lake", str(pipeline)).returncode == 1
    assert run_cli("lake", str(pipeline), "--rebuild").returncode == 0
    assert run_cli("run", str(pipeline)).returncode == 0  # its commit finds no staging area left to publish
    assert run_cli("lake", str(pipeline)).returncode == 0
    lake = tmp_path / "lake"
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM tracking_events").fetchone()[0] == lake_rows(lake, "tracking_events")


def test_a_warehouse_started_over_beside_its_old_lake_is_refused_until_the_lake_is_rebuilt(
        sandbox, make_pipeline, run_cli, tmp_path):
    pipeline = make_pipeline(shipengine_source(sandbox))
    assert run_cli("run", str(pipeline)).returncode == 0
    (tmp_path / "warehouse.duckdb").unlink()  # started over; the lake holds the old warehouse's rows
    refused = run_cli("run", str(pipeline))  # before fetching anything
    assert refused.returncode == 2 and "of which the warehouse" in refused.stderr, refused.stderr[-2000:]
    assert f"shipetl lake {pipeline} --rebuild" in refused.stderr and "source_started" not in refused.stderr
    assert run_cli("lake", str(pipeline), "--rebuild").returncode == 0  # the lake now mirrors the empty warehouse
    assert run_cli("run", str(pipeline)).returncode == 0
    assert run_cli("lake", str(pipeline)).returncode == 0
    lake = tmp_path / "lake"
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as con:
        stored = con.execute("SELECT count(*) FROM tracking_events").fetchone()[0]
    assert stored > 0 and lake_rows(lake, "tracking_events") == stored
