"""Case files: the shipped suite, single cases, the persona library, errors naming file+field."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

import harness
from harness.cases import CaseFileError, library_personas, load_cases, load_persona
from harness.models import Case, Criterion, Persona, ScriptLine

SUITE = Path(harness.__file__).parent / "examples" / "dental_suite.yaml"


def write(tmp_path: Path, text: str, name: str = "case.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def load_error(path: Path) -> str:
    with pytest.raises(CaseFileError) as info:
        load_cases(path)
    return str(info.value)


# ------------------------------------------------------------------ valid files


def test_shipped_suite_loads_with_library_personas() -> None:
    loaded = load_cases(SUITE)
    assert loaded.suite_name == "Dental office demo"
    assert [c.name for c in loaded.cases] == [
        "Book a cleaning",
        "Caller leaves early",
        "No medical advice",
    ]
    booking, early, advice = loaded.cases

    assert booking.persona == load_persona("busy_professional")
    assert booking.persona.name == "Busy professional"
    assert "Alex Morgan" in booking.persona.identity_prompt
    assert [line.say for line in booking.script][0] == "Hi, this is Alex Morgan."
    assert [c.kind for c in booking.success_criteria] == [
        "pattern",
        "pattern",
        "pattern",
        "latency_ms",
        "termination_reason",
    ]
    assert booking.success_criteria[3].latency_ms is not None
    assert booking.success_criteria[3].latency_ms.max_ms == 2000
    assert booking.success_criteria[4].termination_reason == ["agent_ended"]
    assert booking.max_turns == 8

    assert early.persona.name == "Curt caller"
    assert early.persona.voice == "flite:awb"
    assert early.max_turns == 1 and early.script == []
    assert early.goodbye == "Sorry, wrong number. Goodbye."
    assert early.success_criteria[0].termination_reason == ["max_turns", "persona_goodbye"]

    # {use: hesitant_senior, voice: ...}: the library persona with one override.
    assert advice.persona.name == "Hesitant senior"
    assert advice.persona.voice == "flite:slt"
    assert advice.persona.speaking_rate == 0.85
    assert advice.success_criteria[0].must_match is False
    # The judged case: what the agent did, meant and how the talk flowed.
    assert [c.kind for c in advice.success_criteria] == [
        "pattern",
        "pattern",
        "turn_count",
        "tool_name",
        "node_id",
        "semantic",
        "dynamics",
        "rubric",
    ]
    assert [t.name for t in advice.tools] == ["check_availability", "book_appointment"]


def test_library_has_the_shipped_personas() -> None:
    assert {"busy_professional", "curt_caller", "hesitant_senior"} <= set(library_personas())


def test_single_case_file_with_overrides_and_both_script_forms(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
name: Reschedule
persona: {use: curt_caller, voice: "piper:joe", speaking_rate: 1.5}
script:
  - "Hi, I need to move my appointment."
  - {say: "My date of birth is May 3rd, 1961.", when: "date of birth|birthday"}
  - say: "Thursday works."
success_criteria:
  - pattern: "moved|rescheduled"
  - termination_reason: persona_goodbye
""",
    )
    loaded = load_cases(path)
    assert loaded.suite_name is None
    (case,) = loaded.cases
    assert case.name == "Reschedule"
    assert case.persona.name == "Curt caller"
    assert (case.persona.voice, case.persona.speaking_rate) == ("piper:joe", 1.5)
    assert case.script == [
        ScriptLine(say="Hi, I need to move my appointment."),
        ScriptLine(say="My date of birth is May 3rd, 1961.", when="date of birth|birthday"),
        ScriptLine(say="Thursday works."),
    ]
    assert case.success_criteria[1].termination_reason == ["persona_goodbye"]
    assert case.max_turns == 20  # default


def test_inline_persona(tmp_path: Path) -> None:
    path = write(tmp_path, "name: Inline\npersona: {name: Pat, voice: 'flite:rms'}\n")
    (case,) = load_cases(path).cases
    assert case.persona == Persona(name="Pat", voice="flite:rms")


# ------------------------------------------------------------------ errors name file and field


