"""Outside plugins installed with pip into a fresh virtualenv, beside shipetl from the working tree.

Proves the route a user takes with ``pip install shipetl-<name>``: a package made by ``shipetl
new-plugin``, the outside example distribution (``tests/example_plugin``), a deliberately broken
package and a status-mapping-only package are installed, listed by ``shipetl plugins`` and used by
``shipetl run`` against loopback servers. Every command runs in the venv as a real process.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import shutil
import subprocess
import sys
import textwrap
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "tests" / "example_plugin"
pytestmark = pytest.mark.e2e

BROKEN_PYPROJECT = """
[build-system]
requires = ["setuptools>=69"]
build-backend = "setuptools.build_meta"

[project]
name = "shipetl-broken"
version = "0.2.0"
dependencies = ["shipetl"]

[project.entry-points.shipetl]
broken_import = "shipetl_broken.import_error"
broken_version = "shipetl_broken.future"

[tool.setuptools]
packages = ["shipetl_broken"]
"""
BROKEN_MODULES = {
    "__init__.py": "",
    "import_error.py": 'raise RuntimeError("deliberately broken at import")\n',
    "future.py": "from shipetl import hookimpl\n\n\n@hookimpl\ndef shipetl_api_version():\n    return 2\n",
}
STATUSES_PYPROJECT = """
[build-system]
requires = ["setuptools>=69"]
build-backend = "setuptools.build_meta"

[project]
name = "shipetl-example-statuses"
version = "1.0.0"
dependencies = ["shipetl"]

[project.entry-points.shipetl]
example_statuses = "shipetl_example_statuses"

[tool.setuptools]
packages = ["shipetl_example_statuses"]
"""
STATUSES_MODULE = '''"""Refines Example Post's code 30: the local courier has the parcel on the van."""

from shipetl import hookimpl


@hookimpl
def register_status_maps(register):
    register("example", {"30": "out_for_delivery"}, override=True)
