"""WebRTC calls to SmallWebRTC agents (pipecat's ``POST /api/offer``), with aiortc.

The harness is the offering side: it adds the audio transceiver first (SmallWebRTC
expects audio at index 0), opens a data channel and pings on it every second
(pipecat drops a data-channel client that is silent for 3 s, and announces its own
hang-up on it with a ``peerLeft`` signalling message), gathers its candidates,
POSTs the offer, and applies the answer.  Outgoing audio leaves on aiortc's own
20 ms clock, silence when the persona is quiet; incoming audio is resampled to
16 kHz mono.  Both directions pass through ``Call``'s taps at the moment they
cross this side of the wire: an outgoing frame when aiortc's sender takes it
(before Opus encodes it), an incoming frame with the kernel's receive time of
the RTP packet that carried it (``telephony/wire_stamps.py``), not when it
leaves aiortc's jitter buffer and decoder.  A frame whose packet cannot be found
falls back to its ``recv()`` time, counted, and the run gets a
``webrtc_wire_stamps`` event saying how many.
"""

from __future__ import annotations

import asyncio
import fractions
import json
import time
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

import aiohttp
import av
import numpy as np
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from runtime.tasks import spawn
from telephony.base import Call, CallStateError, ConnectError, Target
from telephony.egress import EgressPolicy
from telephony.loopback import loopback_ice
from telephony.wire_stamps import WireStamps

__all__ = ["WebRTCCall"]

PING_INTERVAL_S = 1.0
MAX_ANSWER_BYTES = 1 << 20  # an SDP answer is a few kB


class _PersonaTrack(MediaStreamTrack):
    """Audio track aiortc pulls from: one 20 ms frame per call, on a real-time clock."""

    kind = "audio"

    def __init__(self, call: WebRTCCall) -> None:
        super().__init__()
        self._call = call
        self._start: float | None = None
        self._pts = 0

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        samples = self._call.frame_samples
        rate = self._call.sample_rate
        if self._start is None:
            self._start = time.monotonic()
        else:
            wait = self._start + self._pts / rate - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
        pcm = self._call._next_outgoing_frame()
        frame = av.AudioFrame.from_ndarray(
            np.frombuffer(pcm, dtype=np.int16).reshape(1, -1), format="s16", layout="mono"
        )
        frame.sample_rate = rate
        frame.pts = self._pts
        frame.time_base = fractions.Fraction(1, rate)
        self._pts += samples
        return frame


