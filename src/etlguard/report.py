"""`etlguard report`: one self-contained HTML page of the runs, the protected tables and the cost.

Everything is inline (CSS, SVG charts, no script, nothing fetched), so the file can be mailed,
put in S3 or opened on a phone in a car park at 06:00. The page is built from the catalog alone;
the same cost figures are what `etlguard cost` prints.
"""

from __future__ import annotations

import datetime as dt
import html
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .catalog import Catalog, Snapshot, utcnow
from .config.report import Prices
from .cost import Cost, measure
from .errors import ConfigError, EtlguardError
from .tables import TableRef

PHASES = ("snapshot", "etl", "audit", "rollback")
_COLORS = {"snapshot": "#4e79a7", "etl": "#bab0ac", "audit": "#59a14f", "rollback": "#e15759"}
_OUTCOME = {
    "ok": "succeeded",
    "drill": "drill",
    "etl_failed": "ETL failed, rolled back",
    "audit_failed": "audit failed, rolled back",
    "snapshot_failed": "snapshot failed",
    "rollback_failed": "ROLLBACK FAILED",
    "running": "running",
}


@dataclass
class TableHistory:
    table: TableRef
    snapshots: list[Snapshot]  # every snapshot ever taken, oldest first

    @property
    def retained(self) -> list[Snapshot]:
        return [s for s in self.snapshots if s.status != "deleted"]

    @property
    def latest(self) -> Snapshot:
        return self.snapshots[-1]


@dataclass
class ReportData:
    generated_at: dt.datetime
    since: dt.datetime | None
    target: str
    runs: list[dict[str, Any]]
    tables: list[TableHistory]
    cost: Cost


def collect(catalog: Catalog, target: str, prices: Prices, since_days: float | None = None) -> ReportData:
    """Read what the report shows from the catalog; `since_days` limits runs and snapshots."""
    now = utcnow()
    since = now - dt.timedelta(days=since_days) if since_days is not None else None
    runs = [r for r in catalog.runs() if since is None or r["started_at"] >= since]
    everything = catalog.snapshots(include_deleted=True)
    shown = [s for s in everything if since is None or s.taken_at >= since]
    cost = measure(runs, everything, deleted_at(catalog), prices)
    if since is not None:
        cost.trend = [(when, held) for when, held in cost.trend if when >= since]
    return ReportData(now, since, target, runs, table_histories(shown), cost)


def deleted_at(catalog: Catalog) -> dict[int, dt.datetime]:
    """When retention dropped each snapshot, from the prune entries in the journal."""
    out: dict[int, dt.datetime] = {}
    for entry in catalog.finished_ops("prune"):
        for snap in entry["payload"].get("snapshots", []):
            out[int(snap[0])] = entry["finished_at"]
    return out


def table_histories(snapshots: Sequence[Snapshot]) -> list[TableHistory]:
    by_table: dict[TableRef, list[Snapshot]] = defaultdict(list)
    for s in snapshots:
        if s.kind != "displaced":  # displaced tables are what a rollback replaced, not protection
            by_table[s.table].append(s)
    return [TableHistory(t, sorted(v, key=lambda s: s.id)) for t, v in sorted(by_table.items(), key=str)]


def phase_seconds(run: dict[str, Any]) -> dict[str, float]:
    """The run's duration split; runs recorded before audits were timed show 0 s of audit."""
    d = run["details"]
    etl = (d.get("etl") or {}).get("seconds") or 0.0
    return {
        "snapshot": float(d.get("snapshot_seconds") or 0),
        "etl": float(etl),
        "audit": float(d.get("audit_seconds") or 0),
        "rollback": float(d.get("rollback_seconds") or 0),
    }


def write_report(page: str, dest: str) -> str:
    """Write the page to a file or to s3://bucket/key; return where it went."""
    if dest.startswith("s3://"):
        return _put_s3(page, dest)
    path = Path(dest)
    if not path.parent.is_dir():
        raise ConfigError(f"cannot write the report to {dest}: directory {path.parent} does not exist")
    path.write_text(page, encoding="utf-8")
    return str(path)


