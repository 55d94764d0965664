"""``shipetl report``: one offline HTML file, checked in headless Chromium over the DevTools protocol.

Chromium is Debian's ``chromium`` package (``.ci/run`` installs it). When it is missing the browser test
fails and says how to install it: a report nobody saw drawn is not a tested report.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
import websocket

from shipetl import config, report
from shipetl.demo import run_demo

CHARTS = 8
PIPELINE = """\
warehouse: {{path: {tmp}/warehouse.duckdb, lake: {tmp}/lake, raw: {tmp}/raw, tokens: {tmp}/tokens}}
analytics: {{stuck_after_days: 7}}
sources:
  - name: shipengine
    provider: shipengine
    base_url: ${{SHIPETL_SANDBOX_URL:-http://127.0.0.1:9}}/shipengine
    start: 2025-08-01
    rate_limit: {{per_second: 400, burst: 50, max_in_flight: 16}}
    credentials: {{api_key: sandbox_live_key}}
    options: {{poll_concurrency: 16}}
"""


@pytest.fixture(scope="module")
def pipeline_file(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("report")
    path = tmp / "pipeline.yaml"
    path.write_text(PIPELINE.format(tmp=tmp))
    result, _ = run_demo(str(path), seed=42)
    assert result.ok
    return path


@pytest.fixture(scope="module")
def report_file(pipeline_file) -> Path:
    out = pipeline_file.parent / "out" / "report.html"
    size = report.write_report(config.load(pipeline_file), out)
    assert size == out.stat().st_size
    return out


def test_report_is_one_self_contained_file(report_file):
    text = report_file.read_text(encoding="utf-8")
    assert text.count("plotly.js v") >= 1 and text.count("Plotly.newPlot(") == CHARTS
    # The library is inlined once: its license header appears once, and nothing is loaded from elsewhere.
    assert text.count("* plotly.js v") == 1
    library, _, page = text.partition("</script>")
    assert "* plotly.js v" in library  # the first script, in the head
    assert re.findall(r"<(?:script|link|img|iframe)\b[^>]*\b(?:src|href)=", page) == []
    assert "stuck (7+ days quiet)" in text  # the pipeline's analytics setting reached the page


def test_report_lists_the_stuck_parcels_and_runs(report_file, pipeline_file):
    from shipetl.query import session

    with session(config.load(pipeline_file)) as con:
        quietest = con.execute("SELECT tracking_number FROM stuck_shipments "
                               "ORDER BY days_without_scan DESC, tracking_number LIMIT 3").fetchall()
        (total,) = con.execute("SELECT count(*) FROM stuck_shipments").fetchall()[0]
    text = report_file.read_text(encoding="utf-8")
    assert all(f"<td>{tn}</td>" in text for (tn,) in quietest)
    assert f"of {total:,}</h2>" in text
    assert "<td>shipengine</td><td>shipengine</td><td>ok</td>" in text  # the run table: source, account, status


def test_cli_report_writes_the_file(run_cli, pipeline_file, tmp_path):
    out = tmp_path / "r.html"
    proc = run_cli("report", str(pipeline_file), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert out.stat().st_size > 1_000_000 and "wrote" in proc.stderr


def test_report_without_warehouse_says_so(run_cli, tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(f"warehouse: {{path: {tmp_path}/none.duckdb}}\nsources: [{{provider: shipengine}}]\n")
    proc = run_cli("report", str(path), "--out", str(tmp_path / "r.html"))
    assert proc.returncode == 2
    assert "no warehouse yet" in proc.stderr and "Traceback" not in proc.stderr


# --- the browser ----------------------------------------------------------------------------------------


class DevTools:
    """The few DevTools protocol calls the test needs, over one page's websocket."""

    def __init__(self, ws_url: str) -> None:
        self.ws = websocket.create_connection(ws_url, timeout=30, suppress_origin=True)
        self.next_id = 0
        self.events: list[dict] = []

    def call(self, method: str, **params):
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self.events.append(msg)

    def wait_for(self, method: str, timeout: float = 30) -> dict:
        deadline = time.monotonic() + timeout
        seen = 0
        while time.monotonic() < deadline:
            for msg in self.events[seen:]:
                if msg.get("method") == method:
                    return msg
            seen = len(self.events)
            self.ws.settimeout(max(0.1, deadline - time.monotonic()))
            self.events.append(json.loads(self.ws.recv()))
        raise TimeoutError(method)


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.fail("chromium is not installed: `apt-get install -y chromium` (.ci/run installs it for CI)")
    return found


@pytest.fixture
def browser(tmp_path):
    profile = Path(tempfile.mkdtemp(prefix="chromium-", dir=tmp_path))
    proc = subprocess.Popen([_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                             "--disable-background-networking", "--disable-component-update",
                             "--disable-sync", "--remote-debugging-port=0", f"--user-data-dir={profile}",
                             "--window-size=1400,1000", "about:blank"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not port_file.exists() or not port_file.read_text().strip():
            assert proc.poll() is None, "chromium exited at start"
            assert time.monotonic() < deadline, "chromium did not open its DevTools port"
            time.sleep(0.1)
        port = port_file.read_text().split()[0]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as resp:
            page = next(t for t in json.load(resp) if t["type"] == "page")
        tools = DevTools(page["webSocketDebuggerUrl"])
        yield tools
        tools.ws.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_report_draws_every_chart_offline_in_chromium(browser, report_file, tmp_path):
    for domain in ("Page", "Runtime", "Log", "Network"):
        browser.call(f"{domain}.enable")
    browser.call("Network.emulateNetworkConditions", offline=True, latency=0, downloadThroughput=-1,
                 uploadThroughput=-1)
    browser.call("Page.navigate", url=report_file.resolve().as_uri())
    browser.wait_for("Page.loadEventFired")
    drawn = {}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        drawn = browser.call("Runtime.evaluate", returnByValue=True, expression="""({
            charts: document.querySelectorAll('.plotly-graph-div').length,
            drawn: [...document.querySelectorAll('.plotly-graph-div')]
                   .filter(d => d.querySelector('svg.main-svg')
                                && d.querySelectorAll('g.trace, g.funnel, g.boxlayer path').length > 0).length,
            svgs: document.querySelectorAll('.plotly-graph-div svg.main-svg').length,
            rows: document.querySelectorAll('table tbody tr').length})""")["result"]["value"]
        if drawn["drawn"] == CHARTS:
            break
        time.sleep(0.2)
    shot = tmp_path / "report.png"
    shot.write_bytes(base64.b64decode(browser.call("Page.captureScreenshot", format="png")["data"]))

    assert drawn["charts"] == CHARTS and drawn["drawn"] == CHARTS, drawn
    assert drawn["svgs"] >= CHARTS and drawn["rows"] > 10
    errors = [e for e in browser.events if e.get("method") == "Runtime.exceptionThrown"
              or (e.get("method") == "Runtime.consoleAPICalled" and e["params"]["type"] in ("error", "assert"))
              or (e.get("method") == "Log.entryAdded" and e["params"]["entry"]["level"] == "error")]
    assert errors == []
    requests = [e["params"]["request"]["url"] for e in browser.events if e.get("method") == "Network.requestWillBeSent"]
    assert requests and all(url.startswith(("file:", "data:")) for url in requests), requests
    assert shot.stat().st_size > 50_000


def test_run_rows_that_failed_or_were_interrupted_stand_out_each_their_own_way():
    html = report._table([{"status": "ok"}, {"status": "failed"}, {"status": "interrupted"}], ["status"], "no runs")
    assert "<tr><td>ok</td></tr>" in html
    assert "<tr class=failed><td>failed</td></tr>" in html and "<tr class=interrupted><td>interrupted</td></tr>" in html
