"""Shared fixtures: the loopback sandbox, pipeline files in a temp folder, and running the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from shipetl import redact
from shipetl.plugins import load_registry
from shipetl.sandbox import SandboxSettings, running_sandbox

ROOT = Path(__file__).resolve().parents[1]
E2E = ROOT / "tests" / "e2e"


def pytest_collection_modifyitems(items) -> None:
    """Every test under tests/e2e/ is an ``e2e`` test (``-m "not e2e"`` leaves them out), as is any test that
    starts the sandbox through the ``sandbox`` fixture."""
    for item in items:
        if E2E in Path(item.path).parents or "sandbox" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def registry():
    return load_registry()


@pytest.fixture
def sandbox(registry) -> Iterator[str]:
    """A fresh sandbox (all built-in providers, seed 42) on a free loopback port; yields its base URL."""
    with running_sandbox(registry.sandboxes, SandboxSettings(port=0, seed=42)) as url:
        yield url


@pytest.fixture
def make_pipeline(tmp_path: Path) -> Callable[[str], Path]:
    """Write a pipeline YAML whose warehouse, lake, raw zone and tokens live in ``tmp_path``.

    Pass the ``sources:`` list as YAML text (indented freely) and optionally ``run=`` settings; returns the path.
    """

    def make(sources_yaml: str, run: dict | None = None, **warehouse: str) -> Path:
        settings = {"path": tmp_path / "warehouse.duckdb", "lake": tmp_path / "lake", "raw": tmp_path / "raw",
                    "tokens": tmp_path / "tokens", **warehouse}
        text = "warehouse:\n" + "".join(f"  {k}: {v}\n" for k, v in settings.items())
        # The sandbox's world stands still in 2025: by default, wall-clock expiry must not close its open parcels.
        run_settings = {"expire_after_days": 3650, **(run or {})}
        text += "run:\n" + "".join(f"  {k}: {v}\n" for k, v in run_settings.items())
        text += "sources:\n" + textwrap.indent(textwrap.dedent(sources_yaml).strip() + "\n", "  ")
        path = tmp_path / "pipeline.yaml"
        path.write_text(text)
        return path

    return make


@pytest.fixture
def run_cli(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess]:
    """Run ``python -m shipetl ARGS`` in a subprocess (real process, real exit code), JSON logs on stderr."""

    def run(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
        full_env = {**os.environ, **(env or {})}
        return subprocess.run([sys.executable, "-m", "shipetl", "--log-format", "json", *args], cwd=tmp_path,
                              env=full_env, capture_output=True, text=True, timeout=timeout)

    return run


@pytest.fixture
def command_error() -> Callable[[str], str]:
    """Reads the error of a command that failed with JSON logs: stderr must hold exactly one line, the
    ``command_failed`` event; returns its ``error`` text."""

    def error_of(stderr: str) -> str:
        lines = stderr.strip().splitlines()
        assert len(lines) == 1, stderr
        event = json.loads(lines[0])
        assert event["event"] == "command_failed" and event["level"] == "error", event
        return event["error"]

    return error_of


@pytest.fixture(autouse=True)
def _forget_secrets() -> Iterator[None]:
    yield
    redact.clear_secrets()
