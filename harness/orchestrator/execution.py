"""Run one case against one target and return a ``Run``, whatever happens.

Stage: the middle of the flow (controller/CLI -> orchestrator -> call, persona
bot, recorder -> analysis, scoring -> Run).  Every outcome ends as a ``Run`` with
a status and a reason: a refused or unreachable target is ``failed``/``error``
with a readable message; a cancellation (Ctrl-C) hangs up and is stored as
``cancelled`` before the cancellation continues; an unexpected exception is
logged once and stored as ``failed``.  Audio is analysed whenever there is any.

The run stays ``running`` until its end is stored: how the call ended is noted
when it ends, and becomes the run's status in the same write as its transcript,
metrics and evaluation, so no reader sees a run ended but not yet scored.  Once
the call is over, that write happens even if the task is cancelled meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from loguru import logger

from audio.speech import get_transcriber
from harness import __version__
from harness.analysis import CallHealth, SaidLine, analyse, transcribe_agent_turns
from harness.models import CallEvent, Case, Run, RunStatus, TerminationReason, utcnow
from harness.monitor import loop_monitor, process_cpu_s
from harness.offload import off_loop
from harness.orchestrator.calibration import Calibration, EchoCalibrator
from harness.orchestrator.options import CALL_OVER, ProgressFn, RunOptions
from harness.orchestrator.reports import AgentReports
from harness.pricing import price_run
from harness.recording import Recorder
from harness.scoring import CallFacts, evaluate_off_loop
from harness.store import RunSink
from personas.bot import PersonaBot
from personas.brains import Brain, BrainError, tokens_spent
from personas.factory import make_brain
from personas.lean import LeanBot
from telephony import (
    Call,
    CallSetup,
    ConnectionLost,
    DialOptions,
    Target,
    TelephonyError,
    open_call,
    parse_target,
)

__all__ = ["run_case"]

# A call's hang-up waits on the far end at most ``call.hangup_timeout_s`` (a SIP BYE's
# answer, Twilio's final status: each channel bounds its own wait and releases the
# call whatever happens); the wrap-up allows that plus this margin, then moves on.
HANGUP_GRACE_S = 2.0


def hangup_allowance(call: Call) -> float:
    """How long the wrap-up lets ``call.hangup()`` run."""
    return call.hangup_timeout_s + HANGUP_GRACE_S


async def run_case(
    case: Case,
    target_url: str,
    store: RunSink,
    *,
    options: RunOptions | None = None,
    calibrator: EchoCalibrator | None = None,
    suite_name: str | None = None,
    suite_run_id: str | None = None,
    progress: ProgressFn | None = None,
    run: Run | None = None,
    dial: DialOptions | None = None,
) -> Run:
    """Place one call for ``case`` and return its stored ``Run``.

    A controller passes the ``run`` it queued (same case and target) so the id
    clients already hold is the one that completes, and the stored agent's
    ``dial`` options (headers, request data), which are not part of the run.
    """
    options = options or RunOptions()
    if run is None:
        run = Run(
            case=case,
            channel=target_url.partition("://")[0] or "unknown",
            target=target_url,
            suite_name=suite_name,
            suite_run_id=suite_run_id,
        )
    run.loopcall_version = __version__
    execution = _Execution(
        run, store, options, calibrator, progress or (lambda _r, _m: None), dial or DialOptions()
    )
    return await execution.execute()


def _reraise_swallowed_cancel() -> None:
    """Raise CancelledError if this task was cancelled and something below swallowed it.

    Third-party code (pipecat, aiortc) sometimes catches CancelledError; a Ctrl-C or
    an API cancel that lands there would otherwise let the call carry on.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


@dataclass(frozen=True)
class _Outcome:
    """How the call ended: the run's end state, given to it once it is analysed."""

    status: RunStatus
    reason: TerminationReason
    error: str | None
    ended_at: datetime


