"""Hand-made suite runs for the report and comparison tests: no calls, just Runs."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import numpy as np

from harness.models import (
    Case,
    Criterion,
    CriterionResult,
    Dynamics,
    Evaluation,
    LatencySummary,
    Metrics,
    Persona,
    Run,
    Turn,
)

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
BOOKED = Criterion(node_id="confirm_booking", description="reached the confirmation")
FAST = Criterion(latency_ms={"stat": "p90", "max_ms": 1200})


def make_run(
    case: str = "Book a cleaning",
    *,
    suite_run_id: str = "suite-a",
    verdicts: Sequence[tuple[Criterion, bool, str]] = (),
    status: str = "completed",
    latencies: Sequence[float] = (),
    degraded: Sequence[float] = (),
    dynamics: Dynamics | None = None,
    error: str | None = None,
    minute: int = 0,
) -> Run:
    """A finished run whose evaluation holds ``verdicts``: (criterion, passed, reason)."""
    turns = [
        Turn(role="agent", text="ok", start_ms=i * 1000.0, end_ms=i * 1000.0 + 500, latency_ms=x)
        for i, x in enumerate(latencies)
    ] + [
        Turn(role="agent", text="late", start_ms=0, end_ms=1, latency_ms=x, degraded=True)
        for x in degraded
    ]
    results = [
        CriterionResult(assertion=c, passed=ok, weight=c.weight, reason=why)
        for c, ok, why in verdicts
    ]
    passed = all(r.passed for r in results)
    ordered = sorted(latencies)
    summary = (  # nearest rank: these runs only need a figure per run
        LatencySummary(
            n=len(ordered), p50=ordered[len(ordered) // 2], p90=ordered[len(ordered) * 9 // 10]
        )
        if ordered
        else LatencySummary()
    )
    return Run(
        id=str(uuid.uuid4()),
        channel="webrtc",
        target="webrtc://127.0.0.1:7860/api/offer",
        case=Case(
            name=case, persona=Persona(name="Alex"), success_criteria=[v[0] for v in verdicts]
        ),
        suite_name="dental",
        suite_run_id=suite_run_id,
        created_at=T0 + timedelta(minutes=minute),
        status=status,  # type: ignore[arg-type]
        termination_reason="agent_ended" if status == "completed" else "error",
        duration_ms=30_000.0 + minute,
        turns=turns,
        metrics=Metrics(latency_ms=summary, time_to_first_audio_ms=900.0, dynamics=dynamics),
        evaluation=Evaluation(score=100 if passed else 0, pass_fail=passed, results=results),
        error=error,
    )


def noisy_suite(
    rng: np.random.Generator,
    suite_run_id: str,
    *,
    runs: int = 30,
    pass_p: float = 0.8,
    median_ms: float = 800.0,
) -> list[Run]:
    """``runs`` runs of one case: the booking criterion passes with ``pass_p``, five agent
    turns each with log-normal latencies around ``median_ms``."""
    made = []
    for i in range(runs):
        ok = bool(rng.random() < pass_p)
        latencies = (median_ms * rng.lognormal(0.0, 0.35, size=5)).round(1).tolist()
        made.append(
            make_run(
                suite_run_id=suite_run_id,
                verdicts=[(BOOKED, ok, "reached confirm_booking" if ok else "never reached")],
                latencies=latencies,
                minute=i,
            )
        )
    return made
