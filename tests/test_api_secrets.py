"""An agent's credentials never come back: not in runs, events, views, webhooks, reports or logs.

Against `loopcall serve` as a real process (through ``tests/controller_launch.py``,
which adds one fault: a SIP digest computation that raises with the password in
a local variable and in its message), with real peers on loopback that echo what
they were sent: a WebRTC offer endpoint that puts the Authorization header into
its error page, a media-stream agent that sends the header and the Twilio
secrets back in messages and in its websocket close reason, and a SIP peer that
quotes the digest response and the password in a reason phrase.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from test_api_ssrf import _call, booking_case

from telephony.sip.digest import parse_challenge
from telephony.sip.message import SipMessage, new_tag, parse_message

TOKEN = "tok-9d2e71c4b0a84f6e"
SIP_PASSWORD = "sip-pw-5b7e0c2f91aa"
FAULT_PASSWORD = "sip-pw-fault-3e8d27"
TWILIO_TOKEN = "twtok-0f3a8e6d1c2b77"
TWILIO_KEY_SECRET = "twkey-7c1d9e2a4f6055"
KNOWN_SECRETS = [TOKEN, SIP_PASSWORD, FAULT_PASSWORD, TWILIO_TOKEN, TWILIO_KEY_SECRET]


class EchoingSipPeer(asyncio.DatagramProtocol):
    """A SIP UAS on UDP that challenges every INVITE, then quotes the answer back in a 403."""

    def __init__(self, go: asyncio.Event) -> None:
        self.go = go
        self.authorizations: list[str] = []
        self._seen: set[tuple[str, str]] = set()
        self._transport: asyncio.DatagramTransport | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        with contextlib.suppress(ValueError):
            message = parse_message(data)
            if message.method != "INVITE":
                return  # ACKs of our final answers
            key = (message.call_id, message.require("CSeq"))
            if key in self._seen:
                return  # a retransmission
            self._seen.add(key)
            self._send(self._response(message, 100, "Trying"), addr)
            task = asyncio.ensure_future(self._answer(message, addr))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _answer(self, invite: SipMessage, addr: tuple[str, int]) -> None:
        await self.go.wait()
        auth = invite.get("Authorization")
        if auth is None:
            response = self._response(invite, 401, "Unauthorized")
            response.add("WWW-Authenticate", 'Digest realm="echo", nonce="n0nce42", qop="auth"')
        else:
            self.authorizations.append(auth)
            digest = parse_challenge(auth)
            password = {"bob": SIP_PASSWORD}.get(digest["username"], "?")
            reason = f"Forbidden response={digest['response']} password={password}"
            response = self._response(invite, 403, reason)
        self._send(response, addr)

    @staticmethod
    def _response(request: SipMessage, status: int, reason: str) -> SipMessage:
        response = SipMessage(status=status, reason=reason)
        for via in request.get_all("Via"):
            response.add("Via", via)
        response.add("From", request.require("From"))
        to = request.require("To")
        response.add("To", to if ";tag=" in to or status == 100 else f"{to};tag={new_tag()}")
        response.add("Call-ID", request.call_id)
        response.add("CSeq", request.require("CSeq"))
        return response

    def _send(self, message: SipMessage, addr: tuple[str, int]) -> None:
        assert self._transport is not None
        self._transport.sendto(bytes(message), addr)


@contextlib.asynccontextmanager
async def sip_peer(go: asyncio.Event) -> AsyncIterator[tuple[EchoingSipPeer, int]]:
    loop = asyncio.get_running_loop()
    transport, peer = await loop.create_datagram_endpoint(
        lambda: EchoingSipPeer(go), local_addr=("127.0.0.1", 0)
    )
    try:
        yield peer, transport.get_extra_info("sockname")[1]
    finally:
        transport.close()


async def _events(http: aiohttp.ClientSession, run_id: str, subscribed: asyncio.Event) -> str:
    """The run's server-sent events until its end event; ``subscribed`` once the stream is."""
    lines = []
    async with http.get(f"/runs/{run_id}/events") as response:
        async for raw in response.content:
            lines.append(raw.decode())
            subscribed.set()  # the status event comes after the subscription
            if raw.startswith(b"event: end"):
                break
    return "".join(lines)


