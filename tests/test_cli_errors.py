"""The ``shipetl`` command at its edges: bad option values, closed pipes, piped tables, busy ports, JSON summaries."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import yaml
from click.testing import CliRunner

from shipetl import runs, state, warehouse
from shipetl.cli import cli

T = datetime(2025, 10, 1, 12, tzinfo=UTC)
LONG_ERROR = "credentials.api_key was refused by the provider; export a fresh key and run again " + "x" * 40
LONG_CURSOR = "2025-10-01T12:00:00.123456+00:00/" + "c" * 80


def invoke(*args: str):
    return CliRunner().invoke(cli, ["--log-format", "json", *args], catch_exceptions=False)


@pytest.fixture
def pipeline(tmp_path) -> Path:
    """A warehouse with one failed run (a long error), one long cursor and one of core's."""
    db = tmp_path / "warehouse.duckdb"
    with warehouse.connect(db, read_only=False) as con:
        warehouse.ensure_schema(con)
        run = runs.SourceRun(run_id="20251001T120000Z-0123456789ab", source="shipengine-main", provider="shipengine",
                             account_id="shipengine-main", started_at=T, finished_at=T, status="failed",
                             error=LONG_ERROR)
        runs.insert(con, run, None)
        state.write(con, "shipengine-main", "shipengine-main", run.run_id,
                    {"updated_since": LONG_CURSOR, "core.unheard": [["1Z0001", "2025-10-01T12:00:00+00:00"]]})
    path = tmp_path / "pipeline.yaml"
    path.write_text(textwrap.dedent(f"""\
        warehouse: {{path: {db}, lake: {tmp_path}/lake}}
        sources: [{{provider: shipengine}}]
        """))
    return path


def one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


# --- option values ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10"])
def test_sandbox_non_loopback_host_is_one_line_not_a_traceback(run_cli, host) -> None:
    proc = run_cli("sandbox", "--host", host, timeout=60)
    assert proc.returncode == 2
    line = one_line(proc.stderr)
    assert "--host" in line and host in line and "loopback" in line
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("option, value", [("--scale", "0"), ("--rate-5xx", "1.5"), ("--rate-429", "-0.1"),
                                           ("--latency-ms", "-5"), ("--port", "70000")])
def test_sandbox_option_out_of_range_is_a_usage_error(run_cli, option, value) -> None:
    proc = run_cli("sandbox", option, value, timeout=60)
    assert proc.returncode == 2
    assert f"Invalid value for '{option}'" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("limit", ["-1", "0"])
def test_runs_limit_must_be_positive(pipeline, limit) -> None:
    result = invoke("runs", str(pipeline), "--limit", limit)
    assert result.exit_code == 2
    assert "Invalid value for '--limit'" in result.stderr and limit in result.stderr
    assert "Traceback" not in result.output and result.stdout == ""


def test_runs_limit_one_shows_one_run(pipeline) -> None:
    result = invoke("runs", str(pipeline), "--limit", "1")
    assert result.exit_code == 0, result.output
    assert "20251001T120000Z-0123456789ab" in result.stdout
    assert T.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") in result.stdout  # to the second, in UTC


def test_runs_mentions_failure_records_still_set_aside(pipeline, tmp_path) -> None:
    waiting = runs.SourceRun("20251002T120000Z-0000000000aa", "shipengine-main", "shipengine", "shipengine-main", T, T,
                             "failed", "API down")
    runs.set_aside(warehouse.pending_runs_file(tmp_path / "warehouse.duckdb"), waiting)
    result = invoke("runs", str(pipeline))
    assert result.exit_code == 0, result.output
    assert "note: 1 failure record(s) wait in" in result.stderr and "the next commit stores them" in result.stderr


@pytest.mark.parametrize("since, until", [("2025-12-01", "2025-11-01"), ("2025-11-01", "2025-11-01")])
def test_run_since_must_be_before_until(pipeline, since, until) -> None:
    result = invoke("run", "--no-progress", str(pipeline), "--since", since, "--until", until)
    assert result.exit_code == 2
    assert f"--since {since} must be before --until {until}" in result.stderr
    assert result.stdout == ""


