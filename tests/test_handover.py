"""The tools URL, events URL and token reach the agent on every channel that can carry them.

Each channel is opened for real against a stub peer on 127.0.0.1 that keeps what
arrives: the WebRTC offer's HTTP body, the media stream's ``start`` message, the
SIP INVITE.  The reference agent reads the same fields back (``Handover``).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from websockets.asyncio.server import ServerConnection, serve

from harness.ingest import serve_ingest
from harness.models import Case
from harness.orchestrator import RunOptions, run_case
from harness.store import RunStore
from refagent.loopcall_link import Handover
from telephony import CallSetup, ConnectError, DialOptions, open_call, parse_target
from telephony.sip.message import SipMessage, parse_message

TOOLS = "http://127.0.0.1:9/runs/r-1/tools/tok-123"
EVENTS = "http://127.0.0.1:9/runs/r-1/agent-events"
SETUP = CallSetup(
    dial=DialOptions(request_data={"loopcall_run_id": "r-1", "mine": 1}),
    tools_url=TOOLS,
    events_url=EVENTS,
    agent_token="tok-123",
)


async def test_the_webrtc_offer_carries_them_in_request_data(
    http_stub: Callable[
        [str, str, Callable[[web.Request], Awaitable[web.Response]]], Awaitable[str]
    ],
) -> None:
    bodies: list[dict[str, Any]] = []

    async def offer(request: web.Request) -> web.Response:
        bodies.append(await request.json())
        return web.Response(status=503, text="not today")

    host = await http_stub("POST", "/api/offer", offer)
    call = open_call(parse_target(f"webrtc://{host}/api/offer"), SETUP)
    with pytest.raises(ConnectError):
        await call.connect(5)
    [body] = bodies
    assert body["type"] == "offer"
    assert body["request_data"] == {
        "loopcall_run_id": "r-1",
        "mine": 1,  # the agent's own request data stays
        "loopcall_tools_url": TOOLS,
        "loopcall_events_url": EVENTS,
        "loopcall_token": "tok-123",
    }
    assert Handover.from_params(body["request_data"]) == Handover("r-1", TOOLS, EVENTS, "tok-123")


async def test_the_media_stream_start_carries_them_in_custom_parameters() -> None:
    starts: list[dict[str, Any]] = []

    async def agent(ws: ServerConnection) -> None:
        async for raw in ws:
            message = json.loads(raw)
            if message["event"] == "start":
                starts.append(message["start"])
                return

    async with serve(agent, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        call = open_call(parse_target(f"twilio-ws://127.0.0.1:{port}/ws"), SETUP)
        await call.connect(5)
        await call.hangup()
    [start] = starts
    params = start["customParameters"]
    assert params["loopcall_tools_url"] == TOOLS
    assert params["loopcall_events_url"] == EVENTS
    assert params["loopcall_token"] == "tok-123"
    assert params["loopcall_run_id"] == "r-1"
    assert Handover.from_params(params).tools_url == TOOLS


class _Invites(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.invites: list[SipMessage] = []

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        message = parse_message(data)
        if message.method == "INVITE":
            self.invites.append(message)


async def test_the_sip_invite_carries_them_as_headers() -> None:
    loop = asyncio.get_running_loop()
    transport, peer = await loop.create_datagram_endpoint(_Invites, local_addr=("127.0.0.1", 0))
    port = transport.get_extra_info("sockname")[1]
    try:
        call = open_call(parse_target(f"sip:agent@127.0.0.1:{port}"), SETUP)
        with pytest.raises(ConnectError):
            await call.connect(0.3)  # nobody answers
    finally:
        transport.close()
    invite = peer.invites[0]
    assert invite.get("X-Loopcall-Tools-Url") == TOOLS
    assert invite.get("X-Loopcall-Events-Url") == EVENTS
    assert invite.get("X-Loopcall-Token") == "tok-123"
    assert invite.get("X-Loopcall-Run-Id") == "r-1"
    assert Handover.from_headers(invite.get) == Handover("r-1", TOOLS, EVENTS, "tok-123")


def test_nothing_is_handed_over_when_nothing_is_served() -> None:
    assert Handover.from_params({"loopcall_run_id": "r-2"}) == Handover(run_id="r-2")
    assert Handover.from_params(None) == Handover()


async def test_a_run_hands_over_and_lays_in_what_its_agent_reported(tmp_path: Path) -> None:
    """The orchestrator's side, on a media stream: the stub agent calls a tool and reports
    a node as the stream starts, then hangs up; the run holds both, judged."""
    reported: list[int] = []

    async def agent(ws: ServerConnection) -> None:
        async for raw in ws:
            message = json.loads(raw)
            if message["event"] != "start":
                continue
            params = message["start"]["customParameters"]
            async with aiohttp.ClientSession() as http:
                url = f"{params['loopcall_tools_url']}/check_availability"
                async with http.post(url, json={"day": "Tuesday"}) as response:
                    reported.append(response.status)
                headers = {"X-Loopcall-Token": params["loopcall_token"]}
                events = [{"type": "node", "name": "greet"}]
                async with http.post(params["loopcall_events_url"], json=events, headers=headers):
                    pass
            await ws.close(1000, "bye")
            return

    case = Case.model_validate(
        {
            "name": "reports",
            "persona": {"name": "Caller", "voice": "flite:slt"},
            "script": ["Hello?"],
            "tools": [{"name": "check_availability", "response": {"slots": ["Tuesday 10:00"]}}],
            "success_criteria": [
                {"tool_name": "check_availability", "args_match": {"day": "(?i)^tue"}},
                {"node_id": "greet"},
            ],
            "max_duration_s": 30,
        }
    )
    store = RunStore(tmp_path)
    async with serve(agent, "127.0.0.1", 0) as server, serve_ingest() as ingest:
        port = server.sockets[0].getsockname()[1]
        options = RunOptions(
            calibrate=False, caller="lean", inboxes=ingest.inboxes, agent_base_url=ingest.base_url
        )
        run = await run_case(case, f"twilio-ws://127.0.0.1:{port}/ws", store, options=options)
    assert reported == [200]
    assert run.status == "completed", run.error
    [call] = run.tool_calls
    assert (call.name, call.args, call.response) == (
        "check_availability",
        {"day": "Tuesday"},
        {"slots": ["Tuesday 10:00"]},
    )
    [node] = run.agent_events
    assert node.name == "greet"
    # Both arrived just after the stream started: at the call's beginning, on its clock.
    assert call.at_ms is not None and node.at_ms is not None
    assert 0 <= call.at_ms <= node.at_ms < 5000
    assert run.evaluation is not None and all(r.passed for r in run.evaluation.results)
    assert run.tools_url == f"{ingest.base_url}/runs/{run.id}/tools/[redacted]"
    assert "/tools/[redacted]" in (tmp_path / run.id / "run.json").read_text()
    assert ingest.inboxes.get(run.id) is None  # closed: the token works no more
