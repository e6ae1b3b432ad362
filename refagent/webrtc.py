"""The reference agent over WebRTC: pipecat's SmallWebRTC transport, one pipeline per call.

Stage: the far end of a ``webrtc://`` call.  ``PipecatWebRTC.answer`` takes a
SmallWebRTC offer (as pipecat's runner serves ``POST /api/offer``) and runs
``transport.input() -> TurnTaker -> transport.output()`` for the call; the output
track is the turn taker's tape, read on the caller's clock (``playout.py``).
"""

from __future__ import annotations

from typing import Any

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

from refagent.core import Agent
from refagent.loopcall_link import Handover
from refagent.playout import TapeTrack
from refagent.tracing import flush
from runtime.tasks import spawn

__all__ = ["PipecatWebRTC"]


class PipecatWebRTC:
    """SmallWebRTC calls to one ``Agent``."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self.handler = SmallWebRTCRequestHandler()

    async def answer(self, offer: SmallWebRTCRequest) -> dict[str, Any] | None:
        # The offer's request_data carries the run's id, tools URL and event webhook.
        handover = Handover.from_params(offer.request_data)

        async def start(connection: SmallWebRTCConnection) -> None:
            await self.start_call(connection, handover)

        return await self.handler.handle_web_request(offer, start)

    async def patch(self, request: SmallWebRTCPatchRequest) -> None:
        await self.handler.handle_patch_request(request)

    async def close(self) -> None:
        await self.handler.close()

    async def start_call(
        self, connection: SmallWebRTCConnection, handover: Handover | None = None
    ) -> None:
        spawn(self._run_call(connection, handover or Handover()), owner=self.agent.calls)

    async def _run_call(self, connection: SmallWebRTCConnection, handover: Handover) -> None:
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
        turn_taker = self.agent.turn_taker()
        turn_taker.logic.attach(handover)
        tracing = self.agent.options.otlp_endpoint is not None
        worker = PipelineWorker(
            Pipeline([transport.input(), turn_taker, transport.output()]),
            enable_rtvi=False,
            idle_timeout_secs=None,
            # Its own spans (refagent/tracing.py) say what it did; pipecat's service
            # spans would not (it has no STT, LLM or TTS service on its reply path).
            enable_tracing=False,
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
        if tracing:
            await flush()  # the call is over: its last spans leave now, not in 5 s
