"""How the conversation flowed, from both channels of the recording.

Part of the contract (``harness.models``); imports nothing of ours but ``common``.
``Dynamics`` is computed by the analysis pass (``harness.analysis``) and stored
as ``Run.metrics.dynamics``; a ``DynamicsCheck`` criterion holds one of its
numeric figures to a bound.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from harness.models.common import Bounded, Role

__all__ = ["DYNAMICS_METRICS", "DeadAir", "Dynamics", "DynamicsCheck", "Interruption"]

DynamicsMetric = Literal[
    "agent_interruptions",
    "persona_interruptions",
    "overlap_ms",
    "longest_silence_ms",
    "dead_air_count",
    "talk_ratio",
    "agent_words_per_minute",
    "persona_words_per_minute",
    "time_to_first_audio_ms",
    "agent_stop_latency_ms",
]
DYNAMICS_METRICS: tuple[str, ...] = DynamicsMetric.__args__  # type: ignore[attr-defined]


class Interruption(BaseModel):
    """One side started while the other was speaking (see docs/dynamics.md)."""

    by: Role
    at_ms: float = Field(description="The interrupter's onset, from the recording's start.")
    overlap_ms: float = Field(
        description="How long both spoke at once from the onset, until either fell silent."
    )
    stop_latency_ms: float | None = Field(
        default=None,
        description="The interrupted side's audio stopped this long after the onset, while "
        "the interrupter still spoke (None: it kept speaking until the interrupter stopped).",
    )
    stopped: bool = False
    into_turn_ms: float | None = Field(
        default=None,
        description="How far into the interrupted side's turn the onset came "
        "(at_ms minus that turn's start).",
    )
    turn_index: int | None = Field(
        default=None, description="The interrupter's turn in Run.turns (it starts at at_ms)."
    )
    interrupted_turn_index: int | None = Field(
        default=None, description="The interrupted side's turn in Run.turns."
    )


class DeadAir(BaseModel):
    """A stretch with neither side speaking, longer than the threshold."""

    start_ms: float
    end_ms: float
    after: Role | None = Field(default=None, description="Who spoke last before it.")


class Dynamics(BaseModel):
    """Turn-taking measured from the audio of both sides."""

    agent_interruptions: list[Interruption] = Field(default_factory=list)
    persona_interruptions: list[Interruption] = Field(default_factory=list)
    overlap_ms: float = 0
    longest_silence_ms: float = 0
    dead_air_threshold_ms: float = 3000
    dead_air: list[DeadAir] = Field(default_factory=list)
    min_overlap_ms: float = Field(
        default=100,
        description="An onset into the other side's speech that overlaps it less than this "
        "is a brief overlap (an edge graze), not an interruption.",
    )
    brief_overlaps: list[Interruption] = Field(
        default_factory=list,
        description="Onsets into the other side's speech shorter in overlap than "
        "min_overlap_ms: kept, not counted as interruptions.",
    )
    talk_ratio: float | None = Field(
        default=None, description="Agent speech time / both sides' speech time."
    )
    agent_words_per_minute: float | None = Field(
        default=None,
        description="Words of the agent's transcribed turns / the agent's speech time.",
    )
    persona_words_per_minute: float | None = Field(
        default=None,
        description="Words of the persona's lines (what it decided to say) / its speech time.",
    )
    time_to_first_audio_ms: float | None = None

    def figure(self, metric: str) -> float | None:
        """The numeric value a ``DynamicsCheck`` compares, by metric name."""
        if metric == "agent_interruptions":
            return float(len(self.agent_interruptions))
        if metric == "persona_interruptions":
            return float(len(self.persona_interruptions))
        if metric == "dead_air_count":
            return float(len(self.dead_air))
        if metric == "agent_stop_latency_ms":
            stops = [
                i.stop_latency_ms
                for i in self.persona_interruptions
                if i.stop_latency_ms is not None
            ]
            return max(stops) if stops else None
        value = getattr(self, metric)
        return None if value is None else float(value)


class DynamicsCheck(Bounded):
    """``metric`` of the run's dynamics lies within [min, max]."""

    metric: DynamicsMetric
    min: float | None = None
    max: float | None = None
