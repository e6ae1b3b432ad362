"""What loopcall stores and serves: a ``Run`` with its turns, metrics, evaluation, events.

Part of the contract (``harness.models``).  Every stage after the call writes
into one of these records; the peer views (``harness/views``) read them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from pydantic import BaseModel, Field

from harness.models.agent_side import AgentEvent, AgentTurnTiming, ToolCall
from harness.models.case import Case, Criterion
from harness.models.common import Role, RunStatus, TerminationReason, new_run_id, utcnow
from harness.models.dynamics import Dynamics
from harness.models.usage import Usage

__all__ = [
    "CallEvent",
    "CriterionResult",
    "Evaluation",
    "Evidence",
    "HarnessHealth",
    "LatencySummary",
    "Metrics",
    "Run",
    "Turn",
    "vouched_latencies",
]


class Turn(BaseModel):
    """One speaker's stretch of speech, timed on the recording from call start."""

    role: Role
    text: str
    start_ms: float
    end_ms: float
    latency_ms: float | None = Field(
        default=None,
        description="Agent turns: onset of this turn minus the end of the persona turn before it.",
    )
    degraded: bool = Field(
        default=False,
        description="The harness's event loop ran later than its bound while this turn's "
        "latency was measured: the figure is kept but not counted as the agent's latency.",
    )
    agent_timing: AgentTurnTiming | None = Field(
        default=None,
        description="Agent turns: the agent's own account of this reply (its spans), "
        "beside the latency heard in the audio.",
    )


def vouched_latencies(turns: Sequence[Turn]) -> list[float]:
    """The agent latencies the harness vouches for: measured, and not ``degraded``.

    Every figure that summarises latency (a run's ``metrics.latency_ms``, its
    latency criteria, a bench level, the peers' views) counts these and no others.
    """
    return [t.latency_ms for t in turns if t.latency_ms is not None and not t.degraded]


class LatencySummary(BaseModel):
    """Distribution of the agent's response latencies in one run, in ms."""

    n: int = 0
    min: float | None = None
    p50: float | None = None
    p90: float | None = None
    p95: float | None = None
    p99: float | None = None
    max: float | None = None
    mean: float | None = None


class HarnessHealth(BaseModel):
    """How well the harness itself kept time while it measured one call."""

    cpu_percent: float | None = Field(
        default=None, description="The harness process's CPU during the call (% of one core)."
    )
    loop_lag_ms_p50: float | None = None
    loop_lag_ms_p99: float | None = Field(
        default=None, description="The event loop's scheduling delay, 99th percentile."
    )
    loop_lag_ms_max: float | None = None
    lag_bound_ms: float = Field(
        default=20.0, description="Delay beyond which a measurement is marked degraded."
    )
    audio_dropped_ms: float = Field(
        default=0, description="Agent audio the playout dropped as stale (a late burst)."
    )
    kernel_stamped: bool = Field(
        default=False,
        description="Arrivals are stamped by the kernel (SIP): the loop's delay moves only "
        "what the harness sends, so only a late loop around the persona's end (or dropped "
        "audio) degrades a turn.",
    )
    degraded_turns: int = 0
    degraded: bool = False
    degraded_reason: str | None = None


class Metrics(BaseModel):
    """What was measured from the audio of one call."""

    latency_ms: LatencySummary = Field(
        default_factory=LatencySummary,
        description="Over the agent turns that are not degraded.",
    )
    time_to_first_audio_ms: float | None = Field(
        default=None, description="Call connected -> first agent speech on the recording."
    )
    transport_rtt_ms: float | None = Field(
        default=None,
        description="Round trip of the transport alone, by echo calibration before the call.",
    )
    transport_rtt_jitter_ms: float | None = Field(
        default=None, description="Spread (max - min) of the calibration echoes."
    )
    agent_speech_ms: float = 0
    persona_speech_ms: float = 0
    overlap_ms: float = Field(default=0, description="Time both sides spoke at once.")
    agent_turns: int = 0
    persona_turns: int = 0
    harness: HarnessHealth | None = Field(
        default=None, description="The harness's own timing health during the call."
    )
    dynamics: Dynamics | None = Field(
        default=None, description="Turn-taking from both sides' audio: interruptions, silences."
    )


class Evidence(BaseModel):
    """What a verdict rests on: a turn, a quote, a tool call or event, a moment."""

    turn_index: int | None = None
    quote: str | None = None
    tool_call_index: int | None = None
    agent_event_index: int | None = None
    at_ms: float | None = Field(default=None, description="From the recording's start.")
    score: float | None = Field(
        default=None, description="How strongly it supports the verdict (semantic: similarity)."
    )


class CriterionResult(BaseModel):
    """The verdict on one criterion (Yappr's evaluation result)."""

    assertion: Criterion
    passed: bool
    weight: float
    reason: str
    evidence: list[Evidence] = Field(default_factory=list)


class Evaluation(BaseModel):
    """Weighted score over the criteria and the pass/fail verdict."""

    score: float = Field(ge=0, le=100)
    pass_fail: bool
    results: list[CriterionResult] = Field(default_factory=list)


class CallEvent(BaseModel):
    """A timestamped happening during the run, for its timeline (and live progress)."""

    t_ms: float = Field(description="Milliseconds since the run started (before calibration).")
    kind: str
    detail: str = ""


class Run(BaseModel):
    """One execution of one case against one target: loopcall's canonical record."""

    id: str = Field(default_factory=new_run_id)
    status: RunStatus = "queued"
    termination_reason: TerminationReason | None = None
    created_at: datetime = Field(default_factory=utcnow)
    started_at: datetime | None = None
    ended_at: datetime | None = None
    duration_ms: float | None = None
    channel: str
    target: str
    case: Case
    suite_name: str | None = None
    suite_run_id: str | None = None
    case_id: str | None = Field(default=None, description="The stored case it ran, if any.")
    suite_id: str | None = Field(default=None, description="The stored suite it ran, if any.")
    agent_id: str | None = Field(default=None, description="The stored agent it called, if any.")
    persona_id: str | None = Field(
        default=None, description="The stored persona that called, if any."
    )
    attempt: int = Field(default=1, ge=1, description="1, or more once re-queued after a stop.")
    turns: list[Turn] = Field(default_factory=list)
    metrics: Metrics = Field(default_factory=Metrics)
    evaluation: Evaluation | None = None
    recording: str | None = Field(default=None, description="Path of the stereo WAV.")
    events: list[CallEvent] = Field(default_factory=list)
    tools_url: str | None = Field(
        default=None, description="Where this run's mock tools were served to the agent."
    )
    recording_epoch_s: float | None = Field(
        default=None,
        description="Unix time of the recording's sample 0 (the call connected): where the "
        "agent's own timestamps (spans, reports) meet the recording's clock.",
    )
    tool_calls: list[ToolCall] = Field(default_factory=list)
    agent_events: list[AgentEvent] = Field(default_factory=list)
    usage: Usage = Field(default_factory=Usage)
    error: str | None = None
    loopcall_version: str | None = None

    @property
    def passed(self) -> bool:
        """True when the run completed and its evaluation passed."""
        return (
            self.status == "completed" and self.evaluation is not None and self.evaluation.pass_fail
        )
