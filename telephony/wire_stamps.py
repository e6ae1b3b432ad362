"""WebRTC arrival times at the wire: each RTP packet's receive time, for the frame it becomes.

aiortc hands a received audio frame to the application only after its audio
jitter buffer (``JitterBuffer(capacity=16, prefetch=4)``: a 20 ms Opus packet
leaves it when the fourth packet after it has arrived, 80 ms later in steady
state), a decoder thread and a hop back onto the event loop.  Stamping a frame
when ``track.recv()`` returns it would put all of that inside every WebRTC
latency.  SIP's RTP carries the kernel's receive time instead (``SO_TIMESTAMPNS``,
``telephony/sip/rtp.py``); ``WireStamps`` gives WebRTC the same.

**Where the stamp is taken.**  aioice reads each UDP datagram of a connection in
the event loop's read callback of its socket (asyncio's datagram transport calls
``StunProtocol.datagram_received`` right after ``recvfrom``).  ``watch`` wraps
``datagram_received`` of each socket of *one* peer connection, on those protocol
instances only (nothing in aiortc or aioice is patched for anyone else).  For
every SRTP packet (its RTP header is in the clear, RFC 3711) the wrapper notes
the packet's RTP timestamp and its arrival: the kernel's receive timestamp of
that datagram (``SIOCGSTAMPNS`` on the socket, asked right after asyncio's
``recvfrom``, so it is the stamp of this datagram; the kernel stamps it as it
enters the stack, before any queueing in the socket), moved from the wall clock
onto the monotonic one as SIP does.  So a busy event loop does not move it.
Where the kernel gives none (not Linux, or the ioctl is refused) the time the
loop reads the datagram stands in; the remaining gap is then the loop's delay in
reading the socket.  With kernel stamps there is none on this side of the wire.

**Stamping must already be on.**  Linux stamps incoming packets only while some
socket wants stamps, and when the first one asks, it turns stamping on a moment
later (a deferred job): a datagram that arrives in between has no stamp, and
``SIOCGSTAMPNS`` then answers with the time of the ask, i.e. the loop's read
time.  So the module holds one UDP socket with ``SO_TIMESTAMPNS`` set for the
life of the process, opened when it is imported, long before a call's first
packet (``tests/test_wire_stamps.py`` caught a first packet stamped 60 ms late
without it).

**From a frame back to its packet.**  aiortc's decoder gives each frame
``pts = RTP timestamp - origin`` in the codec's RTP clock (1/48000 s for Opus),
where ``origin`` is the RTP timestamp of the first frame that left the jitter
buffer (``RTCRtpReceiver``'s ``TimestampMapper``; it unwraps at 2**32, so the
RTP timestamp is ``(origin + pts) mod 2**32``).  The arrival of the frame is the
arrival of that packet (an Opus frame is one packet; duplicates keep the first
arrival), however long it then waited in the jitter buffer.  The caller resamples
the frame (48 kHz stereo to 16 kHz mono) and stamps what comes out with it: the
convention of every tap, a chunk's first sample arrives with the chunk.

The table holds the last ``capacity`` packets (1024: 20 s of 20 ms packets);
a frame whose packet is not in it (evicted, or the origin unknown) gets
``None`` and is counted in ``frames_unstamped``; the caller falls back to its
receive time and says so.

**aiortc/aioice internals used** (pinned: aiortc 1.16.0, aioice 0.13.0; checked by
``tests/test_wire_stamps.py``, which fails loudly when they change):
``RTCIceGatherer._connection`` (the aioice ``Connection``), ``Connection._protocols``
(its sockets' ``StunProtocol``s, complete once candidates are gathered, i.e.
after ``setLocalDescription``), and the receiver's ``TimestampMapper`` origin
(``RTCRtpReceiver._RTCRtpReceiver__timestamp_mapper._origin``), read only.
"""

from __future__ import annotations

import contextlib
import fcntl
import socket
import struct
import time
from collections.abc import Callable
from typing import Any

__all__ = ["WireStamps"]

SIOCGSTAMPNS = 0x8907  # Linux: the receive timestamp of the socket's last datagram
_NO_STAMP = bytes(16)
DEFAULT_CAPACITY = 1024


def _keep_stamping_on() -> socket.socket | None:
    """A socket that wants receive stamps, kept open: the kernel stamps every packet."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, getattr(socket, "SO_TIMESTAMPNS", 35), 1)
    except OSError:  # not Linux: the read time stands in anyway
        sock.close()
        return None
    return sock


_STAMPING = _keep_stamping_on()


def _mapper_origin(receiver: Any) -> int | None:
    """The RTP timestamp aiortc's decoder counts ``pts`` from (None until the first frame)."""
    mapper = getattr(receiver, "_RTCRtpReceiver__timestamp_mapper", None)
    origin = getattr(mapper, "_origin", None)
    return origin if isinstance(origin, int) else None


def internals_present(pc: Any) -> str | None:
    """None if the aiortc/aioice internals read here exist on ``pc``, else what is missing."""
    transceivers = pc.getTransceivers()
    if not transceivers:
        return "the peer connection has no transceiver"
    receiver = transceivers[0].receiver
    if not hasattr(receiver, "_RTCRtpReceiver__timestamp_mapper"):
        return "RTCRtpReceiver has no _RTCRtpReceiver__timestamp_mapper"
    if not hasattr(receiver._RTCRtpReceiver__timestamp_mapper, "_origin"):
        return "aiortc's TimestampMapper has no _origin"
    gatherer = receiver.transport.transport.iceGatherer
    connection = getattr(gatherer, "_connection", None)
    if connection is None:
        return "RTCIceGatherer has no _connection"
    if not isinstance(getattr(connection, "_protocols", None), list):
        return "aioice's Connection has no _protocols list"
    return None


