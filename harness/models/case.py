"""What the user writes: a case (persona, script, criteria, limits) and a suite of them.

Part of the contract (``harness.models``).  Field names follow Yappr's agent-eval
case where the two overlap; a case satisfies ``personas.spec.CallerCase``, so the
persona reads it without importing the harness.  Unknown keys are errors, so a
typo in a case file surfaces with its field.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from harness.models.agent_side import TOOL_NAME_PATTERN, MockTool
from harness.models.common import Bounded, LatencyStat, Regex, Role, Strict, TerminationReason
from harness.models.dynamics import DynamicsCheck

__all__ = [
    "Case",
    "Criterion",
    "CountCheck",
    "LatencyCheck",
    "Persona",
    "ScriptLine",
    "Suite",
    "TurnCountCheck",
]


class Persona(Strict):
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


class ScriptLine(Strict):
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


class LatencyCheck(Strict):
    """``stat`` of the run's agent latencies must be at most ``max_ms``."""

    stat: LatencyStat = "p90"
    max_ms: float = Field(gt=0)


class TurnCountCheck(Bounded):
    """The number of turns (of ``role``, or of both) lies within [min, max]."""

    role: Role | None = None
    min: int | None = Field(default=None, ge=0)
    max: int | None = Field(default=None, ge=0)


class CountCheck(Bounded):
    """How many times something happened: within [min, max]."""

    min: int | None = Field(default=None, ge=0)
    max: int | None = Field(default=None, ge=0)


_CHECK_FIELDS = (
    "pattern",
    "latency_ms",
    "termination_reason",
    "turn_count",
    "tool_name",
    "node_id",
    "rubric",
    "semantic",
    "dynamics",
)
# Fields that refine one check only: (field, the check it belongs to).
_REFINES = (
    ("args_match", ("tool_name",)),
    ("times", ("tool_name", "node_id")),
    ("after", ("tool_name", "node_id")),
    ("threshold", ("semantic",)),
)


class Criterion(Strict):
    """One success criterion: a weight, a description and exactly one check.

    ``pattern`` is Yappr's regex assertion; ``role`` says whose speech it is
    matched against and ``must_match: false`` turns it into "must not say".
    ``tool_name`` (with ``args_match``), ``node_id`` and ``rubric`` are Yappr's
    assertion fields; ``semantic`` (offline sentence similarity) and
    ``dynamics`` (a bound on ``metrics.dynamics``) are loopcall's.
    """

    weight: float = Field(default=1.0, ge=0)
    description: str = ""
    pattern: Regex | None = None
    role: Role = "agent"
    must_match: bool = True
    latency_ms: LatencyCheck | None = None
    termination_reason: list[TerminationReason] | None = None
    turn_count: TurnCountCheck | None = None
    tool_name: str | None = Field(default=None, pattern=TOOL_NAME_PATTERN)
    args_match: dict[str, Any] | None = Field(
        default=None,
        description="A subset of the tool call's arguments: values exact, a regex "
        "('(?i)tue' or '/.../'), or '$present'.",
    )
    node_id: str | None = Field(default=None, min_length=1)
    times: CountCheck | None = Field(
        default=None, description="How many matching tool calls or node visits (default: >= 1)."
    )
    after: str | None = Field(
        default=None,
        description="A tool name or node id that must have happened before the first match.",
    )
    rubric: str | None = Field(default=None, min_length=1)
    semantic: str | None = Field(default=None, min_length=1)
    threshold: float | None = Field(default=None, gt=0, le=1)
    dynamics: DynamicsCheck | None = None

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
        for name, owners in _REFINES:
            if getattr(self, name) is not None and given[0] not in owners:
                raise ValueError(f"'{name}' goes with {' or '.join(owners)}, not {given[0]}")
        return self

    @property
    def kind(self) -> str:
        """The name of the check this criterion carries."""
        return next(name for name in _CHECK_FIELDS if getattr(self, name) is not None)


class Case(Strict):
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
    tool_policy: Literal["mock", "real"] = Field(
        default="mock",
        description="mock: loopcall serves `tools` at the run's tools URL; real: it serves "
        "nothing and relies on the agent's reports (spans, event webhook).",
    )
    tools: list[MockTool] = Field(default_factory=list)
    answer_timeout_s: float = Field(
        default=60,
        gt=0,
        le=3600,
        description="Inbound: how long to wait for the agent's call before the run fails.",
    )
    dead_air_ms: float = Field(
        default=3000,
        gt=0,
        le=600_000,
        description="metrics.dynamics: a silence (neither side speaking) this long is dead air.",
    )
    min_overlap_ms: float = Field(
        default=100,
        ge=0,
        le=10_000,
        description="metrics.dynamics: an onset into the other side's speech is an "
        "interruption when both then speak at least this long (docs/dynamics.md).",
    )

    @field_validator("tools")
    @classmethod
    def _tool_names_unique(cls, value: list[MockTool]) -> list[MockTool]:
        names = [tool.name for tool in value]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise ValueError(f"tool names must be unique: {', '.join(twice)} given twice")
        return value

    @field_validator("script", mode="before")
    @classmethod
    def _lines_from_strings(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"say": item} if isinstance(item, str) else item for item in value]
        return value


class Suite(Strict):
    """A named list of cases, run in order."""

    name: str = Field(min_length=1)
    description: str | None = None
    cases: list[Case] = Field(min_length=1)
