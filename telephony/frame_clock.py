"""A 20 ms sending clock for one stream that does not burst after a late wake-up.

Stage: under the senders that keep their own clock rather than the shared media
pump (``pump.py``): the Twilio gateway's side of a phone call's media stream,
the reference agent's SIP line.  In: the time it is now; out: when the next
frame is due (sleeping until then), re-anchored after a stall.
"""

from __future__ import annotations

import asyncio
import time

__all__ = ["FRAME_MS", "FrameClock"]

FRAME_MS = 20


class FrameClock:
    """A 20 ms sending clock that does not burst after a late wake-up of more than ``max_late_s``.

    Up to ``max_late_s`` late, the missed frames go out back to back (the stream
    keeps its timeline).  Later than that, the sender sends the frame at once and
    keeps 20 ms spacing from there (the clock re-anchors): toward a carrier, which
    plays what it receives at real-time pace, a catch-up burst would sit in its
    buffer and delay everything after it for the rest of the call.  Nothing is
    lost: the audio not yet sent leaves a little later, and the taps record when
    it really left.
    """

    def __init__(self, frame_s: float = FRAME_MS / 1000.0, max_late_s: float = 0.03) -> None:
        self._frame_s = frame_s
        self._max_late_s = max_late_s
        self._next: float | None = None

    async def tick(self) -> float:
        """Wait for the next frame's time; return the time it is sent at."""
        now = time.monotonic()
        if self._next is None:
            self._next = now
        wait = self._next - now
        if wait > 0:
            await asyncio.sleep(wait)
        elif -wait > self._max_late_s:
            self._next = now  # late: re-anchor rather than burst
        due = self._next
        self._next += self._frame_s
        return due