class WebRTCCall(Call):
    """A call over WebRTC to an agent that answers SmallWebRTC offers."""

    def __init__(
        self,
        target: Target,
        *,
        request_data: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        media_timeout_s: float | None = 10.0,
        egress: EgressPolicy | None = None,
    ) -> None:
        super().__init__(target, media_timeout_s=media_timeout_s)
        self._request_data = dict(request_data or {})
        self._headers = dict(headers or {})
        self._egress = egress or EgressPolicy.local()
        self._pc: RTCPeerConnection | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._track = _PersonaTrack(self)
        self.pc_id: str | None = None
        # Arrival times of the agent's RTP packets, for the frames they become.
        self.wire_stamps = WireStamps()
        self._stamps_reported = False

    @property
    def kernel_stamped(self) -> bool:
        """Every frame so far carried its RTP packet's kernel arrival, as on SIP: a late
        event loop then moves only what the persona sends, not the agent's onsets."""
        stamps = self.wire_stamps
        return stamps.kernel_stamped and stamps.frames_unstamped == 0

    # ----------------------------------------------------------------- lifecycle

    async def connect(self, timeout: float = 15.0) -> None:
        if self.state != "new":
            raise CallStateError(f'Cannot connect in call state "{self.state}"')
        self.state = "connecting"
        try:
            await asyncio.wait_for(self._connect(), timeout)
        except TimeoutError as exc:
            await self._fail_connect()
            raise ConnectError(
                f"no WebRTC connection to {self.target.http_url} within {timeout:g} s"
            ) from exc
        except ConnectError:
            await self._fail_connect()
            raise
        except Exception as exc:  # aiortc/aiohttp internals: translate at the edge
            await self._fail_connect()
            raise ConnectError(f"WebRTC setup with {self.target.http_url} failed: {exc}") from exc

    async def _fail_connect(self) -> None:
        self._mark_ended("transport_failed", "connect failed")
        await self._close_transport()

    async def _connect(self) -> None:
        pc = RTCPeerConnection()
        self._pc = pc
        connected = asyncio.Event()
        failed = asyncio.Event()

        pc.addTransceiver(self._track, direction="sendrecv")
        channel = pc.createDataChannel("loopcall")

        @channel.on("open")
        def _on_open() -> None:
            self._spawn(self._ping(channel))

        @channel.on("message")
        def _on_message(message: Any) -> None:
            if self._is_peer_left(message):
                self._mark_ended("remote_hangup", "agent sent peerLeft")
                self._spawn(self._close_transport())

        @pc.on("track")
        def _on_track(track: MediaStreamTrack) -> None:
            if track.kind == "audio":
                self._spawn(self._read_remote(track))

        @pc.on("connectionstatechange")
        async def _on_state() -> None:
            state = pc.connectionState
            if state == "connected":
                connected.set()
            elif state in ("failed", "closed"):
                failed.set()
                if self.state == "connected":
                    self._mark_ended("remote_hangup", f"peer connection {state}")
                    self._spawn(self._close_transport())

        with loopback_ice(self.target.is_loopback):
            await pc.setLocalDescription(await pc.createOffer())
        # Candidates are gathered: every socket of the call exists now.
        if not self.wire_stamps.watch(pc):
            self._event("webrtc_wire_stamps", f"stamping at recv(): {self.wire_stamps.problem}")
        answer = await self._post_offer(pc.localDescription.sdp)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type="answer"))

        done, _ = await _first(connected.wait(), failed.wait())
        if not connected.is_set():
            raise ConnectError(
                f"WebRTC connection to {self.target.http_url} failed (ICE/DTLS did not complete)"
            )
        self._mark_connected()
        self._spawn(self._watch_media())

    async def _post_offer(self, sdp: str) -> dict[str, Any]:
        """POST the offer, never following a redirect, to an address the policy allows.

        Only what the policy's ``quote_peer`` permits of the answer goes into an
        error: a controller records the status, not the body of whatever host a
        target named (docs/security.md).
        """
        body = {"sdp": sdp, "type": "offer", "request_data": self._request_data}
        url, quote = self.target.http_url, self._egress.quote_peer
        self._egress.check_host(self.target.host)  # aiohttp resolves no literal address
        try:
            async with (
                aiohttp.ClientSession(connector=self._egress.connector()) as session,
                session.post(
                    url, json=body, headers=self._headers, allow_redirects=False
                ) as response,
            ):
                raw = bytearray()
                async for chunk in response.content.iter_chunked(64 * 1024):
                    raw += chunk
                    if len(raw) > MAX_ANSWER_BYTES:
                        raise ConnectError(f"agent at {url} answered with more than an SDP answer")
                text = raw.decode(response.charset or "utf-8", errors="replace")
                status = f"HTTP {response.status} {_phrase(response.status)}".rstrip()
                if 300 <= response.status < 400:
                    where = response.headers.get("Location", "") if quote else ""
                    raise ConnectError(
                        f"agent at {url} answered the offer with a redirect ({status}"
                        f"{' to ' + where[:200] if where else ''}); loopcall does not follow "
                        "redirects: make the final URL the target"
                    )
                if response.status != 200:
                    detail = f"HTTP {response.status} {text[:200]}" if quote else status
                    raise ConnectError(f"agent at {url} refused the offer: {detail}")
                answer = json.loads(text)
        except aiohttp.ClientConnectorError as exc:
            raise ConnectError(f"could not reach agent at {url}: {exc}") from exc
        except aiohttp.ClientError as exc:
            detail = str(exc) if quote else type(exc).__name__  # may quote the answer
            raise ConnectError(f"offer to {url} failed: {detail}") from exc
        except json.JSONDecodeError as exc:
            raise ConnectError(f"agent at {url} answered with non-JSON") from exc
        if not isinstance(answer, dict) or answer.get("type") != "answer" or "sdp" not in answer:
            shown = f": {answer!r}" if quote else " (JSON without type 'answer' and 'sdp')"
            raise ConnectError(f"agent at {url} sent no SDP answer{shown}")
        self.pc_id = answer.get("pc_id")
        return answer

    async def _close_transport(self) -> None:
        self._mark_ended("local_hangup")
        stamps = self.wire_stamps
        if stamps.frames_unstamped and not self._stamps_reported:
            self._stamps_reported = True
            self._event("webrtc_wire_stamps", stamps.summary())
        current = asyncio.current_task()
        for task in list(self._tasks):
            if task is not current:
                task.cancel()
        pc, self._pc = self._pc, None
        if pc is not None:
            self._track.stop()
            await pc.close()

    # -------------------------------------------------------------------- media

    async def _read_remote(self, track: MediaStreamTrack) -> None:
        resampler = av.AudioResampler(format="s16", layout="mono", rate=self.sample_rate)
        receiver = self._receiver_of(track)
        stamps = self.wire_stamps
        try:
            while True:
                frame = await track.recv()
                now = time.monotonic()
                assert isinstance(frame, av.AudioFrame)
                # When its RTP packet reached the socket, not when aiortc let it out.
                arrived = stamps.frame_arrival(frame.pts, receiver)
                if arrived is None:
                    arrived = now
                    if stamps.frames_unstamped == 1 and stamps.problem is None:
                        self._event(
                            "webrtc_wire_stamps",
                            f"a frame (pts {frame.pts}) had no RTP arrival: stamped at recv()",
                        )
                for out in resampler.resample(frame):
                    self._deliver(out.to_ndarray().tobytes(), arrived)
        except MediaStreamError:
            if self.state == "connected":
                self._mark_ended("remote_hangup", "agent's audio track ended")
                self._spawn(self._close_transport())

    def _receiver_of(self, track: MediaStreamTrack) -> Any:
        pc = self._pc
        if pc is None:
            return None
        return next((r for r in pc.getReceivers() if r.track is track), None)

    def _event(self, kind: str, detail: str) -> None:
        if self.on_event is not None:
            self.on_event(kind, detail)

    async def _ping(self, channel: Any) -> None:
        while channel.readyState == "open":
            channel.send(f"ping: {int(time.time() * 1000)}")
            await asyncio.sleep(PING_INTERVAL_S)

    @staticmethod
    def _is_peer_left(message: Any) -> bool:
        if not isinstance(message, str) or not message.startswith("{"):
            return False
        try:
            data = json.loads(message)
        except json.JSONDecodeError:
            return False
        inner = data.get("message") if isinstance(data, dict) else None
        return isinstance(inner, dict) and inner.get("type") == "peerLeft"

    def _spawn(self, coro: Any) -> None:
        spawn(coro, owner=self._tasks)


def _phrase(status: int) -> str:
    """The standard reason phrase of an HTTP status (never the one the peer sent)."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


async def _first(*aws: Any) -> tuple[set[asyncio.Future[Any]], set[asyncio.Future[Any]]]:
    tasks = {asyncio.ensure_future(a) for a in aws}
    done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    return done, pending
