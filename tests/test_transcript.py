"""What the post-call transcription hears of each agent turn."""

from __future__ import annotations

import numpy as np

from audio.speech import LEAD_IN_MS, lead_in
from harness.analysis import analyse, transcribe_agent_turns
from harness.recording import Recording

RATE = 16_000


class _Ears:
    """A transcriber that keeps what it was given."""

    def __init__(self, agent: np.ndarray) -> None:
        self.agent = agent
        self.slices: list[tuple[int, int]] = []

    async def transcribe_async(self, samples: np.ndarray, sample_rate: int = RATE) -> str:
        # Where the slice sits in the agent channel (it is a view of it).
        offset = (
            samples.__array_interface__["data"][0] - self.agent.__array_interface__["data"][0]
        ) // 2
        self.slices.append((offset, offset + samples.size))
        return f"line {len(self.slices)}"


def _tone(seconds: float, amplitude: int) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (np.sin(2 * np.pi * 300 * t) * amplitude).astype(np.int16)


def _ms(samples: int) -> float:
    return samples * 1000.0 / RATE


async def test_an_agent_turn_is_transcribed_from_before_its_detected_onset() -> None:
    # Agent: a soft onset (too quiet for the detector) then a loud line; a persona
    # reply; a second agent line 2 s later.
    agent = np.concatenate(
        (
            np.zeros(RATE, np.int16),
            _tone(0.1, 200),  # 1.0-1.1 s: the soft "th"
            _tone(1.0, 12000),  # 1.1-2.1 s
            np.zeros(2 * RATE, np.int16),
            _tone(1.0, 12000),  # 4.1-5.1 s
            np.zeros(RATE // 2, np.int16),
        )
    )
    persona = np.zeros(agent.size, np.int16)
    persona[int(2.6 * RATE) : int(3.4 * RATE)] = _tone(0.8, 12000)
    ears = _Ears(agent)
    recording = Recording(RATE, persona, agent)
    turns, _ = analyse(recording, [])
    await transcribe_agent_turns(turns, recording, ears)  # type: ignore[arg-type]
    agent_turns = [t for t in turns if t.role == "agent"]
    assert [t.text for t in agent_turns] == ["line 1", "line 2"]
    (start1, end1), (start2, _) = ears.slices
    # The detector places the onset on the loud part; the transcription hears the
    # soft part before it too, LEAD_IN_MS of it.
    assert agent_turns[0].start_ms >= 1090
    assert abs(_ms(start1) - (agent_turns[0].start_ms - LEAD_IN_MS)) < 0.1
    assert _ms(start1) < 1000  # the soft onset is in
    assert abs(_ms(start2) - (agent_turns[1].start_ms - LEAD_IN_MS)) < 0.1
    assert start2 >= end1


def test_the_lead_in_never_reaches_into_the_previous_utterance() -> None:
    assert lead_in(10 * RATE, 0, RATE) == 10 * RATE - LEAD_IN_MS * RATE // 1000
    assert lead_in(10 * RATE, 10 * RATE - 100, RATE) == 10 * RATE - 100
    assert lead_in(100, 0, RATE) == 0
