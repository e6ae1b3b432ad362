"""The reference agent on a SIP line: answers INVITEs, talks G.711 RTP.

Stage: the far end of a ``sip:`` call with no carrier in between (``loopcall
agent --channel sip``), and the harness's SIP echo endpoint for calibration.
Every INVITE is answered (100, 180, 200 with our SDP) by loopcall's own SIP
stack; the caller's RTP is decoded with loopcall's 8 -> 16 kHz filter and queued
into a pipecat pipeline holding the same ``TurnTaker`` as the WebRTC and Twilio
agents.  Its tape is read on the caller's stream clock every 20 ms
(``TapeReader``) and sent as one RTP packet per tick, silence included, as a
SIP phone does.  When the script ends the agent sends BYE; a BYE from the caller
cancels the pipeline.  With credentials set, INVITEs must carry digest
authorization (a 401 challenge first), so the harness's auth path has a peer.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import secrets

from loguru import logger
from pipecat.frames.frames import InputAudioRawFrame
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineWorker
from pipecat.workers.runner import WorkerRunner

from audio.resample import Downsampler, Upsampler
from refagent.core import Agent
from refagent.light import serve_light_sip
from refagent.loopcall_link import Handover
from refagent.playout import TapeReader
from runtime.tasks import cancel_and_wait, spawn
from telephony.frame_clock import FrameClock
from telephony.sip.dialing import answer
from telephony.sip.digest import parse_challenge
from telephony.sip.message import SipMessage
from telephony.sip.phone import SipPhone
from telephony.sip.rtp import RtpSession
from telephony.sip.session import SipCallError
from telephony.sip.transport import Peer

__all__ = ["SipLine"]

MAX_LATE_S = 0.04
REALM = "loopcall-agent"


class SipLine:
    """The reference agent's SIP phone on ``host:port`` (UDP and TCP)."""

    def __init__(
        self,
        agent: Agent,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        credentials: tuple[str, str] | None = None,
    ) -> None:
        self.agent = agent
        self.phone = SipPhone(host, port, user="agent", on_invite=self._on_invite)
        self._credentials = credentials
        self._nonces: set[str] = set()
        self.calls: set[asyncio.Task[None]] = set()

    @property
    def uri(self) -> str:
        return f"sip:agent@{self.phone.host}:{self.phone.port}"

    async def start(self) -> int:
        return await self.phone.open()

    async def close(self) -> None:
        for task in list(self.calls):
            task.cancel()
        for task in list(self.calls):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.phone.close()

    # ---------------------------------------------------------------- answering

    def _on_invite(self, invite: SipMessage, peer: Peer) -> None:
        if self._credentials is not None and not self._authorized(invite):
            nonce = secrets.token_hex(16)
            self._nonces.add(nonce)
            challenge = f'Digest realm="{REALM}", nonce="{nonce}", algorithm=MD5, qop="auth"'
            status, reason = (
                (403, "Forbidden") if invite.get("Authorization") else (401, "Unauthorized")
            )
            headers = [("WWW-Authenticate", challenge)] if status == 401 else []
            self.phone._spawn(
                self.phone.respond(
                    invite, peer, status, reason, to_tag=secrets.token_hex(6), headers=headers
                )
            )
            return
        spawn(self._serve_safely(invite, peer), owner=self.calls)

    def _authorized(self, invite: SipMessage) -> bool:
        """Check a digest ``Authorization`` (MD5, qop=auth) against our credentials."""
        assert self._credentials is not None
        value = invite.get("Authorization")
        if not value:
            return False
        try:
            fields = parse_challenge(value)
        except ValueError:
            return False
        user, password = self._credentials
        if fields.get("username") != user or fields["nonce"] not in self._nonces:
            return False

        def md5(text: str) -> str:
            return hashlib.md5(text.encode()).hexdigest()

        ha1 = md5(f"{user}:{REALM}:{password}")
        ha2 = md5(f"INVITE:{fields.get('uri', '')}")
        if fields.get("qop") == "auth":
            expected = md5(
                f"{ha1}:{fields['nonce']}:{fields.get('nc')}:{fields.get('cnonce')}:auth:{ha2}"
            )
        else:
            expected = md5(f"{ha1}:{fields['nonce']}:{ha2}")
        return secrets.compare_digest(expected, fields.get("response", ""))

    async def _serve_safely(self, invite: SipMessage, peer: Peer) -> None:
        try:
            await self._serve(invite, peer)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception(f"reference agent: the SIP call from {peer} failed")
            await self.phone.respond(invite, peer, 500, "Server Internal Error")

    async def _serve(self, invite: SipMessage, peer: Peer) -> None:
        """One call: answer, run the turn taker on the caller's audio, hang up at the end."""
        if self.agent.options.light:
            await serve_light_sip(self.agent, self.phone, invite, peer)
            return
        turn_taker = self.agent.turn_taker(phone_line=True)
        turn_taker.logic.attach(Handover.from_headers(invite.get))
        worker = PipelineWorker(Pipeline([turn_taker]), enable_rtvi=False, idle_timeout_secs=None)
        up = Upsampler()
        pending: asyncio.Queue[bytes] = asyncio.Queue()

        def on_audio(pcm8k: bytes, _arrived: float) -> None:
            pending.put_nowait(up.process(pcm8k))

        rtp = RtpSession(local_host=self.phone.host, on_audio=on_audio)
        await rtp.open()

        def on_event(kind: str, detail: str) -> None:
            logger.info(f"reference agent: {kind}: {detail}")

        try:
            session = await answer(
                self.phone, rtp, invite, peer, on_event=on_event, far_end="the caller"
            )
        except SipCallError as exc:
            logger.warning(f"reference agent: {exc}")
            rtp.close()
            return

        def on_end(_cause: str, detail: str) -> None:
            logger.info(f"reference agent: {detail}")
            self.phone._spawn(worker.cancel())

        session.on_end = on_end
        feeder = spawn(_feed(worker, pending))
        sender = spawn(_send_tape(rtp, TapeReader(turn_taker.tape, turn_taker.clock)))
        runner = WorkerRunner(handle_sigint=False)
        await runner.add_workers(worker)
        try:
            await runner.run()
        finally:
            await cancel_and_wait(feeder, sender)
            if not session.ended:
                await session.bye()
            self.phone.dialogs.pop(session.call_id, None)
            rtp.close()


async def _feed(worker: PipelineWorker, pending: asyncio.Queue[bytes]) -> None:
    """Queue the caller's audio into the pipeline as it arrives, in order."""
    while True:
        pcm = await pending.get()
        await worker.queue_frame(InputAudioRawFrame(audio=pcm, sample_rate=16_000, num_channels=1))


async def _send_tape(rtp: RtpSession, reader: TapeReader) -> None:
    """Every 20 ms, send the tape's frame for "now" (silence between replies).

    Like a phone's sound card, the sender never bursts to catch up after a stall
    (the caller's jitter buffer would drop the stale packets anyway): it re-anchors
    its clock; the tape is read at each frame's own time, so nothing shifts.
    """
    down = Downsampler()
    clock = FrameClock(max_late_s=MAX_LATE_S)
    while True:
        due = await clock.tick()
        samples, _voiced = reader.read(due)
        rtp.send_frame(down.process(samples.tobytes()))
