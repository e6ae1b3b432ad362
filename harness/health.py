"""The harness's own health: how late its event loop runs and how busy its process is.

Stage: beside every call, not inside it.  loopcall times speech from the audio,
and the audio's timestamps are taken by this process: when its event loop runs
late, a chunk can be stamped late (a media-stream message, a WebRTC frame) or
sent late, so a latency measured while the loop was starved may be the harness's
delay rather than the agent's.  ``LoopMonitor`` wakes every 10 ms and records how
much later than asked it woke (the loop's scheduling delay), and samples the
process's CPU time.  ``assess`` then marks every agent turn whose edges crossed
the wire while the delay exceeded the bound as *degraded*: it is kept, shown and
stored, but reported apart from the agent's latency.

SIP stamps arriving packets with the kernel's receive time, so there the loop's
delay does not move the agent's onset.  It still moves the persona's end: the
media pump sends a late tick's frame late and then catches up, while the
recorder lays the sent stream on its least-delayed frames (the schedule), so
the persona's last words are recorded up to the loop's delay earlier than they
left, and the latency reads that much long (measured against SIPp's RTP echo:
a 15 ms hog gave echoes up to 15 ms "late").  So on SIP a turn is degraded when
the loop ran late around the persona's end, or when the playout dropped agent
audio (which the recording then misses).  On the other channels (media
streams, WebRTC) an arrival is also stamped when the loop reads it, so the whole
turn's window counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import weakref
from array import array
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from harness.models import HarnessHealth, Turn

__all__ = [
    "DEFAULT_LAG_BOUND_MS",
    "EDGE_MARGIN_MS",
    "LoopMonitor",
    "assess",
    "loop_monitor",
    "process_cpu_s",
    "rss_mb",
]

DEFAULT_LAG_BOUND_MS = 20.0
# A turn's latency depends on the chunks around the two edges it joins.
EDGE_MARGIN_MS = 250.0
INTERVAL_S = 0.010
KEEP_S = 6 * 3600.0
MAX_STALL_S = 5.0


def process_cpu_s() -> float:
    """CPU seconds this process has used (all threads, user and system)."""
    times = os.times()
    return times.user + times.system


def rss_mb() -> float:
    """Resident memory of this process, in MiB (Linux; 0 where /proc is missing)."""
    try:
        with open("/proc/self/statm") as fh:
            pages = int(fh.read().split()[1])
    except (OSError, ValueError, IndexError):
        return 0.0
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


@dataclass(frozen=True)
class LagWindow:
    """The loop's scheduling delays: sample ``i`` was taken at ``times[i]`` (monotonic s)
    after a sleep of ``interval_s`` that overran by ``lags_ms[i]``, so it covers the
    stretch ``[times[i] - interval_s - lags_ms[i] / 1000, times[i]]``."""

    lags_ms: np.ndarray
    times: np.ndarray
    interval_s: float = INTERVAL_S

    def between(self, t0: float, t1: float) -> LagWindow:
        """The samples whose stretch overlaps ``[t0, t1]``."""
        starts = self.times - self.interval_s - self.lags_ms / 1000.0
        keep = (self.times >= t0) & (starts <= t1)
        return LagWindow(self.lags_ms[keep], self.times[keep], self.interval_s)

    def percentile(self, q: float) -> float | None:
        return float(np.percentile(self.lags_ms, q)) if self.lags_ms.size else None

    @property
    def max(self) -> float | None:
        return float(self.lags_ms.max()) if self.lags_ms.size else None


class LoopMonitor:
    """Records the event loop's scheduling delay every 10 ms while anyone needs it.

    ``acquire()``/``release()`` bracket each user (a run, a bench); the sampler runs
    while there is at least one.  Samples are kept for ``keep_s`` seconds.
    """

    def __init__(self, *, interval_s: float = INTERVAL_S, keep_s: float = KEEP_S) -> None:
        self.interval_s = interval_s
        self._max_samples = int(keep_s / interval_s)
        self._times = array("d")
        self._lags = array("d")
        self._users = 0
        self._task: asyncio.Task[None] | None = None
        self._sampled = asyncio.Condition()
        self.samples = 0

    def acquire(self) -> None:
        self._users += 1
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="loop-monitor")

    async def release(self) -> None:
        self._users = max(0, self._users - 1)
        if self._users == 0 and self._task is not None:
            task, self._task = self._task, None
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def _run(self) -> None:
        interval = self.interval_s
        while True:
            asked = time.monotonic()
            await asyncio.sleep(interval)
            now = time.monotonic()
            self._record(now, max(0.0, (now - asked - interval) * 1000.0))
            async with self._sampled:
                self._sampled.notify_all()

    async def wait_samples(self, n: int) -> None:
        """Return once ``n`` more samples have been taken (the monitor must be running)."""
        target = self.samples + n
        async with self._sampled:
            await self._sampled.wait_for(lambda: self.samples >= target)

    def _record(self, t: float, lag_ms: float) -> None:
        self.samples += 1
        self._times.append(t)
        self._lags.append(lag_ms)
        if len(self._times) > self._max_samples * 2:
            del self._times[: self._max_samples]
            del self._lags[: self._max_samples]

    def window(self, t0: float, t1: float) -> LagWindow:
        """The samples whose stretch overlaps ``[t0, t1]`` (monotonic seconds)."""
        times = np.frombuffer(self._times, dtype=np.float64)
        lags = np.frombuffer(self._lags, dtype=np.float64)
        lo = int(np.searchsorted(times, t0, side="left"))
        # A sample taken after t1 may still cover part of the window (a long stall).
        hi = int(np.searchsorted(times, t1 + MAX_STALL_S, side="right"))
        return LagWindow(lags[lo:hi].copy(), times[lo:hi].copy(), self.interval_s).between(t0, t1)


_monitors: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LoopMonitor] = (
    weakref.WeakKeyDictionary()
)


def loop_monitor() -> LoopMonitor:
    """The running event loop's monitor (made on first use)."""
    loop = asyncio.get_running_loop()
    monitor = _monitors.get(loop)
    if monitor is None:
        monitor = _monitors[loop] = LoopMonitor()
    return monitor


