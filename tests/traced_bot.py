"""A stock pipecat voice bot with tracing on, and the OpenAI-compatible cloud it talks to.

Not loopcall's agent: the bot is built the way pipecat's examples build one
(SmallWebRTC, Silero VAD in the user aggregator, ``OpenAISTTService``,
``OpenAILLMService`` with a function, ``OpenAITTSService``), with
``PipelineWorker(enable_tracing=True, conversation_id=<request_data.loopcall_run_id>)``
and pipecat's ``setup_tracing`` exporting over OTLP/HTTP.  Its function
``check_order`` POSTs its arguments to ``request_data.loopcall_tools_url`` when the
call hands one over (else it answers itself).

The vendor cloud is the one fake: ``VoiceCloud`` answers on 127.0.0.1 as the
OpenAI API documents ``/v1/audio/transcriptions`` (our offline Whisper),
``/v1/chat/completions`` (streamed, a scripted tool call, usage in the last chunk)
and ``/v1/audio/speech`` (raw 24 kHz PCM from flite).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import socket
import time
import wave
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import numpy as np
import uvicorn
from aiohttp import web
from fastapi import FastAPI, Request
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from pipecat.adapters.llm.schemas.function_schema import FunctionSchema
from pipecat.adapters.llm.schemas.tools_schema import ToolsSchema
from pipecat.audio.vad.silero import SileroVADAnalyzer
from pipecat.frames.frames import LLMRunFrame
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import (
    LLMContextAggregatorPair,
    LLMUserAggregatorParams,
)
from pipecat.processors.frame_processor import FrameProcessor
from pipecat.services.llm_service import FunctionCallParams
from pipecat.services.openai.llm import OpenAILLMService
from pipecat.services.openai.stt import OpenAISTTService
from pipecat.services.openai.tts import OpenAITTSService
from pipecat.transports.base_transport import TransportParams
from pipecat.transports.smallwebrtc.connection import SmallWebRTCConnection
from pipecat.transports.smallwebrtc.request_handler import (
    SmallWebRTCRequest,
    SmallWebRTCRequestHandler,
)
from pipecat.transports.smallwebrtc.transport import SmallWebRTCTransport
from pipecat.utils.tracing.setup import setup_tracing
from pipecat.workers.runner import WorkerRunner

from audio.speech import get_transcriber, get_voice
from telephony.loopback import loopback_ice

GREETING = "Hello, this is the order desk. How can I help?"
ANSWER = "Your order A1 has shipped. Anything else?"
TOOL = "check_order"
TOOL_ARGS = {"order_id": "A1"}
USAGE = {"prompt_tokens": 42, "completion_tokens": 9}


class _Relay(SpanExporter):
    """The process's one exporter (OpenTelemetry takes one tracer provider per process):
    it sends to whichever exporter the current test set."""

    def __init__(self) -> None:
        self.target: SpanExporter | None = None

    def export(self, spans: Any) -> SpanExportResult:
        target = self.target
        return target.export(spans) if target is not None else SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


_relay = _Relay()


def export_spans_to(endpoint: str | SpanExporter) -> None:
    """Pipecat's spans go to ``endpoint`` (``http://host:port/v1/traces``, or an exporter)
    from now on."""
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        assert setup_tracing("stock-order-bot", exporter=_relay)
    if isinstance(endpoint, str):
        endpoint = OTLPSpanExporter(endpoint=endpoint, timeout=5)
    _relay.target = endpoint


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self):  # type: ignore[no-untyped-def]
        yield


@contextlib.asynccontextmanager
async def serve_app(app: FastAPI) -> AsyncIterator[str]:
    """``app`` on 127.0.0.1 for the ``with`` block: its ``host:port``."""
    sock = socket.create_server(("127.0.0.1", 0))
    server = _Server(uvicorn.Config(app, log_level="error"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        yield f"127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await task


def stop_exporting() -> None:
    """Send what is queued, then send nothing more (the test's endpoint is closing)."""
    provider = trace.get_tracer_provider()
    if isinstance(provider, TracerProvider):
        provider.force_flush(5_000)
    _relay.target = None


@dataclass
class VoiceCloud:
    """OpenAI's STT, chat and TTS endpoints, answered locally; records what it was asked."""

    chats: list[dict[str, Any]] = field(default_factory=list)
    heard: list[str] = field(default_factory=list)
    base_url: str = ""

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_post("/v1/audio/transcriptions", self.transcribe)
        app.router.add_post("/v1/audio/speech", self.speech)
        return app

    async def transcribe(self, request: web.Request) -> web.Response:
        form = await request.post()
        upload = form["file"]
        assert isinstance(upload, web.FileField)
        with wave.open(io.BytesIO(upload.file.read())) as wav:
            rate = wav.getframerate()
            samples = np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16)
        text = await get_transcriber().transcribe_async(samples, rate)
        self.heard.append(text)
        return web.json_response({"text": text})

    async def speech(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        audio = await get_voice("flite:rms").synthesize_async(body["input"], 24_000)
        response = web.StreamResponse(headers={"Content-Type": "audio/pcm"})
        await response.prepare(request)
        await response.write(audio.tobytes())
        await response.write_eof()
        return response

    def _reply(self, messages: list[dict[str, Any]]) -> dict[str, Any]:
        last = messages[-1] if messages else {}
        if last.get("role") == "tool":
            return {"content": ANSWER}
        if last.get("role") == "user" and "order" in str(last.get("content", "")).lower():
            return {"tool_call": (TOOL, json.dumps(TOOL_ARGS))}
        if last.get("role") == "user":
            return {"content": "Goodbye."}
        return {"content": GREETING}

    async def chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.chats.append(body)
        reply = self._reply(body.get("messages", []))
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        n = len(self.chats)

        async def send(choices: list[dict[str, Any]], **extra: Any) -> None:
            chunk = {
                "id": f"chatcmpl-{n}",
                "object": "chat.completion.chunk",
                "created": int(time.time()),
                "model": body["model"],
                "choices": choices,
                **extra,
            }
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())

        if "tool_call" in reply:
            name, args = reply["tool_call"]
            call = {"index": 0, "id": f"call_{n}", "type": "function"}
            await send(
                [
                    {
                        "index": 0,
                        "delta": {
                            "role": "assistant",
                            "tool_calls": [{**call, "function": {"name": name, "arguments": ""}}],
                        },
                        "finish_reason": None,
                    }
                ]
            )
            await send(
                [
                    {
                        "index": 0,
                        "delta": {"tool_calls": [{"index": 0, "function": {"arguments": args}}]},
                        "finish_reason": None,
                    }
                ]
            )
            finish = "tool_calls"
        else:
            words = reply["content"].split(" ")
            for i, word in enumerate(words):
                piece = word if i == 0 else " " + word
                await send([{"index": 0, "delta": {"content": piece}, "finish_reason": None}])
            finish = "stop"
        await send([{"index": 0, "delta": {}, "finish_reason": finish}])
        usage = {**USAGE, "total_tokens": sum(USAGE.values())}
        await send([], usage=usage)
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response


