"""The contract: the records every stage of a run reads and writes.

A run flows controller -> orchestrator -> call -> persona bot -> recorder/metrics
-> scorer -> ``Run``.  This module holds the pydantic records at the two ends of
that flow: what the user writes (``Case``, ``Suite``, ``Persona``, ``Criterion``)
and what loopcall stores and serves (``Run`` with its ``Turn``s, ``Metrics`` and
``Evaluation``).  Field names follow Yappr's agent-eval API where the two overlap
so that the peer views stay thin.  It imports nothing of ours.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

__all__ = [
    "CallEvent",
    "Case",
    "Criterion",
    "CriterionResult",
    "Evaluation",
    "HarnessHealth",
    "LatencyCheck",
    "LatencySummary",
    "Metrics",
    "Persona",
    "Run",
    "RunStatus",
    "ScriptLine",
    "Suite",
    "TerminationReason",
    "TurnCountCheck",
    "Turn",
    "new_run_id",
    "utcnow",
]

RunStatus = Literal["queued", "running", "completed", "failed", "cancelled"]
TerminationReason = Literal[
    "persona_goodbye", "agent_ended", "max_turns", "timeout", "error", "cancelled"
]
Role = Literal["persona", "agent"]
LatencyStat = Literal["min", "p50", "p90", "p95", "p99", "max", "mean"]

TERMINATION_REASONS: tuple[str, ...] = (
    "persona_goodbye",
    "agent_ended",
    "max_turns",
    "timeout",
    "error",
    "cancelled",
)


def utcnow() -> datetime:
    """Return the current time as an aware UTC datetime."""
    return datetime.now(UTC)


def new_run_id() -> str:
    """Return a fresh run id (a UUID4 string, as the peers use)."""
    return str(uuid.uuid4())


def _compiles(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"invalid regex {value!r}: {exc}") from exc
    return value


Regex = Annotated[str, AfterValidator(_compiles)]


class _Strict(BaseModel):
    """Input records: unknown keys are errors, so typos in a case file surface."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


# --------------------------------------------------------------------------- case


class Persona(_Strict):
    """Who calls: Yappr's persona fields plus the voice the caller speaks with."""

    name: str = Field(min_length=1)
    identity_prompt: str = ""
    description: str | None = None
    behavior_traits: dict[str, str] = Field(default_factory=dict)
    language: str = "en"
    voice: str = Field(
        default="flite:slt",
        description="TTS voice as 'engine:voice', e.g. 'flite:slt', 'flite:rms', 'piper:joe'.",
    )
    speaking_rate: float = Field(default=1.0, gt=0.25, le=4.0)

    @field_validator("voice")
    @classmethod
    def _voice_has_engine(cls, value: str) -> str:
        engine, _, name = value.partition(":")
        if not engine or not name:
            raise ValueError("voice must look like 'engine:voice', e.g. 'flite:slt'")
        return value


class ScriptLine(_Strict):
    """One thing the scripted persona says (or keys it presses: ``dtmf``).

    Without ``when`` the line is said in order, one per agent turn.  With
    ``when`` (a regex, case-insensitive) it is said as soon as the agent's last
    turn matches, once, ahead of the ordered lines: this is how a script states
    goals ("when asked for a date of birth, give it").
    """

    say: str | None = Field(default=None, min_length=1)
    dtmf: str | None = Field(
        default=None,
        pattern=r"^[0-9*#A-D]{1,32}$",
        description="keys the persona presses (before saying ``say``, if both are given)",
    )
    when: Regex | None = None

    @model_validator(mode="after")
    def _says_or_presses(self) -> ScriptLine:
        if self.say is None and self.dtmf is None:
            raise ValueError("a script line needs `say`, `dtmf`, or both")
        return self


class LatencyCheck(_Strict):
    """``stat`` of the run's agent latencies must be at most ``max_ms``."""

    stat: LatencyStat = "p90"
    max_ms: float = Field(gt=0)


