"""RTP sessions on real UDP sockets on 127.0.0.1: two sessions talking, or one against a raw socket.

The raw socket plays an RTP peer by hand: it sends packets built here (not by the
code under test) in whatever order a test needs, and captures what a session sends.
Nothing sleeps to synchronise: tests wait for what the receiver reports.
"""

from __future__ import annotations

import asyncio
import struct
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, cast

import numpy as np
import pytest

from audio.g711 import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode
from telephony.base import CallStateError
from telephony.sip.jitter import JitterBuffer, RtpStats
from telephony.sip.rtp import FRAME_BYTES, PCMA, PCMU, RtpSession

HOST = "127.0.0.1"
TIMEOUT = 5.0
DTMF_PT = 101
SILENCE = bytes(FRAME_BYTES)


def tone_frames(count: int) -> list[bytes]:
    t = np.arange(160 * count) / 8000
    pcm = (np.sin(2 * np.pi * 440 * t) * 10000).astype(np.int16).tobytes()
    return [pcm[i : i + FRAME_BYTES] for i in range(0, len(pcm), FRAME_BYTES)]


def rtp(
    seq: int,
    *,
    ts: int | None = None,
    ssrc: int = 0x1234,
    pt: int = PCMU,
    marker: bool = False,
    payload: bytes | None = None,
    version: int = 2,
) -> bytes:
    """A hand-made RTP packet; the payload defaults to ``label(seq)``."""
    ts = seq * 160 if ts is None else ts
    payload = label(seq) if payload is None else payload
    first = version << 6
    return struct.pack("!BBHII", first, (0x80 if marker else 0) | pt, seq, ts, ssrc) + payload


def label(seq: int) -> bytes:
    """A mu-law payload that tells packets apart once decoded (codes 0x10..0x4f)."""
    return bytes([0x10 + seq % 64]) * 160


def audio_of(seqs: list[int]) -> list[bytes]:
    return [ulaw_decode(label(s)) for s in seqs]


def parse(data: bytes) -> dict[str, Any]:
    """The fields of a packet a session sent (12-byte header, as it sends them)."""
    first, second, seq, ts, ssrc = struct.unpack_from("!BBHII", data)
    return {
        "version": first >> 6,
        "cc": first & 0x0F,
        "marker": bool(second & 0x80),
        "pt": second & 0x7F,
        "seq": seq,
        "ts": ts,
        "ssrc": ssrc,
        "payload": data[12:],
    }


class Sink:
    """What a session hands up: audio with arrival times, and digits; lets a test wait for them."""

    def __init__(self) -> None:
        self.audio: list[bytes] = []
        self.arrivals: list[float] = []
        self.played_at: list[float] = []
        self.digits: list[str] = []
        self._changed = asyncio.Event()

    def on_audio(self, pcm: bytes, arrival: float) -> None:
        self.audio.append(pcm)
        self.arrivals.append(arrival)
        self.played_at.append(time.monotonic())
        self._changed.set()

    def on_dtmf(self, digit: str) -> None:
        self.digits.append(digit)
        self._changed.set()

    async def until(self, predicate: Callable[[], bool]) -> None:
        async def wait() -> None:
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(wait(), TIMEOUT)


class RawPeer(asyncio.DatagramProtocol):
    """A plain UDP socket: captures datagrams, sends whatever bytes it is given."""

    def __init__(self) -> None:
        self.received: asyncio.Queue[tuple[bytes, tuple[str, int]]] = asyncio.Queue()
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.received.put_nowait((data, addr))

    @property
    def port(self) -> int:
        assert self.transport is not None
        return int(self.transport.get_extra_info("sockname")[1])

    def send(self, data: bytes, port: int) -> None:
        assert self.transport is not None
        self.transport.sendto(data, (HOST, port))

    async def recv(self) -> bytes:
        data, _addr = await asyncio.wait_for(self.received.get(), TIMEOUT)
        return data

    async def recv_many(self, count: int) -> list[dict[str, Any]]:
        return [parse(await self.recv()) for _ in range(count)]


@pytest.fixture
async def session() -> AsyncIterator[Callable[..., Any]]:
    """Factory: an open RtpSession on 127.0.0.1 and its Sink; closed after the test."""
    opened: list[RtpSession] = []

    async def make(**kwargs: Any) -> tuple[RtpSession, Sink]:
        sink = Sink()
        rtp_session = RtpSession(
            local_host=HOST, on_audio=sink.on_audio, on_dtmf=sink.on_dtmf, **kwargs
        )
        opened.append(rtp_session)
        await rtp_session.open()
        return rtp_session, sink

    yield make
    for rtp_session in opened:
        rtp_session.close()


