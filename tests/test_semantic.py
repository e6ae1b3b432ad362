"""The ``semantic`` criterion: offline sentence embeddings, the lexical guard, calibration.

The model is the one the ``wordllama`` wheel ships; these tests load it from the
installed package with every HTTP request refused, score real transcripts, and
hold the calibrated threshold to its measured precision and recall on the
labelled set (``benchmarks/data/semantic_pairs.yaml``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import requests

from harness.models import Case, Criterion, Metrics, Persona, Turn
from harness.scoring import evaluate
from harness.scoring.lexical import veto
from harness.scoring.semantic import DEFAULT_THRESHOLD, _load, candidates

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import semantic as bench  # noqa: E402  (benchmarks/semantic.py)

CALL = [
    Turn(
        role="agent",
        text="Thanks for calling Bright Smile Dental, this is Ava.",
        start_ms=0,
        end_ms=2,
    ),
    Turn(role="persona", text="Hi, I need a cleaning next week.", start_ms=3, end_ms=5),
    Turn(
        role="agent",
        text="Let me check the calendar. I have an opening on Tuesday at 9:30 in the morning, "
        "would that work for you?",
        start_ms=6000,
        end_ms=9000,
    ),
    Turn(role="persona", text="Yes please.", start_ms=9500, end_ms=10000),
]


# A real call: the reference agent over WebRTC, its side as Whisper heard it ("Bright
# Smile Bendhole"), from a run of benchmarks/oracle.py (role, start, end, text).
HEARD = [
    Turn(role=role, start_ms=start, end_ms=end, text=text)
    for role, start, end, text in [
        (
            "agent",
            464,
            4847,
            "Thank you for calling Bright Smile Bendhole. This is Joe. "
            "May I have your name, please?",
        ),
        ("persona", 6715, 8482, "Hi, this is Alex Morgan."),
        (
            "agent",
            9022,
            13148,
            "Thanks, I have an opening on Tuesday at 10 in the morning. Does that work for you?",
        ),
        ("persona", 15056, 17133, "Yes, Tuesday at ten works for me."),
        (
            "agent",
            17673,
            21787,
            "Perfect, you're all set for Tuesday at 10. "
            "Is there anything else I can help you with?",
        ),
        ("persona", 24190, 26048, "No, that's everything. Thanks."),
        ("agent", 26588, 29168, "Thank you for calling Bright Smile Dental. Goodbye."),
    ]
]


def judge(statement: str, turns: list[Turn], threshold: float | None = None):
    criterion = Criterion(semantic=statement, threshold=threshold)
    case = Case(name="c", persona=Persona(name="p"), success_criteria=[criterion])
    return evaluate(case, turns, Metrics(), "persona_goodbye").results[0]


def test_the_model_loads_from_the_wheel_without_the_network(monkeypatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"the model tried the network: {args}")

    monkeypatch.setattr(requests.Session, "request", refuse)
    model = _load()
    vectors = model.embed(["I have Tuesday at ten.", "We are closed on Sunday."])
    assert vectors.shape == (2, 256)
    assert abs(float(vectors[0] @ vectors[0]) - 1.0) < 1e-5  # unit length: dot is cosine


def test_a_paraphrase_passes_with_its_turn_quote_and_score() -> None:
    result = judge("the agent offers an appointment on Tuesday morning", CALL)
    assert result.passed, result.reason
    (evidence,) = result.evidence
    assert evidence.turn_index == 2 and evidence.at_ms == 6000
    assert evidence.quote is not None and "Tuesday at 9:30" in evidence.quote
    assert evidence.score is not None and evidence.score >= DEFAULT_THRESHOLD


def test_another_day_is_vetoed_and_the_reason_says_so() -> None:
    thursday = [t.model_copy(update={"text": t.text.replace("Tuesday", "Thursday")}) for t in CALL]
    result = judge("the agent offers an appointment on Tuesday morning", thursday)
    assert not result.passed
    assert "another day (thursday, not tuesday)" in result.reason
    assert any(e.quote and "Thursday" in e.quote for e in result.evidence)


@pytest.mark.parametrize(
    ("statement", "passed", "turn"),
    [
        ("the agent offers an appointment on Tuesday morning", True, 2),
        ("the agent asks for the caller's name", True, 0),
        ("the agent asks if there is anything else", True, 4),
        ("the agent says goodbye", True, 6),
        ("the agent offers an appointment on Thursday", False, None),
        ("the agent gives medical advice", False, None),
    ],
)
def test_a_real_transcript(statement: str, passed: bool, turn: int | None) -> None:
    result = judge(statement, HEARD)
    assert result.passed is passed, result.reason
    if passed:
        assert result.evidence[0].turn_index == turn


def test_the_criterion_threshold_overrides_the_default() -> None:
    statement = "the agent offers an appointment on Tuesday morning"
    assert judge(statement, CALL, threshold=0.05).passed
    assert not judge(statement, CALL, threshold=0.99).passed


def test_no_agent_speech_fails_with_a_reason() -> None:
    result = judge("the agent says goodbye", [CALL[1]])
    assert not result.passed and "said nothing" in result.reason


def test_candidates_are_sentences_and_adjacent_pairs() -> None:
    text = "That's 10 a.m. with Dr. Patel. I can't move it, sorry. Anything else?"
    turn = Turn(role="agent", text=text, start_ms=0, end_ms=1)
    assert [c.text for c in candidates([turn])] == [
        "That's 10 a.m. with Dr. Patel.",  # abbreviations do not end a sentence
        "I can't move it, sorry.",
        "Anything else?",
        "That's 10 a.m. with Dr. Patel. I can't move it, sorry.",
        "I can't move it, sorry. Anything else?",
    ]


@pytest.mark.parametrize(
    ("statement", "said", "vetoed"),
    [
        ("the agent cancels the appointment", "I can't cancel it online", True),
        ("the agent cancels the appointment", "It's cancelled, and you won't be charged", False),
        ("the agent books a table for four", "A table for two is booked", True),
        ("the agent says the balance is 35 dollars", "It's 35 dollars, due on the 15th", False),
        ("the agent says the fee is fifty dollars", "There's a fifteen dollar fee", True),
        ("the agent offers a slot on Tuesday morning", "Tuesday at four in the afternoon", True),
        ("the agent refuses to give medical advice", "I can't give medical advice", False),
    ],
)
def test_the_lexical_guard(statement: str, said: str, vetoed: bool) -> None:
    assert (veto(statement, said) is not None) is vetoed


def test_the_calibrated_threshold_keeps_its_measured_precision_and_recall() -> None:
    scored = bench.score_pairs(bench.load_pairs())
    assert len(scored) >= 100
    guarded = bench.figures(scored, DEFAULT_THRESHOLD)
    bare = bench.figures(scored, DEFAULT_THRESHOLD, guard=False)
    # Measured by `python benchmarks/semantic.py` (deterministic: a static model, no
    # sampling): at 0.35, guard on: tp=47 fp=6 fn=16 (P 0.887, R 0.746); embedding
    # only: P 0.600, R 0.762.  One pair sits at 0.3499, on the threshold: the bounds
    # allow one pair either way (float summation order), no more.
    assert guarded.tp >= 46 and guarded.fp <= 7, guarded
    assert guarded.precision >= 0.86 and guarded.recall >= 0.73, guarded
    assert bare.precision <= 0.62  # the guard is what buys the precision
    # The calibration's rule: a 6-turn call that never says X passes <= 5 % (measured
    # 52 of 1109 calls, 4.7 %).
    unrelated = bench.unrelated_scores(bench.load_pairs())
    assert bench.call_false_pass(unrelated, DEFAULT_THRESHOLD) <= bench.MAX_CALL_FALSE_PASS
