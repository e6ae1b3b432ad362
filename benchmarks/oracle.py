"""How exact is loopcall's latency? Calls the reference agent as a latency oracle.

For each reply delay D, starts `loopcall agent --reply-delay-ms D` in its own
process and runs the booking case N times on 127.0.0.1 over a channel: WebRTC,
a Twilio media stream (loopcall playing the carrier), a phone call (`tel:`)
placed with the twilio SDK through `loopcall twilio-emulator` (its own process),
which bridges it to the agent's media stream, or a SIP call (G.711 RTP) to the
agent's SIP phone.  Prints:

- the transport round trip from each run's echo calibration, and its spread
  (within one calibration and across runs);
- the oracle error of every agent turn after the greeting:
  latency_ms - D - transport_rtt_ms;
- the agent-transcript WER against the agent's known lines.

    .venv/bin/python benchmarks/oracle.py --calls 5 --delays 400 1200 [--channel twilio-ws|tel|sip]

``--hogs N`` runs N CPU hogs beside the calls (each busy in bursts of 5-80 ms,
``--hog-duty`` of the time, in its own process): the oracle's figures on cores
shared with other work, as inside a test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import secrets
import statistics
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import jiwer
import numpy as np
from fastapi import FastAPI
from loguru import logger

from harness.cases import load_cases
from harness.cli.processes import start_agent_process
from harness.orchestrator import EchoCalibrator, RunOptions, run_case
from harness.store import RunStore
from refagent.script import DENTAL_SCRIPT
from telephony.embedded import serve_embedded
from telephony.twilio_phone import TwilioAccount, TwilioGateway

EXAMPLES = Path(__file__).resolve().parents[1] / "harness" / "examples"


# A CPU hog: busy for 5-80 ms, idle for the rest of its duty cycle, until killed.
HOG = """
import random, sys, time
duty = float(sys.argv[1])
while True:
    burst = random.uniform(0.005, 0.08)
    end = time.perf_counter() + burst
    while time.perf_counter() < end:
        pass
    time.sleep(burst * (1.0 - duty) / duty)
