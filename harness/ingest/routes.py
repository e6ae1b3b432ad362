"""The routes an agent under test calls during its run: its mock tools and its event webhook.

Stage: beside the call, in whichever process runs it (the controller, or the
loopback server ``loopcall run`` starts: ``server.py``).  In: HTTP from the
agent; out: records in the run's inbox (``inbox.py``).  These routes take the
run's own token instead of an API key, so only the agent of that run can use them:

- ``POST /runs/{run_id}/tools/{token}/{name}``: the tools URL is
  ``{base}/runs/{run_id}/tools/{token}``; the JSON object in the body is the
  tool's arguments, the answer is the mock's JSON response.  An unknown tool
  answers 404, arguments that are not a JSON object 400, a ``tool_policy: real``
  run 409; every one of them is recorded as a ``ToolCall``.
- ``POST /runs/{run_id}/agent-events``: a JSON list of events (``EventReport``),
  with ``Authorization: Bearer <token>`` or ``X-Loopcall-Token: <token>``.
  401 without the right token, 422 naming the fields of a malformed event.

Bodies are read up to a limit (413 past it), and a run keeps at most
``MAX_RECORDS`` of each kind (429 past it).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from pydantic import Field, TypeAdapter, ValidationError

from harness.ingest.inbox import Inboxes, RunInbox
from harness.models import AgentEvent, ToolCall
from harness.models.agent_side import AgentEventType
from harness.models.common import Strict
from runtime.arguments import check_args, regexes_in

__all__ = [
    "EventReport",
    "MAX_EVENT_BODY",
    "MAX_EVENTS",
    "MAX_TOOL_BODY",
    "events_url",
    "router",
    "tools_url",
]

MAX_TOOL_BODY = 64 * 1024
MAX_EVENT_BODY = 256 * 1024
MAX_EVENTS = 500  # per request
PREVIEW_CHARS = 500  # of a body that is not JSON, kept in the record
EPOCH_S_BEYOND = 1e11  # epoch seconds past this (year 5138) are epoch ms by mistake

router = APIRouter(tags=["agent"])


def tools_url(base: str, run_id: str, token: str) -> str:
    """Where the run's agent calls its tools: ``POST {tools_url}/{name}``."""
    return f"{base.rstrip('/')}/runs/{run_id}/tools/{token}"


def events_url(base: str, run_id: str) -> str:
    """Where the run's agent posts its events (with its token in a header)."""
    return f"{base.rstrip('/')}/runs/{run_id}/agent-events"


def _inboxes(request: Request) -> Inboxes:
    return request.app.state.inboxes  # type: ignore[no-any-return]


InboxesDep = Annotated[Inboxes, Depends(_inboxes)]


class EventReport(Strict):
    """One event an agent reports.

    Its time is ``at`` (wall clock: epoch seconds, or an ISO 8601 time with a zone)
    or ``at_ms`` (ms on the call's clock, from the recording's start); with
    neither, the time it arrived.  A ``tool_call`` becomes one of the run's
    ``tool_calls`` (``args`` its arguments, ``response`` what the tool answered);
    ``node``, ``metric`` (with ``value``) and ``log`` become ``agent_events``.
    """

    type: AgentEventType
    name: str = Field(min_length=1, max_length=200)
    args: dict[str, Any] = Field(default_factory=dict)
    response: Any = None
    value: float | None = None
    at: float | datetime | None = None
    at_ms: float | None = None


_REPORTS = TypeAdapter(list[EventReport])


def _open_inbox(inboxes: Inboxes, run_id: str) -> RunInbox:
    inbox = inboxes.get(run_id)
    if inbox is None:
        inboxes.dropped += 1
        raise HTTPException(404, f"run {run_id!r} is not taking reports (over, or never started)")
    return inbox


def _check_token(inbox: RunInbox, given: str | None) -> None:
    if not given or not secrets.compare_digest(given.encode(), inbox.token.encode()):
        raise HTTPException(
            401,
            "this run's token is required (Authorization: Bearer <token> or X-Loopcall-Token)",
            headers={"WWW-Authenticate": "Bearer"},
        )


