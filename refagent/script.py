"""The reference agent's deterministic brain: a dental office's booking script.

Stage: inside the reference agent, between its endpointer and its voice.  Each
caller utterance advances the script by one line whatever was said, so replies
are known in advance (and pre-synthesized), which is what lets the agent hit an
exact reply delay.  After the last line the agent hangs up.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["DENTAL_SCRIPT", "AgentScript"]


@dataclass(frozen=True)
class AgentScript:
    """Greeting, then one reply per caller turn; the last reply ends the call."""

    name: str
    greeting: str
    replies: tuple[str, ...]
    hang_up_after_last: bool = True

    @property
    def lines(self) -> tuple[str, ...]:
        return (self.greeting, *self.replies)


@dataclass
class ScriptCursor:
    """Where a conversation is in its script."""

    script: AgentScript
    position: int = field(default=0)

    def next_reply(self) -> str | None:
        """The next line, or None once the script is spent."""
        if self.position >= len(self.script.replies):
            return None
        line = self.script.replies[self.position]
        self.position += 1
        return line

    @property
    def finished(self) -> bool:
        return self.position >= len(self.script.replies)


DENTAL_SCRIPT = AgentScript(
    name="dental",
    greeting=(
        "Thank you for calling Bright Smile Dental, this is Joe. May I have your name, please?"
    ),
    replies=(
        "Thanks. I have an opening on Tuesday at ten in the morning. Does that work for you?",
        "Perfect, you are all set for Tuesday at ten. Is there anything else I can help you with?",
        "Thank you for calling Bright Smile Dental. Goodbye!",
    ),
)