def _put_s3(page: str, dest: str) -> str:
    bucket, _, key = dest[len("s3://") :].partition("/")
    if not bucket or not key or key.endswith("/"):
        raise ConfigError(f"{dest} is not an S3 object address; write s3://BUCKET/path/report.html")
    import boto3
    import botocore.exceptions

    try:
        boto3.client("s3").put_object(
            Bucket=bucket, Key=key, Body=page.encode(), ContentType="text/html; charset=utf-8"
        )
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        raise EtlguardError(f"could not write the report to {dest}: {exc}") from exc
    return dest


# -- rendering ---------------------------------------------------------------------------------------

_CSS = """
*{box-sizing:border-box}body{font:15px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;
margin:0 auto;padding:12px;max-width:1100px;color:#222;background:#fff}
p,h1,h3{overflow-wrap:anywhere}
h1{font-size:1.4em;margin:.2em 0}h2{font-size:1.15em;margin:1.4em 0 .4em;border-bottom:1px solid #ddd}
h3{font-size:1em;margin:1em 0 .3em;word-break:break-all}
.muted{color:#666;font-size:.9em}.scroll{overflow-x:auto;-webkit-overflow-scrolling:touch}
table{border-collapse:collapse;width:100%;font-size:.9em}td,th{padding:4px 6px;border-bottom:1px solid #eee;
text-align:left;vertical-align:top;white-space:nowrap}
td.why{white-space:normal;min-width:18em}td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(150px,1fr));gap:8px}
.card{border:1px solid #ddd;border-radius:6px;padding:8px}.card b{display:block;font-size:1.25em}
.bad{color:#b00020;font-weight:600}.ok{color:#2e7d32}svg{width:100%;height:auto;display:block}
.legend span{display:inline-block;margin-right:12px}.sw{display:inline-block;width:10px;height:10px;
margin-right:4px}ul{margin:.2em 0;padding-left:1.2em}
"""


def render_html(data: ReportData) -> str:
    """The whole page as one string."""
    body = "\n".join(
        [
            _header(data),
            _cost_section(data.cost),
            _runs_section(data.runs),
            _tables_section(data.tables),
        ]
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>etlguard report: {_e(data.target)}</title><style>{_CSS}</style></head>"
        f"<body>\n{body}\n</body></html>\n"
    )


def _header(data: ReportData) -> str:
    window = f"since {_when(data.since)} UTC" if data.since else "all recorded history"
    return (
        f"<h1>etlguard report</h1><p class=muted>Target {_e(data.target)}; {window}; "
        f"generated {_when(data.generated_at)} UTC from the catalog.</p>"
    )


def _cost_section(cost: Cost) -> str:
    cards = [
        ("held_bytes", "Held by snapshots now", _bytes(cost.held_bytes), cost.held_bytes),
        ("held_snapshots", "Snapshots retained", f"{cost.held_snapshots:,}", cost.held_snapshots),
        (
            "seconds_added_per_night",
            "Time added per night",
            f"{cost.seconds_added_per_night:.1f} s",
            round(cost.seconds_added_per_night, 3),
        ),
        ("month_usd", "Projected per month", _usd(cost.month_usd), round(cost.month_usd, 2)),
        (
            "storage_month_usd",
            "of which storage",
            _usd(cost.storage_month_usd),
            round(cost.storage_month_usd, 2),
        ),
        ("io_month_usd", "of which I/O", _usd(cost.io_month_usd), round(cost.io_month_usd, 2)),
    ]
    html_cards = "".join(
        f'<div class=card><span class=muted>{label}</span><b data-k="{key}" data-v="{value}">{text}</b></div>'
        for key, label, text, value in cards
    )
    return (
        f"<h2>Cost</h2><div class=cards>{html_cards}</div>"
        f"<p class=muted>Prices: {_e(cost.prices.describe())} (set report.prices in etlguard.yml). "
        "I/O per run is estimated as one 16 KiB read per page and one 4 KiB write unit per 4 KiB "
        "snapshotted; storage is what the snapshot tables hold now. Time added is snapshot + audit "
        "(+ rollback) seconds.</p>"
        f"<h3>Storage held by snapshots</h3>{_trend_chart(cost.trend)}"
    )


