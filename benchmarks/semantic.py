"""How well does the ``semantic`` criterion tell "means X" from "doesn't"? Precision and recall.

Scores every labelled pair of ``benchmarks/data/semantic_pairs.yaml`` (an agent's
turn, a statement, whether the turn means it, and what makes a negative hard)
the way ``check_semantic`` scores a call: the turn cut into candidates, the best
similarity among those the lexical guard lets through.  Prints, with the guard
and without it: precision, recall and F1 at the default threshold, a threshold
sweep, the best-F1 threshold, a 2-fold check of that choice (calibrated on one
half, measured on the other), the misses by kind; then the model's load time,
memory and the cost of one check.

    .venv/bin/python benchmarks/semantic.py [--sweep-step 0.05]
"""

from __future__ import annotations

import argparse
import resource
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from harness.models import Criterion, Metrics, Turn
from harness.scoring.facts import CallFacts
from harness.scoring.lexical import veto
from harness.scoring.semantic import (
    DEFAULT_THRESHOLD,
    MODEL_NAME,
    Candidate,
    best_match,
    candidates,
    check_semantic,
    load_model,
    meaning,
)

PAIRS = Path(__file__).resolve().parent / "data" / "semantic_pairs.yaml"


@dataclass(frozen=True)
class Pair:
    said: str
    statement: str
    means: bool
    kind: str


@dataclass(frozen=True)
class Scored:
    pair: Pair
    guarded: float  # best similarity the guard lets through (-1: all vetoed)
    raw: float  # best similarity, guard off


@dataclass(frozen=True)
class Figures:
    threshold: float
    tp: int
    fp: int
    fn: int
    tn: int

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    @property
    def f1(self) -> float:
        return 2 * self.tp / (2 * self.tp + self.fp + self.fn) if self.tp else 0.0


def load_pairs(path: Path = PAIRS) -> list[Pair]:
    raw: dict[str, Any] = yaml.safe_load(path.read_text())
    return [Pair(**item) for item in raw["pairs"]]


def score_pairs(pairs: list[Pair]) -> list[Scored]:
    model = load_model()
    scored = []
    for pair in pairs:
        turn = Turn(role="agent", text=pair.said, start_ms=0, end_ms=1)
        found: list[Candidate] = candidates([turn])
        kept, vetoed = best_match(pair.statement, found, model)
        guarded = kept.score if kept is not None else -1.0
        raw = max(m.score for m in (kept, vetoed) if m is not None)
        scored.append(Scored(pair, guarded, raw))
    return scored


def unrelated_scores(pairs: list[Pair]) -> dict[str, list[float]]:
    """Per statement, the guarded best similarity of each turn said for another statement.

    A call that never says X is many such turns: how often one of them passes is the
    check's false pass rate on a whole call, which one-turn pairs understate.
    """
    model = load_model()
    turns = list(dict.fromkeys(p.said for p in pairs))
    found = candidates([Turn(role="agent", text=t, start_ms=0, end_ms=1) for t in turns])
    texts = [c.text for c in found]
    scores: dict[str, list[float]] = {}
    for statement in dict.fromkeys(p.statement for p in pairs):
        own = {p.said for p in pairs if p.statement == statement}
        meant = meaning(statement)
        vectors = model.embed([meant, *texts])
        sims = vectors[1:] @ vectors[0]
        best = [-1.0] * len(turns)
        for c, sim in zip(found, sims, strict=True):
            if turns[c.turn_index] not in own and veto(meant, c.text) is None:
                best[c.turn_index] = max(best[c.turn_index], float(sim))
        scores[statement] = [b for t, b in zip(turns, best, strict=True) if t not in own]
    return scores


def call_false_pass(unrelated: dict[str, list[float]], threshold: float, turns: int = 6) -> float:
    """Share of (statement, call of ``turns`` unrelated agent turns) that would pass."""
    passed = total = 0
    for best in unrelated.values():
        for start in range(0, len(best) - turns + 1, turns):
            total += 1
            passed += max(best[start : start + turns]) >= threshold
    return passed / total if total else 0.0


def figures(scored: list[Scored], threshold: float, *, guard: bool = True) -> Figures:
    counts: Counter[tuple[bool, bool]] = Counter()
    for s in scored:
        said = (s.guarded if guard else s.raw) >= threshold
        counts[(said, s.pair.means)] += 1
    return Figures(
        threshold,
        counts[(True, True)],
        counts[(True, False)],
        counts[(False, True)],
        counts[(False, False)],
    )


# The calibration's rule: a 6-turn call that never says X passes at most this often.
MAX_CALL_FALSE_PASS = 0.05


