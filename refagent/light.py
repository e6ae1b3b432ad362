"""The light reference agent: the same turns with no pipeline, for load tests.

Stage: the far end of a call when the agent runs with ``--light`` (``loopcall
bench`` starts it so).  A load test measures the harness, so the agent must cost
little per call: here the transports feed ``TurnLogic`` directly, with no pipecat
pipeline, no speech-to-text and, on phone lines, no resampling (the turns run on
the line's own 8 kHz).  Replies are laid on the same tape and read on the caller's
stream clock as in the full agent, so the latency oracle holds the same way.

- ``serve_light_media_stream``: a Twilio media stream (``/ws``), Twilio's JSON by hand;
- ``LightWebRTC``: answers SmallWebRTC offers with a plain aiortc peer connection;
- ``serve_light_sip``: one answered SIP call (``SipLine`` calls it per INVITE).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import secrets
import time
from collections.abc import Callable
from typing import Any

import av
import numpy as np
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from fastapi import WebSocket, WebSocketDisconnect
from loguru import logger
from starlette.websockets import WebSocketState

from audio.g711 import ulaw_decode, ulaw_encode
from refagent.core import Agent
from refagent.playout import TapeReader, TapeTrack
from refagent.turn_taker import TurnLogic
from runtime.tasks import cancel_and_wait, spawn
from telephony.pump import media_pump
from telephony.sip.dialing import answer
from telephony.sip.message import SipMessage
from telephony.sip.phone import SipPhone
from telephony.sip.rtp import RtpSession
from telephony.sip.session import SipCallError
from telephony.sip.transport import Peer

__all__ = ["LightWebRTC", "serve_light_media_stream", "serve_light_sip"]

FRAME_S = 0.02
PHONE_RATE = 8000
PHONE_FRAME = PHONE_RATE * 20 // 1000
PEER_LEFT = json.dumps({"type": "signalling", "message": {"type": "peerLeft"}})


# ------------------------------------------------------------ Twilio media stream


async def serve_light_media_stream(agent: Agent, websocket: WebSocket) -> None:
    """One call on an accepted media-stream websocket, until either side ends it."""
    logic = agent.turn_logic(sample_rate=PHONE_RATE, phone_line=True)
    done = asyncio.Event()
    stream_sid = ""
    sender: asyncio.Task[None] | None = None
    try:
        while not done.is_set():
            try:
                raw = await websocket.receive_text()
            except (WebSocketDisconnect, RuntimeError):
                break
            message = json.loads(raw)
            event = message.get("event")
            if event == "media":
                ulaw = base64.b64decode(message["media"]["payload"])
                pcm = np.frombuffer(ulaw_decode(ulaw), dtype=np.int16)
                if logic.feed(pcm, time.monotonic()):
                    done.set()
            elif event == "start":
                stream_sid = message["start"]["streamSid"]
                params = message["start"].get("customParameters") or {}
                logic.run_id = params.get("loopcall_run_id")
                reader = TapeReader(logic.tape, logic.clock, PHONE_FRAME)
                sender = spawn(_send_media(websocket, stream_sid, reader))
            elif event == "stop":
                logger.info(f"reference agent: media stream {stream_sid} ended by the caller")
                break
    finally:
        logic.close()
        await cancel_and_wait(sender)
        if websocket.client_state == WebSocketState.CONNECTED:
            with contextlib.suppress(Exception):
                await websocket.close(1000)


async def _send_media(websocket: WebSocket, stream_sid: str, reader: TapeReader) -> None:
    """Every 20 ms, send the tape's frame for "now" if a clip plays in it."""
    start = time.monotonic()
    sent = 0
    while websocket.client_state == WebSocketState.CONNECTED:
        due = start + sent * FRAME_S
        sent += 1
        wait = due - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        samples, voiced = reader.read(due, sent_at=time.monotonic())
        if not voiced:
            continue
        payload = base64.b64encode(ulaw_encode(samples.tobytes())).decode("ascii")
        message = {"event": "media", "streamSid": stream_sid, "media": {"payload": payload}}
        try:
            await websocket.send_text(json.dumps(message))
        except Exception:  # the socket closed under us: the receive loop ends the call
            return


# ------------------------------------------------------------------------ WebRTC