def _runs_section(runs: Sequence[dict[str, Any]]) -> str:
    if not runs:
        return "<h2>Runs</h2><p>No runs recorded in this window.</p>"
    legend = "".join(f'<span><i class=sw style="background:{_COLORS[p]}"></i>{p}</span>' for p in PHASES)
    rows = "".join(_run_row(r) for r in reversed(runs))
    head = "".join(
        f"<th{' class=n' if n else ''}>{h}</th>"
        for h, n in [
            ("run", 1),
            ("started (UTC)", 0),
            ("outcome", 0),
            *[(f"{p} s", 1) for p in PHASES],
            ("tables", 1),
            ("bytes snapshotted", 1),
            ("rollback, audits, dbt", 0),
        ]
    )
    return (
        f"<h2>Runs</h2><div class=legend>{legend}</div>{_duration_chart(runs)}"
        f"<div class=scroll><table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table></div>"
    )


def _run_row(run: dict[str, Any]) -> str:
    d, status = run["details"], run["status"]
    cls = "ok" if status in ("ok", "drill") else "bad"
    phases = "".join(
        f'<td class=n data-k="{p}_seconds" data-v="{s:.3f}">{s:.2f}</td>'
        for p, s in phase_seconds(run).items()
    )
    size = int(d.get("snapshot_bytes") or 0)
    return (
        f'<tr data-run="{run["id"]}"><td class=n>{run["id"]}</td><td>{_when(run["started_at"])}</td>'
        f'<td class={cls} data-k="status" data-v="{_e(status)}">{_e(_OUTCOME.get(status, status))}</td>{phases}'
        f'<td class=n data-k="tables" data-v="{len(d.get("protected", []))}">{len(d.get("protected", []))}</td>'
        f'<td class=n data-k="snapshot_bytes" data-v="{size}">{size:,}</td><td class=why>{_run_problems(d)}</td></tr>'
    )


def _run_problems(d: dict[str, Any]) -> str:
    items = []
    if d.get("rolled_back"):
        items.append(f"<li>rolled back {len(d['rolled_back'])} tables: {_e(d.get('message', ''))}</li>")
    elif d.get("recovery_command"):
        items.append(f"<li class=bad>{_e(d.get('message', ''))}</li>")
    for a in d.get("audits", []):
        if not a.get("ok"):
            items.append(
                f'<li data-k="failed_audit">audit {_e(a.get("table") or "")} {_e(a["check"])}: {_e(a["detail"])}</li>'
            )
    for n in d.get("dbt_failures", []):
        items.append(f'<li data-k="dbt_failure">dbt {_e(n["unique_id"])} {_e(n["status"])}</li>')
    return f"<ul>{''.join(items)}</ul>" if items else ""


def _tables_section(tables: Sequence[TableHistory]) -> str:
    if not tables:
        return "<h2>Protected tables</h2><p>No snapshots in this window.</p>"
    return "<h2>Protected tables</h2>" + "".join(_table_block(t) for t in tables)


