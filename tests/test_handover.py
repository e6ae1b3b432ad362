"""The tools URL, events URL and token reach the agent on every channel that can carry them.

Each channel is opened for real against a stub peer on 127.0.0.1 that keeps what
arrives: the WebRTC offer's HTTP body, the media stream's ``start`` message, the
SIP INVITE.  The reference agent reads the same fields back (``Handover``).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from websockets.asyncio.server import ServerConnection, serve

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
            await call.connect(1.0)  # nobody answers
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
