"""From a finished call's recording to turns with text and the run's metrics.

Stage: after the call, before scoring.  In: the ``Recording`` (left persona,
right agent, sample 0 = connected), what the persona bot decided to say and when,
and the offline transcriber.  Out: ``Turn``s (timed from the audio, agent text
transcribed from the agent channel, persona text from the bot's own lines) and
``Metrics``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from audio.edges import Segment, detect_speech
from audio.speech import Transcriber, lead_in
from harness.analysis.turns import TimedTurn, build_turns, latency_summary
from harness.models import Metrics, Turn
from harness.offload import off_loop
from harness.recording import Recording

__all__ = ["SaidLine", "analyse"]


@dataclass(frozen=True)
class SaidLine:
    """A persona line and when (ms from call start) the bot decided to say it."""

    t_ms: float
    text: str


def _persona_text(turn: TimedTurn, said: Sequence[SaidLine], used: set[int], rate: int) -> str:
    """The lines the bot decided on before this turn started and after the previous one."""
    start_ms = turn.start * 1000.0 / rate
    texts = []
    for i, line in enumerate(said):
        if i not in used and line.t_ms <= start_ms + 50:
            used.add(i)
            texts.append(line.text)
    return " ".join(texts)


async def analyse(
    recording: Recording,
    said: Sequence[SaidLine],
    transcriber: Transcriber | None,
    *,
    transport_rtt_ms: float | None = None,
) -> tuple[list[Turn], Metrics]:
    """Turns with text, and the metrics of the call."""
    rate = recording.sample_rate
    # Off the event loop: other calls may still be running on it.
    persona_segments, agent_segments = await off_loop(
        lambda: (detect_speech(recording.persona, rate), detect_speech(recording.agent, rate))
    )
    timed = build_turns(persona_segments, agent_segments, rate)
    turns: list[Turn] = []
    used: set[int] = set()
    agent_end = 0  # end of the previous agent turn: the lead-in must not reach into it
    for t in timed:
        if t.role == "agent":
            text = ""
            if transcriber is not None:
                lead = lead_in(t.start, agent_end, rate)
                text = await transcriber.transcribe_async(recording.agent[lead : t.end], rate)
            agent_end = t.end
        else:
            text = _persona_text(t, said, used, rate)
        turns.append(
            Turn(
                role=t.role,
                text=text,
                start_ms=round(t.start * 1000.0 / rate, 2),
                end_ms=round(t.end * 1000.0 / rate, 2),
                latency_ms=None if t.latency_ms is None else round(t.latency_ms, 2),
            )
        )
    latencies = [t.latency_ms for t in turns if t.latency_ms is not None]
    first_agent = next((t for t in turns if t.role == "agent"), None)
    overlap = _overlap_samples(persona_segments, agent_segments)
    metrics = Metrics(
        latency_ms=latency_summary(latencies),
        time_to_first_audio_ms=first_agent.start_ms if first_agent else None,
        transport_rtt_ms=transport_rtt_ms,
        agent_speech_ms=round(sum(s.end - s.start for s in agent_segments) * 1000.0 / rate, 1),
        persona_speech_ms=round(sum(s.end - s.start for s in persona_segments) * 1000.0 / rate, 1),
        overlap_ms=round(overlap * 1000.0 / rate, 1),
        agent_turns=sum(1 for t in turns if t.role == "agent"),
        persona_turns=sum(1 for t in turns if t.role == "persona"),
    )
    return turns, metrics


def _overlap_samples(a: Sequence[Segment], b: Sequence[Segment]) -> int:
    return sum(max(0, min(x.end, y.end) - max(x.start, y.start)) for x in a for y in b)
