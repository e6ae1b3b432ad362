"""Persona brains: decide what the caller says next, given what the agent said.

Stage: inside the persona bot, between its ears (STT) and its voice (TTS).  The
offline default is ``ScriptedBrain``: ordered lines, goal lines that fire when
the agent's words match a pattern, and a goodbye.  ``LLMBrain``
(``personas/llm_brain.py``) asks any OpenAI-compatible endpoint instead; a case
picks one with ``brain: scripted | llm`` (``personas/factory.py``).

A ``when:`` pattern is the case writer's regex, matched live beside the call's
audio: it runs in a worker thread with a deadline (``runtime.patterns``), and a
line whose pattern times out is skipped for the rest of the call, with a
``script_line_skipped`` event saying so.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

from personas.spec import CallerCase, ScriptLineSpec
from runtime.patterns import FirstMatch, first_match, first_match_async

__all__ = [
    "WHEN_TIMEOUT_S",
    "Brain",
    "BrainError",
    "EventFn",
    "FinishReason",
    "Reply",
    "ScriptedBrain",
    "needs_live_stt",
    "tokens_spent",
]

FinishReason = Literal["persona_goodbye", "max_turns"]
EventFn = Callable[[str, str], None]  # (kind, detail): the run's timeline
# The persona waits this long at most before answering; a sound pattern takes microseconds.
WHEN_TIMEOUT_S = 0.2


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


def needs_live_stt(case: CallerCase, brain: Brain | None = None) -> bool:
    """Whether the persona's brain must understand the agent during the call: an LLM
    brain, or a script with goal lines (``when``).  Otherwise its next line does not
    depend on the agent's words, and the persona need not wait for them to answer."""
    if brain is not None and not isinstance(brain, ScriptedBrain):
        return True
    if case.brain != "scripted":
        return True
    return any(line.when is not None for line in case.script)


def tokens_spent(brain: object) -> tuple[str | None, int, int]:
    """(model, input tokens, output tokens) the brain spent: an LLM brain counts them
    as its endpoint reports them; a scripted one spends none."""
    return (
        getattr(brain, "model", None),
        int(getattr(brain, "input_tokens", 0)),
        int(getattr(brain, "output_tokens", 0)),
    )


@dataclass
class ScriptedBrain:
    """Says the case's script: goal lines when the agent's words match, else the next line."""

    lines: list[ScriptLineSpec]
    goodbye_line: str
    max_turns: int
    on_event: EventFn | None = None
    when_timeout_s: float = WHEN_TIMEOUT_S
    turns_taken: int = 0
    _ordered: list[ScriptLineSpec] = field(default_factory=list)
    _goals: list[ScriptLineSpec] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._ordered = [line for line in self.lines if line.when is None]
        self._goals = [line for line in self.lines if line.when is not None]

    @classmethod
    def for_case(cls, case: CallerCase, *, on_event: EventFn | None = None) -> ScriptedBrain:
        return cls(
            lines=list(case.script),
            goodbye_line=case.goodbye,
            max_turns=case.max_turns,
            on_event=on_event,
        )

    async def next_reply(self, agent_said: str) -> Reply:
        """``next_line``, its patterns matched in a worker thread (the loop runs on)."""
        if self._at_limit():
            return self.goodbye("max_turns")
        goals = list(self._goals)
        found = await first_match_async(
            [_when(goal) for goal in goals], agent_said, timeout_s=self.when_timeout_s
        )
        return self._pick(goals, found)

    def next_line(self, agent_said: str) -> Reply:
        """The persona's next turn after the agent said ``agent_said``.

        Blocks its thread while the patterns are matched (at most the deadline each).
        """
        if self._at_limit():
            return self.goodbye("max_turns")
        goals = list(self._goals)
        found = first_match(
            [_when(goal) for goal in goals], agent_said, timeout_s=self.when_timeout_s
        )
        return self._pick(goals, found)

    def _at_limit(self) -> bool:
        return self.turns_taken >= self.max_turns - 1

    def _pick(self, goals: list[ScriptLineSpec], found: FirstMatch) -> Reply:
        for index in found.timed_out:
            self._drop(goals[index])
            if self.on_event is not None:
                self.on_event(
                    "script_line_skipped",
                    f"when /{goals[index].when}/ timed out after "
                    f"{self.when_timeout_s * 1000:.0f} ms on what the agent said; "
                    "the line is skipped for the rest of the call",
                )
        if found.index is not None:
            goal = goals[found.index]
            self._drop(goal)
            self.turns_taken += 1
            return _reply(goal)
        if self._ordered:
            self.turns_taken += 1
            return _reply(self._ordered.pop(0))
        return self.goodbye("persona_goodbye")

    def _drop(self, goal: ScriptLineSpec) -> None:
        if goal in self._goals:  # a reply cancelled mid-search leaves the goals as they were
            self._goals.remove(goal)

    def goodbye(self, reason: FinishReason) -> Reply:
        self.turns_taken += 1
        return Reply(self.goodbye_line, hang_up=True, reason=reason)


def _when(line: ScriptLineSpec) -> str:
    assert line.when is not None  # goals are the lines with a pattern
    return line.when


def _reply(line: ScriptLineSpec) -> Reply:
    return Reply(line.say or "", dtmf=line.dtmf or "")
