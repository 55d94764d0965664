"""``shipetl report``: one self-contained HTML file with the charts a logistics lead reads each morning.

The data comes from the marts in one short read-only session; the page is written after the warehouse is
released. plotly.js is inlined once in the page head and each chart is a div with its own data, so the
file opens offline from disk: no CDN, no server, nothing fetched.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from . import __version__
from .config import PipelineConfig
from .query import session
from .runs import INTERRUPTED

TOP_LANES = 15
STUCK_ROWS = 100
RUN_HISTORY = 200
CHART_HEIGHT = 380

QUERIES = {
    "kpis": """
        SELECT count(*) AS shipments, count(delivered_at) AS delivered,
               median(epoch(delivered_at - first_scan_at) / 86400) AS median_transit_days,
               count(*) FILTER (WHERE delivered_by_eta) / nullif(count(delivered_by_eta), 0) AS on_time_share,
               (SELECT count(*) FROM stuck_shipments) AS stuck,
               (SELECT count(*) FROM order_fulfilment WHERE fulfilment_status IN ('late', 'overdue')) AS missed_ship_by
        FROM shipment_timeline""",
    "daily_volume": """
        SELECT timezone('UTC', coalesce(first_scan_at, created_at))::DATE AS day, provider, count(*) AS shipments
        FROM shipment_timeline WHERE coalesce(first_scan_at, created_at) IS NOT NULL
        GROUP BY ALL ORDER BY day, provider""",
    "transit": f"""
        SELECT carrier_code || ' ' || lane AS label, count(*) AS delivered,
               quantile_cont(days, [0.05, 0.25, 0.5, 0.75, 0.95]) AS q
        FROM (SELECT coalesce(carrier_code, '?') AS carrier_code, lane,
                     epoch(delivered_at - first_scan_at) / 86400 AS days
              FROM shipment_timeline WHERE delivered_at IS NOT NULL AND first_scan_at IS NOT NULL)
        GROUP BY ALL ORDER BY delivered DESC, label LIMIT {TOP_LANES}""",
    "funnel": """
        SELECT count(*), count(first_scan_at),
               count(*) FILTER (WHERE first_out_for_delivery_at IS NOT NULL OR delivered_at IS NOT NULL),
               count(delivered_at)
        FROM shipment_timeline""",
    "stuck_by_carrier": """
        SELECT coalesce(carrier_code, '?') AS carrier_code, current_status, count(*) AS parcels
        FROM stuck_shipments GROUP BY ALL ORDER BY carrier_code, current_status""",
    "stuck": f"""
        SELECT provider, carrier_code, tracking_number, current_status, last_event_description,
               strftime(timezone('UTC', quiet_since), '%Y-%m-%d %H:%M') AS quiet_since,
               round(days_without_scan, 1) AS days_without_scan
        FROM stuck_shipments ORDER BY days_without_scan DESC, tracking_number LIMIT {STUCK_ROWS}""",
    "exceptions": """
        SELECT coalesce(carrier_code, '?') AS carrier_code, kind, sum(events) AS events
        FROM delivery_exceptions GROUP BY ALL ORDER BY carrier_code, kind""",
    "runs": f"""
        SELECT * FROM (
            SELECT run_id, source, account_id, strftime(timezone('UTC', started_at), '%Y-%m-%d %H:%M:%S') AS started,
                   round(epoch(finished_at - started_at), 1) AS seconds, status, loaded, rejected, error
            FROM runs ORDER BY started_at DESC LIMIT {RUN_HISTORY}) ORDER BY started""",
}
FUNNEL_STAGES = ("labels created", "handed to carrier", "out for delivery", "delivered")


@dataclass
class ReportData:
    """What the report shows, read from the warehouse in one session."""

    generated_at: datetime
    warehouse: str
    stuck_after_days: int
    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


def collect(pipeline: PipelineConfig) -> ReportData:
    """Read every figure the report needs from the marts; raises ShipetlError when the warehouse is busy or absent."""
    data = ReportData(datetime.now(timezone.utc), str(pipeline.warehouse.path), pipeline.analytics.stuck_after_days)
    with session(pipeline) as con:
        # Every chart reads shipment_timeline: compute it once, so the page is one consistent snapshot.
        con.execute("CREATE TEMP TABLE report_timeline AS SELECT * FROM shipment_timeline")
        con.execute("CREATE OR REPLACE TEMP VIEW shipment_timeline AS SELECT * FROM report_timeline")
        for name, sql in QUERIES.items():
            cur = con.execute(sql)
            names = [d[0] for d in cur.description]
            data.tables[name] = [dict(zip(names, row)) for row in cur.fetchall()]
    return data


# --- charts --------------------------------------------------------------------------------------------


def _layout(title: str, **extra: Any) -> dict[str, Any]:
    return {"title": {"text": title, "x": 0.01}, "template": "plotly_white", "autosize": True,
            "margin": {"l": 60, "r": 20, "t": 50, "b": 60}, "legend": {"orientation": "h", "y": -0.2}, **extra}


def _by(rows: list[dict], key: str) -> dict[Any, list[dict]]:
    out: dict[Any, list[dict]] = {}
    for row in rows:
        out.setdefault(row[key], []).append(row)
    return out


def figures(data: ReportData) -> list[tuple[str, Any]]:
    """Every chart as (element id, plotly Figure), in page order."""
    import plotly.graph_objects as go

    t = data.tables
    charts: list[tuple[str, Any]] = []

    volume = go.Figure([go.Bar(name=provider, x=[r["day"] for r in rows], y=[r["shipments"] for r in rows])
                        for provider, rows in _by(t["daily_volume"], "provider").items()],
                       _layout("Daily volume by provider (parcels by day of first scan)", barmode="stack"))
    charts.append(("chart-daily-volume", volume))

    lanes = t["transit"]
    transit = go.Figure(go.Box(
        x=[r["label"] for r in lanes], lowerfence=[r["q"][0] for r in lanes], q1=[r["q"][1] for r in lanes],
        median=[r["q"][2] for r in lanes], q3=[r["q"][3] for r in lanes], upperfence=[r["q"][4] for r in lanes],
        name="transit days", hovertext=[f"{r['delivered']} delivered" for r in lanes]),
        _layout(f"Transit days by carrier and lane (first scan to delivery; p5-p95, top {TOP_LANES} by volume)",
                yaxis={"title": {"text": "days"}}))
    charts.append(("chart-transit", transit))

    counts = list(t["funnel"][0].values()) if t["funnel"] else [0] * len(FUNNEL_STAGES)
    funnel = go.Figure(go.Funnel(y=list(FUNNEL_STAGES), x=counts, textinfo="value+percent initial"),
                       _layout("Status funnel (every parcel in the warehouse)"))
    charts.append(("chart-funnel", funnel))

    stuck = go.Figure([go.Bar(name=status, x=[r["carrier_code"] for r in rows], y=[r["parcels"] for r in rows])
                       for status, rows in _by(t["stuck_by_carrier"], "current_status").items()],
                      _layout(f"Stuck parcels by carrier and status (no scan for {data.stuck_after_days}+ days)",
                              barmode="stack"))
    charts.append(("chart-stuck", stuck))

    exceptions = go.Figure([go.Bar(name=kind, x=[r["carrier_code"] for r in rows], y=[r["events"] for r in rows])
                            for kind, rows in _by(t["exceptions"], "kind").items()],
                           _layout("Failed attempts, returns and exceptions by carrier (scans)", barmode="stack"))
    charts.append(("chart-exceptions", exceptions))

    runs_by_source = _by(t["runs"], "source")
    duration = go.Figure([go.Scatter(name=source, mode="lines+markers", x=[r["started"] for r in rows],
                                     y=[r["seconds"] for r in rows]) for source, rows in runs_by_source.items()],
                         _layout("Run duration per source (seconds)"))
    charts.append(("chart-run-duration", duration))

    loaded = go.Figure([go.Bar(name=source, x=[r["started"] for r in rows], y=[r["loaded"] for r in rows])
                        for source, rows in runs_by_source.items()],
                       _layout("Rows loaded per run and source"))
    charts.append(("chart-run-rows", loaded))

    sources = sorted(runs_by_source)
    outcomes = go.Figure([go.Bar(name=outcome, x=sources,
                                 y=[sum(r["status"] == outcome for r in runs_by_source[s]) for s in sources])
                          for outcome in ("ok", INTERRUPTED, "failed")],
                         _layout("Runs per source: succeeded, interrupted and failed", barmode="stack"))
    charts.append(("chart-run-outcomes", outcomes))
    return charts


# --- page ------------------------------------------------------------------------------------------------

PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>shipetl report</title>
<style>
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;background:#f5f6f8;color:#1d2330}
header{background:#1d2330;color:#fff;padding:16px 24px}header h1{margin:0;font-size:20px}
header p{margin:4px 0 0;color:#b8c0cc;font-size:13px}
main{padding:16px 24px;max-width:1400px;margin:auto}
.kpis{display:grid;grid-template-columns:repeat(auto-fit,minmax(160px,1fr));gap:12px;margin-bottom:16px}
.kpi{background:#fff;border-radius:8px;padding:12px 16px;box-shadow:0 1px 2px #0001}
.kpi b{display:block;font-size:24px}.kpi span{font-size:12px;color:#5b6577}
.grid{display:grid;grid-template-columns:repeat(2,minmax(0,1fr));gap:16px}
@media (max-width:1100px){.grid{grid-template-columns:minmax(0,1fr)}}
.card{background:#fff;border-radius:8px;padding:8px;box-shadow:0 1px 2px #0001;min-width:0}
h2{font-size:16px;margin:24px 0 8px}
table{border-collapse:collapse;width:100%;background:#fff;font-size:12px}
th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #e3e6eb;white-space:nowrap}
th{background:#eef0f4;position:sticky;top:0}.scroll{max-height:420px;overflow:auto;border-radius:8px}
.failed{color:#b3261e}
.interrupted{color:#8a5a00}
/* fixed tracks: each chart is drawn while the page is still parsing, so the grid must not reflow after */
</style>
<script>/*PLOTLY*/</script>
</head><body>
<header><h1>shipetl report</h1><p>/*SUBTITLE*/</p></header>
<main>/*CONTENT*/</main>
</body></html>
"""


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _row_class(status: str | None) -> str:
    """A table row's class: runs that failed in red, those interrupted (loaded in part) apart."""
    if status in (None, "ok"):
        return ""
    return " class=interrupted" if status == INTERRUPTED else " class=failed"


