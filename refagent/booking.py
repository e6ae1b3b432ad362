"""The reference agent's booking flow: the dental script's steps, tools and reported nodes.

Stage: beside ``TurnLogic``, off the audio path.  The flow's nodes are ``greet``
(the greeting), ``collect_details`` (the caller gave a name), ``confirm_booking``
(the booking went through) and ``goodbye``; each is reported to loopcall's event
webhook when the call carried one.  With a tools URL the agent asks
``check_availability`` as it greets, and ``book_appointment`` once the caller
accepts the slot; without one it uses its built-in slot (Tuesday at ten).

Replies never wait on a tool: the slot's lines are synthesized in a thread as soon
as ``check_availability`` answers, and a reply uses them only if they are ready
when it is due (else the built-in line): the reply's timing (the latency oracle)
does not depend on the network.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from loguru import logger

from audio.speech import Voice
from refagent.loopcall_link import LoopcallLink
from runtime.tasks import spawn

__all__ = ["BUILT_IN_SLOT", "BookingFlow", "slot_lines"]

BUILT_IN_SLOT = ("Tuesday", "10:00")
_HOURS = (
    "twelve",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
)
_MINUTES = {0: "", 15: " fifteen", 30: " thirty", 45: " forty five"}
_SLOT = re.compile(r"^\s*([A-Za-z]+)\s+(\d{1,2}):(\d{2})\s*$")
_NAME = re.compile(r"(?:this is|my name is|i am|i'm)\s+([a-z]+(?:\s+[a-z]+)?)", re.IGNORECASE)
# The dental script's replies: 0 offers the slot, 1 confirms it, 2 says goodbye.
OFFER, CONFIRM, GOODBYE = 0, 1, 2


def slot_lines(day: str, time: str) -> tuple[str, str] | None:
    """The offer and the confirmation for a slot (``None`` if ``time`` is not HH:MM)."""
    match = re.fullmatch(r"(\d{1,2}):(\d{2})", time)
    if match is None or not 0 <= int(match[1]) < 24:
        return None
    hour, minute = int(match[1]), int(match[2])
    spoken = _HOURS[hour % 12] + _MINUTES.get(minute, f" {minute:02d}")
    part = "in the morning" if hour < 12 else "in the afternoon" if hour < 17 else "in the evening"
    return (
        f"Thanks. I have an opening on {day} at {spoken} {part}. Does that work for you?",
        f"Perfect, you are all set for {day} at {spoken}. "
        "Is there anything else I can help you with?",
    )


class BookingFlow:
    """One call's booking: which step it is at, the slot, what it reports."""

    def __init__(self, link: LoopcallLink | None, voice: Voice, sample_rate: int) -> None:
        self.link = link
        self._voice = voice
        self._sr = sample_rate
        self._slot = BUILT_IN_SLOT
        self._lines: dict[int, str] = {}
        self._name: str | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def greeted(self) -> None:
        """The greeting is laid: report it, and look up a slot if there are tools."""
        self._node("greet")
        if self.link is not None and self.link.has_tools:
            spawn(self._check_availability(), owner=self._tasks)

    def reply(self, position: int, default: str) -> str:
        """The line for reply ``position``: the tool's slot if ready, else the script's."""
        return self._lines.get(position, default)

    def caller_done(self, position: int) -> None:
        """The caller finished the turn that reply ``position`` answers."""
        if position == OFFER:
            self._node("collect_details")
        elif position == CONFIRM:
            if self.link is not None and self.link.has_tools:
                spawn(self._book(), owner=self._tasks)
            else:
                self._node("confirm_booking", {"day": self._slot[0], "time": self._slot[1]})
        elif position == GOODBYE:
            self._node("goodbye")

    def heard(self, turn: int, text: str | None) -> None:
        """What the agent's STT heard before reply ``turn`` (turn 1: the caller's name)."""
        if turn == 1 and text:
            found = _NAME.search(text)
            self._name = (found[1] if found else text).strip(" .,!?").title() or None

    def close(self) -> None:
        for task in self._tasks:
            task.cancel()

    async def settled(self) -> None:
        """Once the tool calls under way have been answered (and their nodes reported)."""
        while self._tasks:
            await asyncio.wait(set(self._tasks))

    def _node(self, name: str, args: dict[str, Any] | None = None) -> None:
        if self.link is not None:
            self.link.report("node", name, args)

    async def _check_availability(self) -> None:
        assert self.link is not None
        answer = await self.link.call_tool("check_availability", {"service": "checkup"})
        slots = answer.get("slots") if isinstance(answer, dict) else None
        found = _SLOT.match(str(slots[0])) if isinstance(slots, list) and slots else None
        if found is None:
            logger.info(f"reference agent: no usable slot in {answer!r}; offering the built-in")
            return
        day, time = found[1].title(), f"{int(found[2])}:{found[3]}"
        lines = slot_lines(day, time)
        if lines is None:
            return
        for line in lines:  # in a thread: the loop keeps the replies' timing
            await self._voice.synthesize_async(line, self._sr)
        self._slot = (day, time)
        self._lines = {OFFER: lines[0], CONFIRM: lines[1]}

    async def _book(self) -> None:
        assert self.link is not None
        day, time = self._slot
        args = {"day": day, "time": time, "name": self._name or "caller"}
        answer = await self.link.call_tool("book_appointment", args)
        if isinstance(answer, dict) and not answer.get("error"):
            self._node("confirm_booking", {"confirmation": answer.get("confirmation")})
        else:
            self._node("booking_failed", {"answer": answer})
