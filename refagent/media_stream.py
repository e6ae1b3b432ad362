"""The reference agent on a Twilio media stream: ``/ws``, as a Twilio-facing pipecat bot serves it.

Stage: the far end of a ``twilio-ws://`` call (or of a phone call bridged by
Twilio or by loopcall's emulator).  The websocket is read by pipecat's stock
``FastAPIWebsocketTransport`` with ``TwilioFrameSerializer`` (after
``parse_telephony_websocket`` consumed ``connected`` and ``start``), into the same
``TurnTaker`` as the WebRTC agent.  The output is the turn taker's tape, read on
the caller's stream clock every 20 ms (``TapeReader``) and sent as ``media``
messages only while a clip plays, on a clock that re-anchors after a stall
rather than bursting (as the SIP line's): like pipecat's own websocket output, the agent
is silent on the wire between utterances, so each reply's first chunk leaves
exactly when its tape position comes due.  When the script ends the agent closes
the websocket, which is how a media-stream agent hangs up.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
from typing import Any

from fastapi import WebSocket
from loguru import logger
from pipecat.frames.frames import Frame, InputAudioRawFrame
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineWorker
from pipecat.runner.utils import parse_telephony_websocket
from pipecat.serializers.twilio import TwilioFrameSerializer
from pipecat.transports.websocket.fastapi import (
    FastAPIWebsocketParams,
    FastAPIWebsocketTransport,
)
from pipecat.workers.runner import WorkerRunner
from starlette.websockets import WebSocketState

from audio.g711 import ulaw_decode, ulaw_encode
from audio.resample import Downsampler, Upsampler
from refagent.core import Agent
from refagent.loopcall_link import Handover
from refagent.playout import TapeReader
from refagent.turn_taker import TurnTaker
from runtime.tasks import cancel_and_wait, spawn
from telephony.frame_clock import FrameClock

__all__ = ["serve_media_stream"]

# Later than this, the sender re-anchors its 20 ms clock instead of bursting.
MAX_LATE_S = 0.04


async def serve_media_stream(agent: Agent, websocket: WebSocket) -> None:
    """Run one call on an accepted media-stream websocket until either side ends it."""
    try:
        kind, call_data = await parse_telephony_websocket(websocket)
    except ValueError as exc:
        logger.warning(f"reference agent: media stream closed before start: {exc}")
        return
    if kind != "twilio":
        await websocket.close(1003, f"expected a Twilio media stream, got {kind}")
        return
    stream_sid = call_data["stream_id"]
    logger.info(
        f"reference agent: media stream {stream_sid} for call {call_data['call_id']} "
        f"(parameters {sorted(call_data.get('body') or {})})"  # names: the token is a secret
    )
    serializer = _PhoneLineSerializer(
        stream_sid=stream_sid,
        call_sid=call_data["call_id"],
        params=TwilioFrameSerializer.InputParams(auto_hang_up=False),
    )
    transport = FastAPIWebsocketTransport(
        websocket,
        FastAPIWebsocketParams(
            audio_in_enabled=True,
            audio_in_sample_rate=16_000,
            audio_out_enabled=False,
            add_wav_header=False,
            serializer=serializer,
        ),
    )
    turn_taker: TurnTaker = agent.turn_taker(phone_line=True)
    # The run's id (the timing log names it), tools URL and event webhook.
    turn_taker.logic.attach(Handover.from_params(call_data.get("body")))
    worker = PipelineWorker(
        Pipeline([transport.input(), turn_taker, transport.output()]),
        enable_rtvi=False,
        idle_timeout_secs=None,
    )
    sender: asyncio.Task[None] | None = None

    @transport.event_handler("on_client_connected")
    async def _on_connected(_transport: Any, _client: Any) -> None:
        nonlocal sender
        sender = spawn(
            _send_tape(websocket, stream_sid, TapeReader(turn_taker.tape, turn_taker.clock))
        )

    @transport.event_handler("on_client_disconnected")
    async def _on_disconnected(_transport: Any, _client: Any) -> None:
        logger.info(f"reference agent: media stream {stream_sid} ended by the caller")
        await worker.cancel()

    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    try:
        await runner.run()
    finally:
        await cancel_and_wait(sender)
        if websocket.client_state == WebSocketState.CONNECTED:
            with contextlib.suppress(Exception):
                await websocket.close(1000)


class _PhoneLineSerializer(TwilioFrameSerializer):
    """pipecat's Twilio serializer, decoding media with loopcall's own 8 -> 16 kHz filter.

    The harness records the caller's side as the line carries it, decoded with the
    same filter; so the agent and the recording see the same samples, and the
    oracle's "caller's last sample" is one sample for both (pipecat's resampler
    differs by a few ms on a decaying word end).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._upsampler = Upsampler()

    async def deserialize(self, data: str | bytes) -> Frame | None:
        try:
            message = json.loads(data)
        except (TypeError, ValueError):
            return await super().deserialize(data)
        if not isinstance(message, dict) or message.get("event") != "media":
            return await super().deserialize(data)
        payload = (message.get("media") or {}).get("payload")
        if not payload:
            return None
        pcm = self._upsampler.process(ulaw_decode(base64.b64decode(payload)))
        return InputAudioRawFrame(audio=pcm, sample_rate=16_000, num_channels=1)


async def _send_tape(websocket: WebSocket, stream_sid: str, reader: TapeReader) -> None:
    """Every 20 ms, send the tape's frame for "now" if a clip plays in it.

    Like the SIP line's sender, it never bursts to catch up after a stall longer
    than ``MAX_LATE_S``: a carrier plays what it receives at real-time pace, so a
    burst would only queue behind what is playing (and loopcall's carrier drops it
    as stale).  Each frame is read at its own due time, and a clip's onset is
    logged when its frame really leaves, so the timing log says when the oracle was
    late instead of when it meant to send.
    """
    down = Downsampler()
    clock = FrameClock(max_late_s=MAX_LATE_S)
    while websocket.client_state == WebSocketState.CONNECTED:
        due = await clock.tick()
        samples, voiced = reader.read(due, sent_at=time.monotonic())
        band = down.process(samples.tobytes())  # every frame: the filter's state runs on
        if not voiced:
            continue
        payload = base64.b64encode(ulaw_encode(band)).decode("ascii")
        message = {"event": "media", "streamSid": stream_sid, "media": {"payload": payload}}
        try:
            await websocket.send_text(json.dumps(message))
        except Exception:  # the socket closed under us: the transport reports it
            return
