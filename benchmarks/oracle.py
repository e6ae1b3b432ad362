"""How exact is loopcall's latency? Calls the reference agent as a latency oracle.

For each reply delay D, starts `loopcall agent --reply-delay-ms D` in its own
process and runs the booking case N times over WebRTC on 127.0.0.1.  Prints:

- the transport round trip from each run's echo calibration, and its spread
  (within one calibration and across runs);
- the oracle error of every agent turn after the greeting:
  latency_ms - D - transport_rtt_ms;
- the agent-transcript WER against the agent's known lines.

    .venv/bin/python benchmarks/oracle.py --calls 5 --delays 400 1200
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
from pathlib import Path

import jiwer
import numpy as np
from loguru import logger

from harness.agent.script import DENTAL_SCRIPT
from harness.calibration import EchoCalibrator
from harness.cases import load_cases
from harness.cli import start_agent_process
from harness.orchestrator import run_case
from harness.store import RunStore

EXAMPLES = Path(__file__).resolve().parents[1] / "harness" / "examples"


def _norm(text: str) -> str:
    return " ".join(jiwer.RemovePunctuation()(text.lower()).replace("10", "ten").split())


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


async def _bench(delays: list[int], calls: int, out: Path) -> None:
    case = load_cases(EXAMPLES / "dental_suite.yaml").cases[0]
    store = RunStore(out)
    rows = []
    all_errors: list[float] = []
    rtts: list[float] = []
    jitters: list[float] = []
    refs: list[str] = []
    hyps: list[str] = []
    async with EchoCalibrator() as calibrator:
        for delay in delays:
            proc, target = start_agent_process(
                "--reply-delay-ms", str(delay), log_path=out / f"agent-{delay}.log"
            )
            errors: list[float] = []
            try:
                for i in range(calls):
                    run = await run_case(case, target, store, calibrator=calibrator)
                    rtt = run.metrics.transport_rtt_ms
                    if run.status != "completed" or rtt is None:
                        print(f"D={delay} call {i}: {run.status} {run.error}", file=sys.stderr)
                        continue
                    rtts.append(rtt)
                    jitters.append(run.metrics.transport_rtt_jitter_ms or 0.0)
                    agent_turns = [t for t in run.turns if t.role == "agent"]
                    for t in agent_turns:
                        if t.latency_ms is not None:
                            errors.append(t.latency_ms - delay - rtt)
                    if len(agent_turns) == len(DENTAL_SCRIPT.lines):
                        refs += [_norm(x) for x in DENTAL_SCRIPT.lines]
                        hyps += [_norm(t.text) for t in agent_turns]
            finally:
                proc.terminate()
                proc.wait(10)
            all_errors += errors
            rows.append((delay, errors))

    print("\nTransport round trip (echo calibration before every call)")
    spread = max(rtts) - min(rtts)
    print(
        f"  runs {len(rtts)}  median {statistics.median(rtts):.1f} ms  min {min(rtts):.1f}  "
        f"max {max(rtts):.1f}  spread across runs {spread:.1f} ms  "
        f"max spread within one calibration {max(jitters):.2f} ms"
    )

    print("\nOracle error = latency_ms - D - transport_rtt_ms (agent turns after the greeting)")
    print(
        f"  {'D ms':>6} {'turns':>6} {'mean':>7} {'p50':>7} {'p95':>7} {'min':>7} {'max':>7} "
        f"{'max|e|':>7}"
    )
    for delay, errors in rows + [("all", all_errors)]:
        if not errors:
            continue
        print(
            f"  {delay!s:>6} {len(errors):>6} {statistics.mean(errors):>7.1f} "
            f"{_pct(errors, 50):>7.1f} {_pct(errors, 95):>7.1f} {min(errors):>7.1f} "
            f"{max(errors):>7.1f} {max(abs(e) for e in errors):>7.1f}"
        )
    if refs:
        print(
            f"\nAgent-transcript WER vs the agent's known lines: {jiwer.wer(refs, hyps):.3f} "
            f"({len(refs)} turns, Whisper tiny.en on the 16 kHz recording)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=5)
    parser.add_argument("--delays", type=int, nargs="+", default=[400, 1200])
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    logger.remove()
    logger.add(sys.stderr, level="ERROR")
    out = args.out or Path(tempfile.mkdtemp(prefix="loopcall-oracle-"))
    out.mkdir(parents=True, exist_ok=True)
    asyncio.run(_bench(args.delays, args.calls, out))
    print(f"\nruns stored under {out}")


if __name__ == "__main__":
    main()
