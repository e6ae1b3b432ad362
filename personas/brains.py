"""Persona brains: decide what the caller says next, given what the agent said.

Stage: inside the persona bot, between its ears (STT) and its voice (TTS).  The
offline default is ``ScriptedBrain``: ordered lines, goal lines that fire when
the agent's words match a pattern, and a goodbye.  ``LLMBrain``
(``personas/llm_brain.py``) asks any OpenAI-compatible endpoint instead; a case
picks one with ``brain: scripted | llm`` (``personas/factory.py``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal, Protocol

from personas.spec import CallerCase, ScriptLineSpec

__all__ = ["Brain", "BrainError", "FinishReason", "Reply", "ScriptedBrain"]

FinishReason = Literal["persona_goodbye", "max_turns"]


class BrainError(RuntimeError):
    """The brain cannot produce the persona's next line (e.g. the LLM endpoint failed)."""


@dataclass(frozen=True)
class Reply:
    """What the persona says next, and whether the call ends after it."""

    text: str
    hang_up: bool = False
    reason: FinishReason | None = None
    dtmf: str = ""  # keys pressed before the text is said


class Brain(Protocol):
    async def next_reply(self, agent_said: str) -> Reply: ...

    def goodbye(self, reason: FinishReason) -> Reply: ...


@dataclass
class ScriptedBrain:
    """Says the case's script: goal lines when the agent's words match, else the next line."""

    lines: list[ScriptLineSpec]
    goodbye_line: str
    max_turns: int
    turns_taken: int = 0
    _ordered: list[ScriptLineSpec] = field(default_factory=list)
    _goals: list[ScriptLineSpec] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._ordered = [line for line in self.lines if line.when is None]
        self._goals = [line for line in self.lines if line.when is not None]

    @classmethod
    def for_case(cls, case: CallerCase) -> ScriptedBrain:
        return cls(lines=list(case.script), goodbye_line=case.goodbye, max_turns=case.max_turns)

    async def next_reply(self, agent_said: str) -> Reply:
        return self.next_line(agent_said)

    def next_line(self, agent_said: str) -> Reply:
        """The persona's next turn after the agent said ``agent_said``."""
        if self.turns_taken >= self.max_turns - 1:
            return self.goodbye("max_turns")
        for goal in self._goals:
            if goal.when is not None and re.search(goal.when, agent_said, re.IGNORECASE):
                self._goals.remove(goal)
                self.turns_taken += 1
                return _reply(goal)
        if self._ordered:
            self.turns_taken += 1
            return _reply(self._ordered.pop(0))
        return self.goodbye("persona_goodbye")

    def goodbye(self, reason: FinishReason) -> Reply:
        self.turns_taken += 1
        return Reply(self.goodbye_line, hang_up=True, reason=reason)


def _reply(line: ScriptLineSpec) -> Reply:
    return Reply(line.say or "", dtmf=line.dtmf or "")