"""


@contextlib.contextmanager
def _hogs(n: int, duty: float) -> Iterator[None]:
    procs = [subprocess.Popen([sys.executable, "-c", HOG, str(duty)]) for _ in range(n)]
    try:
        yield
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def _norm(text: str) -> str:
    return " ".join(jiwer.RemovePunctuation()(text.lower()).replace("10", "ten").split())


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


@contextlib.asynccontextmanager
async def _phone(agent_target: str) -> AsyncIterator[RunOptions]:
    """An emulated carrier in front of the agent, and loopcall's gateway; yields run options."""
    number = "+15550001111"
    stream = "ws://" + agent_target.split("://", 1)[1]
    sid, token = "AC" + secrets.token_hex(16), secrets.token_hex(16)
    proc = subprocess.Popen(  # noqa: ASYNC220 (before any call: nothing else runs yet)
        [sys.executable, "-m", "harness.cli", "twilio-emulator", "--port", "0"]
        + ["--account-sid", sid, "--auth-token", token, "--number", f"{number}={stream}"]
        + ["--verified", "+15550002222"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    emulator = proc.stdout.readline().decode().split()[1]
    gateway = TwilioGateway()
    app = FastAPI()
    app.include_router(gateway.router())
    try:
        async with serve_embedded(app, "127.0.0.1", 0) as port:
            account = TwilioAccount(
                account_sid=sid,
                auth_token=token,
                from_number="+15550002222",
                public_base_url=f"http://127.0.0.1:{port}",
                api_base_url=emulator,
            )
            yield RunOptions(twilio=account, gateway=gateway)
    finally:
        proc.terminate()
        proc.wait(10)


async def _bench(delays: list[int], calls: int, out: Path, channel: str) -> None:
    case = load_cases(EXAMPLES / "dental_suite.yaml").cases[0]
    store = RunStore(out)
    rows = []
    all_errors: list[float] = []
    rtts: list[float] = []
    jitters: list[float] = []
    refs: list[str] = []
    hyps: list[str] = []
    split: list[tuple[int, list[float], list[float]]] = []
    async with EchoCalibrator() as calibrator:
        for delay in delays:
            timing_log = out / f"timing-{delay}.jsonl"
            proc, target = start_agent_process(
                "--reply-delay-ms",
                str(delay),
                "--timing-log",
                str(timing_log),
                log_path=out / f"agent-{delay}.log",
                channel=channel if channel in ("webrtc", "sip") else "twilio-ws",
            )
            errors: list[float] = []
            heard: dict[tuple[str, int], float] = {}  # (run, turn) -> latency - rtt
            try:
                async with contextlib.AsyncExitStack() as stack:
                    options = RunOptions()
                    if channel == "tel":
                        options = await stack.enter_async_context(_phone(target))
                        target = "tel:+15550001111"
                    for i in range(calls):
                        run = await run_case(
                            case, target, store, calibrator=calibrator, options=options
                        )
                        rtt = run.metrics.transport_rtt_ms
                        if run.status != "completed" or rtt is None:
                            print(f"D={delay} call {i}: {run.status} {run.error}", file=sys.stderr)
                            continue
                        rtts.append(rtt)
                        jitters.append(run.metrics.transport_rtt_jitter_ms or 0.0)
                        agent_turns = [t for t in run.turns if t.role == "agent"]
                        for turn, t in enumerate(agent_turns):
                            if t.latency_ms is not None:
                                errors.append(t.latency_ms - delay - rtt)
                                heard[(run.id, turn)] = t.latency_ms - rtt
                        if len(agent_turns) == len(DENTAL_SCRIPT.lines):
                            refs += [_norm(x) for x in DENTAL_SCRIPT.lines]
                            hyps += [_norm(t.text) for t in agent_turns]
            finally:
                proc.terminate()
                proc.wait(10)
            all_errors += errors
            rows.append((delay, errors))
            split.append((delay, *_against_the_log(timing_log, heard, delay)))

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
    print(
        "\nSplit by the agent's own timing log (each reply's real departure): the agent's"
        "\nlateness (departure - caller's end - D) and the harness's error against the log"
        "\n(latency_ms - transport_rtt_ms - (departure - caller's end))"
    )
    print(
        f"  {'D ms':>6} {'turns':>6} {'late max':>9} {'harness mean':>13} "
        f"{'p95|e|':>7} {'max|e|':>7}"
    )
    for delay, late, harness in split:
        if not harness:
            continue
        worst = sorted(abs(e) for e in harness)
        print(
            f"  {delay!s:>6} {len(harness):>6} {max(late):>9.1f} {statistics.mean(harness):>13.1f} "
            f"{_pct(worst, 95):>7.1f} {worst[-1]:>7.1f}"
        )
    if refs:
        print(
            f"\nAgent-transcript WER vs the agent's known lines: {jiwer.wer(refs, hyps):.3f} "
            f"({len(refs)} turns, Whisper tiny.en on the 16 kHz recording of the {channel} call)"
        )


def _against_the_log(
    timing_log: Path, heard: dict[tuple[str, int], float], delay: int
) -> tuple[list[float], list[float]]:
    """Each measured reply against the agent's log line for it: (lateness, harness error)."""
    late: list[float] = []
    harness: list[float] = []
    if not timing_log.exists():
        return late, harness
    for line in timing_log.read_text().splitlines():
        record = json.loads(line)
        key = (record.get("run_id"), record.get("turn"))
        if record.get("caller_offset_epoch_ms") is None or key not in heard:
            continue
        took = record["reply_onset_epoch_ms"] - record["caller_offset_epoch_ms"]
        late.append(took - delay)
        harness.append(heard[key] - took)
    return late, harness


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=5)
    parser.add_argument("--delays", type=int, nargs="+", default=[400, 1200])
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument(
        "--channel", choices=["webrtc", "twilio-ws", "tel", "sip"], default="webrtc"
    )
    parser.add_argument("--hogs", type=int, default=0, help="CPU hogs beside the calls")
    parser.add_argument("--hog-duty", type=float, default=0.5)
    args = parser.parse_args()
    logger.remove()
    logger.add(sys.stderr, level="ERROR", diagnose=False)  # no variable values: credentials
    out = args.out or Path(tempfile.mkdtemp(prefix="loopcall-oracle-"))
    out.mkdir(parents=True, exist_ok=True)
    hogs = f", {args.hogs} CPU hogs at {args.hog_duty:.0%}" if args.hogs else ""
    print(f"channel: {args.channel}{hogs}")
    with _hogs(args.hogs, args.hog_duty):
        asyncio.run(_bench(args.delays, args.calls, out, args.channel))
    print(f"\nruns stored under {out}")


if __name__ == "__main__":
    main()
