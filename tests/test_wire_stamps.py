"""WebRTC frames are stamped with their RTP packet's arrival, not when aiortc lets them out.

aiortc's audio jitter buffer holds each packet until four more have arrived (80 ms
of 20 ms frames), and a stalled sender holds the last four packets before the
stall there until it resumes.  The harness must place a frame at the moment its
packet reached the socket, as it does on SIP.
"""

from __future__ import annotations

import asyncio
import fractions
import socket
import statistics
import struct
import time
from typing import Any

import aioice
import av
import numpy as np
import pytest
from aiohttp import web
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from telephony import parse_target
from telephony.loopback import loopback_ice
from telephony.webrtc import WebRTCCall
from telephony.wire_stamps import WireStamps, internals_present

RATE = 16_000
FRAME = 320
STALL_AFTER = 60  # frames sent before the far end stalls
STALL_S = 0.3
FRAMES = 130


def _rtp(timestamp: int, sequence: int, payload_type: int = 111) -> bytes:
    return struct.pack("!BBHII", 0x80, payload_type, sequence, timestamp, 0x1234) + bytes(40)


# ----------------------------------------------------------------- WireStamps alone


async def test_a_packet_read_late_keeps_the_kernels_arrival_time() -> None:
    """The loop reads the socket 60 ms late: the stamp is still when the packet came."""
    connection = aioice.Connection(ice_controlling=True)
    with loopback_ice(True):
        await connection.gather_candidates()
    stamps = WireStamps()
    stamps.watch_connection(connection)
    port = connection.local_candidates[0].port
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sent_at = time.monotonic()
        sender.sendto(_rtp(1000, 1), ("127.0.0.1", port))
        # The event loop is busy (on purpose): the datagram waits in the socket.
        time.sleep(0.06)  # noqa: ASYNC251
        sender.sendto(_rtp(1960, 2), ("127.0.0.1", port))
        sender.sendto(bytes([0x80, 200]) + bytes(30), ("127.0.0.1", port))  # RTCP: not noted
        second_at = time.monotonic()
        await asyncio.sleep(0.05)
        read_by = time.monotonic()
    finally:
        sender.close()
        await connection.close()
    first, second = stamps.arrival(1000), stamps.arrival(1960)
    assert first is not None and second is not None
    assert stamps.kernel_stamped and stamps.packets == 2
    assert sent_at <= first < sent_at + 0.005  # not when the loop got to it (>= 60 ms later)
    assert second_at - 0.005 < second <= second_at
    assert read_by - first > 0.06


def test_the_table_is_bounded_and_the_first_copy_wins() -> None:
    stamps = WireStamps(capacity=4)
    for i in range(6):
        stamps.record(960 * i, float(i))
    stamps.record(960 * 5, 99.0)  # a duplicate of the last packet
    assert stamps.arrival(0) is None and stamps.arrival(960) is None
    assert [stamps.arrival(960 * i) for i in range(2, 6)] == [2.0, 3.0, 4.0, 5.0]


def test_a_frame_is_found_by_rtp_timestamp_across_the_wrap_and_counted() -> None:
    class Mapper:
        _origin = 2**32 - 960  # the stream's first RTP timestamp, just before the wrap

    class Receiver:
        _RTCRtpReceiver__timestamp_mapper = Mapper()

    stamps = WireStamps()
    stamps.record(2**32 - 960, 1.0)
    stamps.record(0, 1.02)
    stamps.record(960, 1.04)
    assert stamps.frame_arrival(0, Receiver()) == 1.0
    assert stamps.frame_arrival(1920, Receiver()) == 1.04  # aiortc unwraps: pts keeps growing
    assert stamps.frame_arrival(9600, Receiver()) is None  # not seen: the caller falls back
    assert stamps.frame_arrival(0, None) is None  # no receiver
    assert (stamps.frames_stamped, stamps.frames_unstamped) == (2, 2)


# ------------------------------------------------------- a real call through aiortc