def best_threshold(
    scored: list[Scored],
    *,
    guard: bool,
    unrelated: dict[str, list[float]] | None = None,
    step: float = 0.01,
) -> Figures:
    """The best-F1 threshold; with ``unrelated``, among those that keep the call-level
    false pass rate within ``MAX_CALL_FALSE_PASS``."""
    grid = [round(i * step, 4) for i in range(1, int(1 / step))]
    if unrelated is not None:
        grid = [t for t in grid if call_false_pass(unrelated, t) <= MAX_CALL_FALSE_PASS]
    return max((figures(scored, t, guard=guard) for t in grid), key=lambda f: (f.f1, f.precision))


def _row(label: str, f: Figures) -> str:
    return (
        f"{label:<26} {f.threshold:>5.2f} {f.precision:>9.3f} {f.recall:>7.3f} {f.f1:>6.3f}"
        f"   tp={f.tp:<3} fp={f.fp:<3} fn={f.fn:<3} tn={f.tn}"
    )


def _cost() -> tuple[float, float, float]:
    """(load s, RSS growth MB, one check on a 12-turn call in ms)."""
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    load_model()
    load_s = time.perf_counter() - start
    rss_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024
    lines = [
        "Thanks for calling Bright Smile Dental, this is Ava. How can I help you today?",
        "Sure, I can help with that. Could I have your full name and date of birth, please?",
        "Thank you. Let me check the calendar. I have Tuesday at ten or Thursday at two.",
        "Great, you're booked for Tuesday at ten. You'll get a text reminder the day before.",
        "Is there anything else I can help you with? Thanks for calling, goodbye!",
    ]
    turns = []
    for i in range(12):
        role = "agent" if i % 2 == 0 else "persona"
        turns.append(Turn(role=role, text=lines[(i // 2) % len(lines)], start_ms=i, end_ms=i + 1))
    criterion = Criterion(semantic="the agent offers an appointment on Tuesday morning")
    facts = CallFacts(turns, Metrics(), "persona_goodbye")
    check_semantic(criterion, facts)
    runs = 50
    start = time.perf_counter()
    for _ in range(runs):
        check_semantic(criterion, facts)
    return load_s, rss_mb, (time.perf_counter() - start) / runs * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweep-step", type=float, default=0.05)
    args = parser.parse_args()
    load_s, rss_mb, check_ms = _cost()
    pairs = load_pairs()
    scored = score_pairs(pairs)
    kinds = Counter((p.means, p.kind) for p in pairs)
    print(f"model: {MODEL_NAME}; {len(pairs)} pairs ({sum(p.means for p in pairs)} mean it): ")
    print("  " + ", ".join(f"{k}{'+' if m else '-'} {n}" for (m, k), n in sorted(kinds.items())))
    unrelated = unrelated_scores(pairs)
    print(f"\n{'':<26} {'thr':>5} {'precision':>9} {'recall':>7} {'F1':>6}")
    for guard in (True, False):
        name = "guard on" if guard else "embedding only"
        print(_row(f"{name}, default", figures(scored, DEFAULT_THRESHOLD, guard=guard)))
        print(_row(f"{name}, best F1", best_threshold(scored, guard=guard)))
    chosen = best_threshold(scored, guard=True, unrelated=unrelated)
    print(_row("calibrated*", chosen))
    print(
        f"* best F1 among thresholds where a 6-turn call that never says the statement "
        f"passes <= {MAX_CALL_FALSE_PASS:.0%} of the time "
        f"(it does {call_false_pass(unrelated, chosen.threshold):.1%})"
    )
    print("\nsweep: guard on | embedding only | guard on, 6-turn calls that never say it:")
    t = args.sweep_step
    while t < 0.96:
        on, off = figures(scored, t), figures(scored, t, guard=False)
        print(
            f"  {t:4.2f}  P {on.precision:.3f} R {on.recall:.3f} F1 {on.f1:.3f}"
            f"  |  P {off.precision:.3f} R {off.recall:.3f} F1 {off.f1:.3f}"
            f"  |  pass {call_false_pass(unrelated, t):6.1%}"
        )
        t = round(t + args.sweep_step, 4)
    halves = scored[0::2], scored[1::2]
    print("\n2-fold (calibrated on one half's pairs, measured on the other's), guard on:")
    for i, (fit, held) in enumerate((halves, halves[::-1])):
        fold = best_threshold(fit, guard=True, unrelated=unrelated).threshold
        print(_row(f"  fold {i + 1}", figures(held, fold)))
    print(f"\nerrors at {DEFAULT_THRESHOLD:.2f}, guard on (score, kind, said | statement):")
    for s in scored:
        if (s.guarded >= DEFAULT_THRESHOLD) != s.pair.means:
            what = "false pass" if not s.pair.means else "miss"
            print(
                f"  {what:<10} {s.guarded:5.2f} {s.pair.kind:<10} "
                f"{s.pair.said} | {s.pair.statement}"
            )
    print(
        f"\ncost: model load {load_s * 1000:.0f} ms (once per process), "
        f"+{rss_mb:.0f} MB RSS; one check over a 12-turn call {check_ms:.2f} ms"
    )


if __name__ == "__main__":
    main()
