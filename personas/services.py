"""pipecat services around the offline speech stack: the persona's ears and voice.

Stage: inside the persona bot's pipeline.  ``OfflineSTTService`` transcribes each
VAD-delimited segment of the agent's speech with the shared Whisper model;
``OfflineTTSService`` speaks the brain's lines with a cached offline voice.  Both
do their blocking work in a thread, off the audio path.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

import numpy as np
from pipecat.frames.frames import ErrorFrame, Frame, TranscriptionFrame
from pipecat.services.settings import STTSettings, TTSSettings
from pipecat.services.stt_service import SegmentedSTTService
from pipecat.services.tts_service import TTSService
from pipecat.utils.time import time_now_iso8601

from audio.speech import Transcriber, Voice

__all__ = ["OfflineSTTService", "OfflineTTSService"]


class OfflineSTTService(SegmentedSTTService):
    """Whisper tiny.en on each speech segment the VAD closes."""

    def __init__(self, transcriber: Transcriber, **kwargs: Any) -> None:
        super().__init__(
            settings=STTSettings(model="whisper-tiny.en", language=None),
            # Whisper tiny.en on 2 cores: a segment's words arrive within ~0.5 s.
            ttfs_p99_latency=0.5,
            **kwargs,
        )
        self._transcriber = transcriber

    @property
    def wants_wav_segments(self) -> bool:
        return False

    async def run_stt(self, audio: bytes) -> AsyncGenerator[Frame, None]:
        samples = np.frombuffer(audio, dtype=np.int16)
        try:
            text = await self._transcriber.transcribe_async(samples, self.sample_rate)
        except Exception as exc:  # a failed segment is reported, the call goes on
            yield ErrorFrame(error=f"offline STT failed: {exc}")
            return
        if text:
            yield TranscriptionFrame(text=text, user_id="agent", timestamp=time_now_iso8601())


class OfflineTTSService(TTSService):
    """A cached offline voice (flite or piper) as a pipecat TTS service."""

    def __init__(self, voice: Voice, *, speed: float = 1.0, **kwargs: Any) -> None:
        super().__init__(
            push_start_frame=True,
            push_stop_frames=True,
            settings=TTSSettings(model=voice.engine, voice=voice.name, language=None),
            **kwargs,
        )
        self._voice = voice
        self._speed = speed

    def can_generate_metrics(self) -> bool:
        return True

    async def run_tts(self, text: str, context_id: str) -> AsyncGenerator[Frame, None]:
        try:
            audio = await self._voice.synthesize_async(text, self.sample_rate, self._speed)
        except Exception as exc:
            yield ErrorFrame(error=f"offline TTS failed: {exc}")
            return

        async def one_chunk() -> AsyncGenerator[bytes, None]:
            yield audio.tobytes()

        async for frame in self._stream_audio_frames_from_iterator(
            one_chunk(), in_sample_rate=self.sample_rate, context_id=context_id
        ):
            yield frame