def test_run_since_must_be_in_the_past(pipeline) -> None:
    result = invoke("run", "--no-progress", str(pipeline), "--since", "2099-01-01")
    assert result.exit_code == 2 and "--since 2099-01-01 is not in the past: there is nothing to fetch yet" in result.stderr


@pytest.mark.parametrize("value", ["2099-01-01T00:00:00Z", "2099-01-01T08:00:00+08:00", "2099-01-01 00:00"])
def test_run_since_takes_iso_times_with_an_offset_or_z_as_start_does(pipeline, value) -> None:
    result = invoke("run", "--no-progress", str(pipeline), "--since", value)
    assert result.exit_code == 2 and "is not in the past" in result.stderr  # parsed, then refused for its date


def test_a_since_with_an_offset_is_the_same_instant_in_utc() -> None:
    from shipetl.cli import UtcTime

    value = UtcTime().convert("2025-11-01T08:00:00+08:00", None, None)
    assert value.isoformat() == "2025-11-01T00:00:00+00:00"
    assert UtcTime().convert("2025-11-01", None, None).isoformat() == "2025-11-01T00:00:00+00:00"


def test_run_since_that_is_no_time_names_the_forms_it_takes(pipeline) -> None:
    result = invoke("run", "--no-progress", str(pipeline), "--since", "yesterday")
    assert result.exit_code == 2 and "'yesterday' is not a date or an ISO 8601 time" in result.stderr


# --- standard output: closed pipes and piped tables --------------------------------------------------------


@pytest.mark.parametrize("fmt", ["csv", "json", "table"])
def test_sql_into_a_closed_pipe_ends_quietly(pipeline, tmp_path, fmt) -> None:
    """``shipetl sql ... | head -1``: the reader is gone (here before the first write); no error line, exit 0."""
    query = "SELECT range AS n, repeat('x', 200) AS pad FROM range(200000)"
    proc = subprocess.Popen([sys.executable, "-m", "shipetl", "--log-format", "json", "sql", str(pipeline), query,
                             "--format", fmt], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0, stderr
    assert "error" not in stderr.lower() and "Traceback" not in stderr, stderr
    assert "more rows not shown" not in stderr  # the table broke off, so nothing follows it


def test_runs_piped_prints_whole_values(run_cli, pipeline) -> None:
    proc = run_cli("runs", str(pipeline))
    assert proc.returncode == 0, proc.stderr
    assert "…" not in proc.stdout
    [row] = [line for line in proc.stdout.splitlines() if "20251001T120000Z-0123456789ab" in line]
    assert "shipengine-main" in row and LONG_ERROR in row


def test_state_piped_prints_whole_values_and_cores_cursors_in_words(run_cli, pipeline) -> None:
    proc = run_cli("state", str(pipeline))
    assert proc.returncode == 0, proc.stderr
    assert "…" not in proc.stdout
    [row] = [line for line in proc.stdout.splitlines() if "updated_since" in line]
    assert "shipengine-main" in row and LONG_CURSOR in row and "20251001T120000Z-0123456789ab" in row
    [core] = [line for line in proc.stdout.splitlines() if "core.unheard" in line]
    assert "1 shipment(s) whose poll failed, not expired until asked again: 1Z0001 (failed 2025-10-01T12:00:00+00:00)" \
        in core and "[[" not in core


# --- sandbox: the URL is announced once bound ---------------------------------------------------------------


def test_sandbox_on_a_busy_port_says_so_without_announcing(run_cli) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = run_cli("sandbox", "--port", str(port), timeout=60)
    assert proc.returncode == 2
    line = one_line(proc.stderr)
    assert str(port) in line and "in use" in line and "--port" in line
    assert json.loads(line)["event"] == "command_failed"  # --log-format json: one event, as every command's error
    assert "sandbox on" not in proc.stderr + proc.stdout and "Traceback" not in proc.stderr


def test_sandbox_announces_the_bound_url_and_it_answers(tmp_path) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "shipetl", "sandbox", "--port", "0"], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stderr.readline()
        assert first.startswith("sandbox on http://127.0.0.1:"), first
        url = first.split()[2]
        assert not url.endswith(":0/")  # the port actually bound, not the one asked for
        response = httpx.get(url, timeout=30)
        assert response.status_code == 200
        assert "shipengine" in {p["name"] for p in response.json()["providers"]}
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_validate_reports_every_sources_problems_not_just_the_first(tmp_path) -> None:
    path = tmp_path / "two.yaml"
    path.write_text("sources:\n"
                    "  - {name: a, provider: shipengine, credentials: {apikey: k-1}}\n"
                    "  - {name: b, provider: shipengine, credentials: {api_key: '${NOT_SET_ANYWHERE_B}'}}\n")
    result = CliRunner().invoke(cli, ["validate", str(path)], env={"NOT_SET_ANYWHERE_B": None})
    assert result.exit_code == 2
    assert "sources[0].credentials.apikey: unknown credential; did you mean 'api_key'?" in result.output
    assert "sources[1].credentials.api_key: ${NOT_SET_ANYWHERE_B} is unset" in result.output


