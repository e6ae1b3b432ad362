"""A case's own regexes, run with a deadline and without holding the event loop.

Stage: wherever a case's patterns meet text: the scripted persona's ``when:``
lines, live during the call, and the criteria's ``pattern``, after it.  A
pattern comes from whoever wrote the case, so it may backtrack catastrophically:
``(a|a)+$`` against a turn that ends in 24 a's keeps the stdlib's ``re`` busy
for about 4 s, holding the GIL, so the event loop (and every live call's 20 ms
media timing) waits just as long, even when the search runs in a thread.  Here
patterns run on the ``regex`` engine (``re``'s syntax, case-insensitive), which
gives a search up at a deadline (``PatternTimeout``) and releases the GIL while
it matches: a search in a worker thread (``first_match_async``) leaves the loop
alone (measured on a shared 2-core machine: the loop's delay, p99 over each
search, 1-5 ms while such a search ran into a 1 s deadline; ``re`` in a thread
held the loop for the whole 2 s search).

``probe`` tells, before a run, whether a pattern blows up on a short input made
of its own characters, as a catastrophic one does: 32 a's take ``(a|a)+$``
longer than any deadline here.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import regex

__all__ = [
    "FLAGS",
    "PROBE_TIMEOUT_S",
    "FirstMatch",
    "PatternTimeout",
    "first_match",
    "first_match_async",
    "probe",
    "search",
]

FLAGS = regex.IGNORECASE
PROBE_TIMEOUT_S = 0.2
PROBE_LENGTH = 32
_executor: ThreadPoolExecutor | None = None
_sound: set[str] = set()  # patterns that passed the probe (a pass is not re-tested)


class PatternTimeout(TimeoutError):
    """A search ran past its deadline."""

    def __init__(self, pattern: str, timeout_s: float) -> None:
        super().__init__(f"/{pattern}/ timed out after {timeout_s * 1000:.0f} ms")
        self.pattern = pattern
        self.timeout_s = timeout_s


def search(pattern: str, text: str, *, timeout_s: float) -> regex.Match[str] | None:
    """``pattern``'s first match in ``text`` (case-insensitive), given up after ``timeout_s``.

    It blocks its thread until then: on the event loop, use ``first_match_async``.
    """
    try:
        return regex.search(pattern, text, FLAGS, timeout=timeout_s)
    except TimeoutError as exc:
        raise PatternTimeout(pattern, timeout_s) from exc


@dataclass(frozen=True)
class FirstMatch:
    """Which of several patterns matched first (``index``), and which timed out before it."""

    index: int | None
    timed_out: tuple[int, ...] = ()


def first_match(patterns: Sequence[str], text: str, *, timeout_s: float) -> FirstMatch:
    """The first of ``patterns`` found in ``text``; each search has its own deadline."""
    timed_out: list[int] = []
    for index, pattern in enumerate(patterns):
        try:
            if search(pattern, text, timeout_s=timeout_s) is not None:
                return FirstMatch(index, tuple(timed_out))
        except PatternTimeout:
            timed_out.append(index)
    return FirstMatch(None, tuple(timed_out))


async def first_match_async(patterns: Sequence[str], text: str, *, timeout_s: float) -> FirstMatch:
    """``first_match`` in a worker thread: the event loop runs on while it searches."""
    if not patterns:
        return FirstMatch(None)
    loop = asyncio.get_running_loop()
    call = functools.partial(first_match, list(patterns), text, timeout_s=timeout_s)
    return await loop.run_in_executor(_pool(), call)


def probe(pattern: str, *, timeout_s: float = PROBE_TIMEOUT_S) -> str | None:
    """Why ``pattern`` cannot be run safely (it times out on a short probe), or None.

    The probes are 32 repetitions of each of the pattern's own letters, digits and
    words (and of "a", "1" and a space), each ended by a character nothing matches:
    what makes nested or overlapping repetition backtrack.  A sound pattern searches
    each in microseconds to a millisecond.
    """
    if pattern in _sound:
        return None
    for text in _probes(pattern):
        try:
            search(pattern, text, timeout_s=timeout_s)
        except PatternTimeout:
            return (
                f"the regex /{pattern}/ backtracks catastrophically: it ran past "
                f"{timeout_s * 1000:.0f} ms on a {len(text) - 1}-character text "
                f"({text[:-1]!r}); avoid nested or overlapping repetition such as (a|a)+"
            )
    if len(_sound) >= 4096:
        _sound.clear()
    _sound.add(pattern)
    return None


def _probes(pattern: str) -> list[str]:
    units = dict.fromkeys(["a", "1", " "])
    units.update(dict.fromkeys(c.lower() for c in pattern if c.isalnum()))
    units.update(dict.fromkeys(w.lower() for w in regex.findall(r"[^\W_]{2,}", pattern)))
    return [(unit * PROBE_LENGTH)[: 8 * PROBE_LENGTH] + "\x00" for unit in units]


def _pool() -> ThreadPoolExecutor:
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="loopcall-regex")
    return _executor
