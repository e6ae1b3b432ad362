"""``POST /runs``'s body, and how it becomes the list of runs to create.

A request names what to run (an inline ``case`` or ``suite``, whose persona may
be a library persona by name as in a case file, or a stored
``case_id`` or a stored ``suite_id``) and whom to call (a ``target`` URL, a stored ``agent_id``,
or else each case's default agent, or its suite's).  ``plan_runs`` resolves the
references into self-contained snapshots (case with its persona, the agent's
address) so a run never changes when the catalogue does; every unknown
reference is a 422 naming the field, and so is a case regex that backtracks
catastrophically on a probe (``harness.cases.pattern_problems``, in a thread).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, TypeVar

from fastapi.exceptions import RequestValidationError
from pydantic import (
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from harness.api.bodies import body_error
from harness.api.cases import case_snapshot, personas_of
from harness.cases import pattern_problems, resolve_persona
from harness.db.resources import Catalogue
from harness.db.tables import AgentRow, CaseRow
from harness.errors import CaseFileError, ResourceNotFound
from harness.models import Case, Persona, Suite
from telephony import TARGET_PATTERN, TargetError, parse_target

__all__ = [
    "MAX_RUNS_PER_REQUEST",
    "InlineCase",
    "InlineSuite",
    "check_target",
    "PersonaOverride",
    "PlannedRun",
    "RunCreate",
    "RunPlan",
    "plan_runs",
]

T = TypeVar("T")
# One request, one suite run: its summary and its Cekura result cover at most this many.
MAX_RUNS_PER_REQUEST = 1000


class PersonaOverride(BaseModel):
    """Fields that replace the case's persona for these runs (Cekura's personality override)."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1)
    identity_prompt: str | None = None
    description: str | None = None
    behavior_traits: dict[str, str] | None = None
    language: str | None = None
    voice: str | None = None
    speaking_rate: float | None = Field(default=None, gt=0.25, le=4.0)


class InlineCase(Case):
    """A case in a request body, read as a case file is: ``persona`` may name a library
    persona (``"busy_professional"``), or ``{use: name, ...overrides}``."""

    persona: Persona = Field(
        description="a persona inline, or the name of one in the library "
        '(e.g. "busy_professional"), or {"use": name, ...fields to override}'
    )

    @field_validator("persona", mode="before")
    @classmethod
    def _library_persona(cls, value: Any) -> Any:
        try:
            return resolve_persona(value)
        except CaseFileError as exc:
            raise ValueError(str(exc)) from exc


class InlineSuite(Suite):
    """A suite in a request body: its cases as ``InlineCase``."""

    cases: list[InlineCase] = Field(min_length=1)  # type: ignore[assignment]


