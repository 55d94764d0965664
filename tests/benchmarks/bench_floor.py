"""The least work a ShipEngine replay must do on this machine, timed piece by piece: a floor for bench_pipeline.

    python tests/benchmarks/bench_floor.py --input FILE     # FILE from ../shared/bench/gen_shipengine.py

A run must parse every reply and load its scans (timed as ``peers.py duckdb-native``, DuckDB's own JSON
reader, which does nothing else), keep the raw replies (timed as the raw zone's zstd compressor over the
bytes, with no secret masking), and write the scans to the Parquet lake by provider and UTC day (timed as
one partitioned COPY of the peer's table: narrower rows than shipetl's, no staging, no renames). Mapping,
statuses, validation, event ids, deduplication and staging come on top and are not counted.

Prints one JSON line: each piece's wall and CPU seconds, and the events per second a pipeline doing only
these pieces could reach, run one after another (``serial_events_per_s``) and perfectly spread over every
core (``parallel_events_per_s``: total CPU seconds over the core count, never less than the longest
piece). Compare ``bench_pipeline.py``'s events_per_s on the same file with both.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import duckdb

from bench_pipeline import peer
from shipetl.rawzone import compressor


@contextmanager
def timed(pieces: dict, name: str, who: int = resource.RUSAGE_SELF):
    """Record the wall and CPU seconds (of this process, or of its children) of the block under ``name``."""
    def cpu() -> float:
        usage = resource.getrusage(who)
        return usage.ru_utime + usage.ru_stime

    wall, used = time.perf_counter(), cpu()
    yield
    pieces[name] = {"wall_s": round(time.perf_counter() - wall, 2), "cpu_s": round(cpu() - used, 2)}


def compress(src: Path, out: Path) -> None:
    """Every reply through the raw zone's compressor, line by line, as the raw zone writer takes them."""
    with open(src, "rb") as fh, open(out, "wb") as sink, compressor().stream_writer(sink) as writer:
        for line in fh:
            writer.write(line)


def lake(peer_db: Path, out: Path) -> int:
    """The peer's scans as Parquet partitioned by provider and UTC day, in one COPY; returns the events."""
    con = duckdb.connect(str(peer_db), read_only=True)
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET partitioned_write_max_open_files = 1000")
    con.execute(f"COPY (SELECT *, 'shipengine' AS provider, CAST(CAST(occurred_at AS DATE) AS VARCHAR) AS date "
                f"FROM tracking_events) TO '{out}' (FORMAT parquet, COMPRESSION snappy, PARTITION_BY (provider, date))")
    (events,) = con.execute("SELECT count(*) FROM tracking_events").fetchone()
    con.close()
    return events


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--input", type=Path, required=True, help="an NDJSON file from ../shared/bench/gen_shipengine.py")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="shipetl-floor-"))
    pieces: dict[str, dict] = {}
    with timed(pieces, "parse_and_load", resource.RUSAGE_CHILDREN):
        if peer(args.input, work) is None:
            raise SystemExit("../shared/bench/peers.py not found (set SHIPETL_SHARED_BENCH)")
    with timed(pieces, "raw_zone"):
        compress(args.input, work / "raw.ndjson.zst")
    with timed(pieces, "lake"):
        events = lake(work / "peers" / "duckdb-native.duckdb", work / "lake")
    shutil.rmtree(work)
    serial = sum(p["wall_s"] for p in pieces.values())
    parallel = max(sum(p["cpu_s"] for p in pieces.values()) / os.cpu_count(), *(p["wall_s"] for p in pieces.values()))
    print(json.dumps({"events": events, "cores": os.cpu_count(), **pieces,
                      "serial_events_per_s": round(events / serial), "parallel_events_per_s": round(events / parallel)}))


if __name__ == "__main__":
    main()