class _Execution:
    """The state of one run while it executes."""

    def __init__(
        self,
        run: Run,
        store: RunSink,
        options: RunOptions,
        calibrator: EchoCalibrator | None,
        progress: ProgressFn,
        dial: DialOptions,
    ) -> None:
        self.run = run
        self.dial = dial
        self.store = store
        self.options = options
        self.calibrator = calibrator
        self.progress = progress
        self.recorder: Recorder | None = None
        self.bot: PersonaBot | LeanBot | None = None
        self.brain: Brain | None = None
        self.connected_at: float | None = None
        self.connected_cpu_s = 0.0
        self.call: Call | None = None
        self.outcome: _Outcome | None = None
        self._pending_cancel = False
        self.started_mono = time.monotonic()
        self.reports = AgentReports(run, options)

    def event(self, kind: str, detail: str = "") -> None:
        t_ms = round((time.monotonic() - self.started_mono) * 1000.0, 1)
        self.run.events.append(CallEvent(t_ms=t_ms, kind=kind, detail=detail))
        self.progress(self.run, f"{kind}{': ' + detail if detail else ''}")

    async def execute(self) -> Run:
        monitor = loop_monitor()
        monitor.acquire()
        try:
            return await self._execute()
        finally:
            await monitor.release()

    async def _execute(self) -> Run:
        run = self.run
        call: Call | None = None
        try:
            run.status = "running"
            run.started_at = utcnow()
            await self.store.put(run)
            self.progress(run, "started")
            target = parse_target(run.target)
            run.channel = target.channel
            brain = self.brain = make_brain(run.case, self.options.llm, on_event=self.event)
            if self.options.calibration is not None:
                self._use_calibration(self.options.calibration, "measured before the run")
            elif self.options.calibrate:
                await self._calibrate(target)
            given = self.reports.open()
            call = open_call(
                target,
                CallSetup(
                    tools_url=given.tools_url,
                    events_url=given.events_url,
                    agent_token=given.token,
                    dial=DialOptions(
                        headers=self.dial.headers,
                        request_data={**self.dial.request_data, "loopcall_run_id": run.id},
                        phone=self.dial.phone,
                        sip=self.dial.sip,
                    ),
                    media_timeout_s=self.options.media_timeout_s,
                    inbound=run.case.direction == "inbound",
                    answer_timeout_s=run.case.answer_timeout_s,
                    use_line_rate=self.options.caller == "lean",
                    twilio=self.options.twilio,
                    gateway=self.options.gateway,
                    sip=self.options.sip,
                    egress=self.options.egress,
                ),
            )
            call.on_event = self.event
            self.call = call
            self.recorder = Recorder(call.sample_rate)
            call.add_tap(self.recorder)
            self.event("dialling", target.url)
            await call.connect(self.options.connect_timeout_s)
            _reraise_swallowed_cancel()
            self.connected_at = call.connected_at
            self.connected_cpu_s = process_cpu_s()
            self.reports.connected(self.connected_at)
            self.event("connected")
            reason = await self._converse(call, brain)
            self._finish("completed", reason)
        except asyncio.CancelledError:
            self._finish("cancelled", "cancelled", "cancelled by the user")
            await self._wrap_up(call)
            raise
        except (TelephonyError, BrainError) as exc:
            self._finish("failed", "error", str(exc))
        except Exception as exc:
            logger.exception(f"run {run.id} failed unexpectedly")
            self._finish("failed", "error", f"{type(exc).__name__}: {exc}")
        await self._wrap_up(call)
        return run

    async def _calibrate(self, target: Target) -> None:
        if self.calibrator is None:
            self.calibrator = EchoCalibrator()
        try:
            calibration = await self.calibrator.measure(target)
        except TelephonyError as exc:
            self.event("calibration_failed", str(exc))
            return
        self._use_calibration(calibration)

    def _use_calibration(self, calibration: Calibration, note: str = "") -> None:
        self.run.metrics.transport_rtt_ms = calibration.rtt_ms
        self.run.metrics.transport_rtt_jitter_ms = calibration.jitter_ms
        suffix = f" ({note})" if note else ""
        self.event("calibrated", f"transport round trip {calibration.rtt_ms:.1f} ms{suffix}")

    async def _converse(self, call: Call, brain: Brain) -> TerminationReason:
        case = self.run.case
        if self.options.caller == "lean":
            self.bot = LeanBot(case, call, brain, on_event=self.event)
        else:
            self.bot = PersonaBot(case, call, brain, on_event=self.event)
        await self.bot.start()
        _reraise_swallowed_cancel()
        finished = self.bot.finished
        ended = asyncio.ensure_future(call.ended.wait())
        waiters: set[asyncio.Future[Any]] = {finished, ended}
        try:
            done, _ = await asyncio.wait(
                waiters, timeout=case.max_duration_s, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            ended.cancel()
        if finished in done:
            reason: TerminationReason = finished.result()
            self.event("persona_hung_up", reason)
            return reason
        if call.ended.is_set():
            if call.end_cause in ("media_timeout", "transport_failed"):
                raise ConnectionLost(f"the call dropped: {call.end_detail}")
            self.event("agent_hung_up", call.end_detail)
            return "agent_ended"
        # Duration limit: say goodbye (briefly) and hang up.
        self.event("timeout", f"max_duration_s={case.max_duration_s:g}")
        await self.bot.say_goodbye("persona_goodbye")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(finished), 8.0)
        return "timeout"

    def _finish(
        self, status: RunStatus, reason: TerminationReason, error: str | None = None
    ) -> None:
        """The call is over: note how.  The run takes this status when it is stored."""
        if self.outcome is not None:
            return
        self.outcome = _Outcome(status, reason, error, utcnow())
        self.event("call_ended", f"{reason}{': ' + error if error else ''}")

    async def _wrap_up(self, call: Call | None) -> None:
        """Hang up, stop the bot, gather the agent's spans, analyse, score, store; a
        cancellation that lands here waits until the run is stored, then goes on."""
        run = self.run
        await self._to_the_end(self._hang_up(call))
        await self._to_the_end(self.reports.gather_spans())
        ended_mono, ended_cpu_s = time.monotonic(), process_cpu_s()
        self.progress(run, CALL_OVER)
        await self._wait_for_gate()
        await self._to_the_end(self._store_end(ended_mono, ended_cpu_s))
        self.progress(run, "stored")
        if self._pending_cancel:
            raise asyncio.CancelledError

    async def _to_the_end(self, step: Coroutine[Any, Any, None]) -> None:
        """Await ``step`` to its end even if this task is cancelled meanwhile (the
        cancellation is kept for once the run is stored)."""
        task = asyncio.ensure_future(step)
        while not task.done():
            try:
                await asyncio.shield(task)
            except asyncio.CancelledError:
                self._pending_cancel = True
        task.result()

    async def _hang_up(self, call: Call | None) -> None:
        if self.bot is not None:
            with contextlib.suppress(Exception):
                await self.bot.stop()
        if call is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(call.hangup(), hangup_allowance(call))

    async def _store_end(self, ended_mono: float, ended_cpu_s: float) -> None:
        """Analyse and score, then store the run with its end state: one write."""
        run, outcome = self.run, self.outcome
        if outcome is None:  # _wrap_up follows _finish; a missing outcome is our bug
            outcome = _Outcome("failed", "error", "the run ended without an outcome", utcnow())
        error = outcome.error
        try:
            await self._analyse(ended_mono, ended_cpu_s)
        except Exception as exc:  # analysis trouble must not lose the run
            logger.exception(f"run {run.id}: analysis failed")
            error = (error + "; " if error else "") + f"analysis failed: {exc}"
        error = await self.reports.collect(error, self.event)
        run.usage.add_tokens("persona", *tokens_spent(self.brain))
        facts = CallFacts(run.turns, run.metrics, outcome.reason, run.tool_calls, run.agent_events)
        evaluation = await evaluate_off_loop(run.case, facts, self.options.judge, run.usage)
        run.evaluation = evaluation
        run.termination_reason = outcome.reason
        run.error = error
        run.ended_at = outcome.ended_at
        price_run(run, self.options.prices)
        if run.started_at is not None:
            run.duration_ms = round((run.ended_at - run.started_at).total_seconds() * 1000.0, 1)
        run.status = outcome.status  # last: until now every reader sees it running
        await self.store.put(run)

    async def _wait_for_gate(self) -> None:
        """Hold the analysis until the options' gate opens (a bench's level is over).

        A cancellation while waiting still analyses and stores the run (nothing is
        lost); the cancellation goes on once the run is stored.
        """
        gate = self.options.analysis_gate
        task = asyncio.current_task()
        if gate is None or gate.is_set() or (task is not None and task.cancelling()):
            return
        try:
            await gate.wait()
        except asyncio.CancelledError:
            self._pending_cancel = True

    async def _analyse(self, ended_mono: float, ended_cpu_s: float) -> None:
        run, call, connected_at = self.run, self.call, self.connected_at
        if self.recorder is None or connected_at is None or call is None:
            return
        # The heavy part of the wrap-up runs in a thread: other calls may be live on
        # this event loop, and a stall there would blur their timing.
        recording = await off_loop(self.recorder.recording, connected_at)
        if recording.duration_ms <= 0:
            return
        path = self.store.recording_path(run.id)
        await off_loop(recording.write_wav, path)
        run.recording = str(path.resolve())
        said = [
            SaidLine(t_ms=(u.t - connected_at) * 1000.0, text=u.text)
            for u in (self.bot.said if self.bot else [])
        ]
        wall = ended_mono - connected_at
        health = CallHealth(
            lag=loop_monitor().window(connected_at, ended_mono),
            connected_at=connected_at,
            cpu_percent=100.0 * (ended_cpu_s - self.connected_cpu_s) / wall if wall > 0 else None,
            bound_ms=self.options.lag_bound_ms,
            kernel_stamped=call.kernel_stamped,
            drops=call.audio_drops,
        )
        run.turns, run.metrics = await off_loop(
            analyse,
            recording,
            said,
            transport_rtt_ms=run.metrics.transport_rtt_ms,
            transport_rtt_jitter_ms=run.metrics.transport_rtt_jitter_ms,
            health=health,
            dead_air_ms=run.case.dead_air_ms,
            min_overlap_ms=run.case.min_overlap_ms,
        )
        if self.options.transcribe:
            await transcribe_agent_turns(run.turns, recording, get_transcriber(), run.metrics)
        harness = run.metrics.harness
        if harness is not None and harness.degraded_turns:
            self.event("degraded", harness.degraded_reason or "")
