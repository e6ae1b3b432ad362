"""``loopcall bench --server URL``: the bench runs on a controller; this follows it.

Stage: the CLI side of ``POST /benches``.  It submits the bench, prints each
level as the controller finishes it, and at the end writes the controller's
``report.json`` and ``report.html`` into ``--out``.  Ctrl-C cancels the bench
on the controller.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from rich.console import Console

from harness.bench.models import BenchConfig, BenchReport
from harness.cli.bench_display import conclude
from harness.cli.client import ControllerClient, ControllerError

__all__ = ["run_on_server"]

POLL_S = 2.0


def run_on_server(
    config: BenchConfig,
    server: str,
    settings: Any,
    out: Path,
    console: Console,
    err: Console,
) -> int:
    key = settings.api_key.get_secret_value() if settings.api_key else None
    body = config.model_dump(
        mode="json",
        include={"target", "calls", "concurrency", "ramp_s", "oracle_delay_ms", "lag_bound_ms",
                 "transcribe", "caller"},
    )  # fmt: skip
    body["case"] = config.case.model_dump(mode="json", exclude_none=True)

    async def go() -> tuple[BenchReport, str]:
        async with ControllerClient(server, key) as client:
            report = await client.start_bench(body)
            console.print(f"bench {report.id} started on {server}")
            try:
                shown = 0
                while report.status == "running":
                    await asyncio.sleep(POLL_S)
                    report = await client.bench(report.id)
                    for level in report.levels[shown:]:
                        console.print(
                            f"C={level.concurrency}: {level.completed}/{level.calls} completed, "
                            f"latency p50 {level.latency_ms.p50} ms, "
                            f"{'degraded' if level.degraded else 'trustworthy'}"
                        )
                    shown = len(report.levels)
            except asyncio.CancelledError:
                await client.cancel_bench(report.id)
                raise
            return report, await client.bench_html(report.id)

    try:
        report, html = asyncio.run(go())
    except ControllerError as exc:
        err.print(f"[red]error:[/red] {exc}")
        return 1
    except KeyboardInterrupt:
        err.print("[yellow]interrupted: the bench was cancelled on the controller[/yellow]")
        return 130
    out.mkdir(parents=True, exist_ok=True)
    for name, text in (("report.json", report.model_dump_json(indent=2)), ("report.html", html)):
        tmp = out / f".{name}.{os.getpid()}.tmp"
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, out / name)
    return conclude(report, out, console, f"the controller (suite_run_id {report.id})")
