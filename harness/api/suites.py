"""``/suites``: named groups of cases (Yappr's suite; a case joins one with ``suite_id``).

``POST /suites`` may carry the suite's cases inline, so a suite file becomes a
stored suite in one request.  ``POST /runs {"suite_id": ...}`` runs every case of
the suite, oldest first.  Deleting a suite that still has cases needs
``?cascade=true`` (which deletes them too).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import TYPE_CHECKING

from fastapi import APIRouter, HTTPException, Response
from pydantic import BaseModel, ConfigDict, Field

from harness.api.bodies import body_error, found, merged, patch_model
from harness.api.cases import CaseIn, check_references, create_case_row
from harness.api.deps import CatalogueDep
from harness.api.pages import Page, PageDep, page_of
from harness.db.resources import Catalogue
from harness.db.tables import CaseRow, SuiteRow
from harness.models import utcnow

__all__ = ["SuiteIn", "SuiteOut", "router"]

router = APIRouter(tags=["suites"])


class SuiteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=512)
    description: str | None = Field(default=None, max_length=10_000)
    agent_id: str | None = Field(
        default=None, max_length=64, description="default agent for its cases' runs"
    )


class SuiteCreate(SuiteIn):
    """``POST /suites``: a suite, optionally with its cases (created in it)."""

    cases: list[CaseIn] = Field(default_factory=list, max_length=500)


if TYPE_CHECKING:
    SuitePatch = SuiteIn
else:
    SuitePatch = patch_model(
        "SuitePatch",
        SuiteIn,
        "``PATCH /suites/{id}``: the fields to change.",
    )


class SuiteOut(SuiteIn):
    id: str
    case_ids: list[str] = Field(description="its cases, oldest first")
    created_at: datetime
    updated_at: datetime


async def _out(row: SuiteRow, catalogue: Catalogue) -> SuiteOut:
    cases = await catalogue.cases.where("suite_id", row.id)
    return SuiteOut(
        id=row.id,
        case_ids=[case.id for case in cases],
        created_at=row.created_at,
        updated_at=row.updated_at,
        **row.data,
    )


async def _check_agent(catalogue: Catalogue, agent_id: str | None) -> None:
    if agent_id is not None and not await catalogue.agents.exists(agent_id):
        raise body_error("agent_id", f"no agent {agent_id!r}", agent_id)


@router.post("/suites", status_code=201, response_model=SuiteOut)
async def create_suite(body: SuiteCreate, catalogue: CatalogueDep) -> SuiteOut:
    await _check_agent(catalogue, body.agent_id)
    for index, case in enumerate(body.cases):
        if case.suite_id is not None:
            raise body_error(("cases", index, "suite_id"), "cases given here join this suite")
        await check_references(catalogue, case, ("cases", index))
    now = utcnow()
    suite = SuiteIn.model_validate(body.model_dump(exclude={"cases"}))
    row = SuiteRow(
        id=str(uuid.uuid4()),
        name=suite.name,
        agent_id=suite.agent_id,
        created_at=now,
        updated_at=now,
        data=suite.model_dump(mode="json"),
    )
    await catalogue.suites.add(
        row,
        also=[create_case_row(case.model_copy(update={"suite_id": row.id})) for case in body.cases],
    )
    return await _out(row, catalogue)


@router.get("/suites", response_model=Page[SuiteOut])
async def list_suites(
    catalogue: CatalogueDep, page: PageDep, name: str | None = None, agent_id: str | None = None
) -> Page[SuiteOut]:
    found_page = await catalogue.suites.page(
        {"name": name, "agent_id": agent_id}, limit=page.limit, offset=page.offset
    )
    return page_of([await _out(row, catalogue) for row in found_page.rows], found_page.total, page)


@router.get("/suites/{suite_id}", response_model=SuiteOut)
async def get_suite(suite_id: str, catalogue: CatalogueDep) -> SuiteOut:
    return await _out(await found(catalogue.suites.get(suite_id)), catalogue)


@router.patch("/suites/{suite_id}", response_model=SuiteOut)
async def update_suite(suite_id: str, body: SuitePatch, catalogue: CatalogueDep) -> SuiteOut:
    row = await found(catalogue.suites.get(suite_id))
    suite = merged(SuiteIn, row.data, body)
    await _check_agent(catalogue, suite.agent_id)
    row.name, row.agent_id = suite.name, suite.agent_id
    row.data = suite.model_dump(mode="json")
    await found(catalogue.suites.replace(row))
    return await _out(row, catalogue)


@router.delete("/suites/{suite_id}", status_code=204)
async def delete_suite(suite_id: str, catalogue: CatalogueDep, cascade: bool = False) -> Response:
    await found(catalogue.suites.get(suite_id))
    cases = await catalogue.cases.where("suite_id", suite_id)
    if cases and not cascade:
        raise HTTPException(
            409, f"suite {suite_id!r} has {len(cases)} case(s); delete with ?cascade=true"
        )
    await found(catalogue.suites.delete(suite_id, cascade=(CaseRow, "suite_id")))
    return Response(status_code=204)
