"""One pass from a call's recording to its turns, metrics, health and latency summary.

Stage: after the call, before scoring.  In: the ``Recording`` (left persona,
right agent, sample 0 = connected), what the persona decided to say and when,
the transcriber (or none), the transport calibration and what the harness's
monitor saw of itself during the call.  Out: ``Turn``s (timed from the audio,
text from the agent channel and the persona's lines, degraded where the harness
cannot vouch for the figure) and ``Metrics``, whose latency summary is computed
once, over the turns the harness vouches for.

    speech edges (audio.edges) -> turns.py -> dynamics.py -> transcript.py -> health.py
        -> summary

The agent's words come later (``transcribe_agent_turns``), and with them its
words per minute (``fill_speech_rates``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from audio.edges import Segment, detect_speech
from harness.analysis.dynamics import (
    DEFAULT_DEAD_AIR_MS,
    DEFAULT_MIN_OVERLAP_MS,
    fill_speech_rates,
    measure_dynamics,
)
from harness.analysis.health import DEFAULT_LAG_BOUND_MS, assess
from harness.analysis.transcript import SaidLine, persona_texts, transcribe_agent_turns
from harness.analysis.turns import build_turns, latency_summary
from harness.models import Metrics, Turn, vouched_latencies
from harness.monitor import LagWindow
from harness.recording import Recording

__all__ = ["CallHealth", "SaidLine", "analyse", "fill_speech_rates", "transcribe_agent_turns"]


@dataclass(frozen=True)
class CallHealth:
    """What the harness saw of itself during the call (``harness.monitor``, the call)."""

    lag: LagWindow
    connected_at: float  # monotonic time of the recording's sample 0
    cpu_percent: float | None = None
    bound_ms: float = DEFAULT_LAG_BOUND_MS
    kernel_stamped: bool = False
    drops: Sequence[tuple[float, float]] = ()


def analyse(
    recording: Recording,
    said: Sequence[SaidLine],
    *,
    transport_rtt_ms: float | None = None,
    transport_rtt_jitter_ms: float | None = None,
    health: CallHealth | None = None,
    dead_air_ms: float = DEFAULT_DEAD_AIR_MS,
    min_overlap_ms: float = DEFAULT_MIN_OVERLAP_MS,
) -> tuple[list[Turn], Metrics]:
    """Turns (persona text filled in, agent text empty) and the call's metrics.

    CPU-bound: run it off the event loop when calls are live.  The agent's text
    comes after, from ``transcribe_agent_turns`` (it needs the transcriber's thread).
    """
    rate = recording.sample_rate
    persona_segments = detect_speech(recording.persona, rate)
    agent_segments = detect_speech(recording.agent, rate)
    timed = build_turns(persona_segments, agent_segments, rate)
    turns = [
        Turn(
            role=t.role,
            text="",
            start_ms=round(t.start * 1000.0 / rate, 2),
            end_ms=round(t.end * 1000.0 / rate, 2),
            latency_ms=None if t.latency_ms is None else round(t.latency_ms, 2),
        )
        for t in timed
    ]
    persona_texts(turns, said)
    dynamics = measure_dynamics(
        persona_segments,
        agent_segments,
        timed,
        rate,
        dead_air_ms=dead_air_ms,
        min_overlap_ms=min_overlap_ms,
    )
    harness_health = None
    if health is not None:
        harness_health = assess(
            turns,
            health.lag,
            connected_at=health.connected_at,
            cpu_percent=health.cpu_percent,
            bound_ms=health.bound_ms,
            kernel_stamped=health.kernel_stamped,
            drops=health.drops,
        )
    first_agent = next((t for t in turns if t.role == "agent"), None)
    metrics = Metrics(
        latency_ms=latency_summary(vouched_latencies(turns)),
        time_to_first_audio_ms=first_agent.start_ms if first_agent else None,
        transport_rtt_ms=transport_rtt_ms,
        transport_rtt_jitter_ms=transport_rtt_jitter_ms,
        agent_speech_ms=_ms(sum(s.end - s.start for s in agent_segments), rate),
        persona_speech_ms=_ms(sum(s.end - s.start for s in persona_segments), rate),
        overlap_ms=_ms(_overlap_samples(persona_segments, agent_segments), rate),
        agent_turns=sum(1 for t in turns if t.role == "agent"),
        persona_turns=sum(1 for t in turns if t.role == "persona"),
        harness=harness_health,
        dynamics=dynamics,
    )
    fill_speech_rates(turns, metrics)
    return turns, metrics


def _ms(samples: int, rate: int) -> float:
    return round(samples * 1000.0 / rate, 1)


def _overlap_samples(a: Sequence[Segment], b: Sequence[Segment]) -> int:
    return sum(max(0, min(x.end, y.end) - max(x.start, y.start)) for x in a for y in b)
