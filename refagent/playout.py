"""The reference agent's playout: an output tape read on the caller's stream clock.

Stage: the agent's output, after the turn taker.  The turn taker lays audio on a
``Tape`` at positions counted in *input* samples; ``TapeTrack`` is the aiortc track
the agent sends, and each 20 ms it returns the tape samples whose position is
"now" on the caller's stream clock (``StreamClock``).  So a tape sample ``s``
leaves when the caller's sample ``s`` arrives, whatever queueing the input side
had.  (pipecat's own output track plays whatever was queued at its own pace; a
burst of late input frames would then delay every later reply, which an oracle
cannot have.)
"""

from __future__ import annotations

import asyncio
import fractions
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

__all__ = ["Clip", "StreamClock", "Tape", "TapeReader", "TapeTrack"]

ANCHOR_WINDOW_FRAMES = 50
RESYNC_SAMPLES = 8  # 0.5 ms at 16 kHz


@dataclass
class StreamClock:
    """Arrival time (monotonic s) of input samples: the least-delayed recent frame fixes it."""

    sample_rate: int
    offsets: deque[float] = field(default_factory=lambda: deque(maxlen=ANCHOR_WINDOW_FRAMES))

    @property
    def ready(self) -> bool:
        return bool(self.offsets)

    def observe(self, now: float, first_sample: int) -> None:
        """A frame starting at sample ``first_sample`` arrived at ``now``.

        A frame's first sample is taken to arrive with the frame, the rest following
        at the sample rate: the convention the caller's recorder uses for what it
        sends and receives, so a round trip holds no frame-length offset.
        """
        self.offsets.append(now - first_sample / self.sample_rate)

    def time_of(self, sample: int) -> float:
        return min(self.offsets) + sample / self.sample_rate

    def sample_at(self, t: float) -> int:
        return int(round((t - min(self.offsets)) * self.sample_rate))


@dataclass
class Clip:
    """Audio laid on the tape from ``start``; ``on_onset`` fires when its voice leaves."""

    start: int
    audio: np.ndarray
    lead: int = 0
    on_onset: Callable[[float], None] | None = None
    onset_fired: bool = False

    @property
    def end(self) -> int:
        return self.start + int(self.audio.size)


class Tape:
    """Clips on a timeline of input-sample positions; reads render silence between them."""

    def __init__(self) -> None:
        self._clips: list[Clip] = []
        self.end = 0
        self.read_position = 0

    def lay(self, clip: Clip) -> Clip:
        self._clips.append(clip)
        self.end = max(self.end, clip.end)
        return clip

    def advance(self, position: int) -> None:
        """Nothing plays before ``position``: move the read position there, forget past clips."""
        if self._clips and any(c.end <= position for c in self._clips):
            self._clips = [c for c in self._clips if c.end > position]
        self.read_position = position

    def is_silent(self, first: int, last: int) -> bool:
        return not any(c.start < last and c.end > first for c in self._clips)

    def read(self, first: int, length: int, now: float, sample_rate: int) -> np.ndarray:
        """Samples [first, first + length), which start leaving at ``now``."""
        out = np.zeros(length, dtype=np.int16)
        last = first + length
        for clip in list(self._clips):
            if clip.end <= first:
                self._clips.remove(clip)
                continue
            if clip.start >= last:
                continue
            lo, hi = max(first, clip.start), min(last, clip.end)
            out[lo - first : hi - first] = clip.audio[lo - clip.start : hi - clip.start]
            onset = clip.start + clip.lead
            if not clip.onset_fired and first <= onset < last:
                clip.onset_fired = True
                if clip.on_onset is not None:
                    clip.on_onset(now + (onset - first) / sample_rate)
        self.read_position = last
        return out


class TapeReader:
    """Reads a ``Tape`` frame by frame, each frame at the tape position "now" on the stream clock.

    A frame due to leave at ``due`` starts at the caller's sample arriving at
    ``due``.  The position then advances a frame at a time, and only jumps to the
    clock's new estimate while nothing is playing, so a reply is never cut.
    """

    def __init__(self, tape: Tape, clock: StreamClock, frame_samples: int = 320) -> None:
        self.tape = tape
        self.clock = clock
        self.frame = frame_samples
        self._position: int | None = None
        self._silence = np.zeros(frame_samples, dtype=np.int16)
        self._silence.setflags(write=False)

    def read(self, due: float, sent_at: float | None = None) -> tuple[np.ndarray, bool]:
        """The frame leaving at ``due``, and whether any clip overlaps it (read-only when not).

        ``sent_at``: when the frame really leaves (a late sender's tick), for the clips'
        onset times; the tape position is always the one due at ``due``.
        """
        if not self.clock.ready:
            return self._silence, False
        target = self.clock.sample_at(due)
        if self._position is None:
            self._position = target
        elif abs(target - self._position) > RESYNC_SAMPLES and self.tape.is_silent(
            min(target, self._position), max(target, self._position) + self.frame
        ):
            # The stream clock's estimate moved: catch up while nothing is playing.
            self._position = target
        first = self._position
        self._position += self.frame
        if self.tape.is_silent(first, first + self.frame):
            self.tape.advance(first + self.frame)
            return self._silence, False
        now = due if sent_at is None else sent_at
        return self.tape.read(first, self.frame, now, self.clock.sample_rate), True


class TapeTrack(MediaStreamTrack):
    """aiortc audio track that plays a ``Tape`` on the caller's stream clock."""

    kind = "audio"

    def __init__(self, tape: Tape, clock: StreamClock, frame_samples: int = 320) -> None:
        super().__init__()
        self._reader = TapeReader(tape, clock, frame_samples)
        self._rate = clock.sample_rate
        self._frame = frame_samples
        self._start: float | None = None
        self._pts = 0

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        # When this frame is due to leave; a late wake-up does not move it (the
        # next frames follow at once), so lateness never shifts the tape.
        due = self._start + self._pts / self._rate
        wait = due - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        samples, _ = self._reader.read(due)
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = self._rate
        frame.pts = self._pts
        frame.time_base = fractions.Fraction(1, self._rate)
        self._pts += self._frame
        return frame
