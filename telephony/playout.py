"""The far end's audio, played at real-time pace as a phone's speaker plays it.

Stage: between a channel's receive path and the call's taps and listener.  The
agent's audio comes in as it arrives (media stream messages, RTP packets, in
bursts or late); out it goes to ``deliver(pcm, t)`` in 20 ms frames, each
stamped with the time it starts to play, silence filling the gaps, and the
agent's ``mark``s echoed once the audio before them has played.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable

import numpy as np

from audio.edges import DEFAULT_THRESHOLD_DBFS, threshold_amplitude
from telephony.frame_clock import FRAME_MS

__all__ = ["ACTIVE_GAP_S", "JITTER_BACKLOG_S", "ON_TIME_S", "Playout"]

# A chunk arriving at most this much before the previous one has played is on time
# (sender jitter), not a burst ahead of real time.
ON_TIME_S = 0.010
# A gap in the sender's audio shorter than this is a hiccup mid-stream (the audio
# is late), not a pause between utterances.
ACTIVE_GAP_S = 0.060
# An adaptive playout shrinks a backlog up to this long in silence: what a real-time
# sender's jitter leaves behind (a late frame, then two at once), not a sender ahead
# of real time on purpose (a Twilio agent's burst), whose audio plays as sent.
JITTER_BACKLOG_S = 0.060
# A frame whose every sample is below the speech threshold is silence for this rule.
_SILENT_PEAK = threshold_amplitude(DEFAULT_THRESHOLD_DBFS)


class Playout:
    """Plays received audio in arrival order at real-time pace, as a phone's speaker does.

    ``deliver(pcm, t)`` gets every chunk with the time it starts to play.  A chunk
    that arrives while nothing is playing, or within ``ON_TIME_S`` of the end of
    what plays, plays at once (no jitter buffer: its time is its arrival); one that
    arrives further ahead (an agent sending faster than real time) waits its turn.
    When a stream that was flowing comes a frame or more late, silence plays in its
    stead, and the same length of audio is cut from what then arrives ahead of time
    (a jitter buffer's rule): otherwise every hiccup would delay the rest of the
    stream.  A frame late by less than that is jitter: it plays at its arrival with
    no silence put in, so the delivered stream keeps the sender's sample count,
    which the recorder's placement relies on.
    Between the agent's utterances the line plays silence, delivered in 20 ms
    frames so that listeners (the persona's VAD) see time pass.
    """

    def __init__(
        self,
        sample_rate: int,
        deliver: Callable[[bytes, float], None],
        on_mark: Callable[[str], None] | None = None,
        *,
        drop_stale: bool = False,
        adaptive: bool = False,
    ) -> None:
        self._rate = sample_rate
        # A real-time sender's burst (an RTP peer catching up after a stall) is stale:
        # with ``drop_stale`` what waits is dropped when newer audio comes, as a jitter
        # buffer drops late packets, instead of delaying everything after it.  Off for
        # Twilio agents, which legitimately send faster than real time.
        self._drop_stale = drop_stale
        # ``adaptive``: a carrier's jitter buffer between two real-time clocks (the
        # emulator's bridge).  Without it, each late frame from a real-time sender
        # shifts the line by its lateness for good (the frames after it queue behind),
        # so the delay only ratchets up: 25-50 ms per direction measured on one call.
        # With it, a small backlog is cut from silent frames that arrive at real-time
        # pace, as adaptive jitter buffers shrink their delay between words.
        self._adaptive = adaptive
        self._last_arrival: float | None = None
        self.shrunk_s = 0.0  # silence cut to shrink a backlog (not audio lost)
        self._played_until: float | None = None  # end of the audio already delivered
        self._sink = deliver
        self._on_mark = on_mark
        self._queue: deque[tuple[float, bytes]] = deque()
        self._marks: deque[tuple[float, str]] = deque()
        self._cursor: float | None = None  # end of everything delivered or queued
        self._last_voice: float | None = None  # end of the sender's latest audio
        self._late_debt = 0.0  # silence played in the sender's stead, mid-stream
        self.dropped_s = 0.0
        # (when, seconds) of every drop: a recording misses that audio there.
        self.drops: list[tuple[float, float]] = []
        self._wake = asyncio.Event()
        self._frame_s = FRAME_MS / 1000.0

    def begin(self, now: float | None = None) -> None:
        """The line is open: from ``now`` on, time passes on it (as silence until audio comes)."""
        if self._cursor is None:
            self._cursor = time.monotonic() if now is None else now

    def _seconds(self, pcm: bytes) -> float:
        return len(pcm) / 2 / self._rate

    def _deliver(self, pcm: bytes, t: float) -> None:
        self._played_until = t + self._seconds(pcm)
        self._sink(pcm, t)

    def _fill_silence(self, until: float) -> None:
        """Deliver silence from the cursor up to ``until`` (nothing queued in between)."""
        if self._cursor is None:
            self._cursor = until
            return
        gap = int(round((until - self._cursor) * self._rate))
        if gap > 0:
            self._deliver(bytes(2 * gap), self._cursor)
            self._cursor += gap / self._rate

    def push(self, pcm: bytes, now: float | None = None) -> None:
        """Audio from the agent, split into 20 ms frames that play one after another."""
        now = time.monotonic() if now is None else now
        step = 2 * self._rate * FRAME_MS // 1000
        # Paced: this chunk came at least half a frame after the previous one, as a
        # real-time sender's do; the frames of one chunk, or of a burst, are not.
        paced = self._last_arrival is not None and now - self._last_arrival >= self._frame_s / 2
        self._last_arrival = now
        for i in range(0, len(pcm), step):
            self._push_frame(pcm[i : i + step], now, paced=paced and i == 0)

    def _push_frame(self, pcm: bytes, now: float, *, paced: bool = False) -> None:
        jitter = False
        if not self._queue and self._last_voice is not None and now > self._last_voice:
            # The sender resumes after a gap: a short one was a hiccup mid-stream, whose
            # silence stood in for audio now late; a longer one was a pause.
            gap = now - self._last_voice
            if gap >= ACTIVE_GAP_S:
                self._late_debt = 0.0
            elif self._cursor is not None and self._cursor <= self._last_voice:
                # Later than the audio before it, but before the line played a frame of
                # silence (``step``): sender jitter.  It plays at its arrival with no
                # silence put in front, so the stream keeps the sender's sample count.
                # (Silence put in here and never taken back made every later chunk look
                # that much less delayed than it was, and the recorder, which anchors a
                # stream on its least-delayed chunks, laid the earlier ones, a reply's
                # onset among them, early: twilio-ws oracle turns read up to 7 ms short.)
                jitter = True
            else:
                self._late_debt += gap
        cursor = self._cursor
        early = cursor is not None and now < cursor - ON_TIME_S
        if early and self._drop_stale:
            # What waits is older than this frame: drop it and play from now on.
            stale = sum(self._seconds(queued) for _, queued in self._queue)
            if stale:
                self.dropped_s += stale
                self.drops.append((now, stale))
            self._queue.clear()
            cursor = self._cursor = max(now, self._played_until or now)
            early = now < cursor - ON_TIME_S
        if early and self._late_debt > 0:
            # Silence already stood in for this much of the stream: as much audio is
            # cut (as a jitter buffer drops late packets), so a hiccup does not delay
            # the rest of a continuous stream.
            cut = min(len(pcm) // 2, int(round(self._late_debt * self._rate)))
            self._late_debt = max(0.0, self._late_debt - cut / self._rate)
            self.dropped_s += cut / self._rate
            if cut:
                self.drops.append((now, cut / self._rate))
            pcm = pcm[2 * cut :]
            if not pcm:
                return
        if early and paced and self._adaptive and cursor is not None:
            pcm = self._shrink(pcm, cursor - now)
            if not pcm:
                return
        if not self._queue and not early:
            # On time (within the sender's jitter): it plays as it arrives, stamped with
            # its arrival, so the recorder can take jitter out of the stream's timing.
            if not jitter:
                self._fill_silence(now)
            self._deliver(pcm, now)
            self._cursor = max(cursor if cursor is not None else now, now) + self._seconds(pcm)
            self._last_voice = self._cursor
            return
        # The agent is ahead of real time (a burst): this frame waits its turn.
        start = cursor if cursor is not None else now
        self._queue.append((start, pcm))
        self._cursor = start + self._seconds(pcm)
        self._last_voice = self._cursor
        self._wake.set()

    def _shrink(self, pcm: bytes, backlog: float) -> bytes:
        """Cut up to ``backlog`` seconds from a silent frame (an adaptive jitter buffer)."""
        if backlog > JITTER_BACKLOG_S:
            return pcm
        samples = np.frombuffer(pcm, dtype=np.int16)
        if samples.size == 0 or int(np.abs(samples.astype(np.int32)).max()) > _SILENT_PEAK:
            return pcm
        cut = min(samples.size, int(round(backlog * self._rate)))
        self.shrunk_s += cut / self._rate
        return pcm[2 * cut :]

    def mark(self, name: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        if self._cursor is None or self._cursor <= now:
            self._echo(name)
        else:
            self._marks.append((self._cursor, name))
            self._wake.set()

    def clear(self, now: float | None = None) -> None:
        """Drop what has not played yet and echo every pending mark."""
        now = time.monotonic() if now is None else now
        self._queue.clear()
        if self._cursor is not None and self._cursor > now:
            self._cursor = now
        while self._marks:
            self._echo(self._marks.popleft()[1])

    def _echo(self, name: str) -> None:
        if self._on_mark is not None:
            self._on_mark(name)

    def step(self, now: float) -> float:
        """Deliver what is due at ``now``; return when something next falls due."""
        while self._queue and self._queue[0][0] <= now:
            start, pcm = self._queue.popleft()
            self._deliver(pcm, start)
        while self._marks and self._marks[0][0] <= now:
            self._echo(self._marks.popleft()[1])
        if not self._queue and self._cursor is not None:
            while self._cursor + self._frame_s <= now:
                self._fill_silence(self._cursor + self._frame_s)
        due = [now + self._frame_s]
        if self._queue:
            due.append(self._queue[0][0])
        if self._marks:
            due.append(self._marks[0][0])
        if self._cursor is not None and not self._queue:
            due.append(self._cursor + self._frame_s)
        return max(now, min(due))

    async def run(self) -> None:
        """Keep the line playing until cancelled."""
        while True:
            self._wake.clear()
            wake_at = self.step(time.monotonic())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(0.0, wake_at - time.monotonic()))