def test_invalid_yaml_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "name: Broken\npersona: curt_caller\nscript: [one, two\nmax_turns: 3\n")
    message = load_error(path)
    assert str(path) in message
    assert "invalid YAML" in message
    assert "line 4" in message  # the unclosed list is noticed at the next key


def test_missing_persona_name(tmp_path: Path) -> None:
    path = write(tmp_path, "name: No name\npersona: {description: someone}\n")
    message = load_error(path)
    assert str(path) in message
    assert "field 'persona.name'" in message
    assert "Field required" in message


def test_missing_persona_name_in_a_suite_names_the_case(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "name: S\ncases:\n  - {name: ok, persona: curt_caller}\n  - {name: bad, persona: {}}\n",
    )
    message = load_error(path)
    assert str(path) in message
    assert "field 'cases.1.persona.name'" in message


def test_unknown_field_is_reported_as_a_typo(tmp_path: Path) -> None:
    path = write(tmp_path, "name: Typo\npersona: curt_caller\nscenaro: oops\n")
    message = load_error(path)
    assert str(path) in message
    assert "field 'scenaro'" in message
    assert "unknown field" in message


def test_unknown_field_in_persona_override(tmp_path: Path) -> None:
    path = write(tmp_path, "name: Typo\npersona: {use: curt_caller, voic: 'flite:rms'}\n")
    message = load_error(path)
    assert str(path) in message
    assert "field 'persona.voic'" in message and "unknown field" in message


def test_criterion_with_two_checks(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "name: Two\npersona: curt_caller\nsuccess_criteria:\n"
        "  - {pattern: hello, latency_ms: {max_ms: 900}}\n",
    )
    message = load_error(path)
    assert str(path) in message
    assert "field 'success_criteria.0'" in message
    assert "exactly one check" in message
    assert "got pattern, latency_ms" in message


def test_criterion_with_no_check(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "name: None\npersona: curt_caller\nsuccess_criteria:\n"
        "  - {pattern: ok}\n  - {weight: 2, description: nothing to check}\n",
    )
    message = load_error(path)
    assert str(path) in message
    assert "field 'success_criteria.1'" in message
    assert "got none" in message


def test_invalid_regex_in_pattern_and_when(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "name: Regex\npersona: curt_caller\n"
        "success_criteria:\n  - {pattern: '(unclosed'}\n"
        "script:\n  - hello\n  - {say: hi, when: '[x'}\n",
    )
    message = load_error(path)
    assert str(path) in message
    assert "2 problem(s)" in message
    assert "field 'success_criteria.0.pattern'" in message
    assert "invalid regex '(unclosed'" in message
    assert "field 'script.1.when'" in message
    assert "invalid regex '[x'" in message


@pytest.mark.parametrize(
    "persona", ["nobody_here", "{use: nobody_here, voice: 'flite:rms'}"], ids=["name", "use"]
)
def test_unknown_library_persona(tmp_path: Path, persona: str) -> None:
    path = write(tmp_path, f"name: Ghost\npersona: {persona}\n")
    message = load_error(path)
    assert "unknown persona 'nobody_here'" in message
    assert "busy_professional" in message  # lists what the library has
    # Like every other error, it must say which file and which field.
    assert str(path) in message
    assert "field 'persona'" in message


@pytest.mark.parametrize(
    ("text", "kind"), [("- a\n- b\n", "list"), ("just a string\n", "str"), ("", "NoneType")]
)
def test_non_mapping_document(tmp_path: Path, text: str, kind: str) -> None:
    path = write(tmp_path, text)
    message = load_error(path)
    assert str(path) in message
    assert f"expected a mapping (a case or a suite), got {kind}" in message


def test_nonexistent_file(tmp_path: Path) -> None:
    path = tmp_path / "missing.yaml"
    message = load_error(path)
    assert str(path) in message
    assert "cannot read" in message


def test_case_file_error_is_a_value_error() -> None:
    assert issubclass(CaseFileError, ValueError)


# ------------------------------------------------------------------ model validators