@pytest.fixture
async def raw() -> AsyncIterator[Callable[..., Any]]:
    """Factory: a RawPeer bound to 127.0.0.1; closed after the test."""
    peers: list[RawPeer] = []

    async def make() -> RawPeer:
        loop = asyncio.get_running_loop()
        _transport, peer = await loop.create_datagram_endpoint(RawPeer, local_addr=(HOST, 0))
        peers.append(peer)
        return peer

    yield make
    for peer in peers:
        if peer.transport is not None:
            peer.transport.close()


async def pair(session: Callable[..., Any], **kwargs: Any) -> tuple[Any, Any]:
    (a, a_sink), (b, b_sink) = await session(**kwargs), await session(**kwargs)
    a.set_remote(HOST, b.local_port)
    b.set_remote(HOST, a.local_port)
    return (a, a_sink), (b, b_sink)


# ---------------------------------------------------------------------------- audio


@pytest.mark.parametrize(
    ("codec", "encode", "decode"),
    [(PCMU, ulaw_encode, ulaw_decode), (PCMA, alaw_encode, alaw_decode)],
)
async def test_two_sessions_carry_audio(session, codec, encode, decode) -> None:
    (a, _), (b, b_sink) = await pair(session, codec_pt=codec)
    frames = tone_frames(50)
    before = time.monotonic()
    for frame in frames:
        a.send_frame(frame)
    await b_sink.until(lambda: len(b_sink.audio) == 50)

    assert b"".join(b_sink.audio) == decode(encode(b"".join(frames)))
    assert a.stats.sent == b.stats.received == 50
    assert (b.stats.lost, b.stats.late, b.stats.duplicates, b.stats.malformed) == (0, 0, 0, 0)
    # Kernel timestamps moved onto the monotonic clock (a few microseconds of slack).
    assert before - 0.001 <= b_sink.arrivals[0] <= b_sink.arrivals[-1] <= time.monotonic()
    assert b.last_packet_at == b_sink.arrivals[-1]


def test_in_order_packets_leave_the_buffer_at_once() -> None:
    """The reorder buffer adds no delay while nothing is out of order."""
    stats = RtpStats()
    buffer: JitterBuffer[int] = JitterBuffer(3, stats)
    released = [buffer.push(seq, seq) for seq in (65534, 65535, 0, 1, 2)]
    assert released == [[65534], [65535], [0], [1], [2]]
    assert not buffer.holding
    assert (stats.lost, stats.reordered) == (0, 0)


async def test_header_fields(session, raw) -> None:
    a, _ = await session()
    peer = await raw()
    a.send_frame(SILENCE)  # no remote yet: nothing goes out
    assert a.stats.sent == 0
    a.set_remote(HOST, peer.port)
    frames = tone_frames(5)
    for frame in frames:
        a.send_frame(frame)
    packets = await peer.recv_many(5)

    assert [p["version"] for p in packets] == [2] * 5
    assert [p["cc"] for p in packets] == [0] * 5
    assert [p["pt"] for p in packets] == [PCMU] * 5
    assert [p["marker"] for p in packets] == [True, False, False, False, False]
    assert len({p["ssrc"] for p in packets}) == 1
    for prev, cur in zip(packets, packets[1:], strict=False):
        assert cur["seq"] == (prev["seq"] + 1) % 2**16
        assert cur["ts"] == (prev["ts"] + 160) % 2**32
    assert [p["payload"] for p in packets] == [ulaw_encode(f) for f in frames]
    with pytest.raises(ValueError, match="320 bytes"):
        a.send_frame(SILENCE[:-2])


async def test_open_picks_even_ports_and_close_is_idempotent(session) -> None:
    sessions = [(await session())[0] for _ in range(6)]
    assert all(s.local_port % 2 == 0 for s in sessions)
    assert len({s.local_port for s in sessions}) == 6
    sessions[0].close()
    sessions[0].close()
    with pytest.raises(CallStateError, match='"closed"'):
        await sessions[0].open()


# ---------------------------------------------------------------------- jitter buffer


