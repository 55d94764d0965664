"""Replays generated ShipEngine tracking replies (no HTTP) through raw zone, map/transform and load.

    python tests/benchmarks/bench_pipeline.py --trackings 100000 [--peers] [--keep DIR]

Generates the input with ../shared/bench/gen_shipengine.py (or takes --input FILE), then runs the same
code path a real run takes after the HTTP fetch: each reply, as bytes, goes through the raw zone writer
(secrets masked, zstd), the columnar transform (mapping SQL, UTC times, statuses, event ids, rejects) and
the warehouse commit (DuckDB insert without duplicates, Parquet lake). Prints events per second and the
peak RSS of the process; with --peers also runs ``peers.py duckdb-native`` on the same file, in its own
process, and prints the ratio.
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


def generate(trackings: int, out: Path) -> Path:
    if not out.exists():
        subprocess.run([sys.executable, str(SHARED_BENCH / "gen_shipengine.py"), "--trackings", str(trackings),
                        "--out", str(out)], check=True, stdout=subprocess.DEVNULL)
    return out


def run_once(src: Path, work: Path, memory_limit: str) -> dict:
    """One `shipetl run` in this process, its ShipEngine source replaying ``src`` instead of calling HTTP."""
    from shipetl import config, runner
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
    pipeline_file = work / "bench.yaml"
    pipeline_file.write_text(
        f"warehouse: {{path: {work}/warehouse.duckdb, lake: {work}/lake, raw: {work}/raw, memory_limit: {memory_limit}}}\n"
        "sources:\n  - {name: bench, provider: shipengine, credentials: {api_key: bench-not-used}}\n"
    )
    started = time.perf_counter()
    result = runner.run_pipeline(config.load(pipeline_file), registry=registry)
    elapsed = time.perf_counter() - started
    (run,) = result.sources
    if not run.ok:
        raise SystemExit(f"benchmark run failed: {run.error}")
    return {"events": run.extracted["tracking_events"], "loaded": run.loaded["tracking_events"], "total_s": elapsed}


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
    ap.add_argument("--trackings", type=int, default=100_000)
    ap.add_argument("--input", type=Path, help="an NDJSON file from gen_shipengine.py (default: generate one)")
    ap.add_argument("--peers", action="store_true", help="also time peers.py duckdb-native on the same file")
    ap.add_argument("--memory-limit", default="512MB", help="DuckDB memory limit, as in the pipeline's warehouse.memory_limit")
    ap.add_argument("--keep", type=Path, help="work directory to keep (default: a temporary one)")
    args = ap.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="shipetl-bench-"))
    work.mkdir(parents=True, exist_ok=True)
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
