"""The reference agent's network side: WebRTC signalling and a Twilio media stream.

Stage: the far end of a loopback call.  ``create_agent_app`` returns a FastAPI
app with ``POST /api/offer`` (and ``PATCH /api/offer`` for trickle ICE), exactly
as pipecat's SmallWebRTC runner serves it (``webrtc.py``, or ``light.py`` without
a pipeline), and ``/ws``, a Twilio media-stream websocket (``media_stream.py``),
so the harness dials it like any SmallWebRTC or Twilio agent.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, HTTPException, Request, WebSocket
from pipecat.transports.smallwebrtc.request_handler import (
    SmallWebRTCPatchRequest,
    SmallWebRTCRequest,
)

from refagent.core import Agent, AgentOptions
from refagent.light import LightWebRTC, serve_light_media_stream
from refagent.media_stream import serve_media_stream
from refagent.webrtc import PipecatWebRTC

__all__ = ["AgentOptions", "create_agent_app"]


def create_agent_app(options: AgentOptions) -> FastAPI:
    """The reference agent as an ASGI app (the caller warms it up before serving)."""
    agent = Agent(options)
    webrtc = PipecatWebRTC(agent)
    light_webrtc = LightWebRTC(agent)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        await webrtc.close()
        await light_webrtc.close()
        for task in list(agent.calls):
            task.cancel()

    # Its HTTP requests make no spans: with --otlp-endpoint its tracer provider is global,
    # and only the calls' pipecat spans are meant for loopcall.
    app = FastAPI(title="loopcall reference agent", lifespan=lifespan, telemetry={"tracing": False})
    app.state.agent = agent

    @app.get("/health")
    async def health() -> dict[str, Any]:
        calls = len(agent.calls) + len(light_webrtc.calls)
        return {
            "status": "ok",
            "calls": calls,
            "echo": options.echo,
            "light": options.light,
            "reply_delay_ms": options.reply_delay_ms,
            "interrupt_after_ms": options.interrupt_after_ms,
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
            return await light_webrtc.answer(offer.sdp, offer.request_data)
        answer = await webrtc.answer(offer)
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
        await webrtc.patch(SmallWebRTCPatchRequest(**body))
        return {"status": "success"}

    return app
