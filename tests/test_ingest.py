"""The agent-facing routes over real HTTP on 127.0.0.1: mock tools and the event webhook.

The server is ``loopcall run``'s own (``serve_ingest``: uvicorn in this event loop);
the client is aiohttp, as an agent's would be.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from typing import Any

import aiohttp
import pytest

from harness.ingest import IngestServer, events_url, lay_into, serve_ingest, tools_url
from harness.models import AgentEvent, Case, Run, ToolCall, Turn

CASE: dict[str, Any] = {
    "name": "tools",
    "persona": {"name": "p"},
    "tools": [
        {"name": "check_availability", "response": {"slots": ["Tuesday 10:00"]}},
        {"name": "next_holiday", "response": {"day": date(2026, 12, 25)}},  # YAML reads dates
        {"name": "book_appointment", "responses": [{"status": "booked"}, {"status": "full"}]},
        {
            "name": "lookup_order",
            "match": [
                {"args": {"order_id": "A1"}, "response": {"status": "shipped"}},
                {"args": {"order_id": "(?i)^b\\d$"}, "response": {"status": "packed"}},
                {"args": {"order_id": "$present", "rush": True}, "response": {"status": "rushed"}},
            ],
            "response": {"error": "not found"},
        },
        {"name": "only_match", "match": [{"args": {"x": 1}, "response": "one"}]},
    ],
}


@pytest.fixture
async def server() -> AsyncIterator[IngestServer]:
    async with serve_ingest() as running:
        yield running


async def _post(http: aiohttp.ClientSession, url: str, **kwargs: Any) -> tuple[int, Any]:
    async with http.post(url, **kwargs) as response:
        return response.status, await response.json(content_type=None)


async def test_mock_tools_answer_by_match_then_sequence_then_default(server: IngestServer) -> None:
    inbox = server.inboxes.open("run-1", Case.model_validate(CASE))
    inbox.set_origin(time.time() - 2.0)  # the recording began 2 s ago
    url = tools_url(server.base_url, "run-1", inbox.token)
    async with aiohttp.ClientSession() as http:
        assert await _post(http, f"{url}/check_availability", json={}) == (
            200,
            {"slots": ["Tuesday 10:00"]},
        )
        # A sequence: each call takes the next answer, the last one repeats.
        answers = [(await _post(http, f"{url}/book_appointment", json={}))[1] for _ in range(3)]
        assert answers == [{"status": "booked"}, {"status": "full"}, {"status": "full"}]
        # Matches: exact, regex, $present (with another exact value), else the default.
        for args, expected in (
            ({"order_id": "A1"}, "shipped"),
            ({"order_id": "b7", "note": "extra args are not looked at"}, "packed"),
            ({"order_id": "Z9", "rush": True}, "rushed"),
            ({"order_id": "Z9", "rush": 1}, None),  # 1 is not True
            ({"order_id": "A2"}, None),
        ):
            status, body = await _post(http, f"{url}/lookup_order", json=args)
            assert status == 200
            assert body == ({"status": expected} if expected else {"error": "not found"}), args
        # Only `match` answers, and nothing fits: the agent is told so.
        status, body = await _post(http, f"{url}/only_match", json={"x": 2})
        assert status == 422 and "no `match`" in body["error"]
        # No body counts as no arguments.
        assert (await _post(http, f"{url}/check_availability"))[0] == 200
        assert await _post(http, f"{url}/next_holiday") == (200, {"day": "2026-12-25"})
    calls = inbox.tool_calls
    assert [c.name for c in calls] == ["check_availability"] + ["book_appointment"] * 3 + [
        "lookup_order"
    ] * 5 + ["only_match", "check_availability", "next_holiday"]
    assert all(c.source == "tools_url" for c in calls)
    assert calls[4].args == {"order_id": "A1"} and calls[4].response == {"status": "shipped"}
    assert calls[9].status_code == 422 and calls[9].error
    # Placed on the call's clock: 2 s in, give or take the test's own pace.
    assert all(c.at_ms is not None and 2000 <= c.at_ms < 12_000 for c in calls)
    assert [c.at_ms for c in calls] == sorted(c.at_ms for c in calls if c.at_ms is not None)


async def test_bad_tool_calls_are_answered_and_recorded(server: IngestServer) -> None:
    inbox = server.inboxes.open("run-2", Case.model_validate(CASE))
    url = tools_url(server.base_url, "run-2", inbox.token)
    async with aiohttp.ClientSession() as http:
        status, body = await _post(http, f"{url}/cancel_everything", json={"now": True})
        assert status == 404 and "cancel_everything" in body["error"]
        assert "check_availability" in body["error"]  # it says which tools there are
        status, body = await _post(http, f"{url}/check_availability", data=b"{day: tue")
        assert status == 400 and "not JSON" in body["error"]
        status, body = await _post(http, f"{url}/check_availability", json=["tue"])
        assert status == 400 and "JSON object" in body["error"]
        status, _ = await _post(http, f"{url}/check_availability", data=b"x" * (65 * 1024))
        assert status == 413
        # The token is the URL's: another one is refused and not recorded.
        wrong = tools_url(server.base_url, "run-2", "not-the-token")
        assert (await _post(http, f"{wrong}/check_availability", json={}))[0] == 401
        assert (await _post(http, f"{url.replace('run-2', 'run-x')}/check_availability"))[0] == 404
    assert [(c.name, c.status_code) for c in inbox.tool_calls] == [
        ("cancel_everything", 404),
        ("check_availability", 400),
        ("check_availability", 400),
        ("check_availability", 413),
    ]
    assert inbox.tool_calls[1].args == "{day: tue"  # what came, kept for the reader
    assert inbox.tool_calls[2].args == ["tue"]
    # Before the call connects, records wait for the origin, then take their place.
    assert all(c.at_ms is None for c in inbox.tool_calls)
    inbox.set_origin(time.time() + 5.0)
    assert all(c.at_ms is not None and c.at_ms < -4000 for c in inbox.tool_calls)
    assert server.inboxes.dropped == 1


async def test_a_real_tool_policy_serves_nothing(server: IngestServer) -> None:
    inbox = server.inboxes.open("run-3", Case.model_validate({**CASE, "tool_policy": "real"}))
    async with aiohttp.ClientSession() as http:
        url = tools_url(server.base_url, "run-3", inbox.token)
        status, body = await _post(http, f"{url}/check_availability", json={})
    assert status == 409 and "tool_policy is real" in body["error"]
    assert inbox.tool_calls[0].status_code == 409


async def test_the_event_webhook_takes_the_run_token_and_names_bad_fields(
    server: IngestServer,
) -> None:
    inbox = server.inboxes.open("run-4", Case.model_validate(CASE))
    origin = time.time() - 10.0
    inbox.set_origin(origin)
    url = events_url(server.base_url, "run-4")
    events = [
        {"type": "node", "name": "greet", "at": origin + 1.5},
        {"type": "node", "name": "confirm_booking", "at_ms": 4200},
        {
            "type": "tool_call",
            "name": "transfer_call",
            "args": {"to": "billing"},
            "response": {"ok": True},
            "at": datetime.fromtimestamp(origin + 3.0, UTC).isoformat(),
        },
        {"type": "metric", "name": "llm_ttfb_ms", "value": 312.5},
    ]
    async with aiohttp.ClientSession() as http:
        for headers in ({}, {"X-Loopcall-Token": "nope"}, {"Authorization": "Bearer nope"}):
            status, _ = await _post(http, url, json=events, headers=headers)
            assert status == 401, headers
        bad = [{"type": "node", "name": "x"}, {"type": "teleport", "name": "y", "colour": 1}]
        status, body = await _post(http, url, json=bad, headers={"X-Loopcall-Token": inbox.token})
        assert status == 422
        fields = {tuple(e["loc"]) for e in body["detail"]}
        assert ("body", 1, "type") in fields and ("body", 1, "colour") in fields
        status, _ = await _post(
            http,
            url,
            json=[{"type": "node", "name": "n", "at": "2026-01-01T00:00:00"}],
            headers={"Authorization": f"Bearer {inbox.token}"},
        )
        assert status == 422  # a time without its zone is ambiguous
        status, body = await _post(
            http,
            url,
            json=[{"type": "node", "name": "n", "at": origin * 1000}],
            headers={"X-Loopcall-Token": inbox.token},
        )
        assert status == 422 and "milliseconds" in body["detail"]
        status, body = await _post(
            http, url, json=events, headers={"Authorization": f"Bearer {inbox.token}"}
        )
        assert (status, body) == (202, {"accepted": 4})
    assert [(e.type, e.name, e.at_ms) for e in inbox.agent_events[:2]] == [
        ("node", "greet", 1500.0),
        ("node", "confirm_booking", 4200.0),
    ]
    metric = inbox.agent_events[2]
    assert metric.value == 312.5 and metric.at_ms is not None and 10_000 <= metric.at_ms < 20_000
    [reported] = inbox.tool_calls
    assert (reported.name, reported.source, reported.at_ms) == ("transfer_call", "webhook", 3000.0)
    assert reported.response == {"ok": True}


async def test_close_waits_for_late_reports_then_stops_taking_them(server: IngestServer) -> None:
    server.inboxes.quiet_s, server.inboxes.grace_s = 0.2, 2.0
    inbox = server.inboxes.open("run-5", Case.model_validate(CASE))
    inbox.set_origin(time.time())
    assert server.inboxes.deliver("run-5", "agent_event", AgentEvent(type="log", name="late"))
    assert server.inboxes.deliver("run-5", "otel_spans", {"spans": 3})  # any other kind: raw
    closed = await server.inboxes.close("run-5")
    assert closed is inbox and [e.name for e in inbox.agent_events] == ["late"]
    assert inbox.deliveries["otel_spans"][0][1] == {"spans": 3}
    assert not server.inboxes.deliver("run-5", "agent_event", AgentEvent(type="log", name="x"))
    async with aiohttp.ClientSession() as http:
        url = events_url(server.base_url, "run-5")
        status, _ = await _post(http, url, json=[], headers={"X-Loopcall-Token": inbox.token})
    assert status == 404
    assert server.inboxes.dropped == 2


def test_the_timeline_sorts_and_gives_each_tool_call_its_turn() -> None:
    case = Case.model_validate(CASE)
    run = Run(channel="webrtc", target="webrtc://x", case=case)
    run.turns = [
        Turn(role="agent", text="hi", start_ms=0, end_ms=1000),
        Turn(role="persona", text="book", start_ms=1500, end_ms=2500),
        Turn(role="agent", text="booked", start_ms=3000, end_ms=4000),
    ]
    from harness.ingest import RunInbox

    inbox = RunInbox("r", case)
    inbox.set_origin(0.0)
    for name, at in (("late", 9000.0), ("during", 3500.0), ("between", 2000.0), ("first", 500.0)):
        inbox.add_tool_call(ToolCall(name=name, at_ms=at))
    lay_into(run, inbox)
    assert [(c.name, c.turn_index) for c in run.tool_calls] == [
        ("first", 0),
        ("between", 2),  # made for the reply that follows
        ("during", 2),
        ("late", 2),  # after the last turn: the last one
    ]
