"""The persona's outgoing audio, waiting for the line: a buffer drained frame by frame.

Stage: inside every ``Call``, between the persona bot and the channel's sender.
The bot writes PCM of any length (``Call.send_audio``); the channel's 20 ms
clock takes exactly one frame at a time (``next_frame``), silence when nothing
waits, as a phone line carries.  ``drain`` and ``room`` pace a writer in real time.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field

__all__ = ["OutgoingAudio"]


@dataclass
class OutgoingAudio:
    """The persona's outgoing audio, drained one frame at a time by the channel's clock.

    Channels call ``next_frame`` on their own 20 ms clock; an empty buffer yields
    silence, as a phone line does.  ``write`` returns at once; ``drain`` waits
    until what was written has been sent, which paces writers in real time.
    """

    frame_bytes: int
    high_water_frames: int = 3
    _chunks: deque[bytes] = field(default_factory=deque)
    _buffered: int = 0
    _drained: asyncio.Event = field(default_factory=asyncio.Event)
    _room: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self._drained.set()
        self._room.set()

    @property
    def has_room(self) -> bool:
        return self._buffered <= self.high_water_frames * self.frame_bytes

    @property
    def buffered_bytes(self) -> int:
        """Bytes written and not yet sent."""
        return self._buffered

    def write(self, pcm: bytes) -> None:
        if not pcm:
            return
        self._chunks.append(pcm)
        self._buffered += len(pcm)
        self._drained.clear()
        if not self.has_room:
            self._room.clear()

    def clear(self) -> None:
        """Drop everything not yet sent (barge-in)."""
        self._chunks.clear()
        self._buffered = 0
        self._drained.set()
        self._room.set()

    def trim(self, keep_bytes: int) -> None:
        """Drop the oldest audio until at most ``keep_bytes`` wait (a bridge that lags)."""
        while self._chunks and self._buffered > keep_bytes:
            excess = self._buffered - keep_bytes
            chunk = self._chunks[0]
            if len(chunk) <= excess:
                self._chunks.popleft()
                self._buffered -= len(chunk)
            else:
                self._chunks[0] = chunk[excess:]
                self._buffered -= excess
        if not self._chunks:
            self._buffered = 0
            self._drained.set()
        if self.has_room:
            self._room.set()

    async def drain(self) -> None:
        await self._drained.wait()

    async def room(self) -> None:
        await self._room.wait()

    def next_frame(self) -> bytes:
        """Return exactly ``frame_bytes`` of audio, padded with silence."""
        out = bytearray()
        while self._chunks and len(out) < self.frame_bytes:
            chunk = self._chunks[0]
            need = self.frame_bytes - len(out)
            if len(chunk) <= need:
                out += self._chunks.popleft()
            else:
                out += chunk[:need]
                self._chunks[0] = chunk[need:]
        self._buffered -= len(out)
        if not self._chunks:
            self._buffered = 0
            self._drained.set()
        if self.has_room:
            self._room.set()
        if len(out) < self.frame_bytes:
            out += bytes(self.frame_bytes - len(out))
        return bytes(out)
