"""A ``Run`` read as Vapi's ``EvalRun`` (``GET /eval/run/:id``).

The run's transcript becomes a ``chat.mockConversation`` eval (persona = ``user``,
agent = ``assistant``) and a single result.  Everything Vapi has no field for
(turn timings, metrics, the evaluation, the recording, the raw status and
timestamps) travels under the extra key ``"loopcall"``, which the schema allows:
together with ``id``, ``createdAt`` and ``target.assistantId`` it holds the whole
``Run``, so nothing is lost.

``cost`` is what loopcall knows the run cost in US dollars (``harness.pricing``)
and ``costs`` its bill, line by line as Vapi breaks its own down (``model`` with
the tokens, ``transport`` for the carrier); a line loopcall could not price has
``cost: null`` and a note.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from harness.models import CostItem, Run

__all__ = ["to_vapi_eval_run"]

_STATUS = {
    "queued": "queued",
    "running": "running",
    "completed": "ended",
    "failed": "ended",
    "cancelled": "ended",
}
_ROLE = {"persona": "user", "agent": "assistant"}


def to_vapi_eval_run(run: Run) -> dict[str, Any]:
    """Render ``run`` as a Vapi EvalRun dict (JSON-ready)."""
    # Vapi requires startedAt and endedAt on every run.  A run that never started
    # gets its created_at for both, a running one its started_at as endedAt; the
    # real (null) values stay in ``loopcall.started_at`` / ``loopcall.ended_at``.
    started = run.started_at or run.created_at
    ended = run.ended_at or started
    ended_reason = _ended_reason(run)
    messages = [{"role": _ROLE[t.role], "content": t.text} for t in run.turns]
    # One result per eval, and only once the eval has ended.
    results = [
        {
            "status": "pass" if run.passed else "fail",
            "messages": messages,
            "startedAt": _iso(started),
            "endedAt": _iso(ended),
        }
    ]
    view: dict[str, Any] = {
        "id": run.id,
        "orgId": "loopcall",
        "type": "eval",
        "status": _STATUS[run.status],
        "endedReason": ended_reason,
        "createdAt": _iso(run.created_at),
        "startedAt": _iso(started),
        "endedAt": _iso(ended),
        "target": {"type": "assistant", "assistantId": run.target},
        "eval": {
            "type": "chat.mockConversation",
            "name": run.case.name,
            "description": run.case.scenario,
            "messages": messages,
        },
        "results": results if _STATUS[run.status] == "ended" else [],
        "cost": _dollars(run.usage.total_cost_cents) or 0,
        "costs": [_cost(item) for item in run.usage.costs],
        "loopcall": run.model_dump(mode="json", exclude={"id", "target", "created_at"}),
    }
    if run.case.id is not None:
        view["evalId"] = run.case.id
    if ended_reason != "mockConversation.done" and run.error:
        view["endedMessage"] = run.error
    return view


def _cost(item: CostItem) -> dict[str, Any]:
    """A bill line as Vapi writes its ``costs`` ("model" for tokens, "transport" for
    the line), with loopcall's party, tokens and note beside it."""
    out: dict[str, Any] = {
        "type": "model" if item.type == "model" else "transport",
        "cost": _dollars(item.cost_cents),
        "party": item.party,
    }
    if item.type == "model":
        out |= {
            "model": item.model,
            "promptTokens": item.input_tokens,
            "completionTokens": item.output_tokens,
        }
    else:
        out |= {"provider": item.model, "minutes": item.minutes}
    if item.note:
        out["note"] = item.note
    return out


def _dollars(cents: float | None) -> float | None:
    return None if cents is None else round(cents / 100.0, 6)


def _ended_reason(run: Run) -> str:
    # endedReason is required even while the run is queued or running; Vapi's
    # own example pairs "running" with "mockConversation.done", so we do too.
    if run.status == "failed":
        return "timeout" if run.termination_reason == "timeout" else "error"
    if run.status == "cancelled":
        return "cancelled"
    return "mockConversation.done"


def _iso(moment: datetime) -> str:
    """ISO 8601 in UTC with a ``Z``; naive datetimes are taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
