"""A ``Run`` read as Yappr's agent-eval run (``GET /agent-eval/runs/{id}``).

loopcall's records already use Yappr's field names, so this view mostly renames
ids and fills in what loopcall does not have.  Decisions a reader should know:

* Yappr ids are UUIDs.  A loopcall id that already is one is kept; any other
  value (a case slug, a target URL, a persona name) becomes a stable ``uuid5``
  in loopcall's namespace, so the same case always gets the same ``case_id``.
  ``company_id`` is the ``uuid5`` of "loopcall".
* The case, its persona and the agent are snapshots taken with the run, so their
  ``created_at``/``updated_at`` are the run's ``created_at``.  Fields loopcall
  has no notion of (most agent settings) are ``null`` or empty.
* Tokens and models are the run's ``usage``: the agent's from its spans, the
  persona's from its LLM brain.  Costs are whole cents, as Yappr documents
  them, rounded from the priced lines (``harness.pricing``); a cost loopcall
  could not price counts 0 there, and ``loopcall.usage`` keeps the exact bill
  with what it leaves out (``unpriced``).
* ``duration_ms`` is an integer, as Yappr documents it.
* What Yappr has no field for rides under ``"loopcall"`` keys (on the run and on
  the case); criterion keys loopcall adds (``role``, ``must_match``, the latency,
  termination and turn-count checks) stay on each assertion.
* The transcript is the ``/turns`` sub-resource (``to_yappr_turns``) and the
  score the ``/evaluation`` one (``to_yappr_evaluation``).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from harness.models import Criterion, Evaluation, Run

__all__ = [
    "LOOPCALL_NAMESPACE",
    "to_yappr_evaluation",
    "to_yappr_run",
    "to_yappr_turns",
    "yappr_uuid",
]

LOOPCALL_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_DNS, "loopcall")
_COMPANY_ID = str(uuid.uuid5(LOOPCALL_NAMESPACE, "company:loopcall"))
_QUEUE_STATUS = {
    "queued": "pending",
    "running": "claimed",
    "completed": "done",
    "failed": "done",
    "cancelled": "done",
}
# Case fields Yappr has no place for; ``id`` is loopcall's own (maybe a slug).
_CASE_EXTRAS = {
    "id",
    "script",
    "goodbye",
    "max_duration_s",
    "response_gap_ms",
    "wait_for_greeting_s",
    "retries",
    "brain",
    "direction",
    "tools",
    "answer_timeout_s",
    "dead_air_ms",
    "min_overlap_ms",
}
_YAPPR_ASSERTION_KEYS = ("tool_name", "args_match", "node_id", "rubric")


def yappr_uuid(value: str, kind: str) -> str:
    """``value`` if it is a UUID, else a stable uuid5 of ``kind:value``."""
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return str(uuid.uuid5(LOOPCALL_NAMESPACE, f"{kind}:{value}"))


def to_yappr_run(run: Run) -> dict[str, Any]:
    """Render ``run`` as a Yappr run row with the case (agent, persona) expanded."""
    evaluation = run.evaluation
    return {
        "id": yappr_uuid(run.id, "run"),
        "company_id": _COMPANY_ID,
        "status": run.status,
        "mode": "voice",
        "created_at": _iso(run.created_at),
        "case_id": _case_id(run),
        "case": _case(run),
        "suite_id": _suite_id(run),
        "suite_run_id": yappr_uuid(run.suite_run_id, "suite_run") if run.suite_run_id else None,
        "queue_status": _QUEUE_STATUS[run.status],
        "agent_id": _agent_id(run),
        "persona_id": _persona_id(run),
        "agent_model": run.usage.agent_model,
        "persona_model": run.usage.persona_model,
        "started_at": _iso(run.started_at) if run.started_at else None,
        "ended_at": _iso(run.ended_at) if run.ended_at else None,
        "duration_ms": round(run.duration_ms) if run.duration_ms is not None else None,
        "score": evaluation.score if evaluation else None,
        "pass_fail": evaluation.pass_fail if evaluation else None,
        "termination_reason": run.termination_reason,
        "evaluation": _evaluation(evaluation) if evaluation else None,
        "agent_input_tokens": run.usage.agent_input_tokens,
        "agent_output_tokens": run.usage.agent_output_tokens,
        "persona_input_tokens": run.usage.persona_input_tokens,
        "persona_output_tokens": run.usage.persona_output_tokens,
        "agent_cost_cents": _cents(run.usage.agent_cost_cents),
        "persona_cost_cents": _cents(run.usage.persona_cost_cents),
        "total_cost_cents": _cents(run.usage.total_cost_cents),
        "error": run.error,
        "agent_overrides": {},
        "loopcall": {
            "run_id": run.id,
            "channel": run.channel,
            "target": run.target,
            "suite_name": run.suite_name,
            "suite_run_id": run.suite_run_id,
            "duration_ms": run.duration_ms,
            "metrics": run.metrics.model_dump(mode="json"),
            "recording": run.recording,
            "events": [e.model_dump(mode="json") for e in run.events],
            "usage": run.usage.model_dump(mode="json"),
            "tool_calls": [call.model_dump(mode="json") for call in run.tool_calls],
            "agent_events": [event.model_dump(mode="json") for event in run.agent_events],
            "loopcall_version": run.loopcall_version,
        },
    }


def to_yappr_turns(run: Run) -> dict[str, Any]:
    """The ``/runs/{id}/turns`` sub-resource: the transcript with its timings."""
    return {
        "run_id": yappr_uuid(run.id, "run"),
        "turns": [
            {
                "index": index,
                "role": turn.role,
                "text": turn.text,
                "start_ms": turn.start_ms,
                "end_ms": turn.end_ms,
                "latency_ms": turn.latency_ms,
            }
            for index, turn in enumerate(run.turns)
        ],
    }


def to_yappr_evaluation(run: Run) -> dict[str, Any]:
    """The ``/runs/{id}/evaluation`` sub-resource: the score and its reasons."""
    evaluation = run.evaluation
    return {
        "run_id": yappr_uuid(run.id, "run"),
        "status": run.status,
        "queue_status": _QUEUE_STATUS[run.status],
        "termination_reason": run.termination_reason,
        "score": evaluation.score if evaluation else None,
        "pass_fail": evaluation.pass_fail if evaluation else None,
        "evaluation": _evaluation(evaluation) if evaluation else None,
    }


def _case(run: Run) -> dict[str, Any]:
    case = run.case
    snapshot = _iso(run.created_at)
    return {
        "id": _case_id(run),
        "company_id": _COMPANY_ID,
        "agent_id": _agent_id(run),
        "persona_id": _persona_id(run),
        "name": case.name,
        "scenario": case.scenario,
        "success_criteria": [_assertion(c) for c in case.success_criteria],
        "max_turns": case.max_turns,
        "pass_threshold": case.pass_threshold,
        "tool_policy": case.tool_policy,
        "created_at": snapshot,
        "agent": _agent(run),
        "persona": _persona(run, snapshot),
        "suite_id": _suite_id(run),
        "description": case.description,
        "agent_overrides": {},
        "tool_allowlist": [tool.name for tool in case.tools],
        "updated_at": snapshot,
        "deleted_at": None,
        "loopcall": case.model_dump(mode="json", include=_CASE_EXTRAS),
    }


def _agent(run: Run) -> dict[str, Any]:
    # loopcall knows the agent only by its address; the rest is Yappr's config.
    snapshot = _iso(run.created_at)
    return {
        "id": _agent_id(run),
        "name": run.target,
        "type": None,
        "flow_config": None,
        "system_prompt": None,
        "description": None,
        "background_sound_volume": None,
        "temperature": None,
        "greeting_message": None,
        "agent_speaks_first": None,
        "vad_stop_secs": None,
        "vad_start_secs": None,
        "vad_confidence": None,
        "silence_timeout_secs": None,
        "max_continuous_speech_secs": None,
        "max_call_duration_secs": None,
        "lead_memory_enabled": None,
        "is_active": None,
        "webhook_url": None,
        "webhook_events": [],
        "extraction_parameters": [],
        "created_at": snapshot,
        "updated_at": snapshot,
    }


def _persona(run: Run, snapshot: str) -> dict[str, Any]:
    persona = run.case.persona
    return {
        "id": _persona_id(run),
        "company_id": _COMPANY_ID,
        "name": persona.name,
        "identity_prompt": persona.identity_prompt,
        "language": persona.language,
        "created_at": snapshot,
        "description": persona.description,
        "behavior_traits": dict(persona.behavior_traits),
        "voice_config": {"voice": persona.voice, "speaking_rate": persona.speaking_rate},
        "updated_at": snapshot,
        "deleted_at": None,
    }


def _assertion(criterion: Criterion) -> dict[str, Any]:
    """Yappr's assertion keys, then loopcall's criterion (which may override none)."""
    return {key: None for key in _YAPPR_ASSERTION_KEYS} | criterion.model_dump(mode="json")


def _evaluation(evaluation: Evaluation) -> dict[str, Any]:
    return {
        "score": evaluation.score,
        "pass_fail": evaluation.pass_fail,
        "results": [
            {
                "assertion": _assertion(result.assertion),
                "passed": result.passed,
                "weight": result.weight,
                "reason": result.reason,
            }
            for result in evaluation.results
        ],
    }


def _cents(cents: float | None) -> int:
    """Whole cents (Yappr's integer); an unknown cost counts 0 here."""
    return round(cents) if cents is not None else 0


def _case_id(run: Run) -> str:
    return yappr_uuid(run.case_id or run.case.id or run.case.name, "case")


def _agent_id(run: Run) -> str:
    return yappr_uuid(run.agent_id or run.target, "agent")


def _persona_id(run: Run) -> str:
    return yappr_uuid(run.persona_id or run.case.persona.name, "persona")


def _suite_id(run: Run) -> str | None:
    if run.suite_id is not None:
        return yappr_uuid(run.suite_id, "suite")
    return yappr_uuid(run.suite_name, "suite") if run.suite_name else None


def _iso(moment: datetime) -> str:
    """ISO 8601 in UTC with a ``Z``; naive datetimes are taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
