"""The semantic check's lexical guard: what a static sentence embedding cannot see.

Stage: inside ``harness.scoring.semantic``, after the embedding has scored a
candidate sentence against the statement.  A static embedding averages word
vectors, so "I can cancel that" and "I can't cancel that", "Tuesday" and
"Thursday", "a table for two" and "for four" land close together.  This module
vetoes a candidate, whatever its similarity, when

- the statement names a weekday (or today / tomorrow), a part of the day or a
  number, and the candidate names others of the same kind but not the
  statement's (``Thursday`` cannot mean ``Tuesday``);
- the candidate negates words it shares with the statement ("I *can't cancel*
  it" against "the agent cancels the appointment") while the statement says
  nothing negative.  A statement that is itself negative is left to the
  embedding: vetoing its positive candidates would reject paraphrases such as
  "only a doctor can answer that" for "the agent refuses medical advice".

Antonyms ("approved" / "denied", "unlocked" / "still locked") pass through: no
cheap rule sees them.  ``benchmarks/semantic.py`` measures the check with and
without this guard.  Pure functions of two strings; no I/O.
"""

from __future__ import annotations

import re

__all__ = ["veto"]

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
_CLAUSE_END = re.compile(r"[,;:.!?]")

DAYS = {
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
    "today",
    "tomorrow",
    "tonight",
    "weekend",
}
PARTS_OF_DAY = {"morning", "afternoon", "evening", "night", "noon", "midday", "midnight"}
_UNITS = re.findall(
    r"\w+",
    "zero one two three four five six seven eight nine ten eleven twelve thirteen "
    "fourteen fifteen sixteen seventeen eighteen nineteen",
)
_TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70}
_TENS |= {"eighty": 80, "ninety": 90}
NUMBER_WORDS = {word: n for n, word in enumerate(_UNITS)} | _TENS

NEGATIONS = {"not", "no", "never", "cannot", "unable", "nothing", "none", "nobody", "neither"}
# A statement with one of these means something negative without a negation word.
NEGATIVE_VERBS = {"refuse", "decline", "deny", "reject", "fail", "unable"}
_STOP = set(
    re.findall(
        r"\S+",
        "the a an agent agents caller callers says say said tells tell told mentions mention "
        "explains explain that this these those to of for on in at by with and or is are was "
        "were be been it its i you your we our they them he she his her their me my us "
        "will would can could should may might do does did has have had there here so as "
        "if then than about also just any some all",
    )
)


def veto(statement: str, candidate: str) -> str | None:
    """Why ``candidate`` cannot mean ``statement`` whatever its similarity, or None."""
    said, meant = _words(candidate), _words(statement)
    for kind, found in (("day", _days), ("time of day", _parts), ("number", _numbers)):
        wanted, named = found(meant), found(said)
        if wanted and named and not wanted & named:
            other, own = ", ".join(sorted(named)), ", ".join(sorted(wanted))
            return f"names another {kind} ({other}, not {own})"
    if not _negative(statement):
        negated = _negated_content(candidate) & _content(statement)
        if negated:
            return f"negates what the statement says ({', '.join(sorted(negated))})"
    return None


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower().replace("\u2019", "'"))


def _stem(word: str) -> str:
    """A crude stem, enough to meet "booking" with "book" and "cancelled" with "cancels"."""
    word = word.removesuffix("'s")
    for suffix, repl in (("ies", "y"), ("ing", ""), ("ed", ""), ("es", ""), ("s", "")):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)] + repl
            break
    if len(word) > 3 and word[-1] == word[-2]:
        word = word[:-1]
    if len(word) > 3 and word.endswith("e"):  # "reschedule" meets "reschedules"
        word = word[:-1]
    return word


def _days(words: list[str]) -> set[str]:
    return {stem for stem in (w.removesuffix("s") for w in words) if stem in DAYS}


def _parts(words: list[str]) -> set[str]:
    return {stem for stem in (w.removesuffix("s") for w in words) if stem in PARTS_OF_DAY}


def _numbers(words: list[str]) -> set[str]:
    """Numbers as digits: "forty two" and "42" meet; "15th" is 15."""
    found: set[str] = set()
    pending: int | None = None
    for word in [*words, ""]:
        digits = re.fullmatch(r"(\d+)(?:st|nd|rd|th)?", word)
        if word in _TENS:
            if pending is not None:
                found.add(str(pending))
            pending = _TENS[word]
            continue
        if word in NUMBER_WORDS and pending is not None and NUMBER_WORDS[word] < 10:
            found.add(str(pending + NUMBER_WORDS[word]))
            pending = None
            continue
        if pending is not None:
            found.add(str(pending))
            pending = None
        if word in NUMBER_WORDS:
            found.add(str(NUMBER_WORDS[word]))
        elif digits:
            found.add(str(int(digits.group(1))))
    return found


def _content(text: str) -> set[str]:
    return {_stem(w) for w in _words(text) if w not in _STOP and not _is_negation(w)}


def _is_negation(word: str) -> bool:
    return word in NEGATIONS or word.endswith("n't")


def _negative(statement: str) -> bool:
    words = _words(statement)
    negative = {_stem(verb) for verb in NEGATIVE_VERBS}
    return any(_is_negation(w) or _stem(w) in negative for w in words)


def _negated_content(text: str, scope: int = 5) -> set[str]:
    """Content words within ``scope`` words after a negation, in the same clause."""
    negated: set[str] = set()
    for clause in _CLAUSE_END.split(text):
        words = _words(clause)
        for i, word in enumerate(words):
            if _is_negation(word):
                after = words[i + 1 : i + 1 + scope]
                negated |= {_stem(w) for w in after if w not in _STOP and not _is_negation(w)}
    return negated
