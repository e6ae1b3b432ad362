"""``semantic``: the agent said something that means X, by offline sentence embeddings.

Stage: one of the scorer's checks over ``CallFacts``.  In: the criterion's
statement ("the agent offers an appointment on Tuesday morning") and the
agent's turns.  Each turn is cut into candidates: its sentences and each pair
of adjacent sentences.  Every candidate is embedded
beside the statement; the best cosine similarity passes when it reaches the
criterion's ``threshold`` (default ``DEFAULT_THRESHOLD``, calibrated by
``benchmarks/semantic.py`` on ``benchmarks/data/semantic_pairs.yaml``).  The
lexical guard (``harness.scoring.lexical``) first vetoes candidates that name
another day or number, or negate the statement's words.  Out: a verdict whose
evidence is the best candidate, its turn and its score.

The model is WordLlama's ``l2_supercat`` at 256 dimensions: a static token
embedding (16 MB of float16, 32k tokens) whose weights and tokenizer ship inside
the ``wordllama`` wheel on PyPI.  Nothing is downloaded, no account is needed,
no torch: numpy and the ``tokenizers`` library.  It is loaded once per process,
lazily, on first use; the scorer runs checks on its bookkeeping thread
(``evaluate_off_loop``), so the load (~0.2 s) never holds the event loop.
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from harness.models import Criterion, Evidence
from harness.scoring.facts import CallFacts, Verdict
from harness.scoring.lexical import veto

if TYPE_CHECKING:
    from collections.abc import Sequence

    from harness.models import Turn

__all__ = [
    "DEFAULT_THRESHOLD",
    "FRAMING",
    "MODEL_NAME",
    "Candidate",
    "Match",
    "best_match",
    "candidates",
    "check_semantic",
    "load_model",
    "meaning",
]

# Calibrated on benchmarks/data/semantic_pairs.yaml (112 labelled pairs) by
# `python benchmarks/semantic.py`: the best F1 (0.810: precision 0.887, recall 0.746)
# among thresholds at which at most 5 % of 6-turn calls that never say the
# statement pass (52 of 1109 at 0.35).
DEFAULT_THRESHOLD = 0.35
MODEL_NAME = "wordllama l2_supercat 256d"

_SENTENCE_END = re.compile(r"(?<=[.!?;])\s+")
# A full stop after these does not end a sentence ("Dr. Patel", "10 a.m. with").
_ABBREVIATIONS = ("dr.", "mr.", "mrs.", "ms.", "st.", "a.m.", "p.m.", "no.", "e.g.", "i.e.")
# "the agent says that ...": the statement's framing, not its meaning.
FRAMING = re.compile(
    r"^\s*(?:that\s+)?(?:the\s+)?agent\s+"
    r"(?:(?:says|said|tells\s+the\s+caller|tells|mentions|explains)\s+(?:that\s+)?)?",
    re.IGNORECASE,
)
# The agent speaks *to* the caller: "the caller's name" is "your name" on the call.
_CALLER = (
    (re.compile(r"\bthe caller's\b", re.I), "your"),
    (re.compile(r"\bthe caller\b", re.I), "you"),
)


def meaning(statement: str) -> str:
    """The statement as the agent would say it: no framing, the caller as "you".

    Measured by ``benchmarks/semantic.py``: "you" for "the caller" raised F1 from
    0.779 to 0.810 under the calibration rule; stripping speech-act verbs as well
    ("asks", "confirms", "offers") lowered it.
    """
    text = FRAMING.sub("", statement).strip() or statement
    for pattern, spoken in _CALLER:
        text = pattern.sub(spoken, text)
    return text


class SentenceModel:
    """Sentence embeddings: the mean of the tokens' static vectors, unit length."""

    def __init__(self, inference: Any) -> None:
        self._inference = inference

    def embed(self, texts: list[str]) -> np.ndarray:
        """One unit vector per text (rows)."""
        vectors: np.ndarray = self._inference.embed(texts, norm=True)
        return vectors


_model: SentenceModel | None = None
_model_lock = threading.Lock()


def load_model() -> SentenceModel:
    """The model, loaded on first call (once per process, thread-safe)."""
    global _model
    with _model_lock:
        if _model is None:
            _model = _load()
        return _model


