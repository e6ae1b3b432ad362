"""The reference agent's network side: WebRTC signalling and a Twilio media stream.

Stage: the far end of a loopback call.  ``create_agent_app`` returns a FastAPI
app with ``POST /api/offer`` (and ``PATCH /api/offer`` for trickle ICE), exactly
as pipecat's SmallWebRTC runner serves it, and ``/ws``, a Twilio media-stream
websocket (``media_stream.py``), so the harness dials it like any SmallWebRTC or
Twilio agent.  Each call gets its own pipeline:
``transport.input() -> TurnTaker -> transport.output()``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request, WebSocket
from loguru import logger
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineWorker
from pipecat.transports.base_transport import TransportParams
from pipecat.transports.smallwebrtc.connection import SmallWebRTCConnection
from pipecat.transports.smallwebrtc.request_handler import (
    SmallWebRTCPatchRequest,
    SmallWebRTCRequest,
    SmallWebRTCRequestHandler,
)
from pipecat.transports.smallwebrtc.transport import SmallWebRTCTransport
from pipecat.workers.runner import WorkerRunner

from audio.speech import Transcriber, Voice, default_agent_voice, get_voice
from refagent.light import LightWebRTC, serve_light_media_stream
from refagent.media_stream import serve_media_stream
from refagent.playout import TapeTrack
from refagent.script import DENTAL_SCRIPT, AgentScript
from refagent.turn_taker import TimingLog, TurnLogic, TurnTaker, TurnTakerConfig

__all__ = ["AgentOptions", "create_agent_app"]


@dataclass(frozen=True)
class AgentOptions:
    """How the reference agent behaves; the CLI's flags map onto these."""

    reply_delay_ms: float | None = None
    hangover_ms: float = 600.0
    timing_log: Path | None = None
    voice: str | None = None  # None: piper "joe" if installed, else flite "rms"
    stt: bool = True
    echo: bool = False
    # No pipeline and no STT; phone lines at 8 kHz (``light.py``): for load tests.
    light: bool = False
    script: AgentScript = DENTAL_SCRIPT


class _Agent:
    def __init__(self, options: AgentOptions) -> None:
        self.options = options
        self.voice: Voice = get_voice(options.voice or default_agent_voice())
        self.transcriber: Transcriber | None = None
        self.timing_log = TimingLog(options.timing_log) if options.timing_log else None
        self.handler = SmallWebRTCRequestHandler()
        self.light_webrtc = LightWebRTC(self)
        self.calls: set[asyncio.Task[None]] = set()

    def warm_up(self) -> None:
        """Load the voice and the STT model and synthesize every line before the first call."""
        if self.options.echo:
            return
        for line in self.options.script.lines:
            self.voice.synthesize(line)
            if self.options.light:
                self.voice.synthesize(line, 8000)
        if self.options.stt and not self.options.light:
            # One thread: the agent's STT only feeds its log, and must leave a core to
            # the event loop that times the replies (two threads cost the oracle ms).
            self.transcriber = Transcriber(cpu_threads=1)

    async def start_call(self, connection: SmallWebRTCConnection) -> None:
        task = asyncio.create_task(self._run_call(connection))
        self.calls.add(task)
        task.add_done_callback(self.calls.discard)

    def _turn_args(self, sample_rate: int, phone_line: bool) -> dict[str, Any]:
        return {
            "script": self.options.script,
            "voice": self.voice,
            "config": TurnTakerConfig(
                sample_rate=sample_rate,
                reply_delay_ms=self.options.reply_delay_ms,
                hangover_ms=self.options.hangover_ms,
                echo=self.options.echo,
                phone_line=phone_line,
            ),
            "transcriber": self.transcriber,
            "timing_log": self.timing_log,
        }

    def turn_taker(self, *, phone_line: bool = False) -> TurnTaker:
        """A fresh turn taker for one call (``phone_line``: the caller is on 8 kHz mu-law)."""
        return TurnTaker(**self._turn_args(16_000, phone_line))

    def turn_logic(self, *, sample_rate: int, phone_line: bool = False) -> TurnLogic:
        """The turns of one call without a pipeline (the light agent)."""
        return TurnLogic(**self._turn_args(sample_rate, phone_line))

    async def _run_call(self, connection: SmallWebRTCConnection) -> None:
        transport = SmallWebRTCTransport(
            webrtc_connection=connection,
            params=TransportParams(
                audio_in_enabled=True,
                audio_in_sample_rate=16_000,
                # Output is our TapeTrack, played on the caller's clock (see playout.py).
                audio_out_enabled=False,
                audio_out_end_silence_secs=0,
            ),
        )
        turn_taker = self.turn_taker()
        worker = PipelineWorker(
            Pipeline([transport.input(), turn_taker, transport.output()]),
            enable_rtvi=False,
            idle_timeout_secs=None,
        )

        @transport.event_handler("on_client_connected")
        async def _on_connected(_transport: Any, _client: Any) -> None:
            connection.replace_audio_track(TapeTrack(turn_taker.tape, turn_taker.clock))

        @transport.event_handler("on_client_disconnected")
        async def _on_disconnected(_transport: Any, _client: Any) -> None:
            logger.info(f"reference agent: caller {connection.pc_id} hung up")
            await worker.cancel()

        runner = WorkerRunner(handle_sigint=False)
        await runner.add_workers(worker)
        await runner.run()


def create_agent_app(options: AgentOptions) -> FastAPI:
    """The reference agent as an ASGI app (the caller warms it up before serving)."""
    agent = _Agent(options)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        await agent.handler.close()
        await agent.light_webrtc.close()
        for task in list(agent.calls):
            task.cancel()

    app = FastAPI(title="loopcall reference agent", lifespan=lifespan)
    app.state.agent = agent

    @app.get("/health")
    async def health() -> dict[str, Any]:
        calls = len(agent.calls) + len(agent.light_webrtc.calls)
        return {
            "status": "ok",
            "calls": calls,
            "echo": options.echo,
            "light": options.light,
            "reply_delay_ms": options.reply_delay_ms,
        }

    @app.post("/api/offer")
    async def offer(request: Request) -> dict[str, Any]:
        try:
            body = await request.json()
            offer = SmallWebRTCRequest.from_dict(dict(body))
        except (ValueError, TypeError) as exc:
            raise HTTPException(400, f"expected {{sdp, type: 'offer'}}: {exc}") from exc
        if offer.type != "offer" or not offer.sdp:
            raise HTTPException(400, "expected an SDP offer")
        if options.light:
            return await agent.light_webrtc.answer(offer.sdp, offer.request_data)
        answer = await agent.handler.handle_web_request(offer, agent.start_call)
        if answer is None:
            raise HTTPException(500, "no SDP answer was produced")
        return answer

    @app.websocket("/ws")
    async def media_stream(websocket: WebSocket) -> None:
        await websocket.accept()
        task = asyncio.current_task()
        assert task is not None
        agent.calls.add(task)
        try:
            if options.light:
                await serve_light_media_stream(agent, websocket)
            else:
                await serve_media_stream(agent, websocket)
        finally:
            agent.calls.discard(task)

    @app.patch("/api/offer")
    async def patch_offer(request: Request) -> dict[str, str]:
        body = await request.json()
        await agent.handler.handle_patch_request(SmallWebRTCPatchRequest(**body))
        return {"status": "success"}

    return app
