"""RTP packets and the reorder buffer that puts them back in sequence (RFC 3550).

Stage: the receiving side of ``rtp.RtpSession``.  ``parse_rtp`` reads a packet's
header (CSRCs, extension and padding skipped) or rejects what is not RTP v2;
``JitterBuffer`` releases packets in sequence order, at once while nothing is
out of order, and counts what was lost, late, duplicated or reordered in
``RtpStats``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["MAX_DROPOUT", "JitterBuffer", "RtpPacket", "RtpStats", "parse_rtp"]

# A sequence number this far ahead of the play point is a sender that jumped, not
# a loss of thousands of packets (RFC 3550 A.1's MAX_DROPOUT).
MAX_DROPOUT = 3000

T = TypeVar("T")


@dataclass
class RtpStats:
    sent: int = 0  # RTP packets sent (audio + telephone-event)
    received: int = 0  # valid RTP packets received (all payload types)
    lost: int = 0  # sequence numbers never received (skipped by the jitter buffer / gaps)
    late: int = 0  # arrived after their slot had been played (dropped)
    duplicates: int = 0
    reordered: int = 0  # arrived out of order but in time, and were put back in order
    dtmf_sent: int = 0  # key presses sent
    dtmf_received: int = 0  # key presses received
    malformed: int = 0  # datagrams that are not RTP v2 (ignored)
    send_dropped: int = 0  # packets our own socket buffer refused (not sent)
    rejected: int = 0  # RTP from another address than the latched peer's (ignored)


@dataclass(frozen=True)
class RtpPacket:
    payload_type: int
    marker: bool
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes


def parse_rtp(data: bytes) -> RtpPacket | None:
    """An RTP v2 packet, or None for anything else (CSRCs, extension and padding skipped)."""
    if len(data) < 12:
        return None
    first, second, sequence, timestamp, ssrc = struct.unpack_from("!BBHII", data)
    if first >> 6 != 2:
        return None
    start = 12 + 4 * (first & 0x0F)
    if first & 0x10:  # header extension: 16-bit profile, 16-bit length in words
        if len(data) < start + 4:
            return None
        start += 4 + 4 * struct.unpack_from("!H", data, start + 2)[0]
    end = len(data)
    if first & 0x20:  # padding: the last byte counts the padding bytes
        if data[-1] == 0:
            return None
        end -= data[-1]
    if start > end:
        return None
    return RtpPacket(second & 0x7F, bool(second & 0x80), sequence, timestamp, ssrc, data[start:end])


def _distance(sequence: int, reference: int) -> int:
    """How far ``sequence`` is ahead of ``reference`` (negative: behind), mod 2**16."""
    return (sequence - reference + 0x8000) % 0x10000 - 0x8000


class JitterBuffer(Generic[T]):
    """Puts packets back in sequence order; holds at most ``depth`` packets behind a gap.

    ``push`` returns what can play now: an in-order packet at once, a packet
    ahead of a gap only once the gap fills or more than ``depth`` packets wait
    (the missing ones are then counted lost and skipped); ``drain`` gives up on
    the gaps at once.  A packet behind the play point is a duplicate if its slot
    played, else late (if its slot was skipped it was counted lost, and is now
    counted late instead).
    """

    def __init__(self, depth: int, stats: RtpStats) -> None:
        self._depth = depth
        self._stats = stats
        self._next: int | None = None  # the sequence number to play next
        self._held: dict[int, T] = {}
        self._played: dict[int, bool] = {}  # recent slots: received (True) or skipped

    def push(self, sequence: int, item: T) -> list[T]:
        if self._next is None:
            self._next = sequence
        ahead = _distance(sequence, self._next)
        if ahead < 0:
            if self._played.get(sequence):
                self._stats.duplicates += 1
                return []
            self._stats.late += 1
            if self._played.get(sequence) is False:
                self._stats.lost -= 1  # received after all, too late
                self._played[sequence] = True
            return []
        if sequence in self._held:
            self._stats.duplicates += 1
            return []
        released: list[T] = []
        if ahead >= MAX_DROPOUT:
            released = self.flush()
            self._next = sequence
        elif any(_distance(held, self._next) > ahead for held in self._held):
            self._stats.reordered += 1
        self._held[sequence] = item
        return released + self._release(force=False)

    @property
    def holding(self) -> bool:
        return bool(self._held)

    def drain(self) -> list[T]:
        """Everything held, in order: the gaps before them are counted lost."""
        return self._release(force=True)

    def flush(self) -> list[T]:
        """``drain``, and the next push starts a new stream."""
        released = self.drain()
        self._next = None
        self._played.clear()
        return released

    def _release(self, *, force: bool) -> list[T]:
        released: list[T] = []
        while self._held and self._next is not None:
            received = self._next in self._held
            if received:
                released.append(self._held.pop(self._next))
            elif force or len(self._held) > self._depth:
                self._stats.lost += 1
            else:
                break
            self._played[self._next] = received
            if len(self._played) > 256:
                del self._played[next(iter(self._played))]
            self._next = (self._next + 1) % 0x10000
        return released