def _load() -> SentenceModel:
    # wordllama calls logging.basicConfig() when imported: keep the root logger as it was.
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        import wordllama
        from wordllama import WordLlama
    finally:
        for handler in root.handlers[:]:
            if handler not in handlers:
                root.removeHandler(handler)
        root.setLevel(level)
    # The wheel holds weights/ and tokenizers/ beside the code; pointed at its own
    # folder as the cache, WordLlama finds both there and never reaches the hub.
    package = Path(wordllama.__file__).parent
    inference = WordLlama.load(
        config="l2_supercat", dim=256, cache_dir=package, disable_download=True
    )
    return SentenceModel(inference)


@dataclass(frozen=True)
class Candidate:
    """A stretch of one agent turn that may carry the statement's meaning."""

    turn_index: int
    text: str


@dataclass(frozen=True)
class Match:
    """The best candidate for a statement: its similarity, or why the guard vetoed it."""

    candidate: Candidate
    score: float
    vetoed: str | None = None


def candidates(turns: Sequence[Turn]) -> list[Candidate]:
    """Each agent turn's sentences and each pair of adjacent sentences.

    Clauses (cut at commas) were tried too: more, shorter candidates gave unrelated
    calls more chances to pass, and cost F1 at the calibrated threshold (0.745
    against 0.779 without them, benchmarks/semantic.py).
    """
    found: list[Candidate] = []
    for index, turn in enumerate(turns):
        if turn.role != "agent" or not turn.text.strip():
            continue
        sentences = _sentences(turn.text)
        windows = [f"{a} {b}" for a, b in zip(sentences, sentences[1:], strict=False)]
        found.extend(Candidate(index, text) for text in dict.fromkeys([*sentences, *windows]))
    return found


def _sentences(text: str) -> list[str]:
    sentences: list[str] = []
    for piece in _SENTENCE_END.split(text.strip()):
        if sentences and sentences[-1].lower().endswith(_ABBREVIATIONS):
            sentences[-1] += " " + piece
        elif piece:
            sentences.append(piece)
    return sentences


def best_match(
    statement: str, found: Sequence[Candidate], model: SentenceModel, *, guard: bool = True
) -> tuple[Match | None, Match | None]:
    """(the best candidate the guard lets through, the best one it vetoed), by similarity."""
    if not found:
        return None, None
    meant = meaning(statement)
    vectors = model.embed([meant, *(c.text for c in found)])
    scores = vectors[1:] @ vectors[0]
    kept: Match | None = None
    vetoed: Match | None = None
    for position in np.argsort(-scores):
        candidate, score = found[int(position)], float(scores[int(position)])
        why = veto(meant, candidate.text) if guard else None
        if why is None:
            kept = kept or Match(candidate, score)
            break
        vetoed = vetoed or Match(candidate, score, why)
    return kept, vetoed


def check_semantic(criterion: Criterion, facts: CallFacts) -> Verdict:
    """``semantic``: some agent sentence means the statement, by similarity >= threshold."""
    statement = criterion.semantic
    assert statement is not None
    threshold = criterion.threshold if criterion.threshold is not None else DEFAULT_THRESHOLD
    found = candidates(facts.turns)
    if not found:
        return Verdict(False, f'the agent said nothing, so nothing means "{statement}"')
    kept, vetoed = best_match(statement, found, load_model())
    if kept is not None and kept.score >= threshold:
        return Verdict(
            True,
            f'the agent said "{kept.candidate.text}", which means "{statement}" '
            f"(similarity {kept.score:.2f} >= {threshold:.2f})",
            [_evidence(kept, facts)],
        )
    evidence = [_evidence(m, facts) for m in (kept, vetoed) if m is not None]
    reason = f'nothing the agent said means "{statement}"'
    if kept is not None:
        reason += f'; the closest was "{kept.candidate.text}" ({kept.score:.2f} < {threshold:.2f})'
    if vetoed is not None and (kept is None or vetoed.score > kept.score):
        reason += f'; "{vetoed.candidate.text}" scored {vetoed.score:.2f} but {vetoed.vetoed}'
    return Verdict(False, reason, evidence)


def _evidence(match: Match, facts: CallFacts) -> Evidence:
    turn = facts.turns[match.candidate.turn_index]
    return Evidence(
        turn_index=match.candidate.turn_index,
        quote=match.candidate.text,
        at_ms=turn.start_ms,
        score=round(match.score, 3),
    )
