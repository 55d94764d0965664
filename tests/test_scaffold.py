"""``shipetl new-plugin``: what it writes, what it refuses, and that the contract suite judges the result.

Installing the generated package into a fresh virtualenv and running it is
``tests/test_installed_plugins.py``; here it runs from its folder in this interpreter.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from shipetl import scaffold
from shipetl.errors import ShipetlError

LAYOUT = {
    "README.md", "pyproject.toml", "tests/conftest.py", "tests/test_contract.py",
    *(f"shipetl_dhl_ecom/{f}" for f in ("__init__.py", "provider.py", "client.py", "extract.py", "mapping.py",
                                        "statuses.py", "sandbox.py")),
    *(f"shipetl_dhl_ecom/fixtures/{f}" for f in ("trackings_page_1.json", "trackings_last_page.json", "error_401.json",
                                                 "error_429.json", "error_400.json", "expected_shipments.json",
                                                 "expected_tracking_events.json")),
}


def run_pytest(folder: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(folder)}
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider"],
                          cwd=folder, env=env, capture_output=True, text=True, timeout=300)


def test_new_plugin_writes_a_pip_installable_package(run_cli, tmp_path):
    result = run_cli("new-plugin", "dhl_ecom", "--dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    root = tmp_path / "shipetl-dhl-ecom"
    assert {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()} == LAYOUT
    project = tomllib.loads((root / "pyproject.toml").read_text())
    assert project["project"]["name"] == "shipetl-dhl-ecom"
    assert project["project"]["entry-points"]["shipetl"] == {"dhl_ecom": "shipetl_dhl_ecom"}
    assert project["tool"]["setuptools"]["package-data"] == {"shipetl_dhl_ecom": ["fixtures/*.json"]}
    for path in root.rglob("*"):
        if path.is_file():
            assert "{{" not in path.read_text(), f"{path.name}: a placeholder was left unfilled"
            if path.suffix == ".py":
                ast.parse(path.read_text(), str(path))
    assert 'name = "dhl_ecom"' in (root / "shipetl_dhl_ecom/provider.py").read_text()
    assert "class DhlEcomProvider(Provider)" in (root / "shipetl_dhl_ecom/provider.py").read_text()
    assert 'DEFAULT_BASE_URL = "https://api.dhl-ecom.example.com"' in (root / "shipetl_dhl_ecom/provider.py").read_text()
    assert project["tool"]["setuptools"]["packages"]["find"]["include"] == ["shipetl_dhl_ecom*"]


@pytest.mark.parametrize("name", ["DHL", "1dhl", "dhl-ecom", "x", "dhl ecom"])
def test_bad_names_are_refused(name, tmp_path):
    with pytest.raises(ShipetlError, match="lowercase letters"):
        scaffold.create(name, tmp_path)
    assert not any(tmp_path.iterdir())


def test_existing_folder_is_never_overwritten(run_cli, tmp_path):
    (tmp_path / "shipetl-acme").mkdir()
    result = run_cli("new-plugin", "acme", "--dir", str(tmp_path))
    assert result.returncode == 2
    assert "already exists" in result.stderr
    assert not any((tmp_path / "shipetl-acme").iterdir())


def test_every_template_ships_as_package_data():
    patterns = tomllib.loads((Path(scaffold.__file__).parents[1] / "pyproject.toml").read_text())[
        "tool"]["setuptools"]["package-data"]["shipetl"]
    templates = {str(p.relative_to(scaffold.TEMPLATES.parent)) for p in scaffold.TEMPLATES.rglob("*") if p.is_file()}
    shipped = {str(p.relative_to(scaffold.TEMPLATES.parent)) for pattern in patterns
               for p in scaffold.TEMPLATES.parent.glob(pattern) if scaffold.TEMPLATES in p.parents}
    assert templates and templates == shipped


def test_generated_tests_pass_and_catch_a_broken_plugin(tmp_path):
    root = scaffold.create("acme", tmp_path)
    green = run_pytest(root)
    assert green.returncode == 0, green.stdout[-3000:]
    # Skipped: against the sandbox the route and expected-rows checks (it has no routes, and its data is its own),
    # and in both classes the failing-poll check (the template's API lists shipments, it polls none one by one).
    assert "30 passed, 4 skipped" in green.stdout
    assert "shipetl 0.1.0, hook API version 1, provider contract suite" in green.stdout  # shipetl.testing as a pytest plugin

    # Three bugs a plugin author could make; each must fail the contract tests that exist for it.
    statuses = root / "shipetl_acme/statuses.py"
    statuses.write_text(statuses.read_text().replace('    "FA": "failed_attempt",\n', ""))
    extract = root / "shipetl_acme/extract.py"
    extract.write_text(extract.read_text().replace("        ctx.set_cursor(CURSOR, until)\n",
                                                   "        ctx.set_cursor(CURSOR, until)\n"
                                                   "        print('done with key', ctx.secret('api_key'))\n"))
    client = root / "shipetl_acme/client.py"
    client.write_text(client.read_text().replace("    if response.status_code in (401, 403):\n        raise AuthError",
                                                 "    if response.status_code in (401, 403):\n        raise TransientError"))
    red = run_pytest(root)
    failed = {line.split("::")[-1].split(" ")[0] for line in red.stdout.splitlines() if line.startswith("FAILED")}
    assert failed == {"test_statuses_are_canonical_and_mapped", "test_rows_match_expected",
                      "test_no_secret_in_logs_raw_zone_or_rows", "test_error_replies_raise_typed_errors[auth]"}, red.stdout[-3000:]


@pytest.mark.parametrize("name, owner", [("shipengine", "the provider of plugin shipengine"),
                                         ("shopee", "the provider of plugin shopee"),
                                         ("duckdb", "plugin duckdb")])
def test_a_name_an_installed_plugin_uses_is_refused(run_cli, tmp_path, name, owner, command_error):
    result = run_cli("new-plugin", name, "--dir", str(tmp_path))
    assert result.returncode == 2
    assert command_error(result.stderr).startswith(f"plugin name {name!r} is taken by {owner} (package shipetl ")
    assert not any(tmp_path.iterdir())
