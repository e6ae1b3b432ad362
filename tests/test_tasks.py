"""Owned background tasks: a task that fails is logged once, with its name; cancellation is not."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from loguru import logger

from harness.models import Case, Persona
from personas.brains import Reply
from personas.lean import LeanBot
from runtime.tasks import spawn


class Errors:
    """Loguru's ERROR records, and an event set at the first one."""

    def __init__(self) -> None:
        self.messages: list[str] = []
        self.first = asyncio.Event()

    def __call__(self, message: Any) -> None:
        self.messages.append(str(message.record["message"]))
        self.first.set()


@pytest.fixture
def errors() -> Iterator[Errors]:
    sink = Errors()
    handle = logger.add(sink, level="ERROR", format="{message}")
    yield sink
    logger.remove(handle)


async def test_a_failed_task_is_logged_once_with_its_name(errors: Errors) -> None:
    async def boom() -> None:
        raise ValueError("the reader broke")

    owner: set[asyncio.Task[Any]] = set()
    task = spawn(boom(), name="rtp-reader", owner=owner)
    assert task in owner
    await asyncio.wait({task})
    assert task not in owner  # done: the owner's set lets it go
    assert errors.messages == ["task 'rtp-reader' failed: ValueError('the reader broke')"]


async def test_a_cancelled_or_finished_task_is_not_logged(errors: Errors) -> None:
    started = asyncio.Event()

    async def wait_forever() -> None:
        started.set()
        await asyncio.Event().wait()

    async def fine() -> int:
        return 7

    waiting = spawn(wait_forever())
    done = spawn(fine())
    await started.wait()
    waiting.cancel()
    await asyncio.wait({waiting, done})
    assert (waiting.cancelled(), done.result()) == (True, 7)
    assert errors.messages == []


async def test_an_unnamed_task_is_named_after_its_coroutine(errors: Errors) -> None:
    async def send_loop() -> None:
        raise OSError("socket closed")

    await asyncio.wait({spawn(send_loop())})
    assert len(errors.messages) == 1
    assert "send_loop" in errors.messages[0] and "socket closed" in errors.messages[0]


class _SilentLine:
    """Just enough of a ``Call`` for a caller whose agent never speaks."""

    sample_rate = 8000
    frame_ms = 20

    def listen(self, _callback: Any) -> None:
        pass


class _CrashingBrain:
    async def next_reply(self, agent_said: str) -> Reply:
        raise RuntimeError("the brain crashed")

    def goodbye(self, reason: Any) -> Reply:
        return Reply("Bye.", hang_up=True, reason=reason)


async def test_the_lean_caller_logs_a_brain_that_crashes(errors: Errors) -> None:
    # The agent never greets, so the caller speaks first and asks its brain, which
    # raises an error no one expects: it must not vanish with the task.
    case = Case(name="crash", persona=Persona(name="Alex"), wait_for_greeting_s=0)
    bot = LeanBot(case, _SilentLine(), _CrashingBrain())  # type: ignore[arg-type]
    await bot.start()
    try:
        # A bound, not a pause: the failure is logged as soon as the task ends.
        await asyncio.wait_for(errors.first.wait(), 10)
    finally:
        await bot.stop()
    assert len(errors.messages) == 1
    assert "_speak_first_if_silent" in errors.messages[0]
    assert "the brain crashed" in errors.messages[0]