class WireStamps:
    """Arrival times of one peer connection's RTP packets, keyed by RTP timestamp."""

    def __init__(
        self,
        capacity: int = DEFAULT_CAPACITY,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.capacity = capacity
        self._monotonic = monotonic
        self._wall = wall
        self._arrivals: dict[int, float] = {}
        self._watched: set[int] = set()
        # Counters: RTP packets seen (and how many the kernel stamped), frames stamped
        # from their packet, frames that fell back.
        self.packets = 0
        self.kernel_packets = 0
        self.frames_stamped = 0
        self.frames_unstamped = 0
        # Why stamping is off for this connection (None while it works).
        self.problem: str | None = None

    # ----------------------------------------------------------------- watching

    def watch(self, pc: Any) -> bool:
        """Wrap the sockets of every ICE transport of ``pc`` (after ``setLocalDescription``).

        Returns False (and sets ``problem``) if aiortc's internals are not as pinned.
        """
        problem = internals_present(pc)
        if problem is not None:
            self.problem = f"aiortc internals changed: {problem}"
            return False
        transports = [t.receiver.transport for t in pc.getTransceivers()]
        if pc.sctp is not None:
            transports.append(pc.sctp.transport)
        for dtls in transports:
            self.watch_connection(dtls.transport.iceGatherer._connection)
        return True

    def watch_connection(self, connection: Any) -> None:
        """Wrap the sockets of one aioice ``Connection`` (once each)."""
        for protocol in list(connection._protocols):
            if id(protocol) not in self._watched:
                self._watched.add(id(protocol))
                self._watch_protocol(protocol)

    def _watch_protocol(self, protocol: Any) -> None:
        try:
            sock = protocol.transport.get_extra_info("socket")
            fd = sock.fileno() if sock is not None else -1
        except Exception:  # a TURN relay's transport has no socket of its own
            fd = -1
        if fd >= 0:
            # The first ask turns the socket's receive timestamps on (it has none yet).
            with contextlib.suppress(OSError):
                fcntl.ioctl(fd, SIOCGSTAMPNS, _NO_STAMP)
        original = protocol.datagram_received

        def datagram_received(data: bytes, addr: tuple[Any, ...]) -> None:
            self.note(data, fd)
            original(data, addr)

        # An attribute of this protocol instance: asyncio's transport calls it per datagram.
        protocol.datagram_received = datagram_received

    # ------------------------------------------------------------------ packets

    def note(self, data: bytes, fd: int = -1) -> None:
        """A datagram reached socket ``fd``: if it is RTP, note its timestamp's arrival."""
        # RTP version 2, and not RTCP (packet types 192-223 in the second byte, RFC 5761).
        if len(data) < 12 or not 0x80 <= data[0] <= 0xBF or 192 <= data[1] <= 223:
            return
        self.packets += 1
        arrival = self._kernel_arrival(fd)
        if arrival is None:
            arrival = self._monotonic()
        else:
            self.kernel_packets += 1
        self.record(int.from_bytes(data[4:8], "big"), arrival)

    def record(self, rtp_timestamp: int, arrival: float) -> None:
        """Note that the packet with this RTP timestamp arrived at ``arrival`` (first one wins)."""
        arrivals = self._arrivals
        if rtp_timestamp in arrivals:
            return  # a duplicate: the first copy is when the audio arrived
        arrivals[rtp_timestamp] = arrival
        if len(arrivals) > self.capacity:
            del arrivals[next(iter(arrivals))]

    def _kernel_arrival(self, fd: int) -> float | None:
        if fd < 0:
            return None
        try:
            raw = fcntl.ioctl(fd, SIOCGSTAMPNS, _NO_STAMP)
        except OSError:
            return None
        seconds, nanoseconds = struct.unpack("qq", raw)
        if seconds <= 0:
            return None
        # The kernel stamps with the wall clock: move it onto the monotonic one.
        return self._monotonic() - (self._wall() - (seconds + nanoseconds / 1e9))

    # ------------------------------------------------------------------- frames

    def arrivals(self) -> dict[int, float]:
        """A copy of the table: RTP timestamp -> arrival (monotonic s)."""
        return dict(self._arrivals)

    def arrival(self, rtp_timestamp: int) -> float | None:
        """When the packet with this RTP timestamp arrived (None if not in the table)."""
        return self._arrivals.get(rtp_timestamp & 0xFFFFFFFF)

    def frame_arrival(self, pts: int | None, receiver: Any) -> float | None:
        """The arrival of the packet a decoded frame (``pts`` from aiortc) came in; counts."""
        origin = _mapper_origin(receiver)
        found = None
        if pts is not None and origin is not None:
            found = self.arrival(origin + pts)
        if found is None:
            self.frames_unstamped += 1
        else:
            self.frames_stamped += 1
        return found

    @property
    def kernel_stamped(self) -> bool:
        """Every RTP packet so far carried the kernel's receive time."""
        return self.packets > 0 and self.kernel_packets == self.packets

    def summary(self) -> str:
        source = "the kernel's receive time" if self.kernel_stamped else "the loop's read time"
        return (
            f"{self.frames_stamped} frames stamped with their RTP packet's arrival ({source}), "
            f"{self.frames_unstamped} with aiortc's recv() time; "
            f"{self.kernel_packets}/{self.packets} packets kernel-stamped"
        )
