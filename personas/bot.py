"""The persona bot: a pipecat pipeline that converses with the agent over a ``Call``.

Stage: after the call is connected, until someone hangs up.  Pipeline::

    CallTransport.input() -> Silero VAD -> offline STT -> PersonaTurns -> offline TTS
        -> CallTransport.output()

``PersonaTurns`` waits until the agent has stopped (VAD) and its words are
transcribed, leaves a human-like gap, asks the brain for the next line and hands
it to TTS.  It says goodbye at the end of the script or at ``max_turns`` and then
reports that it is done.  It keeps a log of what it said and when it asked to
say it, so the harness can put text on the persona turns it finds in the
recording.  Timing is *not* measured here (pipecat's events arrive hundreds of ms
late): the recorder on the call does that.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal

from loguru import logger
from pipecat.audio.vad.silero import SileroVADAnalyzer
from pipecat.audio.vad.vad_analyzer import VADParams
from pipecat.frames.frames import (
    BotStoppedSpeakingFrame,
    Frame,
    StartFrame,
    TranscriptionFrame,
    TTSSpeakFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineWorker
from pipecat.processors.audio.vad_processor import VADProcessor
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.workers.runner import WorkerRunner

from audio.speech import get_transcriber, get_voice
from personas.brains import Brain, BrainError, Reply, ScriptedBrain, needs_live_stt
from personas.services import OfflineSTTService, OfflineTTSService
from personas.spec import CallerCase
from personas.transport import CallTransport
from runtime.tasks import spawn
from telephony.base import Call, TelephonyError

__all__ = ["PersonaBot", "Utterance"]

FinishReason = Literal["persona_goodbye", "max_turns"]
EventFn = Callable[[str, str], None]  # (kind, detail): the live timeline
HANGUP_TAIL_S = 0.3
DTMF_GAP_S = 0.25  # between key presses, as a person presses them
TRANSCRIPT_WAIT_S = 3.0


@dataclass(frozen=True)
class Utterance:
    """A line the persona decided to say, with the monotonic time it decided."""

    t: float
    text: str


@dataclass
class _Heard:
    text: list[str] = field(default_factory=list)
    agent_speaking: bool = False
    stopped_at: float | None = None
    pending_segments: int = 0


class PersonaTurns(FrameProcessor):
    """Turn-taking for the caller: listen, wait for the agent to finish, answer."""

    def __init__(
        self,
        brain: Brain,
        *,
        response_gap_s: float,
        wait_for_greeting_s: float,
        on_finished: asyncio.Future[FinishReason],
        on_event: EventFn | None = None,
        press: Callable[[str], Awaitable[None]] | None = None,
        listens: bool = True,
    ) -> None:
        super().__init__()
        # Whether the next line depends on the agent's words (``needs_live_stt``): if
        # not, the persona answers after its gap without waiting for the transcript
        # (which still comes, for the timeline, a second or more later).
        self._listens = listens
        self._press_key = press
        self._on_event = on_event or (lambda _kind, _detail: None)
        self._brain = brain
        self._gap = response_gap_s
        self._wait_for_greeting = wait_for_greeting_s
        self._finished = on_finished
        self._heard = _Heard()
        self._pending_hangup: Reply | None = None
        self._hangup_task: asyncio.Task[None] | None = None
        self._transcribed = asyncio.Event()
        self._reply_task: asyncio.Task[None] | None = None
        self._greeting_task: asyncio.Task[None] | None = None
        self.said: list[Utterance] = []
        self._agent_ever_spoke = False

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, StartFrame):
            self._greeting_task = self.create_task(self._speak_first_if_silent())
        elif isinstance(frame, VADUserStartedSpeakingFrame):
            self._agent_ever_spoke = True
            self._heard.agent_speaking = True
            self._heard.pending_segments += 1
            await self._cancel_reply()
        elif isinstance(frame, VADUserStoppedSpeakingFrame):
            self._heard.agent_speaking = False
            # The VAD reports the stop `stop_secs` after the agent actually stopped.
            self._heard.stopped_at = time.monotonic() - frame.stop_secs
            self._schedule_reply()
        elif isinstance(frame, TranscriptionFrame):
            self._heard.text.append(frame.text)
            self._on_event("agent_heard", frame.text)
            self._heard.pending_segments = max(0, self._heard.pending_segments - 1)
            self._transcribed.set()
        elif (
            isinstance(frame, BotStoppedSpeakingFrame)
            and self._pending_hangup is not None
            and self._hangup_task is None
        ):
            self._hangup_task = self.create_task(self._finish(self._pending_hangup))
        await self.push_frame(frame, direction)

    async def cleanup(self) -> None:
        await self._cancel_reply()
        for task in (self._greeting_task, self._hangup_task):
            if task is not None and not task.done():
                await self.cancel_task(task)
        await super().cleanup()

    def _schedule_reply(self) -> None:
        if self._pending_hangup is not None or self._heard.agent_speaking:
            return
        if self._reply_task is None or self._reply_task.done():
            self._reply_task = self.create_task(self._reply_after_gap())

    async def _finish(self, reply: Reply) -> None:
        await asyncio.sleep(HANGUP_TAIL_S)
        if not self._finished.done():
            self._finished.set_result(reply.reason or "persona_goodbye")

    async def _cancel_reply(self) -> None:
        if self._reply_task is not None and not self._reply_task.done():
            await self.cancel_task(self._reply_task)
        self._reply_task = None

    async def _reply_after_gap(self) -> None:
        stopped = self._heard.stopped_at or time.monotonic()
        await asyncio.sleep(max(0.0, stopped + self._gap - time.monotonic()))
        # Wait (bounded) for the words of the segment the VAD just closed.
        deadline = time.monotonic() + (TRANSCRIPT_WAIT_S if self._listens else 0.0)
        while self._heard.pending_segments > 0 and time.monotonic() < deadline:
            self._transcribed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._transcribed.wait(), deadline - time.monotonic())
        self._heard.pending_segments = 0
        if self._heard.agent_speaking:
            return
        agent_said = " ".join(self._heard.text)
        self._heard.text.clear()
        await self._say(await self._think(agent_said))

    async def _speak_first_if_silent(self) -> None:
        await asyncio.sleep(self._wait_for_greeting)
        if not self._agent_ever_spoke and not self.said:
            self._on_event("persona_speaks_first", "the agent did not greet")
            await self._say(await self._think(""))

    async def _think(self, agent_said: str) -> Reply | None:
        """The brain's next line; a brain failure ends the run (as failed) instead."""
        try:
            return await self._brain.next_reply(agent_said)
        except BrainError as exc:
            logger.warning(f"persona: {exc}")
            if not self._finished.done():
                self._finished.set_exception(exc)
            return None

    async def _say(self, reply: Reply | None) -> None:
        if reply is None:
            return
        if reply.dtmf:
            await self._press(reply.dtmf)
            if not reply.text:
                return
        self.said.append(Utterance(time.monotonic(), reply.text))
        self._on_event("persona_says", reply.text)
        if reply.hang_up:
            self._pending_hangup = reply
        await self.push_frame(TTSSpeakFrame(reply.text))

    async def _press(self, digits: str) -> None:
        """Press keys, one every ``DTMF_GAP_S``; a channel without DTMF ends the run."""
        if self._press_key is None:
            return
        for digit in digits:
            try:
                await self._press_key(digit)
            except TelephonyError as exc:
                if not self._finished.done():
                    self._finished.set_exception(exc)
                return
            self._on_event("persona_pressed", digit)
            await asyncio.sleep(DTMF_GAP_S)

    async def say_goodbye(self, reason: FinishReason) -> None:
        """Say the goodbye line now (used at the duration limit)."""
        if self._pending_hangup is None:
            await self._cancel_reply()
            await self._say(self._brain.goodbye(reason))


