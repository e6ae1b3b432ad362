"""The vocabulary the records share: statuses, reasons, roles, ids, time, strict input.

Part of the contract (``harness.models``); imports nothing of ours.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Literal, Self

import regex
from pydantic import AfterValidator, BaseModel, ConfigDict, model_validator

__all__ = [
    "TERMINATION_REASONS",
    "Bounded",
    "LatencyStat",
    "Regex",
    "Role",
    "RunStatus",
    "Strict",
    "TerminationReason",
    "new_run_id",
    "utcnow",
]

RunStatus = Literal["queued", "running", "completed", "failed", "cancelled"]
TerminationReason = Literal[
    "persona_goodbye", "agent_ended", "max_turns", "timeout", "error", "cancelled"
]
Role = Literal["persona", "agent"]
LatencyStat = Literal["min", "p50", "p90", "p95", "p99", "max", "mean"]

TERMINATION_REASONS: tuple[str, ...] = (
    "persona_goodbye",
    "agent_ended",
    "max_turns",
    "timeout",
    "error",
    "cancelled",
)


def utcnow() -> datetime:
    """Return the current time as an aware UTC datetime."""
    return datetime.now(UTC)


def new_run_id() -> str:
    """Return a fresh run id (a UUID4 string, as the peers use)."""
    return str(uuid.uuid4())


def _compiles(value: str) -> str:
    # The engine that runs case patterns (``runtime.patterns``), with its flags.
    try:
        regex.compile(value, regex.IGNORECASE)
    except regex.error as exc:
        raise ValueError(f"invalid regex {value!r}: {exc}") from exc
    return value


Regex = Annotated[str, AfterValidator(_compiles)]


class Strict(BaseModel):
    """Input records: unknown keys are errors, so typos in a case file surface."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Bounded(Strict):
    """A check with ``min`` and/or ``max`` (its subclass declares both, typed)."""

    @model_validator(mode="after")
    def _has_bound(self) -> Self:
        low, high = getattr(self, "min", None), getattr(self, "max", None)
        if low is None and high is None:
            raise ValueError("give at least one of 'min' and 'max'")
        if low is not None and high is not None and low > high:
            raise ValueError("'min' must not exceed 'max'")
        return self
