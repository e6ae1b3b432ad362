"""The contract: the records every stage of a run reads and writes.

A run flows controller -> orchestrator -> call -> persona bot -> recorder/metrics
-> scorer -> ``Run``.  This module holds the pydantic records at the two ends of
that flow: what the user writes (``Case``, ``Suite``, ``Persona``, ``Criterion``)
and what loopcall stores and serves (``Run`` with its ``Turn``s, ``Metrics`` and
``Evaluation``).  Field names follow Yappr's agent-eval API where the two overlap
so that the peer views stay thin.  It imports nothing of ours:
``common.py`` (statuses, roles, ids), ``case.py`` (what the user writes),
``run.py`` (what loopcall stores).
"""

from harness.models.case import (
    Case,
    Criterion,
    LatencyCheck,
    Persona,
    ScriptLine,
    Suite,
    TurnCountCheck,
)
from harness.models.common import (
    TERMINATION_REASONS,
    LatencyStat,
    Role,
    RunStatus,
    TerminationReason,
    new_run_id,
    utcnow,
)
from harness.models.run import (
    CallEvent,
    CriterionResult,
    Evaluation,
    HarnessHealth,
    LatencySummary,
    Metrics,
    Run,
    Turn,
    vouched_latencies,
)

__all__ = [
    "TERMINATION_REASONS",
    "CallEvent",
    "Case",
    "Criterion",
    "CriterionResult",
    "Evaluation",
    "HarnessHealth",
    "LatencyCheck",
    "LatencyStat",
    "LatencySummary",
    "Metrics",
    "Persona",
    "Role",
    "Run",
    "RunStatus",
    "ScriptLine",
    "Suite",
    "TerminationReason",
    "Turn",
    "TurnCountCheck",
    "new_run_id",
    "utcnow",
    "vouched_latencies",
]