def test_script_lines_from_strings_and_mappings() -> None:
    case = Case.model_validate(
        {
            "name": "c",
            "persona": {"name": "p"},
            "script": ["plain", {"say": "goal", "when": "(?i)price"}],
        }
    )
    assert case.script == [ScriptLine(say="plain"), ScriptLine(say="goal", when="(?i)price")]


def test_script_line_needs_text() -> None:
    with pytest.raises(ValidationError, match="say"):
        ScriptLine(say="")


def test_criterion_kind_and_termination_reason_as_string() -> None:
    criterion = Criterion.model_validate({"termination_reason": "agent_ended"})
    assert criterion.kind == "termination_reason"
    assert criterion.termination_reason == ["agent_ended"]
    with pytest.raises(ValidationError, match="termination_reason"):
        Criterion.model_validate({"termination_reason": "hung_up"})


def test_turn_count_check_bounds() -> None:
    with pytest.raises(ValidationError, match="at least one of"):
        Criterion.model_validate({"turn_count": {"role": "agent"}})
    with pytest.raises(ValidationError, match="must not exceed"):
        Criterion.model_validate({"turn_count": {"min": 3, "max": 2}})
    assert Criterion.model_validate({"turn_count": {"max": 0}}).kind == "turn_count"


@pytest.mark.parametrize("voice", ["slt", "flite:", ":slt"])
def test_persona_voice_needs_engine_and_name(voice: str) -> None:
    with pytest.raises(ValidationError, match="engine:voice"):
        Persona(name="p", voice=voice)


def test_persona_speaking_rate_bounds() -> None:
    with pytest.raises(ValidationError, match="speaking_rate"):
        Persona(name="p", speaking_rate=0.25)
    assert Persona(name="p", speaking_rate=4.0).speaking_rate == 4.0


def test_case_limits() -> None:
    with pytest.raises(ValidationError, match="max_turns"):
        Case(name="c", persona=Persona(name="p"), max_turns=0)
    with pytest.raises(ValidationError, match="name"):
        Case(name="", persona=Persona(name="p"))


def test_a_malformed_tools_section_names_the_file_and_field(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "name: Tools\npersona: curt_caller\n"
        "tools:\n"
        "  - {name: check_availability}\n"  # answers nothing
        "  - {name: 'book me', response: {}}\n"  # not a tool name
        "  - {name: lookup, match: [{response: {}}]}\n"  # a match without args
        "  - {name: lookup, responses: []}\n",  # an empty sequence
    )
    message = load_error(path)
    assert str(path) in message
    assert (
        "field 'tools.0': Value error, a tool needs `response`, `responses` or `match`" in message
    )
    assert "field 'tools.1.name'" in message
    assert "field 'tools.2.match.0.args': Field required" in message
    assert "field 'tools.3.responses'" in message


def test_tool_names_must_be_unique(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "name: Tools\npersona: curt_caller\ntools:\n"
        "  - {name: a, response: 1}\n  - {name: a, response: 2}\n",
    )
    assert "field 'tools': Value error, tool names must be unique: a given twice" in load_error(
        path
    )


def test_a_malformed_action_criterion_names_the_field(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "name: Actions\npersona: curt_caller\nsuccess_criteria:\n"
        "  - {node_id: greet, args_match: {day: tue}}\n"  # args_match goes with tool_name
        "  - {tool_name: book, times: {min: 3, max: 1}}\n",
    )
    message = load_error(path)
    assert "field 'success_criteria.0': Value error, 'args_match' goes with tool_name" in message
    assert "field 'success_criteria.1.times'" in message and "must not exceed" in message


def test_bad_regexes_in_arguments_name_their_field(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "name: Args\npersona: curt_caller\n"
        "tools:\n  - {name: lookup, match: [{args: {id: '/[x/'}, response: 1}]}\n"
        "success_criteria:\n"
        "  - {tool_name: book, args_match: {who: {name: '(?i)(a|a)+$'}, day: '(?i)tue'}}\n",
    )
    message = load_error(path)
    assert "2 problem(s)" in message
    assert "field 'tools.0.match.0.args.id': invalid regex /[x/" in message
    assert "field 'success_criteria.0.args_match.who.name'" in message
    assert "backtracks catastrophically" in message
