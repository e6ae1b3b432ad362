"""The contract: the records every stage of a run reads and writes.

A run flows controller -> orchestrator -> call -> persona bot -> recorder/metrics
-> scorer -> ``Run``.  This module holds the pydantic records at the two ends of
that flow: what the user writes (``Case``, ``Suite``, ``Persona``, ``Criterion``)
and what loopcall stores and serves (``Run`` with its ``Turn``s, ``Metrics`` and
``Evaluation``).  Field names follow Yappr's agent-eval API where the two overlap
so that the peer views stay thin.  It imports nothing of ours:
``common.py`` (statuses, roles, ids), ``case.py`` (what the user writes),
``run.py`` (what loopcall stores), ``agent_side.py`` (mock tools, the agent's
tool calls, events and stage timings), ``dynamics.py`` (turn-taking from the audio),
``usage.py`` (tokens and costs).
"""

from harness.models.agent_side import (
    AgentEvent,
    AgentTurnTiming,
    MockTool,
    ToolCall,
    ToolMatch,
)
from harness.models.case import (
    Case,
    CountCheck,
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
from harness.models.dynamics import DYNAMICS_METRICS, DeadAir, Dynamics, DynamicsCheck, Interruption
from harness.models.run import (
    CallEvent,
    CriterionResult,
    Evaluation,
    Evidence,
    HarnessHealth,
    LatencySummary,
    Metrics,
    Run,
    Turn,
    vouched_latencies,
)
from harness.models.usage import CostItem, ModelTokens, Usage

__all__ = [
    "DYNAMICS_METRICS",
    "TERMINATION_REASONS",
    "AgentEvent",
    "AgentTurnTiming",
    "CallEvent",
    "Case",
    "CountCheck",
    "Criterion",
    "CriterionResult",
    "DeadAir",
    "Dynamics",
    "DynamicsCheck",
    "Evaluation",
    "Evidence",
    "HarnessHealth",
    "Interruption",
    "LatencyCheck",
    "LatencyStat",
    "LatencySummary",
    "Metrics",
    "MockTool",
    "Persona",
    "Role",
    "Run",
    "RunStatus",
    "ScriptLine",
    "Suite",
    "TerminationReason",
    "ToolCall",
    "ToolMatch",
    "Turn",
    "TurnCountCheck",
    "Usage",
    "CostItem",
    "ModelTokens",
    "new_run_id",
    "utcnow",
    "vouched_latencies",
]
