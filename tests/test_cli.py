"""The ``shipetl`` command: exit codes, one-line errors, masked secrets, the run summary."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from shipetl import __version__
from shipetl.cli import cli

SECRET = "se-live-0123456789abcdef"


def write(tmp_path: Path, body: str, name: str = "pipeline.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(f"""\
        warehouse:
          path: {tmp_path}/wh.duckdb
          lake: {tmp_path}/lake
          raw: {tmp_path}/raw
          tokens: {tmp_path}/tokens
        """) + textwrap.dedent(body))
    return path


def invoke(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(cli, ["--log-format", "json", *args], env=env, catch_exceptions=False)


GOOD = """\
sources:
  - name: shipengine-main
    provider: shipengine
    lookback: 2d
    credentials:
      api_key: ${SHIPENGINE_API_KEY}
"""


def test_validate_good_file_masks_secrets(tmp_path) -> None:
    path = write(tmp_path, GOOD)
    result = invoke("validate", str(path), env={"SHIPENGINE_API_KEY": SECRET})
    assert result.exit_code == 0, result.output
    assert SECRET not in result.output
    assert "api_key: '***'" in result.stdout
    assert "name: shipengine-main" in result.stdout and "lookback: 2d" in result.stdout
    assert result.stderr.strip() == f"{path}: ok (1 source(s))"


def test_validate_misspelt_key_names_file_line_and_key(tmp_path, command_error) -> None:
    path = write(tmp_path, GOOD.replace("lookback: 2d", "lookbak: 2d"))
    result = invoke("validate", str(path), env={"SHIPENGINE_API_KEY": SECRET})
    assert result.exit_code == 2
    assert result.stdout == ""
    error = command_error(result.stderr)
    assert error.startswith(f"{path}:9: sources[0].lookbak: unknown key")
    assert "'lookback'" in error
    assert "Traceback" not in result.output and SECRET not in result.output


def test_validate_unset_variable(tmp_path, command_error) -> None:
    path = write(tmp_path, GOOD)
    result = invoke("validate", str(path), env={"SHIPENGINE_API_KEY": None})
    assert result.exit_code == 2
    assert command_error(result.stderr) == (f"{path}:11: sources[0].credentials.api_key: ${{SHIPENGINE_API_KEY}} is unset; "
                                            "export it or give a default with ${SHIPENGINE_API_KEY:-...}")


def test_validate_bad_provider_option(tmp_path) -> None:
    path = write(tmp_path, GOOD + "    options:\n      no_such_option: 1\n")
    result = invoke("validate", str(path), env={"SHIPENGINE_API_KEY": SECRET})
    assert result.exit_code == 2
    assert "sources[0].options.no_such_option" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_validate_names_an_order_ids_file_that_is_not_there(tmp_path) -> None:
    path = write(tmp_path, """\
        sources:
          - name: ae
            provider: aliexpress
            credentials: {app_secret: s3cret-value}
            options: {app_key: "12345678", order_ids_file: ids.txt}
        """)
    result = invoke("validate", str(path))
    assert result.exit_code == 2, result.output
    assert f"sources[0].options.order_ids_file: no file {tmp_path / 'ids.txt'}; write the order ids there" in result.stderr
    (tmp_path / "ids.txt").write_text("8190000000000001\n")
    assert invoke("validate", str(path)).exit_code == 0


def test_validate_missing_file(tmp_path) -> None:
    result = invoke("validate", str(tmp_path / "nope.yaml"))
    assert result.exit_code == 2
    assert "nope.yaml" in result.output and "Traceback" not in result.output


def test_schema_one_table() -> None:
    result = invoke("schema", "tracking_events")
    assert result.exit_code == 0
    assert result.stdout.startswith("tracking_events: ")
    assert "  event_id " in result.stdout and "timestamp[us, tz=UTC]" in result.stdout


def test_run_with_unknown_provider_exits_1_and_names_it(tmp_path) -> None:
    path = write(tmp_path, """\
        sources:
          - name: dhl-main
            provider: dhl
        """)
    result = invoke("run", "--no-progress", str(path))
    assert result.exit_code == 1
    assert "dhl-main" in result.stdout and "FAILED" in result.stdout
    assert "no provider plugin named 'dhl'" in result.stdout
    assert "1 of 1 source(s) failed" in result.stdout
    assert "Traceback" not in result.output


def test_validate_names_the_line_of_a_misspelt_provider_and_suggests_the_installed_one(tmp_path, command_error) -> None:
    path = write(tmp_path, """\
        sources:
          - name: main
            provider: shipengin
            credentials: {api_key: k-123456}
        """)
    line = next(n for n, text in enumerate(path.read_text().splitlines(), 1) if "provider: shipengin" in text)
    result = invoke("validate", str(path))
    assert result.exit_code == 2
    assert command_error(result.stderr).startswith(f"{path}:{line}: sources[0].provider: no provider plugin named 'shipengin' "
                                                   "is installed; did you mean 'shipengine'? (installed: ")


def test_run_only_unknown_source_is_a_usage_error(tmp_path) -> None:
    path = write(tmp_path, GOOD)
    result = invoke("run", "--no-progress", "--only", "nope", str(path), env={"SHIPENGINE_API_KEY": SECRET})
    assert result.exit_code == 2
    assert "nope" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_version() -> None:
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0
    assert result.output == f"shipetl, version {__version__}\n"


@pytest.mark.parametrize("args", [["--version"], ["schema", "rejects"]])
def test_python_dash_m_entry_point(args, tmp_path) -> None:
    proc = subprocess.run([sys.executable, "-m", "shipetl", *args], capture_output=True, text=True, timeout=60,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert ("shipetl, version" in proc.stdout) if args == ["--version"] else proc.stdout.startswith("rejects: ")


def test_errors_are_json_events_among_json_logs_and_plain_lines_on_a_console(tmp_path, command_error) -> None:
    path = write(tmp_path, GOOD.replace("lookback: 2d", "lookbak: 2d"))
    expected = f"{path}:9: sources[0].lookbak: unknown key; did you mean 'lookback'?"
    as_json = invoke("validate", str(path), env={"SHIPENGINE_API_KEY": SECRET})
    assert command_error(as_json.stderr) == expected
    assert json.loads(as_json.stderr)["command"] == "validate"
    on_console = CliRunner().invoke(cli, ["--log-format", "console", "validate", str(path)], env={"SHIPENGINE_API_KEY": SECRET})
    assert on_console.exit_code == as_json.exit_code == 2
    assert on_console.stderr == f"error: {expected}\n"


def test_a_usage_error_is_a_json_event_among_json_logs_and_clicks_usage_text_on_a_console(tmp_path, command_error) -> None:
    missing = tmp_path / "nope.yaml"
    as_json = invoke("run", str(missing))
    assert as_json.exit_code == 2
    assert command_error(as_json.stderr) == f"Invalid value for 'PIPELINE': File '{missing}' does not exist."
    assert json.loads(as_json.stderr)["command"] == "run"
    on_console = CliRunner().invoke(cli, ["--log-format", "console", "run", str(missing)])
    assert on_console.exit_code == 2
    assert on_console.stderr.startswith("Usage: ") and f"File '{missing}' does not exist." in on_console.stderr


def test_the_demo_suggests_a_shipetl_command_that_exists_from_where_it_runs(tmp_path) -> None:
    from shipetl.demo import shipetl_command

    inside = Path(sys.executable).parent.parent.parent  # the folder holding the venv (the repository, for make demo)
    for cwd in (inside, tmp_path):
        command = shipetl_command(cwd)
        assert command == "shipetl" or (cwd / command).exists(), (cwd, command)
    if (Path(sys.executable).parent / "shipetl").exists():
        assert not shipetl_command(tmp_path).startswith("..") and not shipetl_command(inside).startswith("/")
