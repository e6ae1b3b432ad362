"""``loopcall demo``: start the reference agent and run the sample suite against it.

Stage: the README's first command (``make demo``) ends here.
"""

from __future__ import annotations

import argparse
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

from harness.cases import LoadedCases
from harness.cli.common import EXAMPLES, console, err, load_or_say, settings_or_say
from harness.cli.processes import free_port, start_agent_process
from harness.cli.run import run_suite

__all__ = ["add_parser", "execute"]


def _without_rubrics(loaded: LoadedCases) -> LoadedCases:
    """The demo runs offline: with no judge configured, its rubric criteria are left out."""
    cases = []
    for case in loaded.cases:
        kept = [c for c in case.success_criteria if c.rubric is None]
        if len(kept) < len(case.success_criteria):
            console.print(
                f"'{case.name}': its rubric criteria are left out: no LLM judge is configured "
                "(set LOOPCALL_JUDGE_BASE_URL and LOOPCALL_JUDGE_MODEL; see docs/criteria.md)"
            )
        cases.append(case.model_copy(update={"success_criteria": kept}))
    return replace(loaded, cases=cases)


def add_parser(sub: Any) -> None:
    demo = sub.add_parser("demo", help="start the reference agent and run the sample suite")
    demo.add_argument("--out", type=Path, default=Path("runs"))
    demo.add_argument("--reply-delay-ms", type=float, default=None)
    demo.add_argument("--suite", type=Path, default=EXAMPLES / "dental_suite.yaml")
    demo.set_defaults(handler=execute)


def execute(args: argparse.Namespace) -> int:
    from harness.ingest.otel import TraceDesk
    from harness.orchestrator import RunOptions
    from harness.pricing import prices_at
    from harness.scoring import make_judge

    loaded = load_or_say(args.suite)
    if loaded is None:
        return 2
    settings = settings_or_say()
    if settings is None:
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    # The agent sends its account of each reply to this command's /v1/traces (beside
    # the latency heard, per turn; docs/tracing.md).
    otel_port = free_port()
    extra = ["--timing-log", str(args.out / "agent-timing.jsonl")]
    extra += ["--otlp-endpoint", f"http://127.0.0.1:{otel_port}/v1/traces"]
    if args.reply_delay_ms is not None:
        extra += ["--reply-delay-ms", str(args.reply_delay_ms)]
    console.print("starting the reference agent (loading its voice and STT) ...")
    log_path = args.out / "agent.log"
    try:
        proc, target = start_agent_process(*extra, log_path=log_path)
    except RuntimeError as exc:
        err.print(f"[red]error:[/red] {exc} (see {log_path})")
        return 1
    try:
        console.print(f"reference agent ready; running '{loaded.suite_name}' against {target}")
        judge = make_judge(settings.judge_config())
        if judge is None:
            loaded = _without_rubrics(loaded)
        options = RunOptions(
            llm=settings.llm_config(),
            judge=judge,
            prices=prices_at(settings.prices),
            traces=TraceDesk(),
            expect_traces=True,
        )
        return run_suite(
            loaded, target, args.out, 1, options, settings=settings, otel_port=otel_port
        )
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
