"""All four built-in providers in one pipeline against one sandbox; `shipetl sql` answers across them.

Each world is built at a quarter of its size so the run stays short; the expected parcels per provider and
canonical status come from each sandbox's own ground truth.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from shipetl.sandbox import SandboxSettings, running_sandbox
from shipetl_aliexpress.sandbox import build_world as aliexpress_world
from shipetl_fuuffy.sandbox import build_world as fuuffy_world
from shipetl_shipengine.sandbox import build_world as shipengine_world
from shipetl_shipengine.statuses import STATUS_CODES, STATUS_DETAIL_CODES
from shipetl_shopee.sandbox import build_world as shopee_world
from sources import aliexpress_source, fuuffy_source, shipengine_source, shopee_source

SCALE = 0.25
SHOPS = (880101, 880202)
QUERY = "select provider, status, count(*) as parcels from shipments_latest group by all order by all"


@pytest.fixture
def small_sandbox(registry) -> Iterator[str]:
    with running_sandbox(registry.sandboxes, SandboxSettings(port=0, seed=42, scale=SCALE)) as url:
        yield url


def pipeline_sources(url: str, ids_file: Path) -> str:
    return (shipengine_source(url) + shopee_source(url, SHOPS) + aliexpress_source(url, ids_file)
            + fuuffy_source(url))


def expected_parcels() -> Counter:
    """(provider, canonical status) -> parcels, from each sandbox's ground truth."""
    expected: Counter = Counter()
    se = shipengine_world(42, SCALE)
    for label in se.labels():
        reply = se.tracking_json(label)  # "legacy" replies carry no status_detail_code: the status_code decides
        status = (STATUS_DETAIL_CODES.get(reply.get("status_detail_code") or "") or STATUS_CODES[reply["status_code"]])[0]
        expected["shipengine", status] += 1
    shopee = shopee_world(42, SCALE)
    expected.update(("shopee", s["status"]) for shop in SHOPS for s in shopee.expected_shipments(shop))
    expected.update(("aliexpress", s["status"]) for s in aliexpress_world(42, SCALE).expected_shipments())
    expected.update(("fuuffy", s["status"]) for s in fuuffy_world(42, SCALE).expected_shipments())
    return expected


def test_four_providers_load_together_and_sql_counts_parcels_per_provider_and_status(small_sandbox, make_pipeline,
                                                                                      run_cli, tmp_path):
    ids_file = tmp_path / "ae_orders.csv"
    ids_file.write_text("ae_order_id\n" + "".join(f"{o.order_id}\n" for o in aliexpress_world(42, SCALE).orders))
    pipeline = make_pipeline(pipeline_sources(small_sandbox, ids_file))

    run = run_cli("run", str(pipeline))
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]

    answer = run_cli("sql", str(pipeline), QUERY, "--format", "json")
    assert answer.returncode == 0, answer.stderr[-2000:]
    records = [json.loads(line) for line in answer.stdout.splitlines() if line.strip()]  # JSON lines
    got = Counter({(r["provider"], r["status"]): r["parcels"] for r in records})
    assert {provider for provider, _ in got} == {"shipengine", "shopee", "aliexpress", "fuuffy"}
    assert got == expected_parcels()