async def _read(request: Request, limit: int) -> bytes:
    """The body, refused with 413 once it passes ``limit`` bytes (declared or sent)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"the body is over {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise HTTPException(413, f"the body is over {limit} bytes")
    return bytes(body)


@router.post("/runs/{run_id}/tools/{token}/{name}", include_in_schema=True)
async def call_tool(
    run_id: str, token: str, name: str, request: Request, inboxes: InboxesDep
) -> JSONResponse:
    """One call of a mock tool: the JSON arguments in, the mock's JSON response out."""
    arrived = time.time()
    inbox = _open_inbox(inboxes, run_id)
    _check_token(inbox, token)
    if not inbox.room("tool_call"):
        raise HTTPException(429, "this run has taken all the tool calls it keeps")
    name = name[:128]
    try:
        body = await _read(request, MAX_TOOL_BODY)
    except HTTPException as exc:
        return _answer(inbox, ToolCall(name=name), exc.status_code, str(exc.detail), arrived)
    try:
        args = json.loads(body) if body.strip() else {}
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        preview = body[:PREVIEW_CHARS].decode("utf-8", "replace")
        problem = f"the arguments are not JSON: {exc}"
        return _answer(inbox, ToolCall(name=name, args=preview), 400, problem, arrived)
    if not isinstance(args, dict):
        problem = f"the arguments must be a JSON object, not {type(args).__name__}"
        return _answer(inbox, ToolCall(name=name, args=args), 400, problem, arrived)
    call = ToolCall(name=name, args=args)
    if inbox.tool_policy == "real":
        problem = (
            "this run's tool_policy is real: loopcall serves no tools; call your own and "
            "report them to the agent-events webhook"
        )
        return _answer(inbox, call, 409, problem, arrived)
    tool = inbox.tools.get(name)
    if tool is None:
        known = ", ".join(sorted(inbox.tools)) or "none"
        problem = f"no tool {name!r} in this case (it has: {known})"
        return _answer(inbox, call, 404, problem, arrived)
    expectations = [m.args for m in tool.match]
    if any(regexes_in(e) for e in expectations):  # a regex searches off the event loop
        matched = await asyncio.to_thread(_first_match, expectations, args)
    else:
        matched = _first_match(expectations, args)
    if matched is None and tool.responses is None and "response" not in tool.model_fields_set:
        problem = f"no `match` of {name} fits these arguments, and it has no default response"
        return _answer(inbox, call, 422, problem, arrived)
    call.response = inbox.answer(tool, matched)
    call.status_code = 200
    inbox.add_tool_call(call, arrived)
    return JSONResponse(jsonable_encoder(call.response))  # YAML may hold dates


def _first_match(candidates: list[dict[str, Any]], args: dict[str, Any]) -> int | None:
    """The index of the first expectation ``args`` meets (on a worker thread: regexes)."""
    for index, expected in enumerate(candidates):
        if check_args(expected, args).ok:
            return index
    return None


def _answer(
    inbox: RunInbox, call: ToolCall, status: int, problem: str, arrived: float
) -> JSONResponse:
    """Record a call that got no mock response, and tell the agent why."""
    call.status_code = status
    call.error = problem
    inbox.add_tool_call(call, arrived)
    return JSONResponse({"error": problem}, status_code=status)


@router.post("/runs/{run_id}/agent-events", status_code=202)
async def agent_events(run_id: str, request: Request, inboxes: InboxesDep) -> dict[str, int]:
    """A batch of the agent's events: tool calls, flow nodes, metrics, log lines."""
    arrived = time.time()
    inbox = _open_inbox(inboxes, run_id)
    _check_token(inbox, _given_token(request))
    body = await _read(request, MAX_EVENT_BODY)
    try:
        raw = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise HTTPException(400, f"the body is not JSON: {exc}") from exc
    if isinstance(raw, list) and len(raw) > MAX_EVENTS:
        raise HTTPException(413, f"at most {MAX_EVENTS} events per request")
    try:
        reports = _REPORTS.validate_python(raw)
    except ValidationError as exc:
        detail = [
            {"loc": ["body", *error["loc"]], "msg": error["msg"], "type": error["type"]}
            for error in exc.errors(include_url=False, include_input=False)
        ]
        raise HTTPException(422, detail) from exc
    whens = [_epoch(report.at, arrived) for report in reports]
    kept = 0
    for report, when in zip(reports, whens, strict=True):
        kind = "tool_call" if report.type == "tool_call" else "agent_event"
        if not inbox.room(kind):
            break
        if report.type == "tool_call":
            call = ToolCall(
                name=report.name, args=report.args, response=report.response, source="webhook"
            )
            call.at_ms = report.at_ms
            inbox.add_tool_call(call, when)
        else:
            event = AgentEvent(
                type=report.type, name=report.name, args=report.args, value=report.value
            )
            event.at_ms = report.at_ms
            inbox.add_event(event, when)
        kept += 1
    if kept < len(reports):
        raise HTTPException(429, f"kept {kept} of {len(reports)}: this run keeps no more")
    return {"accepted": kept}


def _given_token(request: Request) -> str | None:
    header = request.headers.get("x-loopcall-token")
    if header:
        return header
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    return credentials.strip() if scheme.lower() == "bearer" else None


def _epoch(at: float | datetime | None, arrived: float) -> float:
    if at is None:
        return arrived
    if isinstance(at, datetime):
        if at.tzinfo is None:
            raise HTTPException(422, "an ISO time in `at` needs its zone (e.g. Z or +00:00)")
        return at.timestamp()
    if at > EPOCH_S_BEYOND:
        raise HTTPException(422, f"`at` is epoch seconds; {at:.0f} looks like milliseconds")
    return float(at)
