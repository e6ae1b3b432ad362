"""What the agent did, beside what it said: mock tools, tool calls, flow nodes, its timings.

Part of the contract (``harness.models``); imports nothing of ours but ``common``.
Case side: the ``MockTool``s a case asks loopcall to serve (Yappr's
``tool_policy: mock``).  Run side: every ``ToolCall`` and ``AgentEvent`` that
reached loopcall (from its tools URL, the agent's OpenTelemetry spans or its
event webhook), placed on the recording's clock, and the agent's own account of
a turn's stages (``AgentTurnTiming``) from its spans.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

from harness.models.common import Strict

__all__ = [
    "AgentEvent",
    "AgentEventType",
    "AgentTurnTiming",
    "EventSource",
    "MockTool",
    "ToolCall",
    "ToolMatch",
]

AgentEventType = Literal["tool_call", "node", "metric", "log"]
EventSource = Literal["tools_url", "otel", "webhook"]

TOOL_NAME_PATTERN = r"^[A-Za-z0-9_.:-]{1,128}$"


class ToolMatch(Strict):
    """A response chosen by the call's arguments: ``args`` is a subset to match."""

    args: dict[str, Any] = Field(
        description="Arguments the call must carry (values exact, or a regex as a string "
        "starting with '(?' or written /.../, or '$present')."
    )
    response: Any


class MockTool(Strict):
    """One tool loopcall serves for a run at ``POST {tools_url}/{name}``.

    The response is the first ``match`` whose ``args`` the call carries, else the
    next of ``responses`` (the last one repeats), else ``response``.
    """

    name: str = Field(pattern=TOOL_NAME_PATTERN)
    description: str = ""
    response: Any = None
    responses: list[Any] | None = Field(default=None, min_length=1)
    match: list[ToolMatch] = Field(default_factory=list)

    @model_validator(mode="after")
    def _answers_something(self) -> MockTool:
        if "response" not in self.model_fields_set and self.responses is None and not self.match:
            raise ValueError("a tool needs `response`, `responses` or `match`")
        return self


class ToolCall(BaseModel):
    """One invocation of a tool by the agent, on the recording's clock."""

    name: str
    args: Any = None
    response: Any = None
    status_code: int | None = Field(
        default=None, description="What the tools URL answered (200, 404 unknown, 400 bad JSON)."
    )
    source: EventSource = "tools_url"
    at_ms: float | None = Field(
        default=None, description="Milliseconds from the recording's start (the call's clock)."
    )
    duration_ms: float | None = None
    turn_index: int | None = Field(
        default=None, description="Index in ``Run.turns`` of the agent turn it belongs to."
    )
    error: str | None = None


class AgentEvent(BaseModel):
    """Something the agent reported: a tool call, a flow node, a metric, a log line."""

    type: AgentEventType
    name: str
    args: dict[str, Any] = Field(default_factory=dict)
    value: float | None = Field(default=None, description="A metric's value.")
    source: EventSource = "webhook"
    at_ms: float | None = Field(
        default=None, description="Milliseconds from the recording's start (the call's clock)."
    )


class AgentTurnTiming(BaseModel):
    """The agent's own account of one reply (from its spans), beside what the ear heard.

    Every figure is in ms; ``None`` where the agent did not report it.  The stage
    figures are the agent's own measurements, on its clock alone (no clock
    alignment needed): ``end_of_speech_ms``, ``stt_ms``, ``llm_ttfb_ms``,
    ``tts_ttfb_ms`` and ``accounted_ms``.  ``unaccounted_ms`` is the heard latency
    (``Turn.latency_ms``) minus ``accounted_ms``: transport both ways, buffering and
    playout, and any disagreement between the agent's VAD and the ear about when
    the persona stopped.  The ``*_at_ms`` instants place the agent's milestones on
    the recording's clock (ms from its sample 0, like ``Turn.start_ms``): they
    need the agent's clock to agree with loopcall's (same host, or NTP).
    docs/tracing.md says what each figure spans, per framework.
    """

    source: str = Field(default="otel", description="otel: pipecat or LiveKit spans.")
    framework: str | None = Field(default=None, description="pipecat or livekit.")
    end_of_speech_ms: float | None = Field(
        default=None,
        description="From the end of the persona's speech as the agent's VAD placed it to "
        "the agent's decision that the turn was over (endpointing wait, STT, turn detection).",
    )
    stt_ms: float | None = Field(
        default=None, description="From that end of speech to its STT's final transcript."
    )
    llm_ttfb_ms: float | None = Field(
        default=None, description="Its LLM's first token, from the request (the spoken call)."
    )
    tts_ttfb_ms: float | None = Field(
        default=None, description="Its TTS's first audio byte, from the text sent."
    )
    accounted_ms: float | None = Field(
        default=None,
        description="The agent's own end-to-end figure: from the end of speech as it placed "
        "it to its first audio out.",
    )
    unaccounted_ms: float | None = Field(
        default=None, description="Heard latency minus accounted_ms: what nobody accounts for."
    )
    input_tokens: int | None = None
    output_tokens: int | None = None
    speech_end_at_ms: float | None = Field(
        default=None, description="Where the agent placed the persona's end of speech."
    )
    turn_detected_at_ms: float | None = Field(
        default=None, description="When the agent decided the persona's turn was over."
    )
    stt_final_at_ms: float | None = Field(default=None, description="Its final transcript.")
    llm_first_token_at_ms: float | None = Field(
        default=None, description="The first token of the LLM call whose text was spoken."
    )
    first_audio_at_ms: float | None = Field(
        default=None, description="Its TTS's first audio byte (not yet heard: transport follows)."
    )
