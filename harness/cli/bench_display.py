"""What ``loopcall bench`` shows: the live progress while levels run, the table at the end.

Stage: the bench command's output (``bench.py`` locally, ``bench_remote.py`` on a
controller); the report files come from ``harness.bench.report``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.live import Live
from rich.table import Table

from harness.bench.models import BenchReport
from harness.monitor import process_cpu_s

__all__ = ["Display", "conclude"]


class Display:
    """The live progress: a table redrawn once a second (plain lines off a terminal)."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.state: Any = None
        self._live: Live | None = None
        self._last_line = 0.0
        self._cpu = (time.monotonic(), _cpu_now())
        self._cpu_percent = 0.0

    @contextlib.contextmanager
    def live(self) -> Any:
        if not self.console.is_terminal:
            yield
            return
        with Live(self._table(), console=self.console, refresh_per_second=1) as live:
            self._live = live
            yield
        self._live = None

    def update(self, state: Any) -> None:
        self.state = state

    async def refresh_every(self, seconds: float) -> None:
        while True:
            await asyncio.sleep(seconds)
            now, cpu = time.monotonic(), _cpu_now()
            t0, c0 = self._cpu
            self._cpu_percent = 100.0 * (cpu - c0) / max(1e-6, now - t0)
            self._cpu = (now, cpu)
            if self._live is not None:
                self._live.update(self._table())
            elif self.state is not None and now - self._last_line >= 5.0:
                self._last_line = now
                self.console.print(self._line())

    def _line(self) -> str:
        s = self.state
        lat = _p(s.latencies, 50)
        return (
            f"level {s.level} C={s.concurrency} {s.phase}: {s.started}/{s.calls} started, "
            f"{s.live} live, {s.ended} ended, {s.failed} failed, latency p50 {lat}, "
            f"CPU {self._cpu_percent:.0f}%"
        )

    def _table(self) -> Table:
        table = Table(title="loopcall bench")
        for column in (
            "C", "phase", "started", "live", "ended", "failed", "latency p50", "p95",
            "oracle p95", "loop lag p99", "CPU %", "verdict",
        ):  # fmt: skip
            table.add_column(column, justify="right")
        s = self.state
        if s is None:
            return table
        for lv in s.done_levels:
            oracle = lv.oracle_error_ms
            table.add_row(
                str(lv.concurrency), "done", str(lv.calls), "0", str(lv.calls), str(lv.failed),
                _ms(lv.latency_ms.p50), _ms(lv.latency_ms.p95),
                _ms(oracle.p95 if oracle else None), _ms(lv.loop_lag_ms_p99),
                f"{lv.cpu_percent or 0:.0f}",
                "[red]degraded[/red]" if lv.degraded else "[green]ok[/green]",
            )  # fmt: skip
        if len(s.done_levels) < s.level:
            table.add_row(
                str(s.concurrency), s.phase, f"{s.started}/{s.calls}", str(s.live),
                str(s.ended), str(s.failed), _p(s.latencies, 50), _p(s.latencies, 95),
                "", "", f"{self._cpu_percent:.0f}", "",
            )  # fmt: skip
        return table


def _cpu_now() -> float:
    return process_cpu_s()


def _p(values: list[float], q: float) -> str:
    return f"{np.percentile(values, q):.0f} ms" if values else "-"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"


def conclude(report: BenchReport, out: Path, console: Console, runs_where: str = "") -> int:
    table = Table(title=f"loopcall bench {report.id[:8]}: {report.target}")
    for column in (
        "C", "calls", "ok", "failed", "latency p50", "p90", "p95", "p99", "TTFA p50",
        "oracle err p95", "oracle err max", "CPU %", "loop lag p99", "degraded",
    ):  # fmt: skip
        table.add_column(column, justify="right")
    for lv in report.levels:
        oracle = lv.oracle_error_ms
        table.add_row(
            str(lv.concurrency), str(lv.calls), str(lv.completed), str(lv.failed),
            _ms(lv.latency_ms.p50), _ms(lv.latency_ms.p90), _ms(lv.latency_ms.p95),
            _ms(lv.latency_ms.p99), _ms(lv.time_to_first_audio_ms.p50),
            _ms(oracle.p95 if oracle else None), _ms(oracle.max if oracle else None),
            "-" if lv.cpu_percent is None else f"{lv.cpu_percent:.0f}",
            _ms(lv.loop_lag_ms_p99),
            f"[red]yes ({lv.degraded_turns}/{lv.turns} turns)[/red]" if lv.degraded
            else f"no ({lv.degraded_turns}/{lv.turns} turns)",
        )  # fmt: skip
    console.print(table)
    for lv in report.levels:
        for reason, count in lv.failures.items():
            console.print(f"[red]C={lv.concurrency}: {count} failed[/red]: {reason}")
        if lv.degraded:
            console.print(f"[red]C={lv.concurrency} degraded[/red]: {lv.degraded_reason}")
    runs_where = runs_where or f"{out}/runs/"
    console.print(f"report: {out / 'report.json'} and {out / 'report.html'}; runs in {runs_where}")
    if report.status != "completed":
        console.print(f"[red]bench {report.status}[/red]: {report.error}")
        return 1
    troubled = any(lv.failed or lv.degraded for lv in report.levels)
    return 1 if troubled else 0
