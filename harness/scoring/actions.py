"""Checks on what the agent did: its tool calls (``tool_name``) and flow nodes (``node_id``).

Pure functions of ``CallFacts`` (``run.tool_calls`` and ``run.agent_events``, on
the recording's clock).  ``tool_name`` counts the calls of that tool whose
arguments carry ``args_match`` (a subset: values exact, a regex, ``$present``,
nested mappings; ``runtime.arguments``, regexes with a deadline); ``node_id``
counts the agent's ``node`` events of that name.  ``times`` bounds the count
(default: at least once); ``after`` names a tool or node that must have happened
before the first match.  Each verdict cites the calls or events it rests on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from harness.models import CountCheck, Criterion, Evidence, Turn
from harness.scoring.facts import CallFacts, Verdict
from harness.scoring.figures import ms
from harness.scoring.speech import PATTERN_TIMEOUT_S
from runtime.arguments import ArgsCheck, check_args

__all__ = ["check_node_id", "check_tool_name"]

MAX_EVIDENCE = 5
AT_LEAST_ONCE = CountCheck(min=1)


@dataclass(frozen=True)
class _Hit:
    """One call or event the criterion looks at."""

    index: int
    at_ms: float | None
    evidence: Evidence


def check_tool_name(criterion: Criterion, facts: CallFacts) -> Verdict:
    """``tool_name`` (+ ``args_match``, ``times``, ``after``): the agent called the tool."""
    name = criterion.tool_name
    assert name is not None
    calls = [(i, c) for i, c in enumerate(facts.tool_calls) if c.name == name]
    if not calls:
        others = sorted({c.name for c in facts.tool_calls})
        called = f"tools called: {', '.join(others)}" if others else "no tool was called"
        return _none_found(criterion, f"{name} was never called ({called})")
    expected = criterion.args_match or {}
    checks = [(i, c, check_args(expected, c.args, timeout_s=PATTERN_TIMEOUT_S)) for i, c in calls]
    matching = [
        _Hit(i, c.at_ms, Evidence(tool_call_index=i, at_ms=c.at_ms, turn_index=c.turn_index))
        for i, c, check in checks
        if check.ok
    ]
    what = f"{name} was called {_times(len(calls))}"
    if expected:
        if not matching:
            i, call, best = min(checks, key=lambda item: len(item[2].misses))
            evidence = Evidence(tool_call_index=i, at_ms=call.at_ms, turn_index=call.turn_index)
            return _none_found(criterion, f"{what}, {_with(best)}", [evidence])
        fitting = next(check for _, _, check in checks if check.ok)
        some = f"{_times(len(matching))} " if len(matching) < len(calls) else ""
        what += f", {some}{_with(fitting)}"
    return _judge(criterion, what, matching, facts)


def check_node_id(criterion: Criterion, facts: CallFacts) -> Verdict:
    """``node_id`` (+ ``times``, ``after``): the agent reported reaching that step of its flow."""
    node = criterion.node_id
    assert node is not None
    hits = [
        _Hit(
            i,
            e.at_ms,
            Evidence(agent_event_index=i, at_ms=e.at_ms, turn_index=_turn_at(e.at_ms, facts.turns)),
        )
        for i, e in enumerate(facts.agent_events)
        if e.type == "node" and e.name == node
    ]
    if not hits:
        seen = [e.name for e in facts.agent_events if e.type == "node"]
        reached = f"nodes reported: {', '.join(dict.fromkeys(seen))}" if seen else "no node"
        return _none_found(criterion, f"the agent never reached node {node} ({reached})")
    return _judge(criterion, f"the agent reached node {node} {_times(len(hits))}", hits, facts)


def _judge(criterion: Criterion, what: str, hits: list[_Hit], facts: CallFacts) -> Verdict:
    """``times`` and ``after`` over the matching ``hits`` (at least one)."""
    evidence = [hit.evidence for hit in hits[:MAX_EVIDENCE]]
    times = criterion.times or AT_LEAST_ONCE
    count = len(hits)
    if times.min is not None and count < times.min:
        return Verdict(False, f"{what}: fewer than the minimum {times.min}", evidence)
    if times.max is not None and count > times.max:
        return Verdict(False, f"{what}: more than the maximum {times.max}", evidence)
    if criterion.after is not None and hits:
        first = min(hits, key=lambda hit: (hit.at_ms is None, hit.at_ms or 0.0))
        before = _first_of(criterion.after, facts)
        if before is None:
            return Verdict(False, f"{what}, but {criterion.after} never happened", evidence)
        if first.at_ms is None or before >= first.at_ms:
            when = "at an unknown time" if first.at_ms is None else f"at {_s(first.at_ms)}"
            return Verdict(
                False,
                f"{what}, first {when}, not after {criterion.after} (at {_s(before)})",
                evidence,
            )
        what += f", after {criterion.after} (at {_s(before)})"
    return Verdict(True, what, evidence)


def _none_found(
    criterion: Criterion, reason: str, evidence: list[Evidence] | None = None
) -> Verdict:
    """Nothing matched: that passes only when ``times`` allows zero."""
    times = criterion.times
    allowed = times is not None and (times.min is None or times.min == 0)
    return Verdict(allowed, reason + (", as allowed" if allowed else ""), evidence or [])


def _first_of(name: str, facts: CallFacts) -> float | None:
    """When the tool call or node called ``name`` first happened (ms), if it did."""
    times = [c.at_ms for c in facts.tool_calls if c.name == name and c.at_ms is not None]
    times += [
        e.at_ms
        for e in facts.agent_events
        if e.type == "node" and e.name == name and e.at_ms is not None
    ]
    return min(times) if times else None


def _turn_at(at_ms: float | None, turns: Sequence[Turn]) -> int | None:
    """The agent turn a moment falls in or before (else the last agent turn)."""
    agent = [i for i, t in enumerate(turns) if t.role == "agent"]
    if at_ms is None or not agent:
        return None
    return next((i for i in agent if at_ms <= turns[i].end_ms), agent[-1])


def _with(check: ArgsCheck) -> str:
    fits = ", ".join(check.fits)
    misses = ", ".join(check.misses)
    if fits and misses:
        return f"with {fits} but {misses}"
    return f"with {fits}" if fits else f"but {misses}" if misses else "with any arguments"


def _times(count: int) -> str:
    return {1: "once", 2: "twice"}.get(count, f"{count} times")


def _s(at_ms: float) -> str:
    return f"{ms(at_ms / 1000.0)} s" if abs(at_ms) >= 1000 else f"{ms(at_ms)} ms"
