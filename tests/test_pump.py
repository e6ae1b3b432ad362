"""The media pump: one 20 ms clock for every call's frames in the process."""

from __future__ import annotations

import asyncio

import pytest

from telephony.pump import FRAME_S, MediaPump


async def _ticks(pump: MediaPump, n: int) -> list[float]:
    """Register a handler, return the due times of its first ``n`` calls, remove it."""
    dues: list[float] = []
    done = asyncio.Event()

    def handler(due: float) -> None:
        dues.append(due)
        if len(dues) == n:
            done.set()

    handle = pump.add(handler)
    await done.wait()
    pump.remove(handle)
    return dues


async def test_handlers_tick_every_frame_on_an_even_grid() -> None:
    pump = MediaPump()
    dues = await _ticks(pump, 6)
    steps = [b - a for a, b in zip(dues, dues[1:], strict=False)]
    assert steps == pytest.approx([FRAME_S] * 5, abs=1e-9)


async def test_a_failing_handler_does_not_stop_the_others_and_the_pump_stops_when_empty() -> None:
    pump = MediaPump()

    def broken(_due: float) -> None:
        raise RuntimeError("a call's bug")

    handle = pump.add(broken)
    assert len(await _ticks(pump, 3)) == 3
    pump.remove(handle)
    assert pump.handlers == 0
    task = pump._task
    assert task is not None
    await task  # with nobody left, the pump's task ends by itself
    assert pump._task is None


def test_the_order_rotates_so_every_call_leads_a_burst() -> None:
    pump = MediaPump()
    names = [f"call{i}" for i in range(100)]
    for name in names:
        pump._handlers[len(pump._handlers) + 1] = lambda _d, n=name: None  # type: ignore[misc]
    firsts = set()
    for tick in range(50):
        pump.ticks = tick
        order = pump.order()
        assert len(order) == 100 and len(set(map(id, order))) == 100
        firsts.add(id(order[0]))
    # 100 calls, rotated 4 places per tick: 25 different leaders in 25 ticks, then again.
    assert len(firsts) == 25
    # Every call is within the first four of a burst at least once in 25 ticks.
    leaders = set()
    for tick in range(25):
        pump.ticks = tick
        leaders.update(id(h) for h in pump.order()[:4])
    assert len(leaders) == 100