def _table_block(t: TableHistory) -> str:
    latest = t.latest
    rows = "".join(
        f'<tr data-snapshot="{s.id}"><td class=n>{s.id}</td><td>{_when(s.taken_at)}</td>'
        f'<td>{_e(_how(s))}</td><td class=n data-k="rows" data-v="{s.row_count or 0}">{s.row_count or 0:,}</td>'
        f'<td class=n data-k="size_bytes" data-v="{s.size_bytes or 0}">{s.size_bytes or 0:,}</td>'
        f"<td>{_e(s.status)}</td></tr>"
        for s in reversed(t.snapshots)
    )
    return (
        f'<section data-table="{_e(str(t.table))}"><h3>{_e(str(t.table))}</h3>'
        f"<p class=muted>{latest.row_count or 0:,} rows, {_bytes(latest.size_bytes or 0)} at the last "
        f'snapshot ({_when(latest.taken_at)}); <span data-k="retained" data-v="{len(t.retained)}">'
        f"{len(t.retained)} snapshots retained</span></p>{_rows_chart(t.snapshots)}"
        "<div class=scroll><table><thead><tr><th class=n>snapshot</th><th>taken (UTC)</th><th>how</th>"
        f"<th class=n>rows</th><th class=n>bytes</th><th>status</th></tr></thead><tbody>{rows}</tbody>"
        "</table></div></section>"
    )


def _how(s: Snapshot) -> str:
    return {"snapshot": "copy"}.get(s.kind, s.kind)


# -- charts: plain SVG, scaled by the viewBox ----------------------------------------------------------

_W, _H, _PAD = 600, 160, 4


def _duration_chart(runs: Sequence[dict[str, Any]]) -> str:
    splits = [phase_seconds(r) for r in runs]
    top = max((sum(s.values()) for s in splits), default=0) or 1.0
    step = (_W - 2 * _PAD) / max(len(runs), 1)
    bars = []
    for i, (run, split) in enumerate(zip(runs, splits, strict=True)):
        y = float(_H - _PAD)
        for phase in PHASES:
            h = split[phase] / top * (_H - 2 * _PAD)
            if h > 0:
                y -= h
                bars.append(
                    f'<rect x="{_PAD + i * step:.1f}" y="{y:.1f}" width="{max(step * 0.8, 1):.1f}" '
                    f'height="{h:.1f}" fill="{_COLORS[phase]}"><title>run {run["id"]} {phase} '
                    f"{split[phase]:.2f} s</title></rect>"
                )
    return _svg("Duration of each run, split by phase", "".join(bars))


def _trend_chart(trend: Sequence[tuple[dt.datetime, int]]) -> str:
    if not trend:
        return "<p class=muted>No snapshots recorded.</p>"
    return _svg("Bytes held by snapshots over time", _polyline([float(b) for _, b in trend], "#4e79a7"))


def _rows_chart(snapshots: Sequence[Snapshot]) -> str:
    return _svg(
        "Rows at each snapshot", _polyline([float(s.row_count or 0) for s in snapshots], "#59a14f"), 60
    )


def _polyline(values: Sequence[float], color: str) -> str:
    top = max(values) or 1.0
    step = (_W - 2 * _PAD) / max(len(values) - 1, 1)
    points = " ".join(
        f"{_PAD + i * step:.1f},{_H - _PAD - v / top * (_H - 2 * _PAD):.1f}" for i, v in enumerate(values)
    )
    return f'<polyline points="{points}" fill="none" stroke="{color}" stroke-width="2"/>'


def _svg(title: str, content: str, height: int = _H) -> str:
    return (
        f'<svg viewBox="0 0 {_W} {_H}" preserveAspectRatio="none" style="max-height:{height}px" '
        f'role="img" aria-label="{_e(title)}"><title>{_e(title)}</title>{content}</svg>'
    )


def _e(text: str) -> str:
    return html.escape(text, quote=True)


def _when(when: dt.datetime | None) -> str:
    return f"{when:%Y-%m-%d %H:%M}" if when else ""


def _usd(amount: float) -> str:
    """Cents for real money; four places for the small figures of a small target."""
    return f"${amount:,.2f}" if amount >= 1 or amount == 0 else f"${amount:.4f}"


def _bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


__all__ = [
    "ReportData",
    "TableHistory",
    "collect",
    "render_html",
    "write_report",
]
