"""``/cases``: test cases shaped like Yappr's case, stored and run by id.

A case names its persona inline (``persona``) or by reference (``persona_id``),
may name a default agent (``agent_id``) and belong to a suite (``suite_id``).
``case_snapshot`` turns a stored case into the self-contained ``Case`` a run
keeps, so later edits never change what a run says it ran.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Response
from pydantic import Field, ValidationInfo, field_validator
from pydantic.json_schema import SkipJsonSchema

from harness.api.bodies import body_error, found, merged, patch_model
from harness.api.deps import CatalogueDep
from harness.api.pages import Page, PageDep, page_of
from harness.db.resources import Catalogue, ResourceTable
from harness.db.tables import CaseRow, PersonaRow
from harness.models import Case, Persona, utcnow

__all__ = ["CaseIn", "CaseOut", "case_snapshot", "create_case_row", "router"]

router = APIRouter(tags=["cases"])
REFERENCES = ("persona_id", "agent_id", "suite_id")


class CaseIn(Case):
    """``POST /cases``: a case with its persona inline (``persona``) or stored (``persona_id``)."""

    id: SkipJsonSchema[None] = Field(default=None, exclude=True)
    persona: Persona | None = None  # type: ignore[assignment]
    persona_id: str | None = Field(
        default=None, max_length=64, validate_default=True, description="a stored persona"
    )
    agent_id: str | None = Field(
        default=None, max_length=64, description="the agent runs call unless told otherwise"
    )
    suite_id: str | None = Field(default=None, max_length=64, description="the suite it is in")

    @field_validator("id", mode="before")
    @classmethod
    def _no_id(cls, value: Any) -> Any:
        if value is not None:
            raise ValueError("ids are assigned by the controller")
        return value

    @field_validator("persona_id")
    @classmethod
    def _one_persona(cls, value: str | None, info: ValidationInfo) -> str | None:
        if "persona" not in info.data:
            return value  # the inline persona is invalid, and that error says so
        inline = info.data["persona"] is not None
        if inline == (value is not None):
            raise ValueError("give one of 'persona' (inline) and 'persona_id'")
        return value


if TYPE_CHECKING:
    CasePatch = CaseIn
else:
    CasePatch = patch_model(
        "CasePatch",
        CaseIn,
        "``PATCH /cases/{id}``: the fields to change.",
        omit=("id",),
    )


class CaseOut(Case):
    """A stored case, its persona resolved (inline or the referenced one, as it is now)."""

    id: str  # type: ignore[assignment]
    persona_id: str | None
    agent_id: str | None
    suite_id: str | None
    created_at: datetime
    updated_at: datetime


async def check_references(
    catalogue: Catalogue, body: CaseIn, where: tuple[str | int, ...] = ()
) -> None:
    """422 naming the field when a referenced persona, agent or suite does not exist."""
    tables: dict[str, ResourceTable[Any]] = {
        "persona_id": catalogue.personas,
        "agent_id": catalogue.agents,
        "suite_id": catalogue.suites,
    }
    for field in REFERENCES:
        value = getattr(body, field)
        if value is not None and not await tables[field].exists(value):
            raise body_error((*where, field), f"no {field.removesuffix('_id')} {value!r}", value)


def create_case_row(body: CaseIn) -> CaseRow:
    now = utcnow()
    return CaseRow(
        id=str(uuid.uuid4()),
        name=body.name,
        created_at=now,
        updated_at=now,
        persona_id=body.persona_id,
        agent_id=body.agent_id,
        suite_id=body.suite_id,
        data=body.model_dump(mode="json"),
    )


def case_snapshot(row: CaseRow, personas: dict[str, PersonaRow]) -> Case:
    """The stored case as a self-contained ``Case`` (what a run keeps)."""
    data = {k: v for k, v in row.data.items() if k not in REFERENCES}
    if row.persona_id is not None:
        data["persona"] = personas[row.persona_id].data
    return Case.model_validate({**data, "id": row.id})


async def personas_of(catalogue: Catalogue, rows: Iterable[CaseRow]) -> dict[str, PersonaRow]:
    ids = {row.persona_id for row in rows if row.persona_id is not None}
    return {persona_id: await catalogue.personas.get(persona_id) for persona_id in ids}


def _out(row: CaseRow, personas: dict[str, PersonaRow]) -> CaseOut:
    snapshot = case_snapshot(row, personas).model_dump()
    return CaseOut(
        **snapshot | {"id": row.id},
        persona_id=row.persona_id,
        agent_id=row.agent_id,
        suite_id=row.suite_id,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


@router.post("/cases", status_code=201, response_model=CaseOut)
async def create_case(body: CaseIn, catalogue: CatalogueDep) -> CaseOut:
    await check_references(catalogue, body)
    row = create_case_row(body)
    await catalogue.cases.add(row)
    return _out(row, await personas_of(catalogue, [row]))


@router.get("/cases", response_model=Page[CaseOut])
async def list_cases(
    catalogue: CatalogueDep,
    page: PageDep,
    name: str | None = None,
    persona_id: str | None = None,
    agent_id: str | None = None,
    suite_id: str | None = None,
) -> Page[CaseOut]:
    filters = {"name": name, "persona_id": persona_id, "agent_id": agent_id, "suite_id": suite_id}
    found_page = await catalogue.cases.page(filters, limit=page.limit, offset=page.offset)
    personas = await personas_of(catalogue, found_page.rows)
    return page_of([_out(row, personas) for row in found_page.rows], found_page.total, page)


@router.get("/cases/{case_id}", response_model=CaseOut)
async def get_case(case_id: str, catalogue: CatalogueDep) -> CaseOut:
    row = await found(catalogue.cases.get(case_id))
    return _out(row, await personas_of(catalogue, [row]))


@router.patch("/cases/{case_id}", response_model=CaseOut)
async def update_case(case_id: str, body: CasePatch, catalogue: CatalogueDep) -> CaseOut:
    row = await found(catalogue.cases.get(case_id))
    stored = dict(row.data)
    given = body.model_fields_set
    # Switching between an inline persona and a stored one replaces the other.
    if "persona_id" in given and body.persona_id is not None and "persona" not in given:
        stored["persona"] = None
    if "persona" in given and body.persona is not None and "persona_id" not in given:
        stored["persona_id"] = None
    case = merged(CaseIn, stored, body)
    await check_references(catalogue, case)
    row.name = case.name
    row.persona_id, row.agent_id, row.suite_id = case.persona_id, case.agent_id, case.suite_id
    row.data = case.model_dump(mode="json")
    await found(catalogue.cases.replace(row))
    return _out(row, await personas_of(catalogue, [row]))


@router.delete("/cases/{case_id}", status_code=204)
async def delete_case(case_id: str, catalogue: CatalogueDep) -> Response:
    await found(catalogue.cases.delete(case_id))
    return Response(status_code=204)