@pytest.mark.e2e
async def test_echoed_credentials_appear_nowhere(
    launch_controller, http_stub, tmp_path: Path
) -> None:
    go = asyncio.Event()
    seen: dict[str, str | None] = {}

    async def offer(request: web.Request) -> web.Response:
        seen["webrtc"] = request.headers.get("Authorization")
        await go.wait()
        echo = f"who are you? {request.headers.get('Authorization')} {TWILIO_TOKEN}"
        return web.Response(status=401, text=echo, reason=f"Unauthorized {TOKEN}")

    async def media_stream(request: web.Request) -> web.WebSocketResponse:
        seen["twilio-ws"] = request.headers.get("Authorization")
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await go.wait()
        auth = request.headers.get("Authorization")
        await ws.send_str(f"not json: {auth}")  # a careless agent's debug output
        await ws.send_str(f"{TWILIO_TOKEN} {TWILIO_KEY_SECRET}")
        await ws.send_str(json.dumps({"event": "debug", "token": auth}))
        await ws.close(code=4001, message=f"bad {TOKEN}".encode())
        return ws

    hooks: list[bytes] = []
    all_hooks = asyncio.Event()

    async def hook(request: web.Request) -> web.Response:
        hooks.append(await request.read())
        if len(hooks) == 4:
            all_hooks.set()
        return web.Response(status=204)

    webrtc_host = await http_stub("POST", "/api/offer", offer)
    ws_host = await http_stub("GET", "/ws", media_stream)
    hook_host = await http_stub("POST", "/hook", hook)
    db = tmp_path / "db.sqlite"
    twilio = {"twilio_auth_token": TWILIO_TOKEN, "twilio_api_key_secret": TWILIO_KEY_SECRET}
    bearer = {"secret_headers": {"Authorization": f"Bearer {TOKEN}"}}
    shown: list[Any] = []  # every API response, to search for the secrets
    async with sip_peer(go) as (peer, sip_port):
        agents = {
            "webrtc": {
                "address": f"webrtc://{webrtc_host}/api/offer",
                "credentials": {**bearer, **twilio},
            },
            "media stream": {
                "address": f"twilio-ws://{ws_host}/ws",
                "credentials": {**bearer, **twilio},
            },
            "sip": {
                "address": f"sip:bot@127.0.0.1:{sip_port}",
                "options": {"sip_username": "bob"},
                "credentials": {"sip_password": SIP_PASSWORD},
            },
            "sip fault": {
                "address": f"sip:bot@127.0.0.1:{sip_port}",
                "options": {"sip_username": "fault-user"},
                "credentials": {"sip_password": FAULT_PASSWORD},
            },
        }
        controller = launch_controller(
            f"sqlite:///{db}",
            "--no-calibrate",
            env={"LOOPCALL_TEST_DIGEST_FAULT": "fault-user", "LOOPCALL_LOG_LEVEL": "DEBUG"},
        )
        async with controller.client() as http:
            agent_ids, run_ids, suite_runs = {}, [], []
            for name, agent in agents.items():
                stored = await _call(http, "POST", "/agents", 201, json={"name": name, **agent})
                shown.append(stored)
                agent_ids[name] = stored["id"]
                body = {
                    "case": booking_case(),
                    "agent_id": stored["id"],
                    "webhook_url": f"http://{hook_host}/hook",
                }
                created = await _call(http, "POST", "/runs", 202, json=body)
                run_ids += created["run_ids"]
                suite_runs.append(created["suite_run_id"])
            # Follow every run's events from before its agent answers.
            subscribed = [asyncio.Event() for _ in run_ids]
            streams = [
                asyncio.ensure_future(_events(http, run_id, ready))
                for run_id, ready in zip(run_ids, subscribed, strict=True)
            ]
            await asyncio.wait_for(asyncio.gather(*(s.wait() for s in subscribed)), 30)
            go.set()
            events = await asyncio.wait_for(asyncio.gather(*streams), 120)
            runs = {}
            for run_id in run_ids:
                runs[run_id] = await _call(
                    http, "GET", f"/runs/{run_id}", 200, params={"wait_s": "60"}
                )
                for path in (
                    f"/eval/run/{run_id}",
                    f"/agent-eval/runs/{run_id}",
                    f"/agent-eval/runs/{run_id}/turns",
                    f"/agent-eval/runs/{run_id}/evaluation",
                ):
                    shown.append(await _call(http, "GET", path, 200))
            shown.append(runs)
            for suite_run_id in suite_runs:
                shown.append(await _call(http, "GET", f"/suite-runs/{suite_run_id}", 200))
                shown.append(
                    await _call(http, "GET", f"/test_framework/v1/results/{suite_run_id}/", 200)
                )
            shown.append(await _call(http, "GET", "/runs", 200, params={"limit": "200"}))
            shown.append(await _call(http, "GET", "/agents", 200))
            await asyncio.wait_for(all_hooks.wait(), 60)

            # A bench through the echoing SIP agent keeps its runs and report clean too.
            bench = await _call(
                http,
                "POST",
                "/benches",
                202,
                json={
                    "case": booking_case(),
                    "agent_id": agent_ids["sip"],
                    "concurrency": [1],
                    "calls": 1,
                },
            )
            report = await _call(
                http, "GET", f"/benches/{bench['id']}", 200, params={"wait_s": "120"}
            )
            shown.append(report)
            async with http.get(f"/benches/{bench['id']}/report.html") as response:
                shown.append(await response.text())
            bench_runs = await _call(
                http, "GET", "/runs", 200, params={"suite_run_id": bench["id"]}
            )
            shown.append(bench_runs)
        controller.stop()

    # The peers did get the secrets (the test is not vacuous) ...
    assert seen == {"webrtc": f"Bearer {TOKEN}", "twilio-ws": f"Bearer {TOKEN}"}
    digest_responses = [parse_challenge(a)["response"] for a in peer.authorizations]
    assert len(digest_responses) >= 2, "the SIP agent answered the challenge, in a run and a bench"
    secrets = [*KNOWN_SECRETS, *digest_responses]
    assert all(run["status"] == "failed" for run in runs.values())
    assert bench_runs["items"] and all(r["status"] == "failed" for r in bench_runs["items"])
    # ... and echoed them where loopcall looks: the errors show where they were masked.
    errors = " | ".join(run["error"] for run in runs.values())
    assert "HTTP 401" in errors and "RuntimeError" in errors, errors
    assert errors.count("[redacted]") >= 3, errors
    log = (tmp_path / "controller.log").read_text()

    everything = {
        "API responses": json.dumps(shown),
        "event streams": "".join(events),
        "webhook bodies": b"".join(hooks).decode(),
        "controller log": log,
        "database": "\n".join(sqlite3.connect(db).iterdump()),
    }
    for path in (tmp_path / "data" / "benches" / bench["id"]).iterdir():
        everything[f"bench file {path.name}"] = path.read_text()
    leaks = [
        f"{secret!r} in the {where}"
        for where, text in everything.items()
        for secret in secrets
        if secret in text
    ]
    assert leaks == [], "\n".join(leaks)
    assert "digest bookkeeping failed for [redacted]" in log, "the fault's traceback is logged"
    assert "Traceback" in log
