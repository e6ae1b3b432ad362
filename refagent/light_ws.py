"""The light agent's Twilio media-stream server: no web framework, one protocol object per call.

Stage: the far end of ``twilio-ws://`` calls when the agent runs ``--light
--channel twilio-ws`` (``loopcall bench`` starts it so).  The websockets
library's Sans-I/O ``ServerProtocol`` (handshake, framing, ping/pong, closing)
runs inside an ``asyncio.Protocol``: each ``media`` message is decoded and fed to
``TurnLogic`` inline as it arrives, and the tape goes out on the process's media
pump, one ``media`` message per 20 ms while a reply plays.  When the script ends
the agent closes the websocket (1000), which is how a media-stream agent hangs up.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from typing import cast

import numpy as np
from loguru import logger
from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.protocol import State
from websockets.server import ServerProtocol

from audio.g711 import ulaw_decode, ulaw_encode
from refagent.core import Agent
from refagent.playout import TapeReader
from refagent.turn_taker import TurnLogic
from telephony.pump import media_pump

__all__ = ["LightStreamServer", "serve_light_streams"]

PHONE_RATE = 8000
PHONE_FRAME = PHONE_RATE * 20 // 1000
CLOSE_TIMEOUT_S = 2.0


class LightStreamServer(asyncio.Protocol):
    """One media-stream connection to the light agent."""

    def __init__(self, agent: Agent) -> None:
        self._agent = agent
        self._ws = ServerProtocol(max_size=2**22)
        self._transport: asyncio.Transport | None = None
        self._logic: TurnLogic | None = None
        self._reader: TapeReader | None = None
        self._stream_sid = ""
        self._pump: int | None = None
        self._hanging_up = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self._ws.receive_data(data)
        for event in self._ws.events_received():
            if isinstance(event, Request):
                self._ws.send_response(self._ws.accept(event))
            elif isinstance(event, Frame) and event.opcode is Opcode.TEXT:
                self._on_message(bytes(event.data))
        self._flush()

    def eof_received(self) -> bool | None:
        self._ws.receive_eof()
        self._flush()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._end()

    def _on_message(self, raw: bytes) -> None:
        try:
            message = json.loads(raw)
            event = message["event"]
        except (ValueError, KeyError, TypeError):
            return
        if event == "media" and self._logic is not None:
            pcm = ulaw_decode(base64.b64decode(message["media"]["payload"]))
            if self._logic.feed(np.frombuffer(pcm, dtype=np.int16), time.monotonic()):
                self._hang_up()
        elif event == "start" and self._logic is None:
            self._stream_sid = message["start"]["streamSid"]
            self._logic = self._agent.turn_logic(sample_rate=PHONE_RATE, phone_line=True)
            params = message["start"].get("customParameters") or {}
            self._logic.run_id = params.get("loopcall_run_id")
            self._reader = TapeReader(self._logic.tape, self._logic.clock, PHONE_FRAME)
            self._pump = media_pump().add(self._on_tick)
        elif event == "stop":
            logger.info(f"reference agent: media stream {self._stream_sid} ended by the caller")
            self._hang_up()

    def _on_tick(self, due: float) -> None:
        """Each 20 ms: the tape's frame for "now", sent only while a reply plays."""
        if self._reader is None or self._ws.state is not State.OPEN:
            return
        samples, voiced = self._reader.read(due, sent_at=time.monotonic())
        if not voiced:
            return
        payload = base64.b64encode(ulaw_encode(samples.tobytes())).decode("ascii")
        message = {"event": "media", "streamSid": self._stream_sid, "media": {"payload": payload}}
        self._ws.send_text(json.dumps(message).encode())
        self._flush()

    def _hang_up(self) -> None:
        if self._hanging_up:
            return
        self._hanging_up = True
        self._stop()
        if self._ws.state is State.OPEN:
            self._ws.send_close(1000)
            self._flush()
        if self._transport is not None:
            asyncio.get_running_loop().call_later(CLOSE_TIMEOUT_S, self._transport.close)

    def _flush(self) -> None:
        if self._transport is None:
            return
        for data in self._ws.data_to_send():
            if data:
                self._transport.write(data)
            elif self._transport.can_write_eof():
                self._transport.write_eof()
        if self._ws.close_expected():
            asyncio.get_running_loop().call_later(CLOSE_TIMEOUT_S, self._transport.close)

    def _stop(self) -> None:
        if self._pump is not None:
            media_pump().remove(self._pump)
            self._pump = None

    def _end(self) -> None:
        self._stop()
        if self._logic is not None:
            self._logic.close()
            self._logic = None


async def serve_light_streams(agent: Agent, sock: object) -> asyncio.Server:
    """Serve media streams on the listening socket ``sock`` (any path answers)."""
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: LightStreamServer(agent), sock=sock)  # type: ignore[call-overload]
