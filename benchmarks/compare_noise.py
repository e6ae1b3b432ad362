"""How often ``loopcall compare`` calls noise a change, and how often it sees a real one.

Draws pairs of suite runs from one distribution (noise) and from two (a shift),
compares each pair with ``harness.reports.compare_runs`` and prints, per family of
tests, how many pairs were called changed.  Under noise that share should stay
near or under alpha (0.05); under a shift, it is the test's power.  The runs are
built by ``tests/suite_runs.py``'s ``noisy_suite`` (one criterion that passes
with ``--pass-p``; five agent turns per run, log-normal around ``--median-ms``).

    .venv/bin/python benchmarks/compare_noise.py                    # 1000 noise pairs
    .venv/bin/python benchmarks/compare_noise.py --shift-ms 200 --pairs 300
    .venv/bin/python benchmarks/compare_noise.py --pass-p-b 0.5 --pairs 300

docs/suites.md ("Measured") quotes its table.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from suite_runs import noisy_suite  # noqa: E402

from harness.reports import compare_runs  # noqa: E402

UNCHANGED = "no significant change"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=20, help="runs per suite run")
    parser.add_argument("--pass-p", type=float, default=0.8)
    parser.add_argument("--pass-p-b", type=float, default=None, help="B's (default: A's)")
    parser.add_argument("--median-ms", type=float, default=800.0)
    parser.add_argument("--shift-ms", type=float, default=0.0, help="added to B's median")
    parser.add_argument("--seed", type=int, default=20000)
    parser.add_argument("--alpha", type=float, default=0.05)
    args = parser.parse_args()
    pass_b = args.pass_p if args.pass_p_b is None else args.pass_p_b
    counts = {"success rate": 0, "any criterion": 0, "any figure": 0}
    raw_turns = regressed = 0
    started = time.process_time()
    for i in range(args.pairs):
        rng = np.random.default_rng(args.seed + i)
        a = noisy_suite(rng, "a", runs=args.runs, pass_p=args.pass_p, median_ms=args.median_ms)
        b = noisy_suite(
            rng, "b", runs=args.runs, pass_p=pass_b, median_ms=args.median_ms + args.shift_ms
        )
        c = compare_runs(a, b, alpha=args.alpha, resamples=0)
        counts["success rate"] += c.success.label != UNCHANGED
        counts["any criterion"] += any(x.label != UNCHANGED for x in c.criteria)
        counts["any figure"] += any(x.label != UNCHANGED for x in c.metrics)
        turns = next(x for x in c.metrics if x.name == "turn_latency_ms")
        raw_turns += (turns.p_value or 1.0) < args.alpha
        regressed += c.regressed > 0
    counts["pooled turn latency alone, unadjusted"] = raw_turns
    counts["anything regressed"] = regressed
    print(
        f"{args.pairs} pairs of {args.runs} runs; A pass {args.pass_p}, B pass {pass_b}; "
        f"median {args.median_ms} ms, B shifted {args.shift_ms:+} ms; alpha {args.alpha}; "
        f"seeds {args.seed}..{args.seed + args.pairs - 1}"
    )
    print(f"{'called changed':<40} {'pairs':>7} {'share':>7}")
    for name, n in counts.items():
        print(f"{name:<40} {n:>7} {100 * n / args.pairs:>6.1f}%")
    print(f"({time.process_time() - started:.1f} s CPU)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
