"""``SipCall``: a SIP call to (or from) the agent under test, behind the common ``Call``.

Stage: the channel for ``sip:USER@HOST[:PORT][;transport=udp|tcp]`` targets.
Outbound, loopcall's own phone (an ephemeral port on the interface that reaches
the agent) dials the URI; inbound (a case that waits for the agent to call),
loopcall listens on the target's HOST:PORT and answers an INVITE for USER.

Media: the persona's 16 kHz PCM (or, with ``sample_rate=8000``, the line's own
8 kHz, with no resampling either way) leaves on the process's 20 ms media clock
(``telephony/pump.py``), band-limited to 8 kHz and G.711-coded into one RTP
packet per tick (silence included, as phones send);
the recorder taps it as the line carries it.  The agent's packets come through
the RTP jitter buffer, are decoded, upsampled and played at real-time pace
(``Playout``), stamped with their arrival.  No RTP for ``media_timeout_s`` means
the call dropped without a BYE: the run fails with that cause.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

from audio.g711 import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode
from audio.resample import Downsampler, Upsampler
from runtime.tasks import spawn
from telephony.base import DTMF_DIGITS, Call
from telephony.credentials import SipCredentials, mask
from telephony.egress import EgressPolicy
from telephony.errors import CallStateError, ConnectError
from telephony.playout import Playout
from telephony.pump import media_pump
from telephony.sip.dialing import DialRequest, answer, dial
from telephony.sip.listeners import Listener, listen, unlisten
from telephony.sip.message import SipMessage
from telephony.sip.phone import SipPhone
from telephony.sip.rtp import PCMA, SILENT_FRAME, SILENT_LINE, RtpSession
from telephony.sip.session import BYE_TIMEOUT_S, SipCallError, SipSession
from telephony.sip.transaction import TransactionFailed, TransactionTimeout
from telephony.sip.transport import Peer, local_address_for, resolve
from telephony.target import Target

__all__ = ["SipCall"]

DTMF_MS = 100
DTMF_INFO_TIMEOUT_S = 4.0


class SipCall(Call):
    """One SIP call with G.711 RTP audio."""

    # Our BYE waits this long for its answer; the call is released either way.
    hangup_timeout_s = BYE_TIMEOUT_S

    def __init__(
        self,
        target: Target,
        *,
        request_data: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        media_timeout_s: float | None = 10.0,
        inbound: bool = False,
        answer_timeout_s: float = 60.0,
        credentials: SipCredentials | None = None,
        sample_rate: int = 16_000,
        egress: EgressPolicy | None = None,
    ) -> None:
        if sample_rate not in (8000, 16_000):
            raise ValueError(f"a SIP call carries 8000 or 16000 Hz audio, not {sample_rate}")
        self._egress = egress or EgressPolicy.local()
        super().__init__(target, media_timeout_s=media_timeout_s, sample_rate=sample_rate)
        # At 8 kHz the persona's audio is the line's own: nothing to resample.
        self._narrowband = sample_rate == 8000
        self.inbound = inbound
        self.answer_timeout_s = answer_timeout_s
        self.run_id = str((request_data or {}).get("loopcall_run_id", ""))
        self._headers = dict(headers or {})
        self._credentials = credentials or SipCredentials()
        # What this call sends that must not come back in its events or errors: the
        # password and (once dialled) its digest answers.
        self._sent = self._credentials.secrets()
        self.phone: SipPhone | None = None
        self._listener: Listener | None = None
        self.rtp: RtpSession | None = None
        self.session: SipSession | None = None
        self._down = Downsampler()
        self._up = Upsampler()
        self._wire_up = Upsampler()
        # RTP peers send in real time: a burst after a stall is stale, and dropped.
        self.playout = Playout(self.sample_rate, self._deliver, drop_stale=True)
        self.early_packets = 0
        self._pump_handle: int | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing: asyncio.Task[None] | None = None  # the BYE and the release, once
        self._released = False

    # ------------------------------------------------------------------ set-up

    async def connect(self, timeout: float = 15.0) -> None:
        if self.state != "new":
            raise CallStateError(f'Cannot connect in call state "{self.state}"')
        self.state = "connecting"
        try:
            if self.inbound:
                await self._answer_inbound()
            else:
                # The ring timeout is the connect timeout; CANCEL and its answer follow it.
                await asyncio.wait_for(self._dial(timeout), timeout + 10.0)
        except (SipCallError, TransactionFailed, TransactionTimeout) as exc:
            await self._fail_connect(self._mask(str(exc)))
            raise ConnectError(self._mask(str(exc))) from exc
        except TimeoutError as exc:
            await self._fail_connect("timed out")
            raise ConnectError(f"the SIP call to {self.target.url} did not set up") from exc
        except (ConnectError, OSError) as exc:
            await self._fail_connect(str(exc))
            if isinstance(exc, ConnectError):
                raise
            raise ConnectError(f"SIP call to {self.target.url} failed: {exc}") from exc
        except BaseException:
            await self._fail_connect("cancelled")
            raise
        self._mark_connected()
        self._pump_handle = media_pump().add(self._on_tick)
        self._spawn(self._watch_rtp())

    async def _dial(self, ring_timeout_s: float) -> None:
        target = self.target
        ip = await resolve(target.host, self._egress)
        local = local_address_for(ip)
        self.phone = SipPhone(local, 0, tcp=target.transport == "tcp")
        await self.phone.open()
        rtp = await self._open_rtp(local)
        request = DialRequest(
            uri=target.sip_uri,
            peer=Peer("tcp" if target.transport == "tcp" else "udp", ip, target.port),
            run_id=self.run_id,
            headers=self._headers,
            username=self._credentials.username,
            password=self._credentials.password,
            from_user=self._credentials.from_user or "loopcall",
            ring_timeout_s=ring_timeout_s,
            sent=self._sent,  # dial adds its digest answers
        )
        self._event("sip_invite", f"INVITE {request.uri} via {request.peer}")
        self.session = await dial(self.phone, rtp, request, on_event=self._event)
        self._adopt(self.phone, self.session)

    async def _answer_inbound(self) -> None:
        target = self.target
        self._listener = await listen(target.host, target.port)
        waiter: asyncio.Future[tuple[SipMessage, Peer]] = asyncio.get_running_loop().create_future()
        self._listener.waiting.setdefault(target.user, []).append(waiter)
        self._event("sip_listening", f"waiting for an INVITE to {target.sip_uri}")
        try:
            invite, peer = await asyncio.wait_for(waiter, self.answer_timeout_s)
        except TimeoutError as exc:
            raise ConnectError(
                f"no SIP call arrived for {target.sip_uri} within {self.answer_timeout_s:g} s"
            ) from exc
        finally:
            queue = self._listener.waiting.get(target.user, [])
            if waiter in queue:
                queue.remove(waiter)
        self._event("sip_incoming", f"{invite.summary()} from {peer} ({invite.get('From')})")
        run_id = invite.get("X-Loopcall-Run-Id")
        if run_id:
            self._event("sip_header", f"X-Loopcall-Run-Id: {run_id}")
        phone = self._listener.phone
        rtp = await self._open_rtp(phone.host)
        self.session = await answer(phone, rtp, invite, peer, on_event=self._event)
        self._adopt(phone, self.session)

    async def _open_rtp(self, host: str) -> RtpSession:
        self.rtp = RtpSession(
            local_host=host,
            on_audio=self._on_rtp_audio,
            on_dtmf=self._on_dtmf,
            on_rejected=self._on_rtp_rejected,
        )
        await self.rtp.open()
        return self.rtp

    def _adopt(self, phone: SipPhone, session: SipSession) -> None:
        phone.dialogs[session.call_id] = session
        session.on_end = self._on_session_end
        session.on_dtmf = self._on_dtmf
        self._event("sip_call_id", session.call_id)

    async def _fail_connect(self, detail: str) -> None:
        self._mark_ended("transport_failed", detail)
        await self._release()

    # ------------------------------------------------------------------- media

    def _on_rtp_audio(self, pcm8k: bytes, arrived: float) -> None:
        if self.state != "connected":
            self.early_packets += 1  # early media (183) or packets racing the 200
            return
        self.playout.push(pcm8k if self._narrowband else self._up.process(pcm8k), arrived)

    def _on_dtmf(self, digit: str) -> None:
        self._event("dtmf_received", digit)

    def _on_rtp_rejected(self, addr: tuple[str, int], ssrc: int) -> None:
        source = self.rtp.source if self.rtp is not None else None
        latched = f"{source[0]}:{source[1]}" if source else "the agent's source"
        self._event(
            "sip_rtp_rejected",
            f"ignored RTP from {addr[0]}:{addr[1]} (SSRC {ssrc:#010x}): "
            f"the call's media is latched to {latched}",
        )

    @property
    def kernel_stamped(self) -> bool:
        """Arrival times are the kernel's (SO_TIMESTAMPNS): a busy event loop does not move them."""
        return True

    @property
    def audio_drops(self) -> list[tuple[float, float]]:
        return self.playout.drops

    def _on_tick(self, _due: float) -> None:
        """Each tick of the media pump: play what is due, send one frame."""
        rtp = self.rtp
        if self.state != "connected" or rtp is None:
            return
        # Packets that arrived while the loop was busy come first: the playout must
        # not play silence in their place and then drop them as stale.
        rtp.poll()
        now = time.monotonic()
        self.playout.step(now)
        frame = self._take_outgoing_frame()
        if self._narrowband:
            # What the line carries, for the recorder: the codec's round trip.
            silent = frame == SILENT_FRAME
            line = SILENT_LINE[rtp.codec_pt] if silent else self._line(rtp.codec_pt, frame)
            self._tap_sent(line, now)
            rtp.send_frame(frame)
            return
        narrow = self._down.process(frame)
        self._tap_sent(self._wire_up.process(self._line(rtp.codec_pt, narrow)), now)
        rtp.send_frame(narrow)

    @staticmethod
    def _line(codec_pt: int, pcm8k: bytes) -> bytes:
        """``pcm8k`` after the codec's round trip: what the agent receives."""
        if codec_pt == PCMA:
            return alaw_decode(alaw_encode(pcm8k))
        return ulaw_decode(ulaw_encode(pcm8k))

    async def _watch_rtp(self) -> None:
        """End the call when the agent's RTP stops for ``media_timeout_s`` (no BYE came)."""
        timeout = self.media_timeout_s
        rtp = self.rtp
        if timeout is None or rtp is None:
            return
        while self.state == "connected":
            now = time.monotonic()
            last = rtp.last_packet_at or self.connected_at or now
            remaining = last + timeout - now
            if remaining <= 0:
                self._mark_ended(
                    "media_timeout",
                    f"no RTP from the agent for {timeout:g} s, and no BYE",
                )
                self._start_closing()
                return
            await asyncio.sleep(min(remaining, 0.5))

    async def send_dtmf(self, digit: str) -> None:
        if digit not in DTMF_DIGITS:
            raise ValueError(f"not a DTMF digit: {digit!r}")
        if self.state != "connected" or self.rtp is None or self.session is None:
            raise CallStateError(f'Cannot send DTMF in call state "{self.state}"')
        if self.rtp.dtmf_pt is not None:
            await self._until_ended_or(self.rtp.queue_dtmf(digit, DTMF_MS))
            return
        # The peer offered no telephone-event: SIP INFO (application/dtmf-relay) instead.
        info = self.session.request("INFO")
        info.add("Content-Type", "application/dtmf-relay")
        info.body = f"Signal={digit}\r\nDuration={DTMF_MS}\r\n".encode()
        transaction = self.session.phone.start_request(info, self.session.peer)
        try:
            final = await transaction.final(timeout=DTMF_INFO_TIMEOUT_S)
        except (TransactionTimeout, TransactionFailed) as exc:
            raise CallStateError(f"DTMF {digit!r} by SIP INFO got no answer: {exc}") from exc
        if final.status >= 300:
            raise CallStateError(f"DTMF {digit!r} by SIP INFO refused: {final.summary()}")

    # --------------------------------------------------------------- tear-down

    def _on_session_end(self, cause: str, detail: str) -> None:
        self._mark_ended("remote_hangup", self._mask(detail))

    async def _close_transport(self) -> None:
        """BYE (unless the dialog is over), then release everything the call opened.

        One close runs per call: a second caller (the hang-up after the RTP
        watchdog's own close) waits for it.  A caller that gives up first (its
        timeout, a cancelled run) cuts the BYE's wait short, and everything is
        released before its cancellation goes on.
        """
        self._mark_ended("local_hangup")
        closing = self._start_closing()
        try:
            await asyncio.shield(closing)
        except asyncio.CancelledError:
            closing.cancel()
            await asyncio.wait({closing})
            raise

    def _start_closing(self) -> asyncio.Task[None]:
        if self._closing is None:
            self._closing = spawn(self._bye_and_release(), name="sip-call-close")
        return self._closing

    async def _bye_and_release(self) -> None:
        try:
            session = self.session
            if session is not None and not session.ended:
                await session.bye()
        finally:
            await self._release()

    def media_summary(self) -> str:
        """RTP counters of the call, for the run's events."""
        if self.rtp is None:
            return "no media"
        s = self.rtp.stats
        return (
            f"RTP sent {s.sent}, received {s.received}, lost {s.lost}, late {s.late}, "
            f"duplicates {s.duplicates}, reordered {s.reordered}, malformed {s.malformed}, "
            f"from other sources (rejected) {s.rejected}; "
            f"early-media packets {self.early_packets}; "
            f"stale audio dropped {self.playout.dropped_s * 1000:.0f} ms"
        )

    async def _release(self) -> None:
        """Free what the call opened (once).  Sockets, the pump's handler and the
        listener's place are given up before the first ``await``: a cancellation
        there only leaves the phone's own tasks to finish."""
        if self._released:
            return
        self._released = True
        if self._pump_handle is not None:
            media_pump().remove(self._pump_handle)
            self._pump_handle = None
        if self.rtp is not None and self.state == "ended" and self.connected_at is not None:
            self._event("sip_media", self.media_summary())
        current = asyncio.current_task()
        for task in list(self._tasks):
            if task is not current:
                task.cancel()
        if self.rtp is not None:
            self.rtp.close()
        phone, self.phone = self.phone, None
        listener, self._listener = self._listener, None
        if self.session is not None and phone is None and listener is not None:
            listener.phone.dialogs.pop(self.session.call_id, None)
        try:
            if phone is not None:
                await phone.close()
        finally:
            if listener is not None:
                await unlisten(listener)

    def _mask(self, text: str) -> str:
        """``text`` (a peer's reason phrase, a BYE's Reason) without what this call sent."""
        return mask(text, self._sent)

    def _event(self, kind: str, detail: str) -> None:
        if self.on_event is not None:
            self.on_event(kind, self._mask(detail))

    def _spawn(self, coro: Any) -> None:
        spawn(coro, owner=self._tasks)
