"""RTP for G.711 phone calls: the media edge of a SIP call (RFC 3550, RFC 4733, RFC 4961).

Stage: between the SIP call (``telephony/sip/call.py``) and the agent's RTP peer.
The call hands ``RtpSession.send_frame`` one 20 ms frame of 8 kHz 16-bit PCM on
its own 20 ms clock; each frame leaves as one PCMU or PCMA packet, or, while a
key press queued with ``queue_dtmf`` is playing, as an RFC 4733 telephone-event
packet in its place.  Packets from the peer are put back in sequence order by a
small reorder buffer (``JitterBuffer``: no added delay while nothing is out of
order), decoded and handed to ``on_audio(pcm8k, arrival_time)`` with the time
the packet reached the socket (the kernel's receive timestamp); key presses go
to ``on_dtmf`` once each.  No RTCP is sent; RTCP muxed onto the port is ignored.

Where RTP goes, and whose RTP is heard (symmetric RTP, RFC 4961; latching as
SBCs do it, RFC 7362; details and reasons in ``latch.py``): we send from the
socket we receive on.  Each new SDP address (``set_remote``: the answer, a 183,
a re-INVITE that moves the media) opens learning, and the first RTP packet that
arrives latches the peer's source: we send there from then on.  A source at the
SDP's address is latched for good; one elsewhere (NAT) until the SDP's address
itself sends.  Once latched, RTP from any other address is rejected whatever its
SSRC: not played, not the peer's media for the inactivity timeout, never moving
our RTP; counted in ``stats.rejected``, the first of each source reported to
``on_rejected``.  A new SSRC from the latched address is the peer's new stream
(RFC 3550 8.2), played.  Only new SDP re-opens learning; there is no re-latching
on a timer.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
import struct
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from loguru import logger

from audio.g711 import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode
from telephony.errors import CallStateError
from telephony.sip.jitter import JitterBuffer, RtpPacket, RtpStats, parse_rtp
from telephony.sip.latch import Addr, SourceLatch
from telephony.sip.stamped_socket import StampedSocket

__all__ = [
    "FRAME_BYTES",
    "SILENT_FRAME",
    "SILENT_LINE",
    "FRAME_SAMPLES",
    "PCMA",
    "PCMU",
    "JitterBuffer",
    "RtpPacket",
    "RtpSession",
    "RtpStats",
    "parse_rtp",
]

PCMU = 0
PCMA = 8
FRAME_SAMPLES = 160  # 20 ms at 8 kHz
FRAME_BYTES = 2 * FRAME_SAMPLES  # s16le
DTMF_DIGITS = "0123456789*#ABCD"  # event codes 0-15 (RFC 4733 3.2)
DTMF_VOLUME = 10  # -10 dBm0
DTMF_END_COPIES = 3  # the end packet is sent three times (RFC 4733 2.5.1.4)
DTMF_GAP_FRAMES = 2  # at least 40 ms of audio between two key presses
MAX_DTMF_MS = 0xFFFF // FRAME_SAMPLES * 20  # the 16-bit duration field, without segments
_ENCODERS = {PCMU: ulaw_encode, PCMA: alaw_encode}
_DECODERS = {PCMU: ulaw_decode, PCMA: alaw_decode}
# Silence is most of a call on each side: its frame, payloads and decoded line are
# constants, compared (a memcmp) instead of coded.
SILENT_FRAME = bytes(FRAME_BYTES)
SILENT_PAYLOAD = {pt: encode(SILENT_FRAME) for pt, encode in _ENCODERS.items()}
SILENT_LINE = {pt: _DECODERS[pt](payload) for pt, payload in SILENT_PAYLOAD.items()}
_RTCP_TYPES = range(72, 77)  # RTCP packet types 200-204 seen as an RTP payload type (RFC 5761)


@dataclass
class _Event:
    """One key press being sent: a telephone-event packet per frame, then the end packets."""

    code: int
    frames: int
    done: asyncio.Future[None]
    timestamp: int = 0
    sent_frames: int = 0


class RtpSession:
    """One G.711 RTP stream each way on one UDP socket, with RFC 4733 DTMF."""

    def __init__(
        self,
        *,
        local_host: str,
        codec_pt: int = PCMU,
        dtmf_pt: int | None = 101,
        on_audio: Callable[[bytes, float], None],
        on_dtmf: Callable[[str], None] | None = None,
        on_rejected: Callable[[Addr, int], None] | None = None,
        jitter_packets: int = 3,
    ) -> None:
        self._local_host = local_host
        self._on_audio = on_audio
        self._on_dtmf = on_dtmf
        self.stats = RtpStats()
        self.last_packet_at: float | None = None
        self._transport: StampedSocket | None = None
        self._closed = False
        self._latch = SourceLatch(on_rejected)
        # Sending: random SSRC, sequence and timestamp (RFC 3550 5.1).
        self._ssrc = secrets.randbits(32)
        self._sequence = secrets.randbits(16)
        self._timestamp = secrets.randbits(32)
        self._first = True
        self._event: _Event | None = None
        self._dtmf_queue: deque[_Event] = deque()
        self._gap_frames = 0
        # Receiving.
        self._jitter: JitterBuffer[tuple[RtpPacket, float]] = JitterBuffer(
            jitter_packets, self.stats
        )
        self._peer_ssrc: int | None = None
        self._last_event_timestamp: int | None = None
        # A peer that stops sending (silence suppression) must not keep the packets
        # after a gap forever: they play after at most as long as a full buffer.
        self._hold_s = jitter_packets * FRAME_SAMPLES / 8000
        self._drain_timer: asyncio.TimerHandle | None = None
        self._codec_pt = PCMU
        self._dtmf_pt: int | None = None
        self.set_codec(codec_pt, dtmf_pt)

    # ------------------------------------------------------------------ lifecycle

    async def open(self, port: int = 0) -> int:
        """Bind UDP on ``local_host:port``; port 0 picks a free even port. Returns the port."""
        if self._transport is not None or self._closed:
            state = "closed" if self._closed else "open"
            raise CallStateError(f'Cannot open an RTP session in state "{state}"')
        family = socket.AF_INET6 if ":" in self._local_host else socket.AF_INET
        odd: list[socket.socket] = []
        try:
            for _ in range(64):
                sock = socket.socket(family, socket.SOCK_DGRAM)
                try:
                    sock.bind((self._local_host, port))
                except OSError:
                    sock.close()
                    raise
                sock.setblocking(False)
                if port or sock.getsockname()[1] % 2 == 0:
                    self._transport = StampedSocket(sock, self._receive, self._send_dropped)
                    return self.local_port
                odd.append(sock)  # kept open until done so the OS offers another
        finally:
            for sock in odd:
                sock.close()
        raise OSError(f"no free even UDP port on {self._local_host}")

    def _send_dropped(self) -> None:
        self.stats.send_dropped += 1  # the socket buffer is full: a lost packet

    def poll(self) -> None:
        """Handle the packets already waiting on the socket, now (before deciding what is late)."""
        if self._transport is not None:
            self._transport._read_ready()

    @property
    def local_port(self) -> int:
        if self._transport is None:
            raise CallStateError("The RTP session is not open")
        return self._transport.port

    def close(self) -> None:
        """Close the socket; queued key presses are cancelled. Idempotent."""
        self._closed = True
        if self._drain_timer is not None:
            self._drain_timer.cancel()
            self._drain_timer = None
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        self._cancel_dtmf()

    # ------------------------------------------------------------- negotiation

    def set_remote(self, host: str, port: int) -> None:
        """Where to send, from the peer's SDP; a new address re-opens learning (see above)."""
        self._latch.signalled(host, port)

    @property
    def remote(self) -> Addr | None:
        """Where our RTP goes: the latched source, or (learning) the SDP's address."""
        return self._latch.remote

    @property
    def source(self) -> Addr | None:
        """The peer's latched source address; None while learning."""
        return self._latch.source

    @property
    def codec_pt(self) -> int:
        return self._codec_pt

    @property
    def dtmf_pt(self) -> int | None:
        return self._dtmf_pt

    def set_codec(self, codec_pt: int, dtmf_pt: int | None) -> None:
        """The negotiated audio codec and telephone-event payload type (None: no DTMF)."""
        if codec_pt not in _ENCODERS:
            raise ValueError(f"unsupported codec payload type {codec_pt} (PCMU=0, PCMA=8)")
        self._codec_pt = codec_pt
        self._dtmf_pt = dtmf_pt
        if dtmf_pt is None:
            self._cancel_dtmf()

    # ------------------------------------------------------------------ sending

    def send_frame(self, pcm8k: bytes) -> None:
        """Send one 20 ms frame (or, while a key press plays, its telephone-event packet)."""
        if len(pcm8k) != FRAME_BYTES:
            raise ValueError(f"a frame is {FRAME_BYTES} bytes of 8 kHz s16le, got {len(pcm8k)}")
        if self._transport is None or self._latch.remote is None:
            return
        if self._event is None and self._dtmf_queue and self._gap_frames == 0:
            self._event = self._dtmf_queue.popleft()
            self._event.timestamp = self._timestamp
        if self._event is not None:
            self._send_event(self._event)
        else:
            pt = self._codec_pt
            payload = SILENT_PAYLOAD[pt] if pcm8k == SILENT_FRAME else _ENCODERS[pt](pcm8k)
            self._send(pt, payload, self._timestamp)
            self._gap_frames = max(0, self._gap_frames - 1)
        self._timestamp = (self._timestamp + FRAME_SAMPLES) % 2**32

    def queue_dtmf(self, digit: str, duration_ms: int = 100) -> asyncio.Future[None]:
        """Queue a key press; the future resolves once its last end packet has gone out."""
        if len(digit) != 1 or digit not in DTMF_DIGITS:
            raise ValueError(f"not a DTMF digit: {digit!r} (0-9, *, #, A-D)")
        if not 0 < duration_ms <= MAX_DTMF_MS:
            raise ValueError(f"DTMF duration must be 1..{MAX_DTMF_MS} ms, got {duration_ms}")
        if self._dtmf_pt is None:
            raise CallStateError(
                "Cannot send DTMF: the peer did not offer telephone-event (RFC 4733) in its SDP"
            )
        if self._closed:
            raise CallStateError('Cannot send DTMF in RTP session state "closed"')
        frames = -(-duration_ms // 20)
        event = _Event(DTMF_DIGITS.index(digit), frames, asyncio.get_running_loop().create_future())
        self._dtmf_queue.append(event)
        return event.done

    def _send_event(self, event: _Event) -> None:
        assert self._dtmf_pt is not None  # set_codec(…, None) cancels the events
        event.sent_frames += 1
        end = event.sent_frames >= event.frames
        flags = (0x80 if end else 0) | DTMF_VOLUME
        payload = struct.pack("!BBH", event.code, flags, event.sent_frames * FRAME_SAMPLES)
        for copy in range(DTMF_END_COPIES if end else 1):
            marker = event.sent_frames == 1 and copy == 0
            self._send(self._dtmf_pt, payload, event.timestamp, marker=marker)
        if end:
            self._event = None
            self._gap_frames = DTMF_GAP_FRAMES
            self.stats.dtmf_sent += 1
            if not event.done.done():
                event.done.set_result(None)

    def _send(self, pt: int, payload: bytes, timestamp: int, marker: bool = False) -> None:
        remote = self._latch.remote
        assert self._transport is not None and remote is not None
        marker = marker or self._first  # the first packet of the stream
        self._first = False
        second = (0x80 if marker else 0) | pt
        header = struct.pack("!BBHII", 0x80, second, self._sequence, timestamp, self._ssrc)
        self._transport.sendto(header + payload, remote)
        self._sequence = (self._sequence + 1) % 0x10000
        self.stats.sent += 1

    def _cancel_dtmf(self) -> None:
        pending = ([self._event] if self._event else []) + list(self._dtmf_queue)
        self._event = None
        self._dtmf_queue.clear()
        for event in pending:
            event.done.cancel()

    # ---------------------------------------------------------------- receiving

    def _receive(self, data: bytes, addr: tuple[str, int], arrival: float) -> None:
        packet = parse_rtp(data)
        if packet is None:
            self.stats.malformed += 1
            return
        if packet.payload_type in _RTCP_TYPES and packet.marker:
            return  # RTCP muxed onto the RTP port (RFC 5761): not ours to read
        if not self._latch.accept((addr[0], addr[1]), packet.ssrc):
            self.stats.rejected += 1
            return
        self.stats.received += 1
        self.last_packet_at = arrival
        if packet.ssrc != self._peer_ssrc:  # a new stream from the peer (see above)
            for old in self._jitter.flush():
                self._play(*old)
            self._peer_ssrc = packet.ssrc
            self._last_event_timestamp = None
        # Every payload type takes a sequence number: all of them pass through the
        # buffer, or a key press would look like lost audio.
        for item in self._jitter.push(packet.sequence, (packet, arrival)):
            self._play(*item)
        if self._jitter.holding and self._drain_timer is None:
            loop = asyncio.get_running_loop()
            self._drain_timer = loop.call_later(self._hold_s, self._drain)
        elif not self._jitter.holding and self._drain_timer is not None:
            self._drain_timer.cancel()
            self._drain_timer = None

    def _drain(self) -> None:
        self._drain_timer = None
        try:
            for item in self._jitter.drain():
                self._play(*item)
        except Exception:  # a callback's bug: as in datagram_received
            logger.exception("rtp: error while playing held packets")

    def _play(self, packet: RtpPacket, arrival: float) -> None:
        pt = packet.payload_type
        decode = _DECODERS.get(pt)
        if decode is not None:
            payload = packet.payload
            silent = payload == SILENT_PAYLOAD[pt]
            self._on_audio(SILENT_LINE[pt] if silent else decode(payload), arrival)
        elif packet.payload_type == self._dtmf_pt and len(packet.payload) >= 4:
            if packet.timestamp == self._last_event_timestamp:
                return  # an update or end packet of the key press already reported
            self._last_event_timestamp = packet.timestamp
            code = packet.payload[0]
            if code < len(DTMF_DIGITS):
                self.stats.dtmf_received += 1
                if self._on_dtmf is not None:
                    self._on_dtmf(DTMF_DIGITS[code])
