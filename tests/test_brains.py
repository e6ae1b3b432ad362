"""ScriptedBrain: ordered lines, goal lines, goodbye at the end of the script or at max_turns."""

from __future__ import annotations

from harness.models import Case, Persona, ScriptLine
from personas.brains import Reply, ScriptedBrain, needs_live_stt

GOODBYE = "Thanks, bye."


def brain(*lines: str | ScriptLine, max_turns: int = 20) -> ScriptedBrain:
    script = [ScriptLine(say=line) if isinstance(line, str) else line for line in lines]
    return ScriptedBrain(lines=script, goodbye_line=GOODBYE, max_turns=max_turns)


def test_ordered_lines_one_per_call_then_goodbye() -> None:
    b = brain("one", "two", "three")
    replies = [b.next_line("agent says something") for _ in range(4)]
    assert replies == [
        Reply("one"),
        Reply("two"),
        Reply("three"),
        Reply(GOODBYE, hang_up=True, reason="persona_goodbye"),
    ]
    assert all(not r.hang_up and r.reason is None for r in replies[:3])


def test_empty_script_says_goodbye_first() -> None:
    assert brain().next_line("Hello, how can I help?") == Reply(
        GOODBYE, hang_up=True, reason="persona_goodbye"
    )


def test_goal_line_fires_on_match_case_insensitively_and_only_once() -> None:
    b = brain("first", ScriptLine(say="May 3rd, 1961.", when=r"date of birth"), "second")
    assert b.next_line("Hi, how can I help?").text == "first"
    # The goal goes ahead of the ordered lines, which keep their place.
    assert b.next_line("Can I have your DATE OF BIRTH?").text == "May 3rd, 1961."
    assert b.next_line("What's your date of birth again?").text == "second"
    assert b.next_line("Date of birth?") == Reply(GOODBYE, hang_up=True, reason="persona_goodbye")


def test_goal_line_waits_for_its_pattern() -> None:
    b = brain(ScriptLine(say="Cash.", when=r"pay(ing)? by|payment"), "a", "b")
    assert b.next_line("Hello").text == "a"
    assert b.next_line("Tuesday?").text == "b"
    assert b.next_line("How will you be PAYING BY the way?").text == "Cash."
    assert b.next_line("Anything else?").reason == "persona_goodbye"


def test_first_matching_goal_wins_when_several_match() -> None:
    b = brain(
        ScriptLine(say="Alex.", when="name"),
        ScriptLine(say="555-0100.", when="number|name"),
    )
    assert b.next_line("Your name and number?").text == "Alex."
    assert b.next_line("And your name?").text == "555-0100."
    assert b.next_line("And your name?").reason == "persona_goodbye"


def test_goodbye_at_max_turns() -> None:
    b = brain("one", "two", "three", "four", max_turns=3)
    replies = [b.next_line("...") for _ in range(3)]
    assert [r.text for r in replies] == ["one", "two", GOODBYE]
    assert replies[2] == Reply(GOODBYE, hang_up=True, reason="max_turns")


def test_max_turns_one_goodbye_is_the_first_reply() -> None:
    b = brain("one", "two", max_turns=1)
    assert b.next_line("Hello?") == Reply(GOODBYE, hang_up=True, reason="max_turns")


def test_max_turns_wins_over_a_matching_goal() -> None:
    b = brain(ScriptLine(say="goal", when="hello"), max_turns=1)
    assert b.next_line("hello").reason == "max_turns"


def test_lines_running_out_exactly_at_max_turns_is_max_turns() -> None:
    b = brain("one", "two", max_turns=3)
    assert [b.next_line("x").text for _ in range(2)] == ["one", "two"]
    assert b.next_line("x") == Reply(GOODBYE, hang_up=True, reason="max_turns")


def test_explicit_goodbye() -> None:
    b = brain("one")
    assert b.goodbye("max_turns") == Reply(GOODBYE, hang_up=True, reason="max_turns")


def test_for_case_uses_script_goodbye_and_max_turns() -> None:
    case = Case(
        name="c",
        persona=Persona(name="p"),
        script=["hello", {"say": "goal", "when": "why"}],  # type: ignore[list-item]
        goodbye="Sorry, wrong number.",
        max_turns=2,
    )
    b = ScriptedBrain.for_case(case)
    assert b.next_line("Why did you call?").text == "goal"
    assert b.next_line("...") == Reply("Sorry, wrong number.", hang_up=True, reason="max_turns")
    # The case's script is not consumed by the brain.
    assert [line.say for line in case.script] == ["hello", "goal"]


def test_turns_taken_counts_each_persona_turn_once() -> None:
    b = brain("one", "two", max_turns=10)
    b.next_line("")
    b.next_line("")
    b.next_line("")  # script spent: the goodbye
    assert b.turns_taken == 3


async def test_next_reply_is_the_async_face_of_next_line() -> None:
    b = brain("one")
    assert (await b.next_reply("hello")).text == "one"


def test_only_a_persona_that_must_understand_the_agent_waits_for_its_words() -> None:
    """A plain script answers after its gap; goal lines and an LLM wait for the transcript."""
    plain = Case(name="c", persona=Persona(name="p"), script=["hello", "bye"])  # type: ignore[list-item]
    goals = plain.model_copy(update={"script": [ScriptLine(say="goal", when="why")]})
    llm = plain.model_copy(update={"brain": "llm"})
    assert not needs_live_stt(plain)
    assert needs_live_stt(goals)
    assert needs_live_stt(llm)
    assert needs_live_stt(plain, brain=object())  # type: ignore[arg-type]
    assert not needs_live_stt(plain, brain=ScriptedBrain.for_case(plain))
