"""How exact are loopcall's interruption figures? Calls the reference agent as a dynamics oracle.

For each X, starts `loopcall agent --interrupt-after-ms X --no-stt --voice flite:rms` in its own
process: it starts each reply exactly X ms after the caller's first voiced
sample reached it, so it talks over the caller.  Then runs a case whose persona
lines are long (about 4 s) N times over a channel where both ends are exact (SIP
by default, or a Twilio media stream).  The harness hears the agent's onset one
transport round trip later than the agent's own X, so for every agent
interruption it prints:

- onset error = into_turn_ms - X - transport_rtt_ms (into_turn_ms: the agent's
  onset minus the start of the persona turn it cut into);
- overlap error = overlap_ms - the overlap expected from the agent's known reply
  (its script line in its voice, its pauses included) placed at the measured
  onset, against the persona's segment there;
- how many of the agent's replies were counted as interruptions, and whether
  any latency came out negative (none may).

    .venv/bin/python benchmarks/dynamics_oracle.py --calls 3 --offsets 300 800 1500 \
        [--channel twilio-ws]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
from loguru import logger

from audio.edges import detect_speech
from audio.g711 import phone_band
from audio.speech import get_voice
from harness.cases import load_cases
from harness.cli.processes import start_agent_process
from harness.models import Case, Run
from harness.orchestrator import EchoCalibrator, RunOptions, run_case
from harness.recording import Recording
from harness.store import RunStore
from refagent.script import DENTAL_SCRIPT

# The agent's voice: flite is deterministic (piper's sampling noise changes every
# rendering), so the benchmark can render the very reply the agent sent.
AGENT_VOICE = "flite:rms"
AGENT_RATE = 16_000  # the full agent's turns run at 16 kHz and go out band-limited
EXAMPLES = Path(__file__).resolve().parents[1] / "harness" / "examples"
# Long lines with no commas: a pause inside a line could hide the agent's onset in it.
LINES = (
    "Hi this is Alex Morgan and I am calling to book a cleaning for some time next week please",
    "Yes Tuesday at ten in the morning works well for me and I will be there on time",
    "No that is everything for today thank you very much and have a lovely afternoon",
)


def interrupting_case() -> Case:
    """The demo's booking case with long persona lines and no criteria."""
    case = load_cases(EXAMPLES / "dental_suite.yaml").cases[0]
    data = case.model_dump(mode="json", exclude_none=True)
    data.update(script=list(LINES), success_criteria=[], name="interrupted booking")
    return Case.model_validate(data)


def oracle_errors(run: Run, offset_ms: float) -> tuple[list[float], list[float], int]:
    """(onset errors, overlap errors, agent replies after the greeting) of one run.

    The expected overlap is worked out without the agent's channel: the agent's
    known reply (its script line in its voice, over the phone line, as it laid it
    on its tape) placed with its first voiced sample at the measured onset, against
    the persona's segment there (the persona channel is what the harness sent).
    """
    rtt = run.metrics.transport_rtt_ms or 0.0
    dynamics = run.metrics.dynamics
    found = dynamics.agent_interruptions if dynamics else []
    onsets = [i.into_turn_ms - offset_ms - rtt for i in found if i.into_turn_ms is not None]
    recording = Recording.read_wav(Path(run.recording or ""))
    rate = recording.sample_rate
    persona = [s.ms(rate) for s in detect_speech(recording.persona, rate)]
    voice = get_voice(AGENT_VOICE)
    overlaps = []
    for cut, text in zip(found, DENTAL_SCRIPT.replies, strict=False):
        spoken = voice.synthesize(text, AGENT_RATE).tobytes()
        clip = np.frombuffer(phone_band(spoken), dtype=np.int16)
        said = [s.ms(AGENT_RATE) for s in detect_speech(clip, AGENT_RATE)]
        shift = cut.at_ms - said[0][0]
        start, end = next((a, b) for a, b in persona if a < cut.at_ms < b)
        expected = sum(max(0.0, min(b + shift, end) - max(a + shift, start)) for a, b in said)
        overlaps.append(round(cut.overlap_ms - expected, 2))
    replies = sum(1 for t in run.turns[1:] if t.role == "agent")
    return onsets, overlaps, replies


def _row(label: str, values: list[float]) -> str:
    if not values:
        return f"  {label:>8} {'-':>6}"
    return (
        f"  {label:>8} {len(values):>6} {statistics.mean(values):>7.1f} "
        f"{float(np.percentile(values, 50)):>7.1f} {min(values):>7.1f} {max(values):>7.1f} "
        f"{max(abs(v) for v in values):>7.1f}"
    )


async def _bench(offsets: list[int], calls: int, out: Path, channel: str) -> None:
    case = interrupting_case()
    store = RunStore(out)
    rows: list[tuple[str, list[float], list[float]]] = []
    rtts: list[float] = []
    counted = replies = negative = 0
    async with EchoCalibrator() as calibrator:
        for offset in offsets:
            proc, target = start_agent_process(
                "--interrupt-after-ms",
                str(offset),
                "--no-stt",
                "--voice",
                AGENT_VOICE,
                log_path=out / f"agent-{offset}.log",
                channel=channel,
            )
            onsets: list[float] = []
            overlaps: list[float] = []
            try:
                for i in range(calls):
                    run = await run_case(
                        case, target, store, calibrator=calibrator, options=RunOptions()
                    )
                    if run.status != "completed" or run.metrics.transport_rtt_ms is None:
                        print(f"X={offset} call {i}: {run.status} {run.error}", file=sys.stderr)
                        continue
                    rtts.append(run.metrics.transport_rtt_ms)
                    o, v, r = oracle_errors(run, offset)
                    onsets += o
                    overlaps += v
                    counted += len(o)
                    replies += r
                    negative += sum(
                        1 for t in run.turns if t.latency_ms is not None and t.latency_ms < 0
                    )
            finally:
                proc.terminate()
                proc.wait(10)
            rows.append((str(offset), onsets, overlaps))

    print(f"\nTransport round trip: median {statistics.median(rtts):.1f} ms over {len(rtts)} runs")
    print(f"Agent replies after the greeting: {replies}, counted as interruptions: {counted}")
    print(f"Negative latencies stored: {negative}")
    header = f"  {'X ms':>8} {'n':>6} {'mean':>7} {'p50':>7} {'min':>7} {'max':>7} {'max|e|':>7}"
    every_onset = [e for _, o, _ in rows for e in o]
    every_overlap = [e for _, _, v in rows for e in v]
    print("\nOnset error = into_turn_ms - X - transport_rtt_ms (ms)")
    print(header)
    for label, o, _ in rows:
        print(_row(label, o))
    print(_row("all", every_onset))
    print("\nOverlap error = overlap_ms - the overlap of the agent's known reply (ms)")
    print(header)
    for label, _, v in rows:
        print(_row(label, v))
    print(_row("all", every_overlap))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=3)
    parser.add_argument("--offsets", type=int, nargs="+", default=[300, 800, 1500])
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--channel", choices=["sip", "twilio-ws"], default="sip")
    args = parser.parse_args()
    logger.remove()
    logger.add(sys.stderr, level="ERROR", diagnose=False)
    out = args.out or Path(tempfile.mkdtemp(prefix="loopcall-dynamics-oracle-"))
    out.mkdir(parents=True, exist_ok=True)
    print(f"channel: {args.channel}")
    asyncio.run(_bench(args.offsets, args.calls, out, args.channel))
    print(f"\nruns stored under {out}")


if __name__ == "__main__":
    main()
