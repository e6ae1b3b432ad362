"""``/personas``: who calls, stored once and referenced by cases (``persona_id``).

A persona is Yappr's persona (name, identity prompt, behaviour traits, language)
plus the voice loopcall speaks with.  A persona that cases still use cannot be
deleted (409); a run keeps a snapshot of the persona it called with.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import TYPE_CHECKING

from fastapi import APIRouter, HTTPException, Response

from harness.api.bodies import found, merged, patch_model
from harness.api.deps import CatalogueDep
from harness.api.pages import Page, PageDep, page_of
from harness.db.tables import PersonaRow
from harness.models import Persona, utcnow

__all__ = ["PersonaOut", "router"]

router = APIRouter(tags=["personas"])


class PersonaOut(Persona):
    id: str
    created_at: datetime
    updated_at: datetime


if TYPE_CHECKING:
    PersonaPatch = Persona
else:
    PersonaPatch = patch_model(
        "PersonaPatch",
        Persona,
        "``PATCH /personas/{id}``: the fields to change.",
    )


def persona_out(row: PersonaRow) -> PersonaOut:
    return PersonaOut(id=row.id, created_at=row.created_at, updated_at=row.updated_at, **row.data)


@router.post("/personas", status_code=201, response_model=PersonaOut)
async def create_persona(body: Persona, catalogue: CatalogueDep) -> PersonaOut:
    now = utcnow()
    row = PersonaRow(
        id=str(uuid.uuid4()),
        name=body.name,
        created_at=now,
        updated_at=now,
        data=body.model_dump(mode="json"),
    )
    await catalogue.personas.add(row)
    return persona_out(row)


@router.get("/personas", response_model=Page[PersonaOut])
async def list_personas(
    catalogue: CatalogueDep, page: PageDep, name: str | None = None
) -> Page[PersonaOut]:
    found_page = await catalogue.personas.page({"name": name}, limit=page.limit, offset=page.offset)
    return page_of([persona_out(row) for row in found_page.rows], found_page.total, page)


@router.get("/personas/{persona_id}", response_model=PersonaOut)
async def get_persona(persona_id: str, catalogue: CatalogueDep) -> PersonaOut:
    return persona_out(await found(catalogue.personas.get(persona_id)))


@router.patch("/personas/{persona_id}", response_model=PersonaOut)
async def update_persona(
    persona_id: str, body: PersonaPatch, catalogue: CatalogueDep
) -> PersonaOut:
    row = await found(catalogue.personas.get(persona_id))
    persona = merged(Persona, row.data, body)
    row.name = persona.name
    row.data = persona.model_dump(mode="json")
    await found(catalogue.personas.replace(row))
    return persona_out(row)


@router.delete("/personas/{persona_id}", status_code=204)
async def delete_persona(persona_id: str, catalogue: CatalogueDep) -> Response:
    await found(catalogue.personas.get(persona_id))
    users = await catalogue.cases.count("persona_id", persona_id)
    if users:
        raise HTTPException(409, f"persona {persona_id!r} is used by {users} case(s)")
    await found(catalogue.personas.delete(persona_id))
    return Response(status_code=204)
