"""The demo suite's booking case and the agent-transcript WER, for the end-to-end tests."""

from __future__ import annotations

from pathlib import Path

import jiwer

from harness.cases import load_cases
from harness.models import Case, Run
from refagent.script import DENTAL_SCRIPT

EXAMPLES = Path(__file__).resolve().parents[1] / "harness" / "examples"


def booking_case() -> Case:
    """'Book a cleaning': three persona lines against the reference dental agent."""
    return load_cases(EXAMPLES / "dental_suite.yaml").cases[0]


def short_case(*lines: str | dict[str, str]) -> Case:
    """The booking case cut to the given persona lines (default: one), for quick calls."""
    case = booking_case()
    script = list(lines) or ["Hi, this is Alex Morgan."]
    data = case.model_dump(mode="json", exclude_none=True)
    data.update(script=script, goodbye="Thanks, goodbye.", success_criteria=[])
    return Case.model_validate(data)


def normalise(text: str) -> str:
    words = jiwer.RemovePunctuation()(text.lower())
    return " ".join(words.replace("10", "ten").split())


def agent_wer(run: Run) -> float:
    """WER of what the harness heard the agent say against the agent's known lines."""
    heard = [normalise(t.text) for t in run.turns if t.role == "agent"]
    return float(jiwer.wer([normalise(line) for line in DENTAL_SCRIPT.lines], heard))