def order_bot(
    cloud_url: str, request_data: dict[str, Any], source: FrameProcessor, sink: FrameProcessor
) -> PipelineWorker:
    """The stock bot's pipeline between a transport's input ``source`` and output ``sink``."""
    stt = OpenAISTTService(
        api_key="sk-local",
        base_url=cloud_url,
        settings=OpenAISTTService.Settings(model="whisper-1"),
    )
    llm = OpenAILLMService(
        api_key="sk-local",
        base_url=cloud_url,
        settings=OpenAILLMService.Settings(
            model="gpt-4o-mini", system_instruction="You are the order desk. Be brief."
        ),
    )
    tts = OpenAITTSService(
        api_key="sk-local", base_url=cloud_url, settings=OpenAITTSService.Settings(voice="alloy")
    )

    async def check_order(params: FunctionCallParams) -> None:
        tools_url = request_data.get("loopcall_tools_url")
        if tools_url:
            async with (
                aiohttp.ClientSession() as session,
                session.post(f"{tools_url}/{TOOL}", json=params.arguments) as reply,
            ):
                result = await reply.json()
        else:
            result = {"status": "shipped"}
        await params.result_callback(result)

    llm.register_function(TOOL, check_order)
    tools = ToolsSchema(
        standard_tools=[
            FunctionSchema(
                name=TOOL,
                description="Look up an order's status",
                properties={"order_id": {"type": "string"}},
                required=["order_id"],
            )
        ]
    )
    context = LLMContext([], tools)
    aggregators = LLMContextAggregatorPair(
        context, user_params=LLMUserAggregatorParams(vad_analyzer=SileroVADAnalyzer())
    )
    return PipelineWorker(
        Pipeline([source, stt, aggregators.user(), llm, tts, sink, aggregators.assistant()]),
        params=PipelineParams(
            audio_out_sample_rate=24_000, enable_metrics=True, enable_usage_metrics=True
        ),
        enable_tracing=True,
        conversation_id=request_data.get("loopcall_run_id"),
        enable_rtvi=False,
        idle_timeout_secs=None,
    )


def traced_bot_app(cloud_url: str) -> FastAPI:
    """The stock bot's ``POST /api/offer`` (spans go where ``export_spans_to`` said)."""
    handler = SmallWebRTCRequestHandler()
    tasks: set[asyncio.Task[None]] = set()

    async def run_bot(connection: SmallWebRTCConnection, request_data: dict[str, Any]) -> None:
        transport = SmallWebRTCTransport(
            webrtc_connection=connection,
            params=TransportParams(audio_in_enabled=True, audio_out_enabled=True),
        )
        worker = order_bot(cloud_url, request_data, transport.input(), transport.output())

        @transport.event_handler("on_client_connected")
        async def _greet(_transport: Any, _client: Any) -> None:
            await worker.queue_frames([LLMRunFrame()])

        @transport.event_handler("on_client_disconnected")
        async def _bye(_transport: Any, _client: Any) -> None:
            await worker.cancel()

        runner = WorkerRunner(handle_sigint=False)
        await runner.add_workers(worker)
        await runner.run()

    app = FastAPI()

    @app.post("/api/offer")
    async def offer(request: Request) -> dict[str, Any]:
        sdp = SmallWebRTCRequest.from_dict(await request.json())
        request_data = dict(sdp.request_data or {})

        async def start(connection: SmallWebRTCConnection) -> None:
            task = asyncio.create_task(run_bot(connection, request_data))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

        with loopback_ice(True):  # this bot lives on 127.0.0.1 too
            answer = await handler.handle_web_request(sdp, start)
        return answer or {}

    return app
