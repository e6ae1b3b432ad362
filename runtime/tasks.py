"""Background tasks that are owned: a reference kept, cancelled on exit, a failure logged.

Stage: under every layer.  A call, a caller and an agent each run work beside
their main flow (a reader, a sender, a reply after a pause); asyncio keeps only
a weak reference to a task and reports its exception, if ever, when the task is
garbage collected.  ``spawn`` starts such a task, adds it to its owner's set
(and removes it when done) and, when it ends with an exception other than a
cancellation, logs that exception once, with the task's name.  The owner still
cancels what is left of its set on exit; since the failure is already logged, an
owner that awaits its cancelled tasks may suppress what they raised.

A task whose owner awaits it for its outcome (``asyncio.wait``, ``gather``) is
not spawned: that owner handles what it raises.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from loguru import logger

__all__ = ["cancel_and_wait", "log_failure", "spawn"]

T = TypeVar("T")


def spawn(
    coro: Coroutine[Any, Any, T],
    *,
    name: str | None = None,
    owner: set[asyncio.Task[Any]] | None = None,
) -> asyncio.Task[T]:
    """Run ``coro`` as a task named ``name`` (default: the coroutine's qualified name),
    kept in ``owner`` until it is done; its failure is logged."""
    task = asyncio.get_running_loop().create_task(coro, name=name or _name_of(coro))
    if owner is not None:
        owner.add(task)
        task.add_done_callback(owner.discard)
    task.add_done_callback(log_failure)
    return task


def log_failure(task: asyncio.Task[Any]) -> None:
    """A done-callback: log the exception that ended ``task``, unless it was cancelled."""
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None:
        logger.opt(exception=exc).error(f"task {task.get_name()!r} failed: {exc!r}")


def _name_of(coro: Coroutine[Any, Any, Any]) -> str | None:
    return getattr(coro, "__qualname__", None)


async def cancel_and_wait(*tasks: asyncio.Task[Any] | None) -> None:
    """Cancel spawned ``tasks`` and wait until they have ended.

    What they raised was logged when they ended, so it is not raised again here;
    a cancellation of the waiting task itself still propagates.
    """
    pending = [task for task in tasks if task is not None]
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending)
