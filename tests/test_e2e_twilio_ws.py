"""End to end over a Twilio media stream on 127.0.0.1: loopcall plays the carrier.

The agent is `loopcall agent --channel twilio-ws` in its own process: pipecat's
``FastAPIWebsocketTransport`` with ``TwilioFrameSerializer`` reads the stream, so
the audio crosses 8 kHz mu-law both ways, as on a phone line.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from dental import agent_wer, booking_case

from harness.orchestrator import EchoCalibrator, run_case
from harness.store import RunStore

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("delay_ms", [800])  # benchmarks/oracle.py covers more delays
async def test_latency_oracle_over_twilio_ws(start_agent, tmp_path: Path, delay_ms: int) -> None:
    # --no-stt: the agent's own transcription only feeds its log, and on 2 cores it
    # competes with the reply clock (benchmarks/oracle.py keeps it, as in use).
    agent = start_agent("--reply-delay-ms", str(delay_ms), "--no-stt", channel="twilio-ws")
    assert agent.target.startswith("twilio-ws://")
    store = RunStore(tmp_path / "runs")
    async with EchoCalibrator() as calibrator:
        run = await run_case(booking_case(), agent.target, store, calibrator=calibrator)

    assert run.status == "completed", run.error
    assert run.channel == "twilio-ws"
    rtt = run.metrics.transport_rtt_ms
    assert rtt is not None
    replies = [t for t in run.turns if t.role == "agent" and t.latency_ms is not None]
    assert len(replies) == 3
    errors = [t.latency_ms - delay_ms - rtt for t in replies]  # type: ignore[operator]
    logged = [r for r in agent.timings() if r["caller_offset_epoch_ms"] is not None]
    # When each reply really left the agent, against when it was due (its own account).
    left_late = [
        round(r["reply_onset_epoch_ms"] - r["caller_offset_epoch_ms"] - delay_ms, 2) for r in logged
    ]
    print(f"twilio-ws oracle D={delay_ms}: rtt {rtt} ms, errors {errors}, left late {left_late}")
    # The bound follows the measured distribution.  After the playout's jitter rule,
    # docs/latency.md's setup (benchmarks/oracle.py --calls 3 --delays 400 1200 --channel
    # twilio-ws, the agent with STT) measured 18 turns at worst +1.1 ms, and 18 at
    # worst +2.2 ms with two CPU hogs at 50 % beside the calls (--hogs 2); 36 more
    # at D = 400, 800, 1200 ms stayed within -0.4..+1.8 ms, and this test's own 9
    # turns (3 runs) within +0.4..+1.2 ms, on this shared 2-core machine.  Before
    # it, the loaded setup read 36 turns at mean -2.0 ms, worst -6.2 ms, and the
    # quiet one 24 at mean -1.0 ms, worst -3.6 ms (the playout's silence moved
    # onsets early).  5 ms, the goal, is twice the worst turn measured.
    assert all(abs(e) <= 5 for e in errors), errors
    assert len(logged) == 3 and all(r["late_ms"] == 0 for r in logged), logged
    assert all(r["run_id"] == run.id for r in logged), logged
    # What the caller heard over 8 kHz mu-law is still the agent's script.
    wer = agent_wer(run)
    print(f"agent-transcript WER over mu-law: {wer:.3f}")
    assert wer <= 0.15, [t.text for t in run.turns if t.role == "agent"]
