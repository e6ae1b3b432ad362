"""How the conversation flowed: interruptions, overlap, silences, talk ratio, speech rates.

Stage: analysis, beside the turns (``turns.py``), from the same speech segments of
both channels on the recording's one clock.  In: each side's ``Segment``s
(``audio.edges.detect_speech``), the ``TimedTurn``s built from them, the case's
thresholds.  Out: a ``Dynamics`` (``metrics.dynamics``); the words per minute are
filled in once the turns have text (``fill_speech_rates``).  Pure functions, tested on
hand-made segments; the definitions and thresholds are argued in docs/dynamics.md.

An *onset into the other side's speech* is a turn whose first sample falls strictly
inside one of the other side's segments.  It is an interruption when both sides
then speak together for at least ``min_overlap_ms``; a shorter overlap is a brief
overlap (an edge graze), kept apart and not counted.
"""

from __future__ import annotations

from collections.abc import Sequence

from audio.edges import Segment
from harness.analysis.turns import TimedTurn
from harness.models import DeadAir, Dynamics, Interruption, Metrics, Role, Turn

__all__ = [
    "DEFAULT_DEAD_AIR_MS",
    "DEFAULT_MIN_OVERLAP_MS",
    "fill_speech_rates",
    "measure_dynamics",
    "word_count",
]

DEFAULT_DEAD_AIR_MS = 3000.0
DEFAULT_MIN_OVERLAP_MS = 100.0


def measure_dynamics(
    persona: Sequence[Segment],
    agent: Sequence[Segment],
    turns: Sequence[TimedTurn],
    sample_rate: int,
    *,
    dead_air_ms: float = DEFAULT_DEAD_AIR_MS,
    min_overlap_ms: float = DEFAULT_MIN_OVERLAP_MS,
) -> Dynamics:
    """Everything but the words per minute (the turns have no text yet)."""
    segments: dict[Role, Sequence[Segment]] = {"persona": persona, "agent": agent}
    onsets = [
        _onset(i, turns, segments, sample_rate)
        for i, turn in enumerate(turns)
        if _inside(turn.start, segments[_other(turn.role)]) is not None
    ]
    counted = [o for o in onsets if o.overlap_ms >= min_overlap_ms]
    brief = [o for o in onsets if o.overlap_ms < min_overlap_ms]
    gaps = _silences(persona, agent)
    agent_ms = _total(agent) * 1000.0 / sample_rate
    persona_ms = _total(persona) * 1000.0 / sample_rate
    first_agent = min((s.start for s in agent), default=None)
    return Dynamics(
        agent_interruptions=[o for o in counted if o.by == "agent"],
        persona_interruptions=[o for o in counted if o.by == "persona"],
        overlap_ms=_r(_overlap(persona, agent) * 1000.0 / sample_rate),
        longest_silence_ms=_r(max((e - s for s, e, _ in gaps), default=0) * 1000.0 / sample_rate),
        dead_air_threshold_ms=dead_air_ms,
        dead_air=[
            DeadAir(start_ms=_ms(s, sample_rate), end_ms=_ms(e, sample_rate), after=who)
            for s, e, who in gaps
            if (e - s) * 1000.0 / sample_rate >= dead_air_ms
        ],
        min_overlap_ms=min_overlap_ms,
        brief_overlaps=brief,
        talk_ratio=(
            round(agent_ms / (agent_ms + persona_ms), 4) if agent_ms + persona_ms > 0 else None
        ),
        time_to_first_audio_ms=None if first_agent is None else _ms(first_agent, sample_rate),
    )


