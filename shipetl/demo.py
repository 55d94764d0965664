"""``shipetl demo``: the sandbox on a free loopback port, one run of a pipeline against it, then a query to try."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from . import config, plugins, runner
from .runner import RunResult
from .sandbox import SandboxSettings, running_sandbox

SANDBOX_URL_VAR = "SHIPETL_SANDBOX_URL"
TRY_QUERY = ("select carrier_code, status, count(*) as parcels from shipments_latest "
             "group by all order by parcels desc")


def run_demo(pipeline_path: str, seed: int = 42, progress=None) -> tuple[RunResult, config.PipelineConfig]:
    """Serve every registered sandbox, run ``pipeline_path`` with ``${SHIPETL_SANDBOX_URL}`` pointing at it."""
    registry = plugins.load_registry()
    with running_sandbox(registry.sandboxes, SandboxSettings(port=0, seed=seed)) as url:
        pipeline = config.load(pipeline_path, env={**os.environ, SANDBOX_URL_VAR: url})
        result = runner.run_pipeline(pipeline, registry=registry, progress=progress)
    return result, pipeline


def shipetl_command(cwd: Path | None = None) -> str:
    """How to call this shipetl from ``cwd``: the script beside the running Python (``.venv/bin/shipetl`` in the
    repository), by an absolute path from outside it; ``shipetl`` when there is none."""
    script = Path(sys.executable).parent / "shipetl"
    if not script.exists():
        return "shipetl"
    relative = os.path.relpath(script, cwd or Path.cwd())
    return str(script) if relative.startswith("..") else relative


def closing_words(pipeline: config.PipelineConfig) -> str:
    """Where the warehouse is and what to type next."""
    where = Path(pipeline.warehouse.path).resolve()
    command = shipetl_command()
    return (
        f"\nwarehouse: {where}\nparquet:   {Path(pipeline.warehouse.lake).resolve()}\n\ntry:\n"
        f"  {command} sql {pipeline.path} \"{TRY_QUERY}\"\n"
        f"  {command} runs {pipeline.path}\n"
    )