class TurnCountCheck(_Strict):
    """The number of turns (of ``role``, or of both) lies within [min, max]."""

    role: Role | None = None
    min: int | None = Field(default=None, ge=0)
    max: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _has_bound(self) -> TurnCountCheck:
        if self.min is None and self.max is None:
            raise ValueError("give at least one of 'min' and 'max'")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("'min' must not exceed 'max'")
        return self


_CHECK_FIELDS = ("pattern", "latency_ms", "termination_reason", "turn_count")


class Criterion(_Strict):
    """One success criterion: a weight, a description and exactly one check.

    ``pattern`` is Yappr's regex assertion; ``role`` says whose speech it is
    matched against and ``must_match: false`` turns it into "must not say".
    """

    weight: float = Field(default=1.0, ge=0)
    description: str = ""
    pattern: Regex | None = None
    role: Role = "agent"
    must_match: bool = True
    latency_ms: LatencyCheck | None = None
    termination_reason: list[TerminationReason] | None = None
    turn_count: TurnCountCheck | None = None

    @field_validator("termination_reason", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _exactly_one_check(self) -> Criterion:
        given = [name for name in _CHECK_FIELDS if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(
                f"a criterion needs exactly one check among {', '.join(_CHECK_FIELDS)}; "
                f"got {', '.join(given) if given else 'none'}"
            )
        return self

    @property
    def kind(self) -> str:
        """The name of the check this criterion carries."""
        return next(name for name in _CHECK_FIELDS if getattr(self, name) is not None)


class Case(_Strict):
    """A test case, shaped like Yappr's case plus loopcall's script and limits."""

    id: str | None = None
    name: str = Field(min_length=1)
    description: str | None = None
    scenario: str = ""
    persona: Persona
    success_criteria: list[Criterion] = Field(default_factory=list)
    max_turns: int = Field(default=20, ge=1, le=500)
    pass_threshold: float = Field(default=80, ge=0, le=100)
    script: list[ScriptLine] = Field(default_factory=list)
    brain: Literal["scripted", "llm"] = Field(
        default="scripted",
        description="scripted: say the script; llm: an OpenAI-compatible model plays the persona.",
    )
    goodbye: str = "Thanks, that's all. Goodbye."
    max_duration_s: float = Field(default=120, gt=0, le=3600)
    response_gap_ms: float = Field(
        default=350, ge=0, le=10_000, description="Pause the persona leaves after the agent stops."
    )
    wait_for_greeting_s: float = Field(
        default=5.0,
        ge=0,
        le=600,
        description="How long the persona waits for the agent to speak first.",
    )
    retries: int = Field(
        default=0,
        ge=0,
        le=10,
        description="Controller mode: times a run interrupted by a controller stop is re-queued "
        "(instead of failing) when the controller starts again.",
    )
    direction: Literal["outbound", "inbound"] = Field(
        default="outbound",
        description="outbound: loopcall calls the agent; inbound: the agent calls loopcall "
        "(the target is where loopcall answers: the number it calls, e.g. tel:+15550100, "
        "or the SIP URI loopcall listens on, e.g. sip:persona@0.0.0.0:5070).",
    )
    answer_timeout_s: float = Field(
        default=60,
        gt=0,
        le=3600,
        description="Inbound: how long to wait for the agent's call before the run fails.",
    )

    @field_validator("script", mode="before")
    @classmethod
    def _lines_from_strings(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"say": item} if isinstance(item, str) else item for item in value]
        return value


class Suite(_Strict):
    """A named list of cases, run in order."""

    name: str = Field(min_length=1)
    description: str | None = None
    cases: list[Case] = Field(min_length=1)


# --------------------------------------------------------------------------- run


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


class CriterionResult(BaseModel):
    """The verdict on one criterion (Yappr's evaluation result)."""

    assertion: Criterion
    passed: bool
    weight: float
    reason: str


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
    error: str | None = None
    loopcall_version: str | None = None

    @property
    def passed(self) -> bool:
        """True when the run completed and its evaluation passed."""
        return (
            self.status == "completed" and self.evaluation is not None and self.evaluation.pass_fail
        )
