"""The lean caller: the persona without a pipeline, cheap enough for hundreds of calls at once.

Stage: after the call is connected, until someone hangs up, in place of the
pipecat ``PersonaBot`` when a run asks for ``caller="lean"`` (``loopcall bench``
does).  It keeps the bot's behaviour (wait for the agent to finish, leave the
case's response gap, say the brain's next line, press keys, say goodbye and hang
up) but spends almost nothing per 20 ms frame:

- turn-taking by the harness's own energy endpointer (``StreamingEndpointer``,
  the rule the recording is measured with) instead of Silero VAD;
- the persona's lines pre-synthesized once (``Voice`` caches them per process),
  so a hundred callers saying the same script synthesize it once;
- no live speech-to-text unless the brain needs to understand the agent (an LLM
  brain, or script lines with ``when:``); then each agent utterance is
  transcribed on the process's one shared transcriber, off the audio path.

What the agent said is transcribed after the call from the recording, as for
every run.  Timing is not measured here: the recorder on the call does that.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np
from loguru import logger

from audio.endpointer import StreamingEndpointer
from audio.speech import Transcriber, get_transcriber, get_voice, lead_in
from personas.bot import DTMF_GAP_S, HANGUP_TAIL_S, TRANSCRIPT_WAIT_S, FinishReason, Utterance
from personas.brains import Brain, BrainError, Reply, ScriptedBrain, needs_live_stt
from personas.spec import CallerCase
from runtime.tasks import spawn
from telephony.base import Call, TelephonyError

__all__ = ["LeanBot"]

EventFn = Callable[[str, str], None]
# The agent's pauses between sentences of one reply stay under this (the pipecat
# bot's Silero VAD waits 0.8 s too).
END_OF_TURN_MS = 800.0
HISTORY_S = 30.0


class LeanBot:
    """Converses over ``call`` for ``case``: the same turns as ``PersonaBot``, no pipeline."""

    def __init__(
        self,
        case: CallerCase,
        call: Call,
        brain: Brain | None = None,
        *,
        on_event: EventFn | None = None,
        transcriber: Transcriber | None = None,
    ) -> None:
        self.case = case
        self.call = call
        self._brain = brain or ScriptedBrain.for_case(case, on_event=on_event)
        self._on_event = on_event or (lambda _kind, _detail: None)
        self._voice = get_voice(case.persona.voice)
        self._speed = case.persona.speaking_rate
        self._rate = call.sample_rate
        self._live_stt = needs_live_stt(case, self._brain)
        self._transcriber = transcriber if self._live_stt else None
        self._endpointer = StreamingEndpointer(self._rate, hangover_ms=END_OF_TURN_MS)
        self._gap_s = case.response_gap_ms / 1000.0
        self._received = 0  # agent samples heard so far
        self._heard_until = 0  # end of the agent's previous utterance (samples)
        self._history: deque[tuple[int, np.ndarray]] = deque(
            maxlen=int(HISTORY_S * 1000 / call.frame_ms)
        )
        loop = asyncio.get_running_loop()
        self.finished: asyncio.Future[FinishReason] = loop.create_future()
        self.said: list[Utterance] = []
        self._agent_ever_spoke = False
        self._hanging_up = False
        self._reply: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    # ----------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Synthesize the script's lines (cached per process) and start listening."""
        lines = [line.say for line in self.case.script if line.say] + [self.case.goodbye]
        for text in lines:
            await self._voice.synthesize_async(text, self._rate, self._speed)
        if self._live_stt and self._transcriber is None:
            # Loading Whisper takes half a second: not on the event loop.
            self._transcriber = await asyncio.to_thread(get_transcriber)
        self.call.listen(self._on_audio)
        self._spawn(self._speak_first_if_silent())

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def say_goodbye(self, reason: FinishReason) -> None:
        """Say the goodbye line now (used at the duration limit)."""
        if not self._hanging_up:
            self._cancel_reply()
            self._reply = self._spawn(self._say(self._brain.goodbye(reason)))

    # ----------------------------------------------------------------- listening

    def _on_audio(self, pcm: bytes, _arrived: float) -> None:
        """Each chunk of the agent's audio, inline in the call's receive path."""
        try:
            self._hear(np.frombuffer(pcm, dtype=np.int16))
        except Exception:  # never break the transport's receive path
            logger.exception("lean caller: listening failed")

    def _hear(self, samples: np.ndarray) -> None:
        start = self._received
        self._received += samples.size
        if self._transcriber is not None:
            self._history.append((start, samples))
        was_speaking = self._endpointer.speaking
        utterance = self._endpointer.push(samples)
        if self._endpointer.speaking and not was_speaking:
            self._agent_ever_spoke = True
            self._cancel_reply()  # the agent speaks (again): wait for it to finish
        if utterance is not None and not self._hanging_up:
            # The endpointer decides after its hangover: the agent stopped that long ago.
            silent_s = (self._received - utterance.end) / self._rate
            self._cancel_reply()
            start = lead_in(utterance.start, self._heard_until, self._rate)
            self._heard_until = utterance.end
            self._reply = self._spawn(
                self._answer(max(0.0, self._gap_s - silent_s), start, utterance.end)
            )

    async def _answer(self, wait_s: float, start: int, end: int) -> None:
        heard = ""
        if self._transcriber is not None:
            audio = self._slice(start, end)
            with contextlib.suppress(TimeoutError):
                heard = await asyncio.wait_for(
                    self._transcriber.transcribe_async(audio, self._rate), TRANSCRIPT_WAIT_S
                )
            if heard:
                self._on_event("agent_heard", heard)
        await asyncio.sleep(wait_s)
        await self._say(await self._think(heard))

    async def _speak_first_if_silent(self) -> None:
        await asyncio.sleep(self.case.wait_for_greeting_s)
        if not self._agent_ever_spoke and not self.said and self._reply is None:
            self._on_event("persona_speaks_first", "the agent did not greet")
            self._reply = self._spawn(self._say(await self._think("")))

    # ------------------------------------------------------------------ speaking

    async def _think(self, agent_said: str) -> Reply | None:
        try:
            return await self._brain.next_reply(agent_said)
        except BrainError as exc:
            logger.warning(f"persona: {exc}")
            self._fail(exc)
            return None

    async def _say(self, reply: Reply | None) -> None:
        if reply is None:
            return
        if reply.dtmf:
            for digit in reply.dtmf:
                try:
                    await self.call.send_dtmf(digit)
                except TelephonyError as exc:
                    self._fail(exc)
                    return
                self._on_event("persona_pressed", digit)
                await asyncio.sleep(DTMF_GAP_S)
        if reply.text:
            audio = await self._voice.synthesize_async(reply.text, self._rate, self._speed)
            self.said.append(Utterance(time.monotonic(), reply.text))
            self._on_event("persona_says", reply.text)
            if reply.hang_up:
                self._hanging_up = True
            with contextlib.suppress(TelephonyError):
                await self.call.send_audio(audio.tobytes())
        if reply.hang_up:
            self._hanging_up = True
            await self.call.wait_sent()
            await asyncio.sleep(HANGUP_TAIL_S)
            if not self.finished.done():
                self.finished.set_result(reply.reason or "persona_goodbye")

    # ------------------------------------------------------------------- helpers

    def _cancel_reply(self) -> None:
        """Drop a reply that has not started to play (the agent took the floor)."""
        if self._reply is not None and not self._reply.done() and not self._hanging_up:
            self._reply.cancel()
        self._reply = None

    def _fail(self, exc: Exception) -> None:
        if not self.finished.done():
            self.finished.set_exception(exc)

    def _slice(self, start: int, end: int) -> np.ndarray:
        parts = [
            chunk[max(0, start - pos) : max(0, end - pos)]
            for pos, chunk in self._history
            if pos < end and pos + chunk.size > start
        ]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int16)

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        return spawn(coro, owner=self._tasks)