async def feed(session, raw, seqs: list[int], deliveries: int, **kwargs: Any) -> tuple[Any, Sink]:
    """Send hand-made packets ``seqs`` to a fresh session; wait for ``deliveries`` frames."""
    b, sink = await session(**kwargs)
    peer = await raw()
    for seq in seqs:
        peer.send(rtp(seq), b.local_port)
    await sink.until(lambda: len(sink.audio) >= deliveries)
    return b, sink


async def test_reordered_packets_are_put_back_in_order(session, raw) -> None:
    b, sink = await feed(session, raw, [1, 3, 2, 4], 4)
    assert sink.audio == audio_of([1, 2, 3, 4])
    assert (b.stats.reordered, b.stats.lost, b.stats.received) == (1, 0, 4)
    # Each packet keeps its own arrival time: 3 arrived before 2 and played after it.
    assert sink.arrivals[2] <= sink.arrivals[1]


async def test_a_real_gap_is_skipped_after_jitter_packets(session, raw) -> None:
    b, sink = await feed(session, raw, [1, 2, 6, 7, 8, 9, 10], 7, jitter_packets=3)
    assert sink.audio == audio_of([1, 2, 6, 7, 8, 9, 10])
    assert (b.stats.lost, b.stats.reordered, b.stats.late) == (3, 0, 0)


async def test_a_gap_smaller_than_the_buffer_holds_packets_back(session, raw) -> None:
    # 50 packets: a 1 s hold, so that the drain timer stays out of this test.
    b, sink = await session(jitter_packets=50)
    peer = await raw()
    for seq in (1, 3, 4):
        peer.send(rtp(seq), b.local_port)
    await sink.until(lambda: len(sink.audio) == 1)
    peer.send(rtp(2), b.local_port)  # fills the gap: 2, 3, 4 play at once
    await sink.until(lambda: len(sink.audio) == 4)
    assert sink.audio == audio_of([1, 2, 3, 4])
    assert b.stats.lost == 0


async def test_packets_after_a_gap_play_when_the_peer_goes_quiet(session, raw) -> None:
    b, sink = await feed(session, raw, [1, 3], 2, jitter_packets=3)
    assert sink.audio == audio_of([1, 3])
    assert b.stats.lost == 1
    # 3 waited for 2 as long as a full buffer would (3 x 20 ms), then played.
    assert sink.played_at[1] - sink.arrivals[1] >= 0.055


async def test_duplicates_and_late_packets_are_counted_and_dropped(session, raw) -> None:
    # 2 and 3 come twice (3 while held); 4 is skipped once 5-8 wait, then comes late;
    # 9 is sent last, so once it plays everything before it has been handled.
    seqs = [1, 3, 3, 2, 2, 5, 6, 7, 8, 4, 9]
    b, sink = await feed(session, raw, seqs, 8, jitter_packets=3)
    assert sink.audio == audio_of([1, 2, 3, 5, 6, 7, 8, 9])
    assert (b.stats.duplicates, b.stats.late, b.stats.received) == (2, 1, 11)
    assert b.stats.lost == 0  # 4 did arrive, too late


async def test_sequence_numbers_wrap(session, raw) -> None:
    b, sink = await feed(session, raw, [65534, 65535, 0, 1], 4)
    assert sink.audio == audio_of([65534, 65535, 0, 1])
    b, sink = await feed(session, raw, [65534, 0, 65535, 1], 4)
    assert sink.audio == audio_of([65534, 65535, 0, 1])
    assert (b.stats.reordered, b.stats.lost, b.stats.late) == (1, 0, 0)


async def test_a_new_ssrc_starts_a_new_sequence(session, raw) -> None:
    b, sink = await session()
    peer = await raw()
    for seq in (100, 101):
        peer.send(rtp(seq, ssrc=1), b.local_port)
    for seq in (7, 8):  # behind the old stream's play point: late, were it the same stream
        peer.send(rtp(seq, ssrc=2), b.local_port)
    await sink.until(lambda: len(sink.audio) == 4)
    assert sink.audio == audio_of([100, 101, 7, 8])
    assert (b.stats.late, b.stats.lost) == (0, 0)


# ----------------------------------------------------------------------------- DTMF


def drive(a: RtpSession, futures: list[asyncio.Future[None]], extra: int) -> int:
    """Play ``a``'s 20 ms clock until every key press is out, then ``extra`` frames more."""
    frames = 0
    while not all(f.done() for f in futures):
        a.send_frame(SILENCE)
        frames += 1
        assert frames < 100, "the key presses never finished"
    for _ in range(extra):
        a.send_frame(SILENCE)
    return frames + extra