class RunCreate(BaseModel):
    """``POST /runs``: what to run (a case, a stored case or a stored suite), whom to call
    (a target URL or a stored agent), how often and how many at once."""

    model_config = ConfigDict(extra="forbid")

    case_id: str | None = Field(default=None, max_length=64, description="a stored case")
    suite_id: str | None = Field(
        default=None, max_length=64, description="a stored suite: every case in it"
    )
    suite: InlineSuite | None = Field(
        default=None, description="a suite given inline (name and cases), as in a suite file"
    )
    # After the others, so its validator sees them (and its errors say "case").
    case: InlineCase | None = Field(
        default=None, validate_default=True, description="a case given inline"
    )
    target: str | None = Field(
        default=None,
        description="e.g. webrtc://127.0.0.1:7860/api/offer",
        pattern=TARGET_PATTERN,
        max_length=2048,
    )
    agent_id: str | None = Field(
        default=None,
        max_length=64,
        validate_default=True,
        description="a stored agent; without target or agent_id, each case's default agent",
    )
    persona_id: str | None = Field(
        default=None, max_length=64, description="a stored persona instead of the case's"
    )
    persona: PersonaOverride | None = Field(
        default=None, description="override some of the persona's fields"
    )
    concurrency_limit: int | None = Field(
        default=None, ge=1, le=500, description="at most this many of these runs at once"
    )
    frequency: int = Field(default=1, ge=1, le=100, description="runs of each case")
    webhook_url: AnyHttpUrl | None = Field(
        default=None, description="POSTed each run when it ends, signed (X-Loopcall-Signature)"
    )

    @field_validator("target")
    @classmethod
    def _target_parses(cls, value: str | None) -> str | None:
        return check_target(value)

    @field_validator("case")
    @classmethod
    def _one_thing_to_run(cls, value: Case | None, info: ValidationInfo) -> Case | None:
        names = ("case_id", "suite_id", "suite")
        given = [name for name in names if info.data.get(name) is not None]
        given += ["case"] if value is not None else []
        if not given:
            raise ValueError("give one of 'case' or 'suite' (inline), 'case_id' or 'suite_id'")
        if len(given) > 1:
            raise ValueError(f"give only one of 'case', 'suite', 'case_id', 'suite_id': {given}")
        return value

    @field_validator("agent_id")
    @classmethod
    def _one_way_to_call(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and info.data.get("target") is not None:
            raise ValueError("give 'target' or 'agent_id', not both")
        return value


def check_target(value: str | None) -> str | None:
    """A body's ``target`` as a validator: parsed, or a ValueError saying why not."""
    if value is not None:
        try:
            parse_target(value)
        except TargetError as exc:
            raise ValueError(str(exc)) from exc
    return value


@dataclass(frozen=True)
class PlannedRun:
    """One case to run (``frequency`` times) against one address."""

    case: Case
    target: str
    case_id: str | None
    agent_id: str | None
    persona_id: str | None


@dataclass(frozen=True)
class RunPlan:
    items: list[PlannedRun]
    suite_id: str | None = None
    suite_name: str | None = None


async def _get_or_422(lookup: Awaitable[T], field: str, value: str) -> T:
    try:
        return await lookup
    except ResourceNotFound as exc:
        raise body_error(field, str(exc), value) from exc


async def plan_runs(body: RunCreate, catalogue: Catalogue) -> RunPlan:
    """The runs ``body`` asks for, every reference resolved (or a 422 naming the field)."""
    suite_id = suite_name = None
    suite_agent: str | None = None
    given = [body.case] if body.case is not None else body.suite.cases if body.suite else []
    inline = [Case.model_validate(dict(case)) for case in given]  # plain cases, as stored
    if inline:
        rows: list[CaseRow] = []
        cases: list[tuple[Case, str | None, str | None, str | None]] = [
            (case, None, None, None) for case in inline
        ]
        suite_name = body.suite.name if body.suite is not None else None
    else:
        if body.case_id is not None:
            rows = [await _get_or_422(catalogue.cases.get(body.case_id), "case_id", body.case_id)]
        else:
            assert body.suite_id is not None
            suite = await _get_or_422(
                catalogue.suites.get(body.suite_id), "suite_id", body.suite_id
            )
            suite_id, suite_name, suite_agent = suite.id, suite.name, suite.agent_id
            rows = await catalogue.cases.where("suite_id", suite.id)
            if not rows:
                raise body_error("suite_id", f"suite {suite.id!r} has no cases", suite.id)
        personas = await personas_of(catalogue, rows)
        cases = [
            (case_snapshot(row, personas), row.id, row.agent_id, row.persona_id) for row in rows
        ]

    await _check_patterns(body, cases)

    persona: Persona | None = None
    if body.persona_id is not None:
        row = await _get_or_422(
            catalogue.personas.get(body.persona_id), "persona_id", body.persona_id
        )
        persona = Persona.model_validate(row.data)

    agents: dict[str, AgentRow] = {}

    async def agent(agent_id: str, field: str) -> AgentRow:
        if agent_id not in agents:
            agents[agent_id] = await _get_or_422(catalogue.agents.get(agent_id), field, agent_id)
        return agents[agent_id]

    items = []
    for case, case_id, case_agent, case_persona in cases:
        if body.target is not None:
            target, agent_id = body.target, None
        else:
            agent_id = body.agent_id or case_agent or suite_agent
            if agent_id is None:
                raise body_error(
                    "target",
                    f"give 'target' or 'agent_id': case {case.name!r} has no default agent",
                )
            target = (await agent(agent_id, "agent_id")).data["address"]
        if persona is not None:
            case = case.model_copy(update={"persona": persona})
        case = _override(case, body.persona)
        items.append(
            PlannedRun(
                case=case,
                target=target,
                case_id=case_id,
                agent_id=agent_id,
                persona_id=body.persona_id or case_persona,
            )
        )
    total = len(items) * body.frequency
    if total > MAX_RUNS_PER_REQUEST:
        raise body_error(
            "frequency",
            f"{len(items)} case(s) x frequency {body.frequency} = {total} runs; "
            f"one request may create at most {MAX_RUNS_PER_REQUEST}",
            body.frequency,
        )
    return RunPlan(items=items, suite_id=suite_id, suite_name=suite_name)


async def _check_patterns(
    body: RunCreate, cases: list[tuple[Case, str | None, str | None, str | None]]
) -> None:
    """A 422 naming each case regex that would run into its deadline."""
    errors: list[dict[str, Any]] = []
    for i, (case, case_id, _agent, _persona) in enumerate(cases):
        for where, problem in await asyncio.to_thread(pattern_problems, case):
            if body.case is not None:
                loc: tuple[str | int, ...] = ("case", *where)
            elif body.suite is not None:
                loc = ("suite", "cases", i, *where)
            else:
                loc = ("case_id",) if body.case_id else ("suite_id",)
                path = ".".join(str(part) for part in where)
                problem = f"case {case_id or case.name!r}: field '{path}': {problem}"
            errors.append({"loc": ("body", *loc), "type": "value_error", "msg": problem})
    if errors:
        raise RequestValidationError(errors)


def _override(case: Case, override: PersonaOverride | None) -> Case:
    """The case with the persona override applied (validated like any persona)."""
    if override is None:
        return case
    merged = {**case.persona.model_dump(), **override.model_dump(exclude_none=True)}
    try:
        persona = Persona.model_validate(merged)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**e, "loc": ("body", "persona", *e["loc"])} for e in exc.errors()]
        ) from exc
    return case.model_copy(update={"persona": persona})
