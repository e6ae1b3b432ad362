"""One 20 ms clock for the media of every call in the process.

Stage: under the channels.  A phone line sends a frame every 20 ms; a task per
call that sleeps until its next frame costs a task wake-up, a timer and a future
per frame, which at a hundred calls is most of the harness's CPU.  The pump is
one task per event loop: each tick it calls every registered handler with the
tick's due time, and the handlers (a SIP call's sender, a media stream's playout)
do their frame's work synchronously.

The pump also knows how late it runs: every tick's lateness (its wake-up minus
its due time) is the scheduling delay of the audio path itself.  Listeners added
with ``on_lateness`` receive it (the harness's health monitor records it).  Like
``FrameClock``, a tick that comes much later than due re-anchors the clock rather
than bursting: the handlers see the real time and send once.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Callable

from loguru import logger

__all__ = ["FRAME_S", "MediaPump", "media_pump"]

FRAME_S = 0.020
# Later than this, the clock re-anchors instead of running the missed ticks back to back.
MAX_LATE_S = 0.200

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
            self._task = asyncio.get_running_loop().create_task(self._run(), name="media-pump")
        return self._next_id

    def remove(self, handle: int) -> None:
        self._handlers.pop(handle, None)

    def on_lateness(self, listener: Callable[[float, float], None]) -> None:
        """``listener(due, late_s)`` after every tick (the health monitor's feed)."""
        self._lateness_listeners.append(listener)

    def off_lateness(self, listener: Callable[[float, float], None]) -> None:
        if listener in self._lateness_listeners:
            self._lateness_listeners.remove(listener)

    @property
    def handlers(self) -> int:
        return len(self._handlers)

    async def _run(self) -> None:
        due = time.monotonic()
        while self._handlers:
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            now = time.monotonic()
            late = now - due
            if late > MAX_LATE_S:
                due = now  # a stall: re-anchor, do not burst
            self.ticks += 1
            for handler in list(self._handlers.values()):
                try:
                    handler(due)
                except Exception:  # one call's bug must not stop every call's media
                    logger.exception("media pump: a tick handler failed")
            for listener in self._lateness_listeners:
                listener(due, late)
            due += self._frame_s
        self._task = None


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
