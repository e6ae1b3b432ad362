"""Persona brains: decide what the caller says next, given what the agent said.

Stage: inside the persona bot, between its ears (STT) and its voice (TTS).  The
offline default is ``ScriptedBrain``: ordered lines, goal lines that fire when
the agent's words match a pattern, and a goodbye.  An LLM brain (any
OpenAI-compatible endpoint) implements the same ``Brain`` protocol.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal, Protocol

from harness.models import Case, ScriptLine

__all__ = ["Brain", "Reply", "ScriptedBrain"]


@dataclass(frozen=True)
class Reply:
    """What the persona says next, and whether the call ends after it."""

    text: str
    hang_up: bool = False
    reason: Literal["persona_goodbye", "max_turns", None] = None


class Brain(Protocol):
    def next_reply(self, agent_said: str) -> Reply | None: ...

    def goodbye(self, reason: Literal["persona_goodbye", "max_turns"]) -> Reply: ...


@dataclass
class ScriptedBrain:
    """Says the case's script: goal lines when the agent's words match, else the next line."""

    lines: list[ScriptLine]
    goodbye_line: str
    max_turns: int
    turns_taken: int = 0
    _ordered: list[str] = field(default_factory=list)
    _goals: list[ScriptLine] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._ordered = [line.say for line in self.lines if line.when is None]
        self._goals = [line for line in self.lines if line.when is not None]

    @classmethod
    def for_case(cls, case: Case) -> ScriptedBrain:
        return cls(lines=list(case.script), goodbye_line=case.goodbye, max_turns=case.max_turns)

    def next_reply(self, agent_said: str) -> Reply:
        """The persona's next turn after the agent said ``agent_said``."""
        if self.turns_taken >= self.max_turns - 1:
            return self.goodbye("max_turns")
        self.turns_taken += 1
        for goal in self._goals:
            if goal.when is not None and re.search(goal.when, agent_said, re.IGNORECASE):
                self._goals.remove(goal)
                return Reply(goal.say)
        if self._ordered:
            return Reply(self._ordered.pop(0))
        return self.goodbye("persona_goodbye")

    def goodbye(self, reason: Literal["persona_goodbye", "max_turns"]) -> Reply:
        self.turns_taken += 1
        return Reply(self.goodbye_line, hang_up=True, reason=reason)