class PersonaBot:
    """Builds and runs the persona pipeline for one case over one call."""

    def __init__(
        self,
        case: CallerCase,
        call: Call,
        brain: Brain | None = None,
        *,
        on_event: EventFn | None = None,
    ) -> None:
        self.case = case
        self.call = call
        loop = asyncio.get_running_loop()
        self.finished: asyncio.Future[FinishReason] = loop.create_future()
        brain = brain or ScriptedBrain.for_case(case, on_event=on_event)
        self.turns = PersonaTurns(
            brain,
            response_gap_s=case.response_gap_ms / 1000.0,
            wait_for_greeting_s=case.wait_for_greeting_s,
            on_finished=self.finished,
            on_event=on_event,
            press=call.send_dtmf,
            listens=needs_live_stt(case, brain),
        )
        transport = CallTransport(call)
        voice = get_voice(case.persona.voice)
        self._worker = PipelineWorker(
            Pipeline(
                [
                    transport.input(),
                    VADProcessor(
                        vad_analyzer=SileroVADAnalyzer(
                            sample_rate=call.sample_rate, params=VADParams(stop_secs=0.8)
                        )
                    ),
                    OfflineSTTService(get_transcriber()),
                    self.turns,
                    OfflineTTSService(voice, speed=case.persona.speaking_rate),
                    transport.output(),
                ]
            ),
            enable_rtvi=False,
            idle_timeout_secs=None,
            enable_turn_tracking=False,
        )
        self._runner = WorkerRunner(handle_sigint=False)
        self._task: asyncio.Task[None] | None = None

    @property
    def said(self) -> list[Utterance]:
        return self.turns.said

    async def say_goodbye(self, reason: FinishReason) -> None:
        """Say the goodbye line now (used at the duration limit)."""
        await self.turns.say_goodbye(reason)

    async def start(self) -> None:
        await self._runner.add_workers(self._worker)
        self._task = spawn(self._runner.run(), name="persona-pipeline")

    async def stop(self) -> None:
        """Stop the pipeline at once (the call is over)."""
        if self._task is None:
            return
        await self._worker.cancel(reason="call ended")
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(self._task, 10)
        self._task = None
