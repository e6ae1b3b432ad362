"""A pipecat transport over any ``telephony.Call``: how the persona pipeline hears and speaks.

Stage: the edges of the persona bot's pipeline.  ``CallTransport.input()`` reads
the agent's audio from the call and pushes ``InputAudioRawFrame``s; ``output()``
writes the bot's audio to the call, which paces it on the channel's own clock.
One transport serves every channel (WebRTC, Twilio media streams, SIP), because
the channel details live behind the ``Call`` interface.
"""

from __future__ import annotations

import asyncio
from typing import Any

from pipecat.frames.frames import (
    CancelFrame,
    EndFrame,
    InputAudioRawFrame,
    OutputAudioRawFrame,
    StartFrame,
)
from pipecat.transports.base_input import BaseInputTransport
from pipecat.transports.base_output import BaseOutputTransport
from pipecat.transports.base_transport import BaseTransport, TransportParams

from telephony.base import Call, CallStateError

__all__ = ["CallTransport"]


class _CallInput(BaseInputTransport):
    def __init__(self, call: Call, params: TransportParams, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        self._call = call
        self._reader: asyncio.Task[None] | None = None

    async def start(self, frame: StartFrame) -> None:
        await super().start(frame)
        await self.set_transport_ready(frame)
        if self._reader is None:
            self._reader = self.create_task(self._read(), name="call-input")

    async def _read(self) -> None:
        while (pcm := await self._call.recv_audio()) is not None:
            await self.push_audio_frame(
                InputAudioRawFrame(audio=pcm, sample_rate=self._call.sample_rate, num_channels=1)
            )

    async def _stop_reader(self) -> None:
        if self._reader is not None:
            await self.cancel_task(self._reader)
            self._reader = None

    async def stop(self, frame: EndFrame) -> None:
        await self._stop_reader()
        await super().stop(frame)

    async def cancel(self, frame: CancelFrame) -> None:
        await self._stop_reader()
        await super().cancel(frame)


class _CallOutput(BaseOutputTransport):
    def __init__(self, call: Call, params: TransportParams, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        self._call = call

    async def start(self, frame: StartFrame) -> None:
        await super().start(frame)
        await self.set_transport_ready(frame)

    async def write_audio_frame(self, frame: OutputAudioRawFrame) -> bool:
        try:
            await self._call.send_audio(frame.audio)
        except CallStateError:
            return False
        return True


class CallTransport(BaseTransport):
    """Input and output processors bound to one call."""

    def __init__(self, call: Call, params: TransportParams | None = None) -> None:
        super().__init__()
        rate = call.sample_rate
        self._params = params or TransportParams(
            audio_in_enabled=True,
            audio_in_sample_rate=rate,
            audio_out_enabled=True,
            audio_out_sample_rate=rate,
            audio_out_10ms_chunks=2,
            audio_out_end_silence_secs=0,
        )
        self._input = _CallInput(call, self._params, name=f"{self.name}#input")
        self._output = _CallOutput(call, self._params, name=f"{self.name}#output")

    def input(self) -> _CallInput:
        return self._input

    def output(self) -> _CallOutput:
        return self._output
