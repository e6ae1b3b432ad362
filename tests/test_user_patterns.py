"""A case's own regexes (criteria ``pattern``, script ``when:``) run with a deadline, off the loop.

A pattern that backtracks catastrophically, here ``(a|a)+$`` against an agent
who ends a long turn with a scream of 24 a's, costs the stdlib's ``re`` seconds
of holding the event loop.  The loop must keep its 20 ms media timing (the
harness's lag bound) while such a pattern runs, and the verdict must say it timed out.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from harness.analysis.health import DEFAULT_LAG_BOUND_MS
from harness.cases import CaseFileError, load_cases
from harness.models import Case, Criterion, Metrics, Persona, Turn
from harness.monitor import LoopMonitor
from harness.scoring import evaluate
from personas.brains import ScriptedBrain
from runtime.patterns import probe

EXAMPLES = Path(__file__).resolve().parents[1] / "harness" / "examples"
CATASTROPHIC = r"(a|a)+$"
# A long agent turn, ending in a scream: ``re`` needs about 4 s to give up on it.
LONG_TURN = "Thanks for calling Acme Dental, how can I help you today? " * 40 + "A" * 24 + "!"


@pytest.fixture
async def monitor() -> AsyncIterator[LoopMonitor]:
    monitor = LoopMonitor()
    monitor.acquire()
    await monitor.wait_samples(2)
    yield monitor
    await monitor.release()


def _case(**fields: object) -> Case:
    return Case.model_validate({"name": "scream", "persona": Persona(name="Alex"), **fields})


async def _lag_p99_ms(monitor: LoopMonitor, t0: float, t1: float) -> float:
    """The loop's delay over ``[t0, t1]``, judged as the harness judges a bench level: its p99.

    Held to the harness's lag bound (20 ms).  Measured on this 2-core machine shared
    with other test runs, over 100 searches each: p99 0.9-5.1 ms (one sample of a
    1 s window reached 25 ms once, the machine's own noise, which p99 sets aside);
    the stdlib's ``re`` holds the loop 2,000-4,000 ms.
    """
    await monitor.wait_samples(2)  # the sample that covers the end of [t0, t1]
    p99 = monitor.window(t0, t1).percentile(99)
    assert p99 is not None
    return p99


async def test_a_catastrophic_when_line_leaves_the_event_loop_alone(monitor: LoopMonitor) -> None:
    case = _case(script=[{"when": CATASTROPHIC, "say": "Are you all right?"}, "My name is Alex."])
    brain = ScriptedBrain.for_case(case)
    t0 = time.monotonic()
    reply = await brain.next_reply(LONG_TURN)
    t1 = time.monotonic()
    assert reply.text == "My name is Alex."
    assert await _lag_p99_ms(monitor, t0, t1) < DEFAULT_LAG_BOUND_MS


async def test_a_when_line_that_times_out_is_skipped_with_a_run_event(
    monitor: LoopMonitor,
) -> None:
    events: list[tuple[str, str]] = []
    case = _case(
        script=[
            {"when": CATASTROPHIC, "say": "Are you all right?"},
            {"when": "help", "say": "I'd like a cleaning."},
            "My name is Alex.",
        ]
    )
    brain = ScriptedBrain.for_case(case, on_event=lambda *event: events.append(event))
    assert (await brain.next_reply(LONG_TURN)).text == "I'd like a cleaning."
    assert [kind for kind, _ in events] == ["script_line_skipped"]
    assert CATASTROPHIC in events[0][1] and "timed out" in events[0][1]
    # Skipped for the rest of the call: no second wait, no second event.
    assert (await brain.next_reply(LONG_TURN)).text == "My name is Alex."
    assert len(events) == 1


def test_next_line_bounds_the_pattern_too() -> None:
    brain = ScriptedBrain.for_case(_case(script=[{"when": CATASTROPHIC, "say": "Hm?"}, "Hello."]))
    t0 = time.monotonic()
    assert brain.next_line(LONG_TURN).text == "Hello."
    assert time.monotonic() - t0 < 2.0  # the deadline (0.2 s) plus slack; re takes about 4 s


def _turns(agent_text: str) -> list[Turn]:
    return [
        Turn(role="agent", text=agent_text, start_ms=0, end_ms=9000),
        Turn(role="persona", text="Hello?", start_ms=9500, end_ms=10_000),
    ]


@pytest.mark.parametrize("must_match", [True, False])
def test_a_criterion_that_times_out_fails_saying_so(must_match: bool) -> None:
    case = _case(
        success_criteria=[
            {"description": "no screaming", "pattern": CATASTROPHIC, "must_match": must_match},
            {"description": "greets", "pattern": "acme dental"},
        ]
    )
    evaluation = evaluate(case, _turns(LONG_TURN), Metrics(), "persona_goodbye")
    timed_out, greets = evaluation.results
    assert not timed_out.passed
    assert "timed out" in timed_out.reason and CATASTROPHIC in timed_out.reason
    assert greets.passed  # the other criteria are still checked
    assert evaluation.score == 50.0


async def test_scoring_off_the_loop_leaves_it_alone(monitor: LoopMonitor) -> None:
    from harness.scoring import CallFacts, evaluate_off_loop

    case = _case(success_criteria=[{"pattern": CATASTROPHIC}])
    t0 = time.monotonic()
    facts = CallFacts(_turns(LONG_TURN), Metrics(), "agent_ended")
    evaluation = await evaluate_off_loop(case, facts)
    t1 = time.monotonic()
    assert "timed out" in evaluation.results[0].reason
    assert await _lag_p99_ms(monitor, t0, t1) < DEFAULT_LAG_BOUND_MS


def test_a_pattern_is_compiled_by_the_engine_that_runs_it() -> None:
    assert Criterion(pattern=r"\p{Lu}\w+").pattern == r"\p{Lu}\w+"  # re knows no \p{...}
    with pytest.raises(ValueError, match="invalid regex"):
        Criterion(pattern="(unclosed")


def test_a_case_file_with_a_catastrophic_pattern_is_rejected_naming_the_field(
    tmp_path: Path,
) -> None:
    suite = tmp_path / "suite.yaml"
    suite.write_text(
        """
name: screams
cases:
  - name: calm
    persona: {name: Alex}
    success_criteria: [{pattern: "tuesday"}]
  - name: loud
    persona: {name: Alex}
    script: ["Hello.", {when: "(ab|ab)+$", say: "Pardon?"}]
    success_criteria: [{pattern: "tuesday"}, {pattern: "(a|a)+$"}]
""",
        encoding="utf-8",
    )
    with pytest.raises(CaseFileError) as caught:
        load_cases(suite)
    message = str(caught.value)
    assert message.startswith(f"{suite}: 2 problem(s)")
    assert "field 'cases.1.success_criteria.1.pattern'" in message
    assert "field 'cases.1.script.1.when'" in message
    assert "backtracks catastrophically" in message


def test_sound_patterns_pass_the_probe() -> None:
    loaded = load_cases(EXAMPLES / "dental_suite.yaml")  # the shipped example loads
    assert loaded.cases
    for pattern in (r"\btuesday\b", r"(\w+\s?)+$", r"(?:first|next) (?:slot|opening)", r"\d{3}"):
        assert probe(pattern) is None, pattern
