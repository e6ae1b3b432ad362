"""What a caller needs to know about its case: the persona, its lines, its pacing.

Stage: the input of the persona (``bot.py``, ``lean.py``, the brains).  These are
protocols, not records: the harness's ``Case`` (``harness.models``, which also
validates them) satisfies them as it is, so the persona reads the case without
importing the harness, and any object with these fields can drive a caller.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal, Protocol

__all__ = ["CallerCase", "PersonaSpec", "ScriptLineSpec"]


class PersonaSpec(Protocol):
    """Who calls (Yappr's persona fields plus the voice the caller speaks with)."""

    @property
    def name(self) -> str: ...
    @property
    def identity_prompt(self) -> str: ...
    @property
    def description(self) -> str | None: ...
    @property
    def behavior_traits(self) -> Mapping[str, str]: ...
    @property
    def language(self) -> str: ...
    @property
    def voice(self) -> str: ...
    @property
    def speaking_rate(self) -> float: ...


class ScriptLineSpec(Protocol):
    """One line: ``say`` and/or the keys to press (``dtmf``), in order or ``when`` the agent
    says something matching that regex."""

    @property
    def say(self) -> str | None: ...
    @property
    def dtmf(self) -> str | None: ...
    @property
    def when(self) -> str | None: ...


class CallerCase(Protocol):
    """The parts of a test case the caller acts on."""

    @property
    def name(self) -> str: ...
    @property
    def scenario(self) -> str: ...
    @property
    def persona(self) -> PersonaSpec: ...
    @property
    def script(self) -> Sequence[ScriptLineSpec]: ...
    @property
    def brain(self) -> Literal["scripted", "llm"]: ...
    @property
    def goodbye(self) -> str: ...
    @property
    def max_turns(self) -> int: ...
    @property
    def response_gap_ms(self) -> float: ...
    @property
    def wait_for_greeting_s(self) -> float: ...
