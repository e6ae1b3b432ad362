"""Text for the turns: the agent's words transcribed from its channel, the persona's from its lines.

Stage: analysis, once the turns are timed.  The agent's text comes from the
offline transcriber on the recording's agent channel (each slice starting a
little before the detected onset, never reaching into the previous agent turn);
the persona's from what the persona bot decided to say and when.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from audio.speech import Transcriber, lead_in
from harness.analysis.dynamics import fill_speech_rates
from harness.models import Metrics, Turn
from harness.recording import Recording

__all__ = ["SaidLine", "persona_texts", "transcribe_agent_turns"]


@dataclass(frozen=True)
class SaidLine:
    """A persona line and when (ms from call start) the bot decided to say it."""

    t_ms: float
    text: str


def persona_texts(turns: Sequence[Turn], said: Sequence[SaidLine]) -> None:
    """Give each persona turn the lines decided before it started and after the previous one."""
    used: set[int] = set()
    for turn in turns:
        if turn.role != "persona":
            continue
        texts = []
        for i, line in enumerate(said):
            if i not in used and line.t_ms <= turn.start_ms + 50:
                used.add(i)
                texts.append(line.text)
        turn.text = " ".join(texts)


async def transcribe_agent_turns(
    turns: Sequence[Turn],
    recording: Recording,
    transcriber: Transcriber,
    metrics: Metrics | None = None,
) -> None:
    """Transcribe each agent turn from the recording's agent channel (off the event loop).

    With the call's ``metrics``, the words per minute of its dynamics follow the new text.
    """
    rate = recording.sample_rate
    agent_end = 0  # end of the previous agent turn: the lead-in must not reach into it
    for turn in turns:
        if turn.role != "agent":
            continue
        start, end = round(turn.start_ms * rate / 1000), round(turn.end_ms * rate / 1000)
        audio = recording.agent[lead_in(start, agent_end, rate) : end]
        turn.text = await transcriber.transcribe_async(audio, rate)
        agent_end = end
    if metrics is not None:
        fill_speech_rates(turns, metrics)
