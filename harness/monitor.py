"""The harness's own pulse: how late its event loop runs and how busy its process is.

Stage: beside every call, not inside it.  loopcall times speech from the audio,
and the audio's timestamps are taken by this process: when its event loop runs
late, a chunk can be stamped late (a media-stream message, a WebRTC frame) or
sent late.  ``LoopMonitor`` wakes every 10 ms and records how much later than
asked it woke (the loop's scheduling delay); ``process_cpu_s`` and ``rss_mb``
sample the process.  ``harness.analysis.health`` turns these samples into the
verdict on each turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import weakref
from array import array
from dataclasses import dataclass

import numpy as np

from runtime.tasks import spawn

__all__ = ["INTERVAL_S", "LagWindow", "LoopMonitor", "loop_monitor", "process_cpu_s", "rss_mb"]

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
            self._task = spawn(self._run(), name="loop-monitor")

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