async def test_dtmf_between_two_sessions(session) -> None:
    (a, _), (b, b_sink) = await pair(session)
    futures = [a.queue_dtmf("1"), a.queue_dtmf("#")]
    drive(a, futures, extra=3)
    # 100 ms each: 5 frames; 2 frames of audio between the key presses, 3 after.
    await b_sink.until(lambda: len(b_sink.audio) == 5)

    assert b_sink.digits == ["1", "#"]
    assert (a.stats.dtmf_sent, b.stats.dtmf_received) == (2, 2)
    assert a.stats.sent == b.stats.received == 2 * (4 + 3) + 5
    assert b.stats.lost == 0  # telephone-event packets fill their sequence numbers
    assert all(f.done() and f.exception() is None for f in futures)


async def test_dtmf_packets_on_the_wire(session, raw) -> None:
    a, _ = await session()
    peer = await raw()
    a.set_remote(HOST, peer.port)
    first, second = a.queue_dtmf("1", duration_ms=60), a.queue_dtmf("#", duration_ms=60)
    a.send_frame(SILENCE)
    a.send_frame(SILENCE)
    assert not first.done()  # the end packets have not gone out yet
    a.send_frame(SILENCE)  # third frame of 60 ms: the end, sent three times
    assert first.done() and not second.done()
    drive(a, [second], extra=1)
    packets = await peer.recv_many(2 * (2 + 3) + 2 + 1)

    assert [p["pt"] for p in packets] == [DTMF_PT] * 5 + [PCMU] * 2 + [DTMF_PT] * 5 + [PCMU]
    for prev, cur in zip(packets, packets[1:], strict=False):
        assert cur["seq"] == (prev["seq"] + 1) % 2**16
    start = packets[0]["ts"]
    for event, code in ((packets[0:5], 1), (packets[7:12], 11)):
        fields = [struct.unpack("!BBH", p["payload"]) for p in event]
        assert [f[0] for f in fields] == [code] * 5
        assert [bool(f[1] & 0x80) for f in fields] == [False, False, True, True, True]
        assert [f[1] & 0x3F for f in fields] == [10] * 5  # volume
        assert [f[2] for f in fields] == [160, 320, 480, 480, 480]
        assert [p["marker"] for p in event] == [True, False, False, False, False]
        assert len({p["ts"] for p in event}) == 1
    # The timestamp follows the clock: 3 frames of "1", 2 of audio, then "#".
    assert packets[5]["ts"] == (start + 3 * 160) % 2**32
    assert packets[6]["ts"] == (start + 4 * 160) % 2**32
    assert packets[7]["ts"] == (start + 5 * 160) % 2**32
    assert packets[12]["ts"] == (start + 8 * 160) % 2**32
    assert [p["marker"] for p in packets[5:7] + packets[12:]] == [False] * 3


async def test_dtmf_rejects_bad_input(session) -> None:
    a, _ = await session()
    for digit in ("x", "", "11", "a", "E"):
        with pytest.raises(ValueError, match="DTMF digit"):
            a.queue_dtmf(digit)
    with pytest.raises(ValueError, match="duration"):
        a.queue_dtmf("1", duration_ms=0)
    pending = a.queue_dtmf("5")
    a.set_codec(PCMA, None)  # the re-negotiated peer has no telephone-event
    assert pending.cancelled()
    assert (a.codec_pt, a.dtmf_pt) == (PCMA, None)
    with pytest.raises(CallStateError, match="telephone-event"):
        a.queue_dtmf("1")
    with pytest.raises(ValueError, match="codec"):
        a.set_codec(18, None)
    b, _ = await session(dtmf_pt=None)
    with pytest.raises(CallStateError, match="telephone-event"):
        b.queue_dtmf("1")


async def test_close_cancels_queued_dtmf(session) -> None:
    a, _ = await session()
    pending = a.queue_dtmf("9")
    a.close()
    assert pending.cancelled()
    with pytest.raises(CallStateError, match='"closed"'):
        a.queue_dtmf("1")


# --------------------------------------------------------------------- symmetric RTP


async def test_symmetric_rtp_latches_onto_the_source_address(session, raw) -> None:
    (a, a_sink), (b, b_sink) = await pair(session)
    wrong = await raw()  # where B's SDP said A was: not where A sends from
    b.set_remote(HOST, wrong.port)
    b.send_frame(SILENCE)
    assert parse(await wrong.recv())["pt"] == PCMU  # it really went to the wrong place

    a.send_frame(SILENCE)
    await b_sink.until(lambda: len(b_sink.audio) == 1)
    assert b.remote == (HOST, a.local_port)
    b.send_frame(SILENCE)
    await a_sink.until(lambda: len(a_sink.audio) == 1)
    assert a.stats.received == 1

    assert b.source == (HOST, a.local_port)


