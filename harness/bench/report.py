"""A bench's report on disk: ``report.json`` and a self-contained ``report.html``.

Stage: the end of ``loopcall bench``.  The HTML needs nothing from the network
(no scripts, no fonts): a table per level, line plots drawn as inline SVG
(latency percentiles, oracle error and the harness's health against
concurrency) and each level's per-call timeline (who spoke when; degraded turns
and failed calls in red).
"""

from __future__ import annotations

import html
import os
from collections.abc import Sequence
from pathlib import Path

from harness.bench.models import BenchCall, BenchLevel, BenchReport

__all__ = ["render_html", "write_report"]

MAX_TIMELINE_ROWS = 200
COLORS = {
    "p50": "#1f77b4",
    "p90": "#2ca02c",
    "p95": "#ff7f0e",
    "p99": "#d62728",
    "oracle p95": "#9467bd",
    "oracle max": "#8c564b",
    "cpu %": "#1f77b4",
    "loop lag p99 ms": "#d62728",
    "agent cpu %": "#7f7f7f",
}


def write_report(report: BenchReport, directory: Path) -> tuple[Path, Path]:
    """Write ``report.json`` and ``report.html`` (atomically); return their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in (
        ("report.json", report.model_dump_json(indent=2)),
        ("report.html", render_html(report)),
    ):
        path = directory / name
        tmp = directory / f".{name}.{os.getpid()}.tmp"
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
        paths.append(path)
    return paths[0], paths[1]


def _fmt(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _line_plot(
    title: str,
    xs: Sequence[int],
    series: dict[str, Sequence[float | None]],
    *,
    unit: str,
    bad: Sequence[bool] = (),
    bound: float | None = None,
) -> str:
    """An SVG line plot over the levels (evenly spaced), with a dashed bound line."""
    width, height, left, right, top, bottom = 640, 260, 60, 150, 30, 40
    values = [v for vs in series.values() for v in vs if v is not None]
    if bound is not None:
        values.append(bound)
    if not xs or not values:
        return f"<p><em>{html.escape(title)}: nothing measured.</em></p>"
    top_value = max(values) * 1.1 or 1.0
    low_value = min(0.0, min(values))
    span = top_value - low_value

    def x_at(i: int) -> float:
        inner = width - left - right
        return left + (inner * i / (len(xs) - 1) if len(xs) > 1 else inner / 2)

    def y_at(v: float) -> float:
        return top + (height - top - bottom) * (1 - (v - low_value) / span)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'role="img" aria-label="{html.escape(title)}">',
        f'<text x="{left}" y="18" font-size="14" font-weight="bold">{html.escape(title)}</text>',
        f'<line x1="{left}" y1="{height - bottom}" x2="{width - right}" y2="{height - bottom}" '
        'stroke="#333"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{height - bottom}" stroke="#333"/>',
    ]
    for k in range(5):
        tick = low_value + span * k / 4
        y = y_at(tick)
        parts.append(
            f'<text x="{left - 6}" y="{y + 4:.1f}" font-size="11" '
            f'text-anchor="end">{tick:.0f}</text>'
            f'<line x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}" stroke="#eee"/>'
        )
    for i, x in enumerate(xs):
        flag = " ⚠" if i < len(bad) and bad[i] else ""
        parts.append(
            f'<text x="{x_at(i):.1f}" y="{height - bottom + 16}" font-size="11" '
            f'text-anchor="middle">C={x}{flag}</text>'
        )
    if bound is not None:
        y = y_at(bound)
        parts.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}" stroke="#d62728" '
            f'stroke-dasharray="5,4"/><text x="{width - right + 4}" y="{y + 4:.1f}" '
            f'font-size="11" fill="#d62728">bound {bound:g}</text>'
        )
    for n, (name, vs) in enumerate(series.items()):
        color = COLORS.get(name, "#333")
        points = [(x_at(i), y_at(v)) for i, v in enumerate(vs) if v is not None]
        if len(points) > 1:
            path = " ".join(f"{px:.1f},{py:.1f}" for px, py in points)
            parts.append(
                f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"/>'
            )
        for px, py in points:
            parts.append(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="3" fill="{color}"/>')
        ly = top + 14 * n + 10
        parts.append(
            f'<rect x="{width - right + 10}" y="{ly - 8}" width="10" height="10" fill="{color}"/>'
            f'<text x="{width - right + 24}" y="{ly + 1}" font-size="11">'
            f"{html.escape(name)} ({html.escape(unit)})</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _timeline(level: BenchLevel, calls: Sequence[BenchCall]) -> str:
    """One row per call: the call's span, persona (blue) and agent (green) speech."""
    rows = sorted(calls, key=lambda c: c.index)
    note = ""
    if len(rows) > MAX_TIMELINE_ROWS:
        step = len(rows) / MAX_TIMELINE_ROWS
        rows = [rows[int(i * step)] for i in range(MAX_TIMELINE_ROWS)]
        note = f" (every {step:.1f}th of {len(calls)} calls)"
    if not rows:
        return ""
    end = max(c.ended_s for c in rows) or 1.0
    row_h = 4 if len(rows) > 60 else 10
    width, left, top = 900, 50, 20
    height = top + row_h * len(rows) + 30
    scale = (width - left - 10) / end
    parts = [
        f"<h3>Per-call timeline, C={level.concurrency}{html.escape(note)}</h3>",
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'role="img" aria-label="calls at concurrency {level.concurrency}">',
    ]
    for s in range(0, int(end) + 1, max(1, int(end // 10) or 1)):
        x = left + s * scale
        parts.append(
            f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{height - 25}" stroke="#eee"/>'
            f'<text x="{x:.1f}" y="{height - 10}" font-size="10" text-anchor="middle">{s}s</text>'
        )
    for r, call in enumerate(rows):
        y = top + r * row_h
        color = "#d62728" if call.status == "failed" else "#bbb"
        parts.append(
            f'<rect x="{left + call.started_s * scale:.1f}" y="{y + row_h * 0.4:.1f}" '
            f'width="{max(1.0, (call.ended_s - call.started_s) * scale):.1f}" '
            f'height="{max(1.0, row_h * 0.2):.1f}" fill="{color}">'
            f"<title>{html.escape(call.run_id)} {html.escape(call.status)} "
            f"{html.escape(call.error or '')}</title></rect>"
        )
        for turn in call.turns:
            fill = "#1f77b4" if turn.role == "persona" else "#2ca02c"
            stroke = ' stroke="#d62728" stroke-width="1.5"' if turn.degraded else ""
            tip = f"{turn.role} {turn.start_s:.2f}-{turn.end_s:.2f}s"
            if turn.latency_ms is not None:
                tip += f" latency {turn.latency_ms:.0f} ms" + (" DEGRADED" if turn.degraded else "")
            parts.append(
                f'<rect x="{left + turn.start_s * scale:.1f}" y="{y:.1f}" '
                f'width="{max(1.0, (turn.end_s - turn.start_s) * scale):.1f}" '
                f'height="{max(1, row_h - 1)}" fill="{fill}"{stroke}><title>{tip}</title></rect>'
            )
    parts.append("</svg>")
    return "".join(parts)


def _level_rows(report: BenchReport) -> str:
    head = (
        "C", "calls", "ok", "failed", "peak live", "latency p50", "p90", "p95", "p99",
        "TTFA p50", "oracle err p95", "oracle err max", "agent late p95",
        "harness err p95 (vs agent)", "degraded turns", "CPU %",
        "CPU ms per call·s", "loop lag p99", "RSS MB/call", "agent CPU %", "verdict",
    )  # fmt: skip
    rows = ["<tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>"]
    for lv in report.levels:
        oracle = lv.oracle_error_ms
        verdict = (
            f'<span class="bad">degraded: {html.escape(lv.degraded_reason or "")}</span>'
            if lv.degraded
            else '<span class="ok">trustworthy</span>'
        )
        cells = [
            str(lv.concurrency), str(lv.calls), str(lv.completed), str(lv.failed),
            str(lv.peak_concurrency), _fmt(lv.latency_ms.p50), _fmt(lv.latency_ms.p90),
            _fmt(lv.latency_ms.p95), _fmt(lv.latency_ms.p99),
            _fmt(lv.time_to_first_audio_ms.p50),
            _fmt(oracle.p95 if oracle else None, 2), _fmt(oracle.max if oracle else None, 2),
            _fmt(lv.agent_account.late_ms_p95 if lv.agent_account else None, 2),
            _fmt(lv.agent_account.harness_error_ms_p95 if lv.agent_account else None, 2),
            f"{lv.degraded_turns}/{lv.turns}", _fmt(lv.cpu_percent),
            _fmt(lv.cpu_ms_per_call_s, 2), _fmt(lv.loop_lag_ms_p99, 2),
            _fmt(lv.rss_mb_per_call, 2), _fmt(lv.agent_cpu_percent), verdict,
        ]  # fmt: skip
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return "<table>" + "".join(rows) + "</table>"


def _failures(report: BenchReport) -> str:
    items = [
        f"<li>C={lv.concurrency}: {count} × {html.escape(reason)}</li>"
        for lv in report.levels
        for reason, count in lv.failures.items()
    ]
    return "<h2>Failures</h2><ul>" + "".join(items) + "</ul>" if items else ""


def render_html(report: BenchReport) -> str:
    levels = report.levels
    xs = [lv.concurrency for lv in levels]
    bad = [lv.degraded for lv in levels]
    plots = [
        _line_plot(
            "Agent latency (turns not degraded) vs concurrency",
            xs,
            {q: [getattr(lv.latency_ms, q) for lv in levels] for q in ("p50", "p90", "p95", "p99")},
            unit="ms",
            bad=bad,
        ),
        _line_plot(
            "Harness health vs concurrency",
            xs,
            {
                "cpu %": [lv.cpu_percent for lv in levels],
                "loop lag p99 ms": [lv.loop_lag_ms_p99 for lv in levels],
                "agent cpu %": [lv.agent_cpu_percent for lv in levels],
            },
            unit="",
            bad=bad,
            bound=report.lag_bound_ms,
        ),
    ]
    if report.oracle_delay_ms is not None:
        plots.insert(
            1,
            _line_plot(
                f"Oracle error |latency − {report.oracle_delay_ms:g} ms − transport| "
                "vs concurrency",
                xs,
                {
                    "oracle p95": [
                        lv.oracle_error_ms.p95 if lv.oracle_error_ms else None for lv in levels
                    ],
                    "oracle max": [
                        lv.oracle_error_ms.max if lv.oracle_error_ms else None for lv in levels
                    ],
                },  # fmt: skip
                unit="ms",
                bad=bad,
                bound=20.0,
            ),
        )
    timelines = "".join(
        _timeline(lv, [c for c in report.calls if c.level == lv.concurrency]) for lv in levels
    )
    machine = ", ".join(f"{k} {html.escape(v)}" for k, v in report.machine.items())
    status = html.escape(report.status) + (f": {html.escape(report.error)}" if report.error else "")
    oracle = "" if report.oracle_delay_ms is None else f", oracle D = {report.oracle_delay_ms:g} ms"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>loopcall bench {html.escape(report.id[:8])}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; font-size: 13px; margin: 1em 0; }}
th, td {{ border: 1px solid #ccc; padding: 3px 6px; text-align: right; }}
th {{ background: #f4f4f4; }}
.bad {{ color: #d62728; font-weight: bold; }} .ok {{ color: #2ca02c; }}
svg {{ display: block; margin: 1em 0; }}
</style></head><body>
<h1>loopcall bench {html.escape(report.id)}</h1>
<p>Target <code>{html.escape(report.target)}</code> ({html.escape(report.channel)}),
case “{html.escape(report.case_name)}”, {html.escape(report.caller)} caller{oracle};
status {status}. Started {report.created_at:%Y-%m-%d %H:%M:%S} UTC on {machine}.
A turn is <em>degraded</em> when the harness's event loop ran more than
{report.lag_bound_ms:g} ms late while it was measured: it is left out of the
latency figures.</p>
{_level_rows(report)}
{_failures(report)}
{"".join(plots)}
<h2>Calls</h2>
<p>Each row is a call: grey its span (red if it failed), blue the persona speaking,
green the agent, a red outline a degraded turn. Hover for details.</p>
{timelines}
</body></html>
"""