def assess(
    turns: Sequence[Turn],
    lag: LagWindow,
    *,
    connected_at: float,
    cpu_percent: float | None,
    bound_ms: float = DEFAULT_LAG_BOUND_MS,
    margin_ms: float = EDGE_MARGIN_MS,
    kernel_stamped: bool = False,
    drops: Sequence[tuple[float, float]] = (),
) -> HarnessHealth:
    """Mark the agent turns whose measurement the harness cannot vouch for.

    An agent turn's latency joins the end of the persona turn before it to its
    own onset; its window runs from ``margin_ms`` before that end to ``margin_ms``
    after that onset.  The turn is degraded when

    - the event loop ran later than ``bound_ms`` within ``margin_ms`` of the
      persona's end (its last frames left late), or anywhere in the window when
      the channel's arrival times are stamped by the loop (not
      ``kernel_stamped``: an arrival may be stamped that much late); or
    - the playout dropped agent audio as stale within the window (``drops``:
      (when, seconds)): the recording misses audio there, so an edge may be
      misplaced.

    Sets ``turn.degraded`` and returns the run's health summary.
    """
    degraded = late_turns = dropped_turns = 0
    previous: Turn | None = None
    for turn in turns:
        if turn.role == "agent" and turn.latency_ms is not None and previous is not None:
            t0 = connected_at + (previous.end_ms - margin_ms) / 1000.0
            t1 = connected_at + (turn.start_ms + margin_ms) / 1000.0
            # With kernel-stamped arrivals only the persona's sending is on the loop's clock.
            sent_by = connected_at + (previous.end_ms + margin_ms) / 1000.0
            worst = lag.between(t0, min(t1, sent_by) if kernel_stamped else t1).max
            late = worst is not None and worst > bound_ms
            dropped = any(t0 <= when <= t1 for when, _ in drops)
            turn.degraded = late or dropped
            degraded += turn.degraded
            late_turns += late
            dropped_turns += dropped
        previous = turn
    p99 = lag.percentile(99)
    reasons = []
    if late_turns:
        what = "whose persona audio left" if kernel_stamped else "measured"
        reasons.append(
            f"{late_turns} turn(s) {what} while the harness's event loop ran more than "
            f"{bound_ms:g} ms late"
        )
    if dropped_turns:
        reasons.append(f"{dropped_turns} turn(s) with agent audio dropped as stale")
    if p99 is not None and p99 > bound_ms:
        reasons.append(f"loop delay p99 {p99:.1f} ms over the {bound_ms:g} ms bound")
    return HarnessHealth(
        cpu_percent=None if cpu_percent is None else round(cpu_percent, 1),
        loop_lag_ms_p50=_round(lag.percentile(50)),
        loop_lag_ms_p99=_round(p99),
        loop_lag_ms_max=_round(lag.max),
        lag_bound_ms=bound_ms,
        audio_dropped_ms=round(sum(seconds for _, seconds in drops) * 1000.0, 1),
        kernel_stamped=kernel_stamped,
        degraded_turns=degraded,
        degraded=bool(reasons),
        degraded_reason="; ".join(reasons) or None,
    )


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)