async def test_a_new_source_mid_call_does_not_hijack_the_stream(session, raw) -> None:
    """Once latched, RTP from another address is rejected whatever its SSRC (issue 13)."""
    (a, a_sink), (b, b_sink) = await pair(session)
    a.send_frame(SILENCE)
    await b_sink.until(lambda: len(b_sink.audio) == 1)
    assert b.remote == (HOST, a.local_port)

    stranger = await raw()
    stranger.send(rtp(1, ssrc=0xBEEF), b.local_port)  # a new stream, from elsewhere
    b.poll()  # loopback delivers at once: the packet waits on B's socket
    assert b.remote == (HOST, a.local_port), "a new SSRC from another address moved our RTP"
    b.send_frame(SILENCE)
    await a_sink.until(lambda: len(a_sink.audio) == 1)  # still reaches the peer...
    assert stranger.received.empty()  # ...and nothing went to the stranger
    assert b_sink.audio == [SILENCE]  # whose audio was not played either
    assert (b.stats.received, b.stats.rejected) == (1, 1)


async def test_rejected_sources_are_reported_once_and_do_not_keep_the_call_alive(
    session, raw
) -> None:
    rejected: list[tuple[tuple[str, int], int]] = []
    b, sink = await session(on_rejected=lambda addr, ssrc: rejected.append((addr, ssrc)))
    peer, stranger = await raw(), await raw()
    b.set_remote(HOST, peer.port)
    peer.send(rtp(1), b.local_port)
    await sink.until(lambda: len(sink.audio) == 1)
    heard_at = b.last_packet_at
    for seq in range(5):
        stranger.send(rtp(seq, ssrc=0x5EED), b.local_port)
    b.poll()
    assert rejected == [((HOST, stranger.port), 0x5EED)]  # the first packet only
    assert (b.stats.rejected, b.stats.received) == (5, 1)
    assert b.last_packet_at == heard_at  # a stranger's packets are not the peer's media


async def test_the_peer_may_change_its_ssrc_but_not_its_address(session, raw) -> None:
    b, sink = await session()
    peer = await raw()
    b.set_remote(HOST, peer.port)
    peer.send(rtp(1, ssrc=1), b.local_port)
    peer.send(rtp(500, ssrc=2), b.local_port)  # re-originated after a transfer: same address
    await sink.until(lambda: len(sink.audio) == 2)
    assert sink.audio == audio_of([1, 500])
    assert b.source == b.remote == (HOST, peer.port)
    assert b.stats.rejected == 0


async def test_the_signalled_address_takes_over_from_a_source_learned_elsewhere(
    session, raw
) -> None:
    """Behind NAT the peer sends from elsewhere than its SDP says; its SDP address still wins."""
    b, sink = await session()
    natted, signalled, third = await raw(), await raw(), await raw()
    b.set_remote(HOST, signalled.port)
    natted.send(rtp(1, ssrc=1), b.local_port)  # the first packet: learned, not for good
    b.poll()
    assert b.source == b.remote == (HOST, natted.port)
    third.send(rtp(1, ssrc=3), b.local_port)  # anyone else is still refused
    b.poll()
    assert b.source == (HOST, natted.port) and b.stats.rejected == 1
    signalled.send(rtp(1, ssrc=2), b.local_port)  # the SDP's address takes over, for good
    natted.send(rtp(2, ssrc=1), b.local_port)
    b.poll()
    assert b.source == b.remote == (HOST, signalled.port)
    assert b.stats.rejected == 2
    b.send_frame(SILENCE)
    assert parse(await signalled.recv())["pt"] == PCMU


async def test_new_sdp_reopens_learning_and_the_same_sdp_keeps_the_latch(session, raw) -> None:
    b, sink = await session()
    old, new = await raw(), await raw()
    b.set_remote(HOST, old.port)
    old.send(rtp(1, ssrc=1), b.local_port)
    b.poll()
    b.set_remote(HOST, old.port)  # a session refresh: same media address
    assert b.source == (HOST, old.port)
    b.set_remote(HOST, new.port)  # a re-INVITE moves the media
    assert b.source is None and b.remote == (HOST, new.port)
    old.send(rtp(2, ssrc=1), b.local_port)  # still in flight from the old address
    new.send(rtp(1, ssrc=2), b.local_port)
    b.poll()
    assert b.source == b.remote == (HOST, new.port)
    old.send(rtp(3, ssrc=1), b.local_port)
    b.poll()
    assert b.stats.rejected == 1