def _table(rows: list[dict[str, Any]], columns: list[str], empty: str) -> str:
    if not rows:
        return f"<p>{html.escape(empty)}</p>"
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        f"<tr{_row_class(row.get('status'))}>"
        + "".join(f"<td>{html.escape(_fmt(row.get(c)))}</td>" for c in columns) + "</tr>" for row in rows)
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _kpis(data: ReportData) -> str:
    k = data.tables["kpis"][0]
    share = "n/a" if k["on_time_share"] is None else f"{k['on_time_share']:.0%}"
    median = "n/a" if k["median_transit_days"] is None else f"{k['median_transit_days']:.1f} d"
    items = [("parcels", _fmt(k["shipments"])), ("delivered", _fmt(k["delivered"])),
             ("median transit", median), ("delivered by ETA", share),
             (f"stuck ({data.stuck_after_days}+ days quiet)", _fmt(k["stuck"])),
             ("orders late or overdue for ship-by", _fmt(k["missed_ship_by"]))]
    return '<section class="kpis">' + "".join(
        f'<div class="kpi"><b>{html.escape(v)}</b><span>{html.escape(n)}</span></div>' for n, v in items) + "</section>"


def render(data: ReportData) -> str:
    """The whole page as text: plotly.js once, then one div per chart and the tables."""
    import plotly.io as pio
    from plotly.offline import get_plotlyjs

    config = {"displaylogo": False, "responsive": True}
    cards = "".join(
        '<div class="card">' + pio.to_html(fig, full_html=False, include_plotlyjs=False, div_id=div_id,
                                           config=config, default_width="100%",
                                           default_height=f"{CHART_HEIGHT}px") + "</div>"
        for div_id, fig in figures(data))
    stuck_total = data.tables["kpis"][0]["stuck"]
    content = (
        _kpis(data) + f'<section class="grid">{cards}</section>'
        + f"<h2>Stuck parcels: the {min(stuck_total, STUCK_ROWS)} quietest of {stuck_total:,}</h2>"
        + _table(data.tables["stuck"], ["provider", "carrier_code", "tracking_number", "current_status",
                                        "last_event_description", "quiet_since", "days_without_scan"],
                 "No stuck parcels.")
        + "<h2>Latest runs</h2>"
        + _table(list(reversed(data.tables["runs"]))[:30], ["started", "source", "account_id", "status", "seconds",
                                                             "loaded", "rejected", "error"], "No runs yet.")
    )
    subtitle = (f"warehouse {data.warehouse} · generated {data.generated_at:%Y-%m-%d %H:%M} UTC · "
                f"shipetl {__version__}")
    # Plain replacement, not str.format: plotly.js is full of braces.
    page = PAGE.replace("/*SUBTITLE*/", html.escape(subtitle)).replace("/*CONTENT*/", content)
    return page.replace("/*PLOTLY*/", get_plotlyjs(), 1)


def write_report(pipeline: PipelineConfig, out: str | Path) -> int:
    """Collect, render and write the report to ``out`` (replaced atomically); returns its size in bytes."""
    text = render(collect(pipeline))
    target = Path(out)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(target)
    return target.stat().st_size