def fill_speech_rates(turns: Sequence[Turn], metrics: Metrics) -> None:
    """Each side's words per minute: words of its turns' text / its speech time.

    Run when the text changes (the persona's lines in ``analyse``, the agent's
    once transcribed).  A side with no speech or no words gets None (not 0:
    nothing was measured).
    """
    dynamics = metrics.dynamics
    if dynamics is None:
        return
    speech = {"agent": metrics.agent_speech_ms, "persona": metrics.persona_speech_ms}
    for role, speech_ms in speech.items():
        words = sum(word_count(t.text) for t in turns if t.role == role)
        rate = round(words * 60_000.0 / speech_ms, 1) if words and speech_ms > 0 else None
        setattr(dynamics, f"{role}_words_per_minute", rate)


def word_count(text: str) -> int:
    """Whitespace-separated tokens with a letter or digit in them ("-" is not a word)."""
    return sum(1 for token in text.split() if any(ch.isalnum() for ch in token))


def _onset(
    i: int, turns: Sequence[TimedTurn], segments: dict[Role, Sequence[Segment]], rate: int
) -> Interruption:
    """Turn ``i`` began inside the other side's segment: how long both spoke, who stopped.

    The overlap is the interrupter's speech in this turn that lies inside the
    interrupted segment; the interrupted side "stopped" when that segment ended
    before the interrupter's turn did (from audio alone, a yield and a sentence
    that simply ended look the same).
    """
    turn = turns[i]
    other = _other(turn.role)
    theirs = _inside(turn.start, segments[other])
    assert theirs is not None
    # The interrupter's segments in this turn (it may pause and go on over the other side).
    ours = [s for s in segments[turn.role] if turn.start <= s.start < turn.end]
    overlap = sum(max(0, min(s.end, theirs.end) - s.start) for s in ours)
    # The interrupted side fell silent before the interrupter's turn was over.
    stopped = theirs.end <= turn.end
    stop = (theirs.end - turn.start) * 1000.0 / rate
    interrupted = next(
        (
            j
            for j in range(i - 1, -1, -1)
            if turns[j].role == other and turns[j].start <= theirs.start < turns[j].end
        ),
        None,
    )
    return Interruption(
        by=turn.role,
        at_ms=_ms(turn.start, rate),
        overlap_ms=_r(overlap * 1000.0 / rate),
        stopped=stopped,
        stop_latency_ms=_r(stop) if stopped else None,
        into_turn_ms=(
            None
            if interrupted is None
            else _r((turn.start - turns[interrupted].start) * 1000.0 / rate)
        ),
        turn_index=i,
        interrupted_turn_index=interrupted,
    )


def _inside(sample: int, segments: Sequence[Segment]) -> Segment | None:
    """The segment ``sample`` falls strictly inside (after its first sample, before its end)."""
    return next((s for s in segments if s.start < sample < s.end), None)


def _silences(persona: Sequence[Segment], agent: Sequence[Segment]) -> list[tuple[int, int, Role]]:
    """Stretches between the first and the last speech where neither side speaks.

    Each is (start, end, who spoke last before it); the lead-in before the first
    speech (time to first audio) and the tail after the last are not silences of
    the conversation.
    """
    tagged: list[tuple[Segment, Role]] = sorted(
        [(s, "persona") for s in persona] + [(s, "agent") for s in agent],
        key=lambda item: item[0].start,
    )
    if not tagged:
        return []
    gaps: list[tuple[int, int, Role]] = []
    covered, last = tagged[0][0].end, tagged[0][1]
    for seg, role in tagged[1:]:
        if seg.start > covered:
            gaps.append((covered, seg.start, last))
        if seg.end >= covered:
            covered, last = seg.end, role
    return gaps


def _total(segments: Sequence[Segment]) -> int:
    return sum(s.end - s.start for s in segments)


def _overlap(a: Sequence[Segment], b: Sequence[Segment]) -> int:
    return sum(max(0, min(x.end, y.end) - max(x.start, y.start)) for x in a for y in b)


def _other(role: Role) -> Role:
    return "agent" if role == "persona" else "persona"


def _ms(sample: int, rate: int) -> float:
    return round(sample * 1000.0 / rate, 2)


def _r(value: float) -> float:
    return round(value, 2)
