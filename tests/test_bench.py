"""``loopcall bench`` end to end: real calls to the light reference agent on every channel.

The agent runs in its own process as a latency oracle (``--light --reply-delay-ms
400``), so each level's oracle error says how exact the bench's latencies are.
One test starves the harness's event loop (a CPU hog in the same process) and
checks that the bench says so instead of reporting the delay as the agent's.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

import pytest
import yaml
from dental import short_case

from harness.bench.models import BenchConfig
from harness.bench.runner import BenchState, run_bench
from harness.store import RunStore

pytestmark = pytest.mark.e2e
DELAY_MS = 400.0
# The bound on the oracle error (|latency - 400 ms - transport round trip|) of a
# level with nothing degraded.  Measured with these tests (`pytest -s
# tests/test_bench.py` prints every level's figures), run twice on the shared
# 2-core machine: 14 levels of 1-3 calls over SIP, twilio-ws and WebRTC, worst
# |error| 0.1-2.0 ms per level (p95 = max at these sizes; earlier runs reached
# 3.7 ms); the capacity benchmark keeps p95 under 3.7 ms up to 150 calls (docs/bench.md).
# 8 ms is twice the worst ever seen: a level 8 ms off is a harness bug.
ORACLE_BOUND_MS = 8.0


async def test_bench_cli_measures_the_bundled_oracle_over_sip(tmp_path: Path) -> None:
    case_file = tmp_path / "case.yaml"
    case_file.write_text(yaml.safe_dump(short_case().model_dump(mode="json", exclude_none=True)))
    out = tmp_path / "bench"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "harness.cli", "bench", "--channel", "sip",
        "--concurrency", "1,3", "--case", str(case_file), "--no-transcribe", "--out", str(out),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, stderr = await proc.communicate()
    assert proc.returncode == 0, (stdout.decode()[-3000:], stderr.decode()[-3000:])
    report = json.loads((out / "report.json").read_text())
    assert report["status"] == "completed" and report["oracle_delay_ms"] == DELAY_MS
    assert [lv["concurrency"] for lv in report["levels"]] == [1, 3]
    for level in report["levels"]:
        print(f"bench sip C={level['concurrency']}: oracle {level['oracle_error_ms']}")
        assert level["completed"] == level["calls"] == level["concurrency"], level
        assert level["peak_concurrency"] == level["concurrency"]
        assert level["turns"] >= level["calls"]  # at least one measured reply per call
        rtt = level["transport_rtt_ms"]
        assert abs(level["latency_ms"]["p50"] - DELAY_MS - rtt) < ORACLE_BOUND_MS, level
        assert level["oracle_error_ms"]["max"] < ORACLE_BOUND_MS, level["oracle_error_ms"]
        assert not level["degraded"]
        for key in ("cpu_percent", "loop_lag_ms_p99", "agent_cpu_percent", "rss_mb_peak"):
            assert level[key] is not None, key
    assert len(report["calls"]) == 4 and all(c["status"] == "completed" for c in report["calls"])
    assert (out / "report.html").read_text().count("<svg") >= 4
    assert len(list((out / "runs").glob("*/run.json"))) == 4
    assert "oracle err" in stdout.decode()


# WebRTC here; a bench's oracle over twilio-ws is the quiet level of the starved test
# below, and the lean caller's listening and the batch transcription do not depend on
# the channel.
@pytest.mark.parametrize("channel", ["webrtc"])
async def test_bench_on_media_streams_and_webrtc(channel: str, start_agent, tmp_path: Path) -> None:
    agent = start_agent("--light", "--no-stt", "--reply-delay-ms", str(DELAY_MS), channel=channel)
    # A goal line makes the lean caller listen live (its brain must understand the agent).
    case = short_case("Hi, this is Alex Morgan.", {"say": "Tuesday is great.", "when": "tuesday"})
    config = BenchConfig(
        target=agent.target, case=case, concurrency=[2], oracle_delay_ms=DELAY_MS, transcribe=True
    )
    report = await run_bench(config, RunStore(tmp_path), bench_id="b-" + channel)
    assert report.status == "completed", report.error
    (level,) = report.levels
    print(f"bench {channel}: oracle {level.oracle_error_ms}")
    assert level.completed == 2, level.failures
    assert level.turns >= 4 and level.oracle_error_ms is not None
    assert level.oracle_error_ms.max is not None and level.oracle_error_ms.max < ORACLE_BOUND_MS
    runs = [RunStore(tmp_path).load(call.run_id) for call in report.calls]
    for run in runs:
        said = [t.text for t in run.turns if t.role == "persona"]
        assert "Tuesday is great." in " ".join(said), said  # the goal line fired: it heard
        assert any(e.kind == "agent_heard" for e in run.events)
        # Transcribed after the level, in one batch: the agent's words are in the turns.
        assert "tuesday" in " ".join(t.text.lower() for t in run.turns if t.role == "agent")


def _busy(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


@pytest.mark.parametrize("channel", ["twilio-ws", "sip"])
async def test_a_starved_harness_marks_its_measurements_degraded(
    channel: str, start_agent, tmp_path: Path
) -> None:
    """A CPU hog in the harness's own process during the second level.

    The bench must mark the starved level's turns degraded and keep them out of
    the latency figures.  On a media stream the event loop stamps arrivals and
    sends; on SIP the kernel stamps arrivals, but the persona's audio still leaves
    on the loop's clock (late, then in a catch-up burst), so SIP's turns are
    degraded too, for what the harness sent.
    """
    agent = start_agent("--light", "--no-stt", "--reply-delay-ms", str(DELAY_MS), channel=channel)
    config = BenchConfig(
        target=agent.target,
        case=short_case(),
        concurrency=[1, 1],
        oracle_delay_ms=DELAY_MS,
        transcribe=False,
    )
    hog: asyncio.Task[None] | None = None

    async def hog_the_loop() -> None:
        # A CPU hog in the harness's own process: 60 ms of work, 20 ms of air.
        while True:
            _busy(0.06)
            await asyncio.sleep(0.02)

    def on_progress(state: BenchState) -> None:
        nonlocal hog
        if state.level == 2 and state.phase == "calling" and hog is None:
            hog = asyncio.ensure_future(hog_the_loop())

    try:
        report = await run_bench(
            config, RunStore(tmp_path), bench_id="starved", progress=on_progress
        )
    finally:
        if hog is not None:
            hog.cancel()
    assert report.status == "completed", report.error
    quiet, starved = report.levels
    print(f"bench starved {channel}: quiet oracle {quiet.oracle_error_ms}")
    assert quiet.completed == starved.completed == 1
    # Unstarved: nothing degraded, and the oracle holds.
    assert not quiet.degraded and quiet.degraded_turns == 0
    # (An error of 0.0 ms, which a twilio-ws level measured once, is within the bound.)
    assert quiet.oracle_error_ms is not None and quiet.oracle_error_ms.max is not None
    assert quiet.oracle_error_ms.max < ORACLE_BOUND_MS
    # Starved: the loop ran late, and the bench saw it.
    assert starved.loop_lag_ms_p99 is not None
    assert starved.loop_lag_ms_p99 > config.lag_bound_ms
    run = RunStore(tmp_path).load(report.calls[-1].run_id)
    assert run.metrics.harness is not None and starved.turns >= 1
    assert run.metrics.harness.kernel_stamped == (channel == "sip")
    if channel == "sip":
        assert "persona audio left" in (run.metrics.harness.degraded_reason or "")
    # Every measured turn is degraded, the level says why, and the turns' latencies
    # are kept apart (not reported as the agent's).
    assert starved.degraded and starved.degraded_turns == starved.turns
    assert starved.latency_ms.n == 0
    assert "loop delay p99" in (starved.degraded_reason or "")
    assert run.metrics.harness.degraded
    assert all(t.degraded for t in run.turns if t.latency_ms is not None)
    assert any(e.kind == "degraded" for e in run.events)