def test_validate_refuses_what_run_would_refuse_before_its_first_request(tmp_path, command_error) -> None:
    path = tmp_path / "needs.yaml"
    path.write_text("sources:\n"
                    "  - {name: se, provider: shipengine}\n"
                    "  - {name: se-empty, provider: shipengine, credentials: {api_key: '${EMPTY_KEY_FOR_TEST:-}'}}\n"
                    "  - {name: fz, provider: fuuffy, credentials: {client_id: a, client_secret: b}}\n"
                    "  - {name: ae, provider: aliexpress, credentials: {app_secret: s}, options: {order_ids: ['1']}}\n"
                    "  - {name: sp, provider: shopee, credentials: {partner_key: k, pii_key: p}, options: {shop_ids: [1]}}\n"
                    "  - {name: later, provider: shipengine, enabled: false, credentials: {api_key: '${UNSET_LATER}'}}\n")
    result = CliRunner().invoke(cli, ["validate", str(path)], env={"EMPTY_KEY_FOR_TEST": None, "UNSET_LATER": None})
    assert result.exit_code == 2
    lines = command_error(result.stderr).splitlines()
    assert lines == [
        f"{path}:2: sources[0].credentials.api_key: missing; source 'se' needs it (credentials given: none)",
        f"{path}:3: sources[1].credentials.api_key: is empty",
        f"{path}:4: sources[2].credentials.pii_key: missing; source 'fz' needs it to hash personal data "
        "(pii: hash; or set pii: drop) (credentials given: client_id, client_secret)",
        f"{path}:5: sources[3].options.app_key: missing; the app key from the AliExpress Open Platform console",
        f"{path}:6: sources[4].options.partner_id: missing; the integer id of the Shopee Open Platform app",
    ]


def test_validate_leaves_a_disabled_source_for_later_and_says_so(tmp_path) -> None:
    path = tmp_path / "later.yaml"
    path.write_text("sources:\n"
                    "  - {name: se, provider: shipengine, credentials: {api_key: k-1}}\n"
                    "  - {name: later, provider: shipengine, enabled: false, base_url: '${UNSET_URL}',\n"
                    "     credentials: {api_key: 'secret-part${UNSET_LATER}', pii_key: p-1}}\n")
    result = CliRunner().invoke(cli, ["validate", str(path)], env={"UNSET_LATER": None, "UNSET_URL": None})
    assert result.exit_code == 0, result.output
    assert f"{path}: ok (2 source(s); disabled, not checked: later)" in result.output
    # The keys waiting for their variables are shown so, not as missing or as their defaults.
    later = yaml.safe_load(result.output.rsplit("\n", 2)[0])["sources"][1]
    assert later["credentials"] == {"api_key": "${UNSET_LATER} (unset)", "pii_key": "***"}
    assert later["base_url"] == "${UNSET_URL} (unset)" and "secret-part" not in result.output


def test_validate_names_a_warehouse_folder_that_is_a_file(tmp_path, command_error) -> None:
    (tmp_path / "raw").write_text("a file where the raw zone should go")
    path = tmp_path / "p.yaml"
    path.write_text(f"warehouse: {{raw: {tmp_path}/raw/zone}}\nsources:\n  - {{name: se, provider: shipengine, credentials: {{api_key: k}}}}\n")
    result = CliRunner().invoke(cli, ["validate", str(path)])
    assert result.exit_code == 2
    assert command_error(result.stderr) == f"{path}: warehouse.raw: {tmp_path}/raw is a file, not a folder"
