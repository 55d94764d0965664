"""Replays generated provider replies (no HTTP) through raw zone, map/transform and load.

    python tests/benchmarks/bench_pipeline.py --trackings 100000 [--peers] [--keep DIR]
    python tests/benchmarks/bench_pipeline.py --provider shopee --orders 100000 [--pii hash|drop|keep] [--packages]

ShipEngine (default): generates tracking replies with ../shared/bench/gen_shipengine.py (or takes --input
FILE). Shopee: generates ``get_order_detail`` replies (50 orders each) with gen_shopee.py beside this file
(or takes --input FILE). Then runs the same code path a real run takes after the HTTP fetch: each reply, as
bytes, goes through the raw zone writer (secrets masked, zstd), the columnar transform (mapping SQL, UTC
times, statuses, event ids, PII hashing, rejects) and the warehouse commit (DuckDB insert without
duplicates, Parquet lake). Prints one JSON line: events (or orders) per second, the peak RSS of the
process, and the seconds of each phase (``fetch_and_map``, ``commit``, and ``lake`` within it); with --peers
(ShipEngine only) also runs ``peers.py duckdb-native`` on the same file, in its own process, and prints the ratio.

A nightly run commits into a warehouse that already holds months of rows: to measure that, run again with
the same ``--keep DIR`` and another input (``gen_shipengine.py --seed 7`` makes other parcels).

The Shopee replay yields only ``order_detail`` pages, so it fills ``orders`` and ``order_items``;
shipments come from the ``tracking`` stream, which --packages adds: one tracking page per package with no
reply yet (tracking number pending, as a first run sees), carrying the package meta the real extractor
builds, yielded right after its detail page.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


ROOT = Path(__file__).resolve().parents[2]
SHARED_BENCH = Path(os.environ.get("SHIPETL_SHARED_BENCH", ROOT.parent / "shared" / "bench"))
HERE = Path(__file__).resolve().parent


def generate(trackings: int, out: Path) -> Path:
    if not out.exists():
        subprocess.run([sys.executable, str(SHARED_BENCH / "gen_shipengine.py"), "--trackings", str(trackings),
                        "--out", str(out)], check=True, stdout=subprocess.DEVNULL)
    return out


def generate_shopee(orders: int, out: Path) -> Path:
    if not out.exists():
        subprocess.run([sys.executable, str(HERE / "gen_shopee.py"), "--orders", str(orders), "--out", str(out)],
                       check=True, stdout=subprocess.DEVNULL)
    return out


def _run_pipeline(work: Path, memory_limit: str, source_yaml: str, registry):
    """Write the bench pipeline file, run it in this process; (the one SourceRun, seconds)."""
    from shipetl import config, runner

    pipeline_file = work / "bench.yaml"
    pipeline_file.write_text(
        f"warehouse: {{path: {work}/warehouse.duckdb, lake: {work}/lake, raw: {work}/raw, memory_limit: {memory_limit}}}\n"
        f"sources:\n  - {source_yaml}\n"
    )
    started = time.perf_counter()
    result = runner.run_pipeline(config.load(pipeline_file), registry=registry)
    elapsed = time.perf_counter() - started
    (run,) = result.sources
    if not run.ok:
        raise SystemExit(f"benchmark run failed: {run.error}")
    return run, elapsed


def run_once(src: Path, work: Path, memory_limit: str) -> dict:
    """One `shipetl run` in this process, its ShipEngine source replaying ``src`` instead of calling HTTP."""
    from shipetl.plugins import load_registry
    from shipetl.provider import Page
    from shipetl_shipengine.provider import ShipEngineProvider

    class ReplayProvider(ShipEngineProvider):
        """ShipEngine with its HTTP calls replaced by the generated replies, each as the bytes received."""

        def extract(self, ctx):
            with open(src, "rb") as fh:
                for line in fh:
                    # The label fields the extractor carries beside each reply.
                    tn = line[line.index(b'"tracking_number":"') + 19:].split(b'"', 1)[0].decode()
                    yield Page("tracking", line, {"tracking_number": tn, "created_at": "2024-01-01T00:00:00Z"})

    registry = load_registry()
    registry.providers["shipengine"] = ReplayProvider
    run, elapsed = _run_pipeline(work, memory_limit, "{name: bench, provider: shipengine, credentials: {api_key: bench-not-used}}",
                                 registry)
    return {"events": run.extracted["tracking_events"], "loaded": run.loaded["tracking_events"], "total_s": elapsed,
            **{f"{phase}_s": seconds for phase, seconds in run.seconds.items()}}


def run_shopee(src: Path, work: Path, memory_limit: str, pii: str = "hash", packages: bool = False) -> dict:
    """One `shipetl run` in this process, a one-shop Shopee source replaying the ``get_order_detail`` replies
    in ``src`` (one a line) instead of calling HTTP: no tokens, no signing, no order list."""
    from shipetl.plugins import load_registry
    from shipetl.provider import Page
    from shipetl_shopee.extract import package_meta
    from shipetl_shopee.provider import ShopeeProvider

    class ReplayShopee(ShopeeProvider):
        """Shopee with its HTTP calls replaced by the generated detail replies, each as the bytes received."""

        def accounts(self):
            return ["shop-1"]

        def extract(self, ctx):
            import orjson

            with open(src, "rb") as fh:
                for line in fh:
                    yield Page("order_detail", line, {"missing": []})
                    if packages:
                        for order in orjson.loads(line)["response"]["order_list"]:
                            for package in order.get("package_list") or []:
                                yield Page("tracking", None, package_meta(order, package))

    registry = load_registry()
    registry.providers["shopee"] = ReplayShopee
    credentials = "{partner_key: bench-not-used, pii_key: bench-pii-key-not-used}" if pii == "hash" else "{partner_key: bench-not-used}"
    run, elapsed = _run_pipeline(
        work, memory_limit,
        f"{{name: bench, provider: shopee, pii: {pii}, credentials: {credentials}, options: {{shop_ids: [1], partner_id: 1}}}}",
        registry)
    return {
        "provider": "shopee",
        "orders": run.extracted.get("orders", 0),
        "order_items": run.extracted.get("order_items", 0),
        "shipments": run.extracted.get("shipments", 0),
        "rejected": sum(run.rejected.values()),
        "loaded_orders": run.loaded.get("orders", 0),
        "loaded_order_items": run.loaded.get("order_items", 0),
        "loaded_shipments": run.loaded.get("shipments", 0),
        "pages": run.pages,
        "total_s": elapsed,
        **{f"{phase}_s": seconds for phase, seconds in run.seconds.items()},
    }


def peer(src: Path, work: Path) -> float | None:
    peers = SHARED_BENCH / "peers.py"
    if not peers.exists():
        return None
    env = {**os.environ, "PEERS_OUT": str(work / "peers")}
    t = time.perf_counter()
    subprocess.run([sys.executable, str(peers), "duckdb-native", str(src)], check=True, env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--provider", choices=["shipengine", "shopee"], default="shipengine")
    ap.add_argument("--trackings", type=int, default=100_000, help="ShipEngine: tracking replies to generate")
    ap.add_argument("--orders", type=int, default=100_000, help="Shopee: orders to generate (50 per reply)")
    ap.add_argument("--input", type=Path,
                    help="an NDJSON file from gen_shipengine.py / gen_shopee.py (default: generate one)")
    ap.add_argument("--pii", choices=["hash", "drop", "keep"], default="hash",
                    help="Shopee: the source's pii setting (hash uses a bench pii_key credential)")
    ap.add_argument("--packages", action="store_true",
                    help="Shopee: also yield one pending tracking page per package, so shipments are mapped too")
    ap.add_argument("--peers", action="store_true", help="ShipEngine: also time peers.py duckdb-native on the same file")
    ap.add_argument("--memory-limit", default="512MB", help="DuckDB memory limit, as in the pipeline's warehouse.memory_limit")
    ap.add_argument("--keep", type=Path, help="work directory to keep (default: a temporary one)")
    args = ap.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="shipetl-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    if args.provider == "shopee":
        if args.peers:
            ap.error("--peers compares ShipEngine tracking loads only")
        src = args.input or generate_shopee(args.orders, work / f"shopee_{args.orders}.ndjson")
        stats = run_shopee(src, work, args.memory_limit, args.pii, args.packages)
        stats["orders_per_s"] = round(stats["orders"] / stats["total_s"])
        stats["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        stats["loadavg_1m"] = os.getloadavg()[0]
        print(json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in stats.items()}))
        return
    src = args.input or generate(args.trackings, work / f"se_{args.trackings}.ndjson")
    stats = run_once(src, work, args.memory_limit)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    stats["events_per_s"] = round(stats["events"] / stats["total_s"])
    stats["peak_rss_mib"] = round(peak_mib)
    if args.peers:
        peer_s = peer(src, work)
        if peer_s:
            stats["peer_duckdb_native_s"] = round(peer_s, 2)
            stats["peer_events_per_s"] = round(stats["events"] / peer_s)
            stats["ratio_vs_duckdb_native"] = round(stats["events_per_s"] / stats["peer_events_per_s"], 2)
    print(json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in stats.items()}))


if __name__ == "__main__":
    main()
