"""The scorer: a case's success criteria, checked against what the call produced.

It runs after the analysis pass.  In come the ``Case`` (its ``success_criteria``
and ``pass_threshold``) and the call's ``CallFacts`` (turns, metrics, how it
ended, the agent's tool calls and events); out goes an ``Evaluation`` with one
``CriterionResult`` per criterion, each with a sentence a person can read and
the evidence it rests on.  The score is Yappr's: the weighted share of passed
criteria, on 0..100.

One module per family of checks: ``speech`` (patterns), ``figures`` (latency,
termination, turn count), ``actions`` (tool calls, flow nodes), ``dynamics``
(turn-taking), ``semantic`` (offline meaning), ``judge`` (an LLM rubric).  A
pattern is searched with a deadline and the semantic model loads on first use;
neither may hold the event loop where calls may be live: there, score with
``evaluate_off_loop``, which first awaits the LLM judge's verdicts on the case's
rubrics (HTTP, on the loop), then runs every check on the bookkeeping thread
with the verdicts in hand.  ``evaluate`` (sync, no judge) serves unit tests: its
rubric criteria fail saying no judge was asked.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from harness.models import Case, Criterion, CriterionResult, Evaluation, Metrics, Turn, Usage
from harness.offload import off_loop
from harness.scoring.actions import check_node_id, check_tool_name
from harness.scoring.dynamics import check_dynamics
from harness.scoring.facts import CallFacts, Verdict
from harness.scoring.figures import check_latency, check_termination, check_turn_count
from harness.scoring.judge import Judge, check_rubric, make_judge
from harness.scoring.semantic import check_semantic
from harness.scoring.speech import PATTERN_TIMEOUT_S, check_pattern

__all__ = [
    "PATTERN_TIMEOUT_S",
    "CallFacts",
    "Judge",
    "evaluate",
    "evaluate_facts",
    "evaluate_off_loop",
    "make_judge",
    "weighted_score",
]

Check = Callable[[Criterion, CallFacts], Verdict]

CHECKS: dict[str, Check] = {
    "pattern": check_pattern,
    "latency_ms": check_latency,
    "termination_reason": check_termination,
    "turn_count": check_turn_count,
    "tool_name": check_tool_name,
    "node_id": check_node_id,
    "rubric": check_rubric,
    "semantic": check_semantic,
    "dynamics": check_dynamics,
}


def evaluate(
    case: Case, turns: list[Turn], metrics: Metrics, termination_reason: str | None
) -> Evaluation:
    """Check every criterion of ``case`` against turns and metrics only."""
    return evaluate_facts(case, CallFacts(turns, metrics, termination_reason))


def evaluate_facts(case: Case, facts: CallFacts) -> Evaluation:
    """Check every criterion of ``case`` against everything the call produced."""
    results = [_check(criterion, facts) for criterion in case.success_criteria]
    score = weighted_score(results)
    return Evaluation(score=score, pass_fail=score >= case.pass_threshold, results=results)


async def evaluate_off_loop(
    case: Case, facts: CallFacts, judge: Judge | None = None, usage: Usage | None = None
) -> Evaluation:
    """The judge's verdicts first (awaited), then ``evaluate_facts`` on the bookkeeping
    thread, so a slow check does not hold the loop.  The judge's tokens are added to
    ``usage`` (the run's)."""
    rubrics = [c.rubric for c in case.success_criteria if c.rubric is not None]
    if rubrics and judge is not None:
        judged = await judge.judge(rubrics, facts)
        facts = dataclasses.replace(facts, rubric_verdicts=judged.verdicts)
        if usage is not None:
            usage.judge_model = judge.config.model
            usage.add_tokens("judge", judge.config.model, judged.input_tokens, judged.output_tokens)
    return await off_loop(evaluate_facts, case, facts)


def weighted_score(results: list[CriterionResult]) -> float:
    """100 x passed weight / total weight, to 2 decimals (Yappr's definition).

    No criteria scores 100.  When every weight is 0 the ratio is undefined, so
    the score is all-or-nothing: 100 if every criterion passed, else 0.
    """
    if not results:
        return 100.0
    total = sum(r.weight for r in results)
    if total == 0:
        return 100.0 if all(r.passed for r in results) else 0.0
    passed = sum(r.weight for r in results if r.passed)
    return round(100 * passed / total, 2)


def _check(criterion: Criterion, facts: CallFacts) -> CriterionResult:
    verdict = CHECKS[criterion.kind](criterion, facts)
    return CriterionResult(
        assertion=criterion,
        passed=verdict.passed,
        weight=criterion.weight,
        reason=verdict.reason,
        evidence=verdict.evidence,
    )
