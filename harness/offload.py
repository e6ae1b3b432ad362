"""One worker thread for the bookkeeping that must not run on the event loop.

Stage: beside the orchestrator.  When a call ends, its recording is laid out,
written and analysed, and its run file written, while other calls may still be
live on the same event loop.  That work goes to this single thread: off the
loop, and, being one thread, it takes at most half of the interpreter from the
loop (the default executor's several threads would each compete for the GIL and
starve the loop's 20 ms media ticks when many calls end together).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

__all__ = ["off_loop"]

P = ParamSpec("P")
T = TypeVar("T")
_executor: ThreadPoolExecutor | None = None


def _pool() -> ThreadPoolExecutor:
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="loopcall-offload")
    return _executor


async def off_loop(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """``fn(*args, **kwargs)`` on the worker thread."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_pool(), functools.partial(fn, *args, **kwargs))