class LightWebRTC:
    """Answers SmallWebRTC offers (``POST /api/offer``) with plain aiortc peer connections."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self.calls: dict[str, asyncio.Task[None]] = {}
        self._pcs: set[RTCPeerConnection] = set()

    async def answer(self, sdp: str, request_data: Any = None) -> dict[str, str]:
        pc = RTCPeerConnection()
        self._pcs.add(pc)
        pc_id = "light-" + secrets.token_hex(8)
        logic = self.agent.turn_logic(sample_rate=16_000)
        if isinstance(request_data, dict):
            logic.run_id = request_data.get("loopcall_run_id")
        pc.addTrack(TapeTrack(logic.tape, logic.clock))
        channels: list[Any] = []

        @pc.on("datachannel")
        def _on_channel(channel: Any) -> None:
            channels.append(channel)  # the caller's pings need no answer

        @pc.on("track")
        def _on_track(track: MediaStreamTrack) -> None:
            if track.kind == "audio":
                task = spawn(self._run(pc, logic, track, channels), name=f"call-{pc_id}")
                self.calls[pc_id] = task
                task.add_done_callback(lambda _t: self.calls.pop(pc_id, None))

        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        return {"sdp": pc.localDescription.sdp, "type": "answer", "pc_id": pc_id}

    async def _run(
        self, pc: RTCPeerConnection, logic: TurnLogic, track: MediaStreamTrack, channels: list[Any]
    ) -> None:
        resampler = av.AudioResampler(format="s16", layout="mono", rate=logic.sample_rate)
        try:
            while True:
                frame = await track.recv()
                now = time.monotonic()
                assert isinstance(frame, av.AudioFrame)
                for out in resampler.resample(frame):
                    if logic.feed(out.to_ndarray().reshape(-1), now):
                        for channel in channels:
                            with contextlib.suppress(Exception):
                                channel.send(PEER_LEFT)
                        return
        except MediaStreamError:
            logger.info("reference agent: the caller hung up")
        finally:
            logic.close()
            self._pcs.discard(pc)
            await pc.close()

    async def close(self) -> None:
        for task in list(self.calls.values()):
            task.cancel()
        for pc in list(self._pcs):
            await pc.close()


# --------------------------------------------------------------------------- SIP


async def serve_light_sip(agent: Agent, phone: SipPhone, invite: SipMessage, peer: Peer) -> None:
    """Answer one INVITE and run the turns on the caller's 8 kHz RTP until either side hangs up."""
    logic = agent.turn_logic(sample_rate=PHONE_RATE, phone_line=True)
    logic.run_id = invite.get("X-Loopcall-Run-Id") or None
    done = asyncio.Event()

    def on_audio(pcm8k: bytes, arrived: float) -> None:
        # The kernel's arrival time: the stream clock sees the wire, not the loop.
        if logic.feed(np.frombuffer(pcm8k, dtype=np.int16), arrived):
            done.set()

    rtp = RtpSession(local_host=phone.host, on_audio=on_audio)
    await rtp.open()
    try:
        session = await answer(phone, rtp, invite, peer, on_event=_log_event, far_end="the caller")
    except SipCallError as exc:
        logger.warning(f"reference agent: {exc}")
        rtp.close()
        return
    session.on_end = lambda _cause, _detail: done.set()
    pump = media_pump()
    sender = pump.add(_rtp_sender(rtp, TapeReader(logic.tape, logic.clock, PHONE_FRAME)))
    try:
        await done.wait()
    finally:
        logic.close()
        pump.remove(sender)
        if not session.ended:
            await session.bye()
        phone.dialogs.pop(session.call_id, None)
        rtp.close()


def _log_event(kind: str, detail: str) -> None:
    logger.info(f"reference agent: {kind}: {detail}")


def _rtp_sender(rtp: RtpSession, reader: TapeReader) -> Callable[[float], None]:
    """A media-pump handler: one packet of the tape's frame for "now" per tick."""

    def tick(due: float) -> None:
        # Read at the tick's due time, not its (jittery) wake-up: a late tick sends
        # its frame late, as a loaded agent would, and never moves the tape; the
        # timing log gets the time the frame really leaves.
        samples, _voiced = reader.read(due, sent_at=time.monotonic())
        rtp.send_frame(samples.tobytes())

    return tick
