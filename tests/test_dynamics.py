"""Dynamics: interruptions, overlap, dead air, talk ratio and speech rates on hand-made edges.

Segments are placed by hand (16 kHz samples), so every figure is known exactly;
one test runs the whole analysis pass on a synthetic two-channel recording.
Then the ``dynamics`` criterion's verdicts, reasons and evidence.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from audio.edges import Segment, detect_speech
from audio.g711 import ulaw_decode, ulaw_encode
from audio.speech import get_voice
from harness.analysis import SaidLine, analyse
from harness.analysis.dynamics import fill_speech_rates, measure_dynamics, word_count
from harness.analysis.turns import build_turns
from harness.models import (
    Case,
    Criterion,
    Dynamics,
    Interruption,
    Metrics,
    Persona,
    Run,
    Turn,
)
from harness.recording import Recording
from harness.scoring import evaluate
from harness.views import to_cekura_result
from refagent.script import DENTAL_SCRIPT
from refagent.turn_taker import TurnLogic, TurnTakerConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from dynamics_oracle import LINES  # noqa: E402

SR = 16000


def seg(start_ms: float, end_ms: float) -> Segment:
    return Segment(round(start_ms * SR / 1000), round(end_ms * SR / 1000))


def dynamics_of(persona: list[Segment], agent: list[Segment], **kw: float) -> Dynamics:
    return measure_dynamics(persona, agent, build_turns(persona, agent, SR), SR, **kw)


# ------------------------------------------------------------ the negative-latency defect


def test_a_reply_that_talks_over_the_caller_is_an_interruption_not_a_negative_latency() -> None:
    # The case: a stock pipecat bot's STT heard "Hi," as "Bye." mid-sentence and
    # it replied 1207 ms before the caller had finished; loopcall stored -1207 ms.
    persona, agent = [seg(1000, 4000)], [seg(200, 800), seg(2793, 5000)]
    turns = build_turns(persona, agent, SR)
    assert [t.role for t in turns] == ["agent", "persona", "agent"]
    assert turns[2].latency_ms is None  # main's code: -1207.0
    found = dynamics_of(persona, agent).agent_interruptions
    assert found == [
        Interruption(
            by="agent",
            at_ms=2793.0,
            overlap_ms=1207.0,
            stopped=True,  # the caller's sentence ended while the agent spoke on
            stop_latency_ms=1207.0,
            into_turn_ms=1793.0,
            turn_index=2,
            interrupted_turn_index=1,
        )
    ]


def test_the_whole_pass_stores_no_negative_latency_and_counts_the_interruption() -> None:
    # Tone bursts on a real two-channel recording through detect_speech and analyse().
    def channel(bursts: list[tuple[int, int]]) -> np.ndarray:
        out = np.zeros(6 * SR, dtype=np.int16)
        for start_ms, end_ms in bursts:
            a, b = start_ms * SR // 1000, end_ms * SR // 1000
            out[a:b] = (8000 * np.sign(np.sin(2 * np.pi * 300 * np.arange(b - a) / SR))).astype(
                np.int16
            )
        return out

    recording = Recording(
        SR, persona=channel([(1000, 4000)]), agent=channel([(200, 800), (2800, 5000)])
    )
    said = [SaidLine(900, "Hi, I would like to book a cleaning please.")]
    turns, metrics = analyse(recording, said)
    assert [t.latency_ms for t in turns] == [None, None, None]
    assert metrics.latency_ms.n == 0
    assert metrics.dynamics is not None
    (found,) = metrics.dynamics.agent_interruptions
    assert found.turn_index == 2
    assert found.at_ms == pytest.approx(2800, abs=1)
    assert found.overlap_ms == pytest.approx(1200, abs=1)
    assert metrics.dynamics.persona_words_per_minute == pytest.approx(9 * 60 / 3.0, rel=0.01)


def test_a_reply_after_the_caller_keeps_its_latency() -> None:
    turns = build_turns([seg(1000, 3000)], [seg(3000, 4000)], SR)
    assert turns[1].latency_ms == 0.0  # touching is not overlapping
    assert dynamics_of([seg(1000, 3000)], [seg(3000, 4000)]).agent_interruptions == []


# ------------------------------------------------------------------------- interruptions


def test_agent_talks_over_a_caller_who_keeps_going() -> None:
    # The caller speaks 1000..6000; the agent cuts in at 2500 and stops at 3500.
    found = dynamics_of([seg(1000, 6000)], [seg(2500, 3500)])
    (cut,) = found.agent_interruptions
    assert (cut.at_ms, cut.overlap_ms, cut.into_turn_ms) == (2500.0, 1000.0, 1500.0)
    assert not cut.stopped and cut.stop_latency_ms is None
    assert found.persona_interruptions == []
    assert found.overlap_ms == 1000.0


def test_persona_barges_in_and_the_agent_stops() -> None:
    # The agent speaks 0..5000 but falls silent 350 ms after the caller cuts in at 3000.
    found = dynamics_of([seg(3000, 4500)], [seg(0, 3350), seg(5500, 6500)])
    (barge,) = found.persona_interruptions
    assert barge.by == "persona" and barge.at_ms == 3000.0
    assert barge.stopped and barge.stop_latency_ms == 350.0
    assert barge.overlap_ms == 350.0
    assert found.figure("agent_stop_latency_ms") == 350.0
    assert found.agent_interruptions == []


def test_persona_barges_in_and_the_agent_keeps_talking() -> None:
    found = dynamics_of([seg(3000, 3600)], [seg(0, 5000)])
    (barge,) = found.persona_interruptions
    assert barge.overlap_ms == 600.0
    assert not barge.stopped and barge.stop_latency_ms is None
    assert found.figure("agent_stop_latency_ms") is None


def test_an_edge_graze_is_a_brief_overlap_not_an_interruption() -> None:
    # The agent starts 50 ms before the caller's last sample: no latency, no interruption.
    persona, agent = [seg(1000, 3000)], [seg(2950, 4000)]
    assert build_turns(persona, agent, SR)[1].latency_ms is None
    found = dynamics_of(persona, agent)
    assert found.agent_interruptions == []
    assert [b.overlap_ms for b in found.brief_overlaps] == [50.0]
    assert found.overlap_ms == 50.0
    # The bound is the case's: at 40 ms the same overlap is an interruption.
    assert len(dynamics_of(persona, agent, min_overlap_ms=40).agent_interruptions) == 1


def test_an_interrupter_that_pauses_and_goes_on_counts_its_whole_overlap() -> None:
    # A 60 ms blip, a 400 ms pause, then 2 s more over the caller: one interruption.
    found = dynamics_of([seg(0, 5000)], [seg(1000, 1060), seg(1460, 3460)])
    (cut,) = found.agent_interruptions
    assert cut.at_ms == 1000.0 and cut.overlap_ms == 2060.0


# ---------------------------------------------------------------- silences, ratio, rates


def test_dead_air_over_the_threshold_with_who_spoke_last() -> None:
    persona = [seg(2000, 3000), seg(9000, 10000)]
    agent = [seg(500, 1500), seg(6500, 8000)]  # silences: 500, 3500 (after persona), 1000
    found = dynamics_of(persona, agent)
    assert found.longest_silence_ms == 3500.0
    assert [(d.start_ms, d.end_ms, d.after) for d in found.dead_air] == [
        (3000.0, 6500.0, "persona")
    ]
    assert found.figure("dead_air_count") == 1.0
    # The lead-in (time to first audio) and the tail are not silences of the conversation.
    assert found.time_to_first_audio_ms == 500.0
    assert [d.after for d in dynamics_of(persona, agent, dead_air_ms=900).dead_air] == [
        "persona",
        "agent",
    ]


def test_overlapping_speech_leaves_no_silence_between() -> None:
    found = dynamics_of([seg(0, 2000)], [seg(1500, 3000), seg(6000, 7000)])
    assert found.longest_silence_ms == 3000.0
    assert [(d.start_ms, d.after) for d in found.dead_air] == [(3000.0, "agent")]


def test_talk_ratio_is_the_agent_share_of_speech() -> None:
    assert dynamics_of([seg(0, 1000)], [seg(2000, 5000)]).talk_ratio == 0.75
    assert dynamics_of([], []).talk_ratio is None


def test_words_per_minute_per_side_over_its_speech_time() -> None:
    turns = [
        Turn(role="agent", text="Thanks for calling, how can I help?", start_ms=0, end_ms=3000),
        Turn(role="persona", text="I'd like a cleaning - on Tuesday.", start_ms=3500, end_ms=5500),
        Turn(role="agent", text="", start_ms=6000, end_ms=6500),
    ]
    metrics = Metrics(agent_speech_ms=3000, persona_speech_ms=1500, dynamics=Dynamics())
    fill_speech_rates(turns, metrics)
    assert metrics.dynamics is not None
    assert metrics.dynamics.agent_words_per_minute == 140.0  # 7 words in 3 s
    assert metrics.dynamics.persona_words_per_minute == 240.0  # 6 words ("-" is not) in 1.5 s
    silent = Metrics(agent_speech_ms=0, persona_speech_ms=1500, dynamics=Dynamics())
    fill_speech_rates(turns[1:2], silent)
    assert silent.dynamics is not None and silent.dynamics.agent_words_per_minute is None


def test_word_count() -> None:
    assert word_count("Tuesday at 10:00 - right?  ...") == 4
    assert word_count("") == 0


def test_case_thresholds_are_checked_and_named() -> None:
    with pytest.raises(ValidationError, match="dead_air_ms"):
        Case(name="c", persona=Persona(name="p"), dead_air_ms=0)
    assert Case(name="c", persona=Persona(name="p")).min_overlap_ms == 100


# --------------------------------------------------------------------- the criterion


def judged(criterion: dict[str, Any], dynamics: Dynamics | None, turns: list[Turn]) -> Any:
    case = Case(
        name="c", persona=Persona(name="p"), success_criteria=[Criterion.model_validate(criterion)]
    )
    return evaluate(case, turns, Metrics(dynamics=dynamics), "agent_ended").results[0]


def test_the_criterion_fails_an_interruption_with_its_turn_and_moment() -> None:
    persona, agent = [seg(1000, 4000)], [seg(200, 800), seg(2793, 5000)]
    found = dynamics_of(persona, agent)
    turns = [
        Turn(role="agent", text="Hello, Bright Smile.", start_ms=200, end_ms=800),
        Turn(role="persona", text="Hi, I'd like to book.", start_ms=1000, end_ms=4000),
        Turn(role="agent", text="Goodbye!", start_ms=2793, end_ms=5000),
    ]
    result = judged({"dynamics": {"metric": "agent_interruptions", "max": 0}}, found, turns)
    assert not result.passed
    assert result.reason == "agent interruptions 1 > 0: at 2793 ms (turn 2, 1207 ms overlap)"
    assert [(e.turn_index, e.at_ms, e.quote) for e in result.evidence] == [(2, 2793.0, "Goodbye!")]
    clean = dynamics_of([seg(1000, 3000)], [seg(200, 800), seg(3600, 5000)])
    ok = judged({"dynamics": {"metric": "agent_interruptions", "max": 0}}, clean, turns)
    assert ok.passed and ok.reason == "agent interruptions 0, at most 0"


def test_the_criterion_bounds_a_figure_from_both_sides() -> None:
    found = dynamics_of([seg(0, 1000)], [seg(2000, 5000)])  # talk ratio 0.75
    low = judged({"dynamics": {"metric": "talk_ratio", "min": 0.8}}, found, [])
    assert not low.passed and low.reason == "talk ratio (agent share) 0.75 < 0.80"
    within = judged({"dynamics": {"metric": "talk_ratio", "min": 0.3, "max": 0.8}}, found, [])
    assert within.passed and within.reason == "talk ratio (agent share) 0.75, within [0.30, 0.80]"
    air = judged({"dynamics": {"metric": "longest_silence_ms", "max": 500}}, found, [])
    assert not air.passed and air.reason == "longest silence 1000 ms > 500 ms"


def test_the_criterion_says_when_nothing_was_measured() -> None:
    none = judged({"dynamics": {"metric": "overlap_ms", "max": 0}}, None, [])
    assert not none.passed and "no dynamics were measured" in none.reason
    unmeasured = judged(
        {"dynamics": {"metric": "agent_words_per_minute", "max": 200}}, Dynamics(), []
    )
    assert not unmeasured.passed
    assert (
        unmeasured.reason
        == "agent words per minute was not measured in this call; wanted at most 200"
    )


# ------------------------------------------------------------------- the Cekura view


def test_the_cekura_view_carries_the_turn_taking_figures() -> None:
    criterion = Criterion.model_validate({"dynamics": {"metric": "agent_interruptions", "max": 0}})
    case = Case(name="c", persona=Persona(name="p"), success_criteria=[criterion])
    found = dynamics_of([seg(1000, 6000)], [seg(200, 800), seg(2500, 3500)])
    found.agent_words_per_minute = 150.0
    runs = [
        Run(
            channel="sip",
            target="sip:a@127.0.0.1",
            case=case,
            status="completed",
            metrics=Metrics(dynamics=found),
        ),
        Run(channel="sip", target="sip:a@127.0.0.1", case=case, status="failed"),
    ]
    result = to_cekura_result(runs)
    per_run = {m["name"]: m["score"] for m in result["runs"][runs[0].id]["evaluation"]["metrics"]}
    assert per_run == {
        "AI Interrupting User": 1.0,
        "User Interrupting AI": 0.0,
        "Talk Ratio": round(1600 / 6600, 4),
        "Words Per Minute": 150.0,
        "Longest Silence": 200.0,
    }
    assert result["runs"][runs[1].id]["evaluation"]["metrics"] == []
    numeric = {m["name"]: m["value"] for m in result["overall_evaluation"]["numeric_metrics"]}
    assert numeric["AI Interrupting User"] == 1.0 and numeric["Words Per Minute"] == 150.0
    assert (
        "agent_interruptions <= 0"
        in result["overall_evaluation"]["metric_summary"]["criterion_1"]["name"]
    )


# ------------------------------------------------------- the oracle agent's cut-in timing


def test_the_oracle_agent_lays_its_reply_x_ms_after_the_caller_starts() -> None:
    # The caller's audio goes in 20 ms at a time, as from the wire; each reply's first
    # voiced sample must sit on the tape exactly X after the caller's first voiced one
    # (the tape is read on the caller's clock, so that is when it leaves).
    rate, x_ms = 8000, 500
    logic = TurnLogic(
        script=DENTAL_SCRIPT,
        voice=get_voice("flite:rms"),
        config=TurnTakerConfig(sample_rate=rate, interrupt_after_ms=x_ms, phone_line=True),
    )
    caller = np.zeros(11 * rate, dtype=np.int16)
    # Two utterances of 2 s, the second after the first reply has played out.
    onsets = [rate // 2 + 7, 8 * rate + 3]
    for onset in onsets:
        t = np.arange(2 * rate)
        caller[onset : onset + t.size] = (6000 * np.sin(2 * np.pi * 300 * t / rate)).astype(
            np.int16
        )
    for i in range(0, caller.size, rate // 50):
        logic.feed(caller[i : i + rate // 50], i / rate)
    logic.close()
    voiced = [c.start + c.lead for c in logic.tape._clips]
    # The caller's first voiced samples, by the harness's own edge rule.
    first = [s.start for s in detect_speech(caller, rate)]
    assert len(first) == 2 and abs(first[0] - onsets[0]) < 10
    assert voiced == [f + x_ms * rate // 1000 for f in first]  # one reply per utterance


@pytest.mark.parametrize("x_ms", [300, 1500])
def test_the_oracle_offline_agent_and_analysis_agree_to_the_sample(x_ms: int) -> None:
    # The oracle with no transport between (round trip 0): the persona's real line
    # (flite) goes into the agent 20 ms at a time; the agent's tape, G.711 both ways,
    # becomes the recording's agent channel.  analyse() must find the reply as an
    # interruption exactly X into the persona's turn, overlapping to the line's end.
    rate = 8000
    line = get_voice("flite:slt").synthesize(LINES[0], rate)
    caller = np.zeros(rate // 2 + line.size + 6 * rate, dtype=np.int16)
    caller[rate // 2 : rate // 2 + line.size] = line
    caller = np.frombuffer(ulaw_decode(ulaw_encode(caller.tobytes())), dtype=np.int16)
    logic = TurnLogic(
        script=DENTAL_SCRIPT,
        voice=get_voice("flite:rms"),
        config=TurnTakerConfig(sample_rate=rate, interrupt_after_ms=x_ms, phone_line=True),
    )
    for i in range(0, caller.size, rate // 50):
        logic.feed(caller[i : i + rate // 50], i / rate)
    logic.close()
    agent = np.zeros_like(caller)
    (clip,) = logic.tape._clips
    agent[clip.start : clip.end] = clip.audio[: caller.size - clip.start]
    agent = np.frombuffer(ulaw_decode(ulaw_encode(agent.tobytes())), dtype=np.int16)
    turns, metrics = analyse(Recording(rate, persona=caller, agent=agent), [])
    assert metrics.dynamics is not None
    (cut,) = metrics.dynamics.agent_interruptions
    persona = turns[cut.interrupted_turn_index or 0]
    assert [t.role for t in turns] == ["persona", "agent"]
    assert cut.into_turn_ms == pytest.approx(x_ms, abs=1000 / rate)
    assert cut.overlap_ms == pytest.approx(persona.end_ms - cut.at_ms, abs=1000 / rate)
    assert cut.stopped and turns[1].latency_ms is None
