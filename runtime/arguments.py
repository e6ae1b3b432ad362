"""A case's expectations about a tool call's arguments, checked with a deadline.

Stage: wherever a case's ``args`` meet a tool call: the mock tools loopcall serves
during the call (``ToolMatch.args`` chooses a response) and the ``tool_name``
criterion after it (``args_match``).  Both read an expectation the same way:

- ``"$present"``: the argument is there (and not null);
- a string written as a regex, ``"(?i)tue"`` (it starts with ``(?``) or
  ``"/tue/"`` (between slashes): searched in the argument's text with
  ``runtime.patterns`` (case-insensitive, with a deadline);
- a mapping, when the argument is a mapping too: the same rules, one level down;
- anything else: equal (``10`` equals ``10.0``; ``"10"`` does not).

The expectation is a subset: arguments it does not name are not looked at.
``check_args`` says which named arguments fit and which do not, in words a
person can read (``day='Tuesday'``, ``name missing``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from runtime.patterns import PatternTimeout, search

__all__ = ["PRESENT", "ArgsCheck", "as_regex", "check_args", "regexes_in"]

PRESENT = "$present"
# An argument is searched in well under a millisecond by a sound pattern.
ARG_TIMEOUT_S = 0.05
QUOTE_CHARS = 60


@dataclass(frozen=True)
class ArgsCheck:
    """Which expected arguments fit (``fits``) and which did not (``misses``)."""

    fits: list[str] = field(default_factory=list)
    misses: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.misses


def as_regex(expected: Any) -> str | None:
    """The pattern an expected value stands for, or None when it is a plain value."""
    if not isinstance(expected, str):
        return None
    if expected.startswith("(?"):
        return expected
    if len(expected) >= 2 and expected.startswith("/") and expected.endswith("/"):
        return expected[1:-1]
    return None


def regexes_in(expected: Mapping[str, Any]) -> list[tuple[tuple[str, ...], str]]:
    """Every regex an expectation holds, with the path of keys to it (for probing)."""
    found: list[tuple[tuple[str, ...], str]] = []
    for key, value in expected.items():
        if isinstance(value, Mapping):
            found += [((key, *path), p) for path, p in regexes_in(value)]
        elif (pattern := as_regex(value)) is not None:
            found.append(((key,), pattern))
    return found


def check_args(
    expected: Mapping[str, Any], actual: Any, *, timeout_s: float = ARG_TIMEOUT_S
) -> ArgsCheck:
    """How ``actual`` (a call's arguments) measures up to ``expected`` (a subset)."""
    fits: list[str] = []
    misses: list[str] = []
    given = actual if isinstance(actual, Mapping) else {}
    _walk(expected, given, "", fits, misses, timeout_s)
    return ArgsCheck(fits, misses)


def _walk(
    expected: Mapping[str, Any],
    given: Mapping[str, Any],
    prefix: str,
    fits: list[str],
    misses: list[str],
    timeout_s: float,
) -> None:
    for key, want in expected.items():
        name = f"{prefix}{key}"
        if key not in given or given[key] is None:
            misses.append(f"{name} missing")
            continue
        value = given[key]
        if want == PRESENT:
            fits.append(f"{name}={_quote(value)}")
        elif isinstance(want, Mapping):
            if isinstance(value, Mapping):
                _walk(want, value, f"{name}.", fits, misses, timeout_s)
            else:
                misses.append(f"{name}={_quote(value)} is not a mapping")
        elif (pattern := as_regex(want)) is not None:
            text = value if isinstance(value, str) else json.dumps(value)
            try:
                found = search(pattern, text, timeout_s=timeout_s) is not None
            except PatternTimeout:
                misses.append(f"{name} could not be checked: /{pattern}/ ran past its deadline")
                continue
            if found:
                fits.append(f"{name}={_quote(value)}")
            else:
                misses.append(f"{name}={_quote(value)} does not match /{pattern}/")
        elif _equal(value, want):
            fits.append(f"{name}={_quote(value)}")
        else:
            misses.append(f"{name}={_quote(value)}, not {_quote(want)}")


def _equal(value: Any, want: Any) -> bool:
    if isinstance(value, bool) or isinstance(want, bool):  # True is not 1 here
        return value is want
    return bool(value == want)


def _quote(value: Any) -> str:
    text = repr(value) if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= QUOTE_CHARS else text[: QUOTE_CHARS - 1] + "…"
