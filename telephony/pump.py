"""One 20 ms clock for the media of every call in the process.

Stage: under the channels.  A phone line sends a frame every 20 ms; a task per
call that sleeps until its next frame costs a task wake-up, a timer and a future
per frame, which at a hundred calls is most of the harness's CPU.  The pump is
one task per event loop: each tick it calls every registered handler with the
tick's due time, and the handlers (a SIP call's sender, a media stream's
playout) do their frame's work synchronously.

All calls' frames leave in one burst per tick (a burst is cheaper than spreading
them: the far end reads many packets per wake-up).  The order rotates from tick
to tick, so that no call always waits behind all the others: the stream clocks
on both ends anchor on each stream's least-delayed frames, and with the
rotation every call has some near the front of a burst (a fixed order would
stamp the last call's frames a few ms late every time, a bias on media streams,
whose arrival is stamped by the event loop).

The pump also knows how late it runs: every tick's lateness (its wake-up minus
its due time) is the scheduling delay of the audio path itself, given to the
listeners added with ``on_lateness``.  Like ``FrameClock``, a tick that comes
much later than due re-anchors the clock rather than bursting.
"""

from __future__ import annotations

import asyncio
import math
import time
import weakref
from collections.abc import Callable

from loguru import logger

from runtime.tasks import spawn

__all__ = ["FRAME_S", "MediaPump", "media_pump"]

FRAME_S = 0.020
# Later than this, the clock re-anchors instead of running the missed ticks back to back.
MAX_LATE_S = 0.200
# Every call comes first in a burst at least once in this many ticks (half the
# 50-frame window the stream clocks anchor on).
ROTATION_TICKS = 25

TickHandler = Callable[[float], None]


class MediaPump:
    """Calls every handler once per 20 ms tick, in one task, while any is registered."""

    def __init__(self, frame_s: float = FRAME_S) -> None:
        self._frame_s = frame_s
        self._handlers: dict[int, TickHandler] = {}
        self._next_id = 0
        self._task: asyncio.Task[None] | None = None
        self._lateness_listeners: list[Callable[[float, float], None]] = []
        self.ticks = 0

    def add(self, handler: TickHandler) -> int:
        """Call ``handler(due)`` every tick from the next one on; returns its handle."""
        self._next_id += 1
        self._handlers[self._next_id] = handler
        if self._task is None or self._task.done():
            self._task = spawn(self._run(), name="media-pump")
        return self._next_id

    def remove(self, handle: int) -> None:
        self._handlers.pop(handle, None)

    def on_lateness(self, listener: Callable[[float, float], None]) -> None:
        """``listener(due, late_s)`` after every tick (a health monitor's feed)."""
        self._lateness_listeners.append(listener)

    def off_lateness(self, listener: Callable[[float, float], None]) -> None:
        if listener in self._lateness_listeners:
            self._lateness_listeners.remove(listener)

    @property
    def handlers(self) -> int:
        return len(self._handlers)

    def order(self) -> list[TickHandler]:
        """This tick's handlers: the registration order, rotated by the tick count."""
        handlers = list(self._handlers.values())
        if len(handlers) < 2:
            return handlers
        step = math.ceil(len(handlers) / ROTATION_TICKS)
        start = (self.ticks * step) % len(handlers)
        return handlers[start:] + handlers[:start]

    async def _run(self) -> None:
        due = time.monotonic()
        while self._handlers:
            # Always yield, even when late: a tick that takes as long as the period
            # would otherwise run tick after tick and starve every other task.
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            now = time.monotonic()
            late = now - due
            if late > MAX_LATE_S:
                due = now  # a stall: re-anchor, do not burst
            self._tick(due)
            self.ticks += 1
            for listener in self._lateness_listeners:
                listener(due, late)
            due += self._frame_s
        self._task = None

    def _tick(self, due: float) -> None:
        # Its own frame: no handler (and the call behind it) stays referenced between
        # ticks once it has been removed.
        for handler in self.order():
            try:
                handler(due)
            except Exception:  # one call's bug must not stop every call's media
                logger.exception("media pump: a tick handler failed")


_pumps: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, MediaPump] = (
    weakref.WeakKeyDictionary()
)


def media_pump() -> MediaPump:
    """The running event loop's pump (made on first use)."""
    loop = asyncio.get_running_loop()
    pump = _pumps.get(loop)
    if pump is None:
        pump = _pumps[loop] = MediaPump()
    return pump
