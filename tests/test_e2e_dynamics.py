"""The dynamics oracle over SIP on 127.0.0.1: an agent that interrupts at a known moment.

The reference agent (`loopcall agent --interrupt-after-ms X --channel sip`, its
own process) starts each reply exactly X ms after the caller's first voiced
sample reached it, talking over the persona's long lines.  Both ends of a SIP
call are exact (RTP stamped by the kernel, the agent's tape read on the caller's
stream clock), so the harness must find each reply as an agent interruption that
came X + the transport round trip into the persona's turn, and never as a
negative latency.  ``benchmarks/dynamics_oracle.py`` covers more offsets.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from harness.orchestrator import EchoCalibrator, run_case
from harness.store import RunStore

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from dynamics_oracle import AGENT_VOICE, interrupting_case, oracle_errors  # noqa: E402

pytestmark = pytest.mark.e2e

OFFSET_MS = 800


async def test_interruption_oracle_over_sip(start_agent, tmp_path: Path) -> None:
    agent = start_agent(
        "--interrupt-after-ms", str(OFFSET_MS), "--no-stt", "--voice", AGENT_VOICE, channel="sip"
    )
    store = RunStore(tmp_path / "runs")
    async with EchoCalibrator() as calibrator:
        run = await run_case(interrupting_case(), agent.target, store, calibrator=calibrator)

    assert run.status == "completed", run.error
    assert run.termination_reason == "agent_ended"
    assert run.metrics.dynamics is not None
    found = run.metrics.dynamics.agent_interruptions
    onsets, overlaps, replies = oracle_errors(run, OFFSET_MS)
    print(f"dynamics oracle X={OFFSET_MS}: onset errors {onsets}, overlap errors {overlaps}")
    # Every reply after the greeting talked over the persona, and none has a latency.
    assert replies == 3 and len(found) == 3, run.turns
    assert all(t.latency_ms is None for t in run.turns)
    assert all(run.turns[i.interrupted_turn_index or 0].role == "persona" for i in found)
    # The bounds follow the measured distribution (this shared 2-core machine, under the
    # heavy lock).  Onset error = into_turn_ms - X - transport_rtt_ms: 57 interruptions
    # over SIP (benchmarks/dynamics_oracle.py --calls 3 --offsets 300 800 1500, 27; the
    # same with --calls 2, 18; one call at X = 800, 3; this test 3 times, 9) within
    # -0.6..+1.1 ms.  Overlap error (against the agent's own reply placed at the onset):
    # 27 over SIP within -0.1..+0.6 ms; over twilio-ws (--channel twilio-ws --calls 2)
    # onsets -0.3..+1.4 ms and overlaps 0..+3.8 ms in 18.
    assert all(abs(e) <= 5 for e in overlaps), overlaps
    logged = [r for r in agent.timings() if r["caller_onset_epoch_ms"] is not None]
    assert len(logged) == 3 and all(r["late_ms"] == 0 for r in logged), logged
    # Where the persona's speech starts, against the oracle's own view of it: the agent
    # logs the caller onset it detected (its endpointer, the harness's rule), one way
    # of the transport after the harness's.  Measured 1.1-1.5 ms (rtt 3.1 ms) in CI.
    assert run.recording_epoch_s is not None and run.metrics.transport_rtt_ms is not None
    one_way = run.metrics.transport_rtt_ms / 2
    for cut, record in zip(found, logged, strict=True):
        persona_onset = cut.at_ms - (cut.into_turn_ms or 0.0)
        seen = record["caller_onset_epoch_ms"] - run.recording_epoch_s * 1000
        assert abs(seen - persona_onset - one_way) <= 5, (seen, persona_onset, one_way)
    # The cut-in as heard, against X: the 20 ms.  Not 5: in two of today's CI
    # runs the oracle's reply reached the wire 17-20 ms after its log says it left (on
    # 3 of 6 cut-ins; 1.8 ms on the others) while the harness placed the caller's onset
    # within 1.5 ms of the agent's own view (above) and the overlaps within 0.3 ms: the
    # frame is lost in the agent's SIP sender (refagent/sip_line.py), not in the
    # measurement; until that is found, 5 ms here would test the oracle, not loopcall.
    assert all(abs(e) <= 20 for e in onsets), onsets