# ------------------------------------------------------------------- odd datagrams


async def test_malformed_datagrams_are_counted_and_ignored(session, raw) -> None:
    b, sink = await session()
    peer = await raw()
    padded = bytearray(rtp(1))
    padded[0] |= 0x20
    padded[-1] = 200  # more padding than payload
    extension = bytearray(rtp(1))
    extension[0] |= 0x10  # an extension header whose length runs past the end
    extension[12:16] = struct.pack("!HH", 0xBEDE, 100)
    zero_padding = rtp(1, payload=bytes(160))
    zero_padding = bytes([zero_padding[0] | 0x20]) + zero_padding[1:]  # padding count 0
    junk = [b"\x80", b"\x80\x00" * 5, rtp(1, version=1), bytes(padded), bytes(extension)]
    for datagram in [*junk, zero_padding]:
        peer.send(datagram, b.local_port)
    rtcp = struct.pack("!BBHI", 0x80, 200, 6, 0x5555) + bytes(20)  # a sender report, muxed
    peer.send(rtcp, b.local_port)
    peer.send(rtp(1), b.local_port)
    await sink.until(lambda: len(sink.audio) == 1)

    assert sink.audio == audio_of([1])
    assert (b.stats.malformed, b.stats.received) == (6, 1)
    assert b.remote == (HOST, peer.port)


async def test_csrcs_extension_and_padding_are_skipped(session, raw) -> None:
    b, sink = await session()
    peer = await raw()
    header = struct.pack("!BBHII", 0x80 | 0x20 | 0x10 | 2, PCMU, 1, 160, 0x1234)
    csrcs = struct.pack("!II", 11, 22)
    extension = struct.pack("!HHI", 0xBEDE, 1, 0xDEADBEEF)
    padding = bytes(3) + b"\x04"
    peer.send(header + csrcs + extension + label(1) + padding, b.local_port)
    peer.send(rtp(2, pt=13, payload=b"\x40"), b.local_port)  # comfort noise: counted, ignored
    peer.send(rtp(3), b.local_port)
    await sink.until(lambda: len(sink.audio) == 2)

    assert sink.audio == audio_of([1, 3])
    assert (b.stats.received, b.stats.malformed, b.stats.lost) == (3, 0, 0)


async def test_a_failing_callback_does_not_kill_the_session(session, raw) -> None:
    calls: list[bytes] = []
    done = asyncio.Event()

    def on_audio(pcm: bytes, arrival: float) -> None:
        calls.append(pcm)
        if len(calls) == 1:
            raise RuntimeError("a bug upstream")
        done.set()

    loop = asyncio.get_running_loop()
    escaped: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: escaped.append(context))
    b = RtpSession(local_host=HOST, on_audio=on_audio)
    try:
        await b.open()
        peer = await raw()
        peer.send(rtp(1), b.local_port)
        peer.send(rtp(2), b.local_port)
        await asyncio.wait_for(done.wait(), TIMEOUT)
    finally:
        b.close()
        loop.set_exception_handler(previous)
    assert calls == audio_of([1, 2])
    assert escaped == []  # the error stayed inside the session (logged there)


async def test_arrival_times_are_the_kernels_not_the_busy_loops(session) -> None:
    """Packets that arrive while the event loop is stalled keep their real spacing."""
    import socket
    import threading

    b, sink = await session()
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

    def send_paced() -> None:
        for seq in range(1, 11):
            sender.sendto(rtp(seq), (HOST, b.local_port))
            time.sleep(0.02)  # the sender's own 20 ms pacing, in its thread

    thread = threading.Thread(target=send_paced)
    thread.start()
    time.sleep(0.3)  # noqa: ASYNC251 - the stall under test: the loop reads nothing
    thread.join()
    sender.close()
    await sink.until(lambda: len(sink.audio) == 10)
    spread = sink.arrivals[-1] - sink.arrivals[0]
    # Read after the stall they would all carry one instant; stamped by the kernel
    # they span the ~180 ms over which they were sent.
    assert spread > 0.15, sink.arrivals