'''


class Venv:
    """A real virtualenv (no system site-packages) and the commands run inside it."""

    def __init__(self, path: Path) -> None:
        self.path, self.bin = path, path / "bin"
        self.env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
        self.env.update(VIRTUAL_ENV=str(path), PATH=f"{self.bin}{os.pathsep}{os.environ.get('PATH', '')}")

    def run(self, *args: str, cwd: Path | None = None, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
        proc = subprocess.run([str(self.bin / args[0]), *args[1:]], cwd=cwd or self.path, env=self.env,
                              capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            pytest.fail(f"{' '.join(args)} exited {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}")
        return proc

    def pip_install(self, *targets: str) -> None:
        self.run("python", "-m", "pip", "install", "--quiet", *targets, timeout=600)

    def install_plugin(self, source: Path) -> None:
        """``pip install`` a plugin folder; shipetl and setuptools are already in the venv, so no index is asked."""
        self.pip_install("--no-build-isolation", "--no-deps", "--no-index", str(source))

    @contextlib.contextmanager
    def sandbox(self) -> Iterator[str]:
        """``shipetl sandbox`` of this venv (every installed plugin's fake API) on a free loopback port."""
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        proc = subprocess.Popen([str(self.bin / "shipetl"), "sandbox", "--port", str(port)], env=self.env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    httpx.get(url + "/", timeout=1).raise_for_status()
                    break
                except httpx.HTTPError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        pytest.fail(f"sandbox did not start: {proc.stderr.read() if proc.poll() is not None else 'timeout'}")
                    time.sleep(0.2)
            yield url
        finally:
            proc.terminate()
            proc.wait(timeout=30)


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Venv:
    path = tmp_path_factory.mktemp("plugins") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True, timeout=120)
    assert "include-system-site-packages = false" in (path / "pyvenv.cfg").read_text()
    env = Venv(path)
    env.pip_install("-e", str(ROOT), "pytest>=8", "setuptools>=69")
    env.install_plugin(EXAMPLE)
    return env


def write_package(root: Path, pyproject: str, package: str, modules: dict[str, str]) -> Path:
    (root / package).mkdir(parents=True)
    (root / "pyproject.toml").write_text(textwrap.dedent(pyproject).lstrip())
    for name, text in modules.items():
        (root / package / name).write_text(text)
    return root


def pipeline_file(tmp_path: Path, sources: str) -> Path:
    path = tmp_path / "pipeline.yaml"
    path.write_text(f"warehouse:\n  path: {tmp_path}/warehouse.duckdb\n  lake: {tmp_path}/lake\n  raw: {tmp_path}/raw\n"
                    f"  tokens: {tmp_path}/tokens\nsources:\n" + textwrap.indent(textwrap.dedent(sources).strip(), "  ") + "\n")
    return path


def example_source(url: str) -> str:
    return f"""
        - provider: example
          base_url: {url}/example
          credentials: {{token: example-token}}
    """


def sql(venv: Venv, pipeline: Path, query: str) -> list[str]:
    """Rows of ``shipetl sql --format csv``, one string per line, quotes removed."""
    return venv.run("shipetl", "sql", str(pipeline), "--format", "csv", query).stdout.replace('"', "").split()


def plugin_line(listing: str, name: str) -> str:
    match = re.search(rf"^{re.escape(name)}\s.*$", listing, re.MULTILINE)
    assert match, f"{name} missing from `shipetl plugins`:\n{listing}"
    return match.group(0)


def test_generated_plugin_installs_lists_runs_and_passes_its_own_tests(venv: Venv, tmp_path: Path):
    venv.run("shipetl", "new-plugin", "acme", "--dir", str(tmp_path))
    venv.install_plugin(tmp_path / "shipetl-acme")  # a real (non-editable) install, fixtures as package data

    assert plugin_line(venv.run("shipetl", "plugins").stdout, "acme").split() == ["acme", "shipetl-acme", "0.1.0",
                                                                                 "shipetl_acme", "ok"]
    with venv.sandbox() as url:
        pipeline = pipeline_file(tmp_path, f"""
            - provider: acme
              base_url: {url}/acme
              credentials: {{api_key: sandbox-key}}
        """)
        run = venv.run("shipetl", "run", str(pipeline), "--no-progress")
    assert re.search(r"acme\s.*\bok\b", run.stdout), run.stdout
    rows = sql(venv, pipeline, "SELECT shipment_id, status FROM shipments_latest WHERE provider = 'acme' ORDER BY 1")
    assert rows == ["shipment_id,status", "ACME100000001,delivered", "ACME100000002,in_transit",
                            "ACME100000003,failed_attempt"]
    events = sql(venv, pipeline, "SELECT count(*) AS n FROM tracking_events WHERE provider = 'acme'")
    assert events == ["n", "7"]

    own_tests = venv.run("pytest", "-q", "-p", "no:cacheprovider", cwd=tmp_path / "shipetl-acme")
    assert re.search(r"\b30 passed, 4 skipped\b", own_tests.stdout), own_tests.stdout  # as test_scaffold says why
    assert "failed" not in own_tests.stdout


def test_example_distribution_is_listed_and_passes_its_own_tests(venv: Venv):
    line = plugin_line(venv.run("shipetl", "plugins").stdout, "example")
    assert line.split() == ["example", "shipetl-example", "0.3.0", "shipetl_example", "ok"]
    own_tests = venv.run("pytest", "-q", "-p", "no:cacheprovider", cwd=EXAMPLE)
    assert re.search(r"\b30 passed\b", own_tests.stdout), own_tests.stdout


def test_broken_package_is_reported_by_name_and_the_others_still_load(venv: Venv, tmp_path: Path):
    venv.install_plugin(write_package(tmp_path / "broken", BROKEN_PYPROJECT, "shipetl_broken", BROKEN_MODULES))

    listing = venv.run("shipetl", "plugins").stdout
    assert plugin_line(listing, "broken_import").split()[1:3] == ["shipetl-broken", "0.2.0"]
    assert "error: failed to load: RuntimeError: deliberately broken at import" in listing
    assert "error: targets hook API version 2; this shipetl speaks version 1" in listing
    assert plugin_line(listing, "example").endswith("ok") and plugin_line(listing, "duckdb").endswith("ok")

    with venv.sandbox() as url:
        pipeline = pipeline_file(tmp_path, example_source(url))
        run = venv.run("shipetl", "run", str(pipeline), "--no-progress")  # exit 0: broken plugins do not fail a run
    assert "plugin broken_import (package shipetl-broken 0.2.0) not loaded: failed to load: RuntimeError" in run.stdout
    assert "plugin broken_version (package shipetl-broken 0.2.0) not loaded: targets hook API version 2" in run.stdout
    rows = sql(venv, pipeline, "SELECT count(*) AS n FROM tracking_events")
    assert rows == ["n", "6"]
    venv.run("python", "-m", "pip", "uninstall", "--yes", "--quiet", "shipetl-broken")


def test_status_mapping_only_package_changes_the_status_in_the_next_run(venv: Venv, tmp_path: Path):
    query = "SELECT shipment_id, status FROM shipments_latest ORDER BY 1"
    with venv.sandbox() as url:
        pipeline = pipeline_file(tmp_path, example_source(url))
        venv.run("shipetl", "run", str(pipeline), "--no-progress")
        before = sql(venv, pipeline, query)
        venv.install_plugin(write_package(tmp_path / "statuses", STATUSES_PYPROJECT, "shipetl_example_statuses",
                                          {"__init__.py": STATUSES_MODULE}))
        venv.run("shipetl", "run", str(pipeline), "--no-progress")
        after = sql(venv, pipeline, query)
    assert before[1:3] == ["EX-1001,delivered", "EX-1002,in_transit"]
    assert after[1:3] == ["EX-1001,delivered", "EX-1002,out_for_delivery"]

    listing = venv.run("shipetl", "plugins").stdout
    assert plugin_line(listing, "example_statuses").split()[1:3] == ["shipetl-example-statuses", "1.0.0"]
    assert "statuses:example (overrides example)" in listing
    assert re.search(r"^\s+example: example, example_statuses$", listing, re.MULTILINE), listing


def test_the_wheel_holds_every_file_of_shipetl_and_its_built_in_plugins(venv: Venv, tmp_path: Path):
    """What a `pip install shipetl` gets: every file in the packages' folders (the AliExpress demo's order ids,
    `py.typed`, SQL, templates, fixtures), built from a copy of the working tree as a release would be."""
    src = tmp_path / "src"

    def left_out(folder: str, names: list[str]) -> list[str]:
        """The checkout's own working folders (at the top only: scaffold_templates/tests/ ships), and caches."""
        top = {".git", ".venv", "data", "tests", "build", "dist"} if Path(folder) == ROOT else set()
        return [n for n in names if n in top or n == "__pycache__" or n.endswith(".egg-info")]

    shutil.copytree(ROOT, src, ignore=left_out)
    venv.run("python", "-m", "pip", "wheel", "--quiet", "--no-build-isolation", "--no-deps", "--no-index",
             "-w", str(tmp_path / "dist"), str(src), timeout=600)
    (wheel,) = (tmp_path / "dist").glob("shipetl-*.whl")
    packed = set(zipfile.ZipFile(wheel).namelist())
    wanted = {path.relative_to(top).as_posix()
              for top, package in [(src, src / "shipetl"), *((src / "plugins", p) for p in (src / "plugins").glob("shipetl_*"))]
              for path in package.rglob("*") if path.is_file() and "__pycache__" not in path.parts}
    assert {"shipetl/py.typed", "shipetl_aliexpress/fixtures/demo_order_ids.txt",
            "shipetl/scaffold_templates/tests/conftest.py.tmpl"} <= wanted
    assert sorted(wanted - packed) == []