class _StallingTrack(MediaStreamTrack):
    """20 ms frames of a quiet tone on a real-time clock, with one stall; notes each pull."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self.pulled: list[float] = []
        self._start: float | None = None
        self._n = 0
        tone = np.sin(2 * np.pi * 440 * np.arange(FRAME * 50) / RATE) * 3000
        self._tone = tone.astype(np.int16)

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live" or self._n >= FRAMES:
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        due = self._start + self._n * FRAME / RATE + (STALL_S if self._n >= STALL_AFTER else 0)
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        at = self._n % 50 * FRAME
        frame = av.AudioFrame.from_ndarray(
            self._tone[at : at + FRAME].reshape(1, -1), format="s16", layout="mono"
        )
        frame.sample_rate = RATE
        frame.pts = self._n * FRAME
        frame.time_base = fractions.Fraction(1, RATE)
        self._n += 1
        self.pulled.append(time.monotonic())
        return frame


class _Tap:
    def __init__(self) -> None:
        self.received: list[tuple[float, float]] = []  # (stamp, when the tap was called)

    def on_sent(self, t: float, pcm: bytes) -> None:
        pass

    def on_received(self, t: float, pcm: bytes) -> None:
        self.received.append((t, time.monotonic()))


@pytest.fixture
async def stalling_peer(http_stub: Any) -> Any:
    """A plain aiortc answerer on 127.0.0.1 that sends ``_StallingTrack``."""
    track = _StallingTrack()
    pcs: list[RTCPeerConnection] = []

    async def offer(request: web.Request) -> web.Response:
        body = await request.json()
        pc = RTCPeerConnection()
        pcs.append(pc)
        pc.addTrack(track)
        with loopback_ice(True):
            await pc.setRemoteDescription(RTCSessionDescription(sdp=body["sdp"], type="offer"))
            await pc.setLocalDescription(await pc.createAnswer())
        return web.json_response({"sdp": pc.localDescription.sdp, "type": "answer"})

    address = await http_stub("POST", "/api/offer", offer)
    yield f"webrtc://{address}/api/offer", track
    for pc in pcs:
        await pc.close()


async def test_frames_carry_their_packets_arrival_through_the_jitter_buffer(
    stalling_peer: Any,
) -> None:
    target, track = stalling_peer
    call = WebRTCCall(parse_target(target))
    tap = _Tap()
    call.add_tap(tap)
    events: list[tuple[str, str]] = []
    call.on_event = lambda kind, detail: events.append((kind, detail))
    await call.connect(timeout=10)
    try:
        while len(track.pulled) < FRAMES and call.state == "connected":  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)
    finally:
        await call.hangup()
    assert len(track.pulled) == FRAMES, "the far end stopped early"
    stall_from, stall_to = track.pulled[STALL_AFTER - 1], track.pulled[STALL_AFTER]
    assert stall_to - stall_from > STALL_S - 0.02

    # Steady state: a frame leaves aiortc's jitter buffer ~80 ms after its packet
    # arrived; the stamp is the arrival, not that.
    steady = [seen - t for t, seen in tap.received[10 : STALL_AFTER - 10]]
    assert statistics.median(steady) > 0.05, steady

    # Across the stall: the packets that came before it sat in the jitter buffer until
    # the far end resumed, and still carry their arrival from before the stall.
    held = [(t, seen) for t, seen in tap.received if t <= stall_from + 0.01 and seen > stall_to]
    assert len(held) >= 3, tap.received[STALL_AFTER - 8 : STALL_AFTER + 2]
    # Every frame found its packet, each packet with the kernel's receive time.
    stamps = call.wire_stamps
    assert stamps.problem is None and stamps.frames_unstamped == 0, stamps.summary()
    assert stamps.kernel_stamped and stamps.frames_stamped >= FRAMES - 10
    assert not events
    # A stamp is its own packet's arrival: as many frames are stamped before the
    # stall as packets reached the socket before it (the match is on RTP timestamps).
    packets_before = sum(1 for t in stamps.arrivals().values() if t <= stall_from + 0.01)
    frames_before = sum(1 for t, _ in tap.received if t <= stall_from + 0.01)
    assert frames_before == packets_before
    # And the stream's clock is the wire's: stamps before the stall are 20 ms apart.
    before = [t for t, _ in tap.received if t <= stall_from + 0.01]
    gaps = np.diff(before[5:])
    assert abs(float(np.median(gaps)) - 0.02) < 0.002


# ------------------------------------------------- aiortc internals this relies on


async def test_aiortc_internals_used_for_wire_stamps_are_there() -> None:
    """Fails loudly when an aiortc/aioice upgrade moves what ``wire_stamps`` reads.

    Pinned: aiortc 1.16.0, aioice 0.13.0.  If this fails, re-read aiortc's
    ``RTCRtpReceiver`` (``__timestamp_mapper``), ``RTCIceGatherer._connection`` and
    aioice's ``Connection._protocols`` / ``StunProtocol.datagram_received``.
    """
    import aiortc

    assert aiortc.__version__ == "1.16.0"
    assert aioice.__version__ == "0.13.0"
    pc = RTCPeerConnection()
    try:
        pc.addTransceiver("audio")
        with loopback_ice(True):
            await pc.setLocalDescription(await pc.createOffer())
        assert internals_present(pc) is None
        stamps = WireStamps()
        assert stamps.watch(pc), stamps.problem
        connection = pc.getTransceivers()[0].receiver.transport.transport.iceGatherer._connection
        assert connection._protocols, "no sockets after gathering"
        for protocol in connection._protocols:
            assert isinstance(protocol, aioice.ice.StunProtocol)
            assert "datagram_received" in vars(protocol)  # wrapped on the instance only
        assert "datagram_received" not in vars(aioice.ice.StunProtocol) or (
            aioice.ice.StunProtocol.datagram_received.__qualname__
            == "StunProtocol.datagram_received"
        )
        mapper = pc.getTransceivers()[0].receiver._RTCRtpReceiver__timestamp_mapper
        assert mapper.map(5000) == 0 and mapper._origin == 5000
    finally:
        await pc.close()
