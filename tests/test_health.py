"""The harness's health monitor: it sees a starved event loop, and marks the turns it touched."""

from __future__ import annotations

import time

import numpy as np

from harness.analysis.health import assess
from harness.models import Turn
from harness.monitor import LagWindow, LoopMonitor


def _busy(seconds: float) -> None:
    """Hold the event loop, as a CPU hog in the same process does."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


async def test_monitor_sees_a_stalled_loop() -> None:
    monitor = LoopMonitor()
    monitor.acquire()
    try:
        await monitor.wait_samples(3)
        quiet_end = time.monotonic()
        stall_start = time.monotonic()
        _busy(0.08)
        stall_end = time.monotonic()
        await monitor.wait_samples(2)
    finally:
        await monitor.release()
    assert not monitor.running
    stalled = monitor.window(stall_start, stall_end)
    assert stalled.max is not None and stalled.max >= 70.0
    quiet = monitor.window(0.0, quiet_end - 0.001)
    assert quiet.max is not None and quiet.max < stalled.max - 40.0


def _turns() -> list[Turn]:
    return [
        Turn(role="agent", text="hi", start_ms=500, end_ms=1500),
        Turn(role="persona", text="a", start_ms=2000, end_ms=3000),
        Turn(role="agent", text="b", start_ms=3400, end_ms=4000, latency_ms=400),
        Turn(role="persona", text="c", start_ms=5000, end_ms=6000),
        Turn(role="agent", text="d", start_ms=6400, end_ms=7000, latency_ms=400),
    ]


def _lags(spike_at_s: float | None, connected: float = 100.0) -> LagWindow:
    times = connected + np.arange(1, 800) * 0.01
    lags = np.full(times.size, 1.0)
    if spike_at_s is not None:
        lags[int(round(spike_at_s / 0.01)) - 1] = 45.0
    return LagWindow(lags, times)


def test_assess_marks_only_the_turn_whose_edges_saw_the_stall() -> None:
    turns = _turns()
    # A 45 ms stall ending 6.2 s into the call: between the persona's end (6.0 s)
    # and the agent's reply (6.4 s) of the second exchange.
    health = assess(turns, _lags(6.2), connected_at=100.0, cpu_percent=12.34, bound_ms=20)
    assert [t.degraded for t in turns] == [False, False, False, False, True]
    assert health.degraded and health.degraded_turns == 1
    assert health.loop_lag_ms_max == 45.0
    assert health.cpu_percent == 12.3
    assert "1 turn(s)" in (health.degraded_reason or "")


def test_assess_counts_a_stall_reported_after_the_window() -> None:
    # A sample is taken when the stall ends: 900 ms reported 4.5 s into the call
    # covered 3.59-4.5 s, so it overlaps the first exchange (2.75-3.65 s with the
    # margins) though it was reported after it, and not the second (5.75-6.65 s).
    turns = _turns()
    lag = LagWindow(np.array([900.0]), np.array([104.5]))
    health = assess(turns, lag, connected_at=100.0, cpu_percent=None)
    assert [t.degraded for t in turns] == [False, False, True, False, False]
    assert health.degraded_turns == 1


def test_a_quiet_loop_degrades_nothing() -> None:
    turns = _turns()
    health = assess(turns, _lags(None), connected_at=100.0, cpu_percent=5.0)
    assert not health.degraded and health.degraded_turns == 0
    assert health.degraded_reason is None
    assert not any(t.degraded for t in turns)
    assert health.loop_lag_ms_p99 == 1.0


def test_on_sip_only_a_stall_around_the_persona_end_or_dropped_audio_degrades() -> None:
    # Second exchange: persona end 6.0 s, agent onset 6.4 s; margins 250 ms.  A 45 ms
    # stall at 6.35 s delays only arrivals, which SIP stamps in the kernel: the
    # loop-stamped channels degrade the turn, SIP does not.
    turns = _turns()
    media = assess(turns, _lags(6.35), connected_at=100.0, cpu_percent=None)
    assert [t.degraded for t in turns] == [False, False, False, False, True]
    assert media.degraded_turns == 1
    turns = _turns()
    health = assess(turns, _lags(6.35), connected_at=100.0, cpu_percent=None, kernel_stamped=True)
    assert not health.degraded and health.kernel_stamped
    assert not any(t.degraded for t in turns)
    # A stall at 6.2 s, as the persona's last frames leave: they left late, and the
    # recording lays them on schedule, so SIP's measurement is off too.
    turns = _turns()
    sent_late = assess(turns, _lags(6.2), connected_at=100.0, cpu_percent=None, kernel_stamped=True)
    assert [t.degraded for t in turns] == [False, False, False, False, True]
    assert "persona audio left" in (sent_late.degraded_reason or "")
    # Audio the playout dropped inside a turn's window degrades that turn.
    turns = _turns()
    dropped = assess(
        turns,
        _lags(None),
        connected_at=100.0,
        cpu_percent=None,
        kernel_stamped=True,
        drops=[(103.2, 0.06)],  # inside the first exchange (2.75-3.65 s)
    )
    assert [t.degraded for t in turns] == [False, False, True, False, False]
    assert dropped.audio_dropped_ms == 60.0
    assert "dropped as stale" in (dropped.degraded_reason or "")
