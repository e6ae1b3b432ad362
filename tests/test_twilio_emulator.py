"""The local Twilio emulator: the official SDK against its REST API, calls bridged between
two media-stream agents, signed status callbacks, and the ways a call can end."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import numpy as np
import pytest
from aiohttp import web
from twilio.base.exceptions import TwilioRestException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.request_validator import RequestValidator
from twilio.rest import Client
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from audio.g711 import ulaw_decode, ulaw_encode
from telephony.twilio_emulator import (
    EmulatorConfig,
    NumberConfig,
    TwilioEmulator,
    TwimlError,
    parse_number_spec,
    parse_stream_twiml,
)

ACCOUNT = "AC" + "a1" * 16
TOKEN = "emulator-auth-token"
KEY_SID = "SK" + "b2" * 16
KEY_SECRET = "emulator-key-secret"
CALLER = "+15550001000"  # owned by the account; its agent is the caller's TwiML stream
CALLEE = "+15550002000"  # answered by a media-stream agent or a voice webhook
BUSY = "+15550003000"
NO_ANSWER = "+15550004000"
RING_S = 0.05
ALL_EVENTS = ["initiated", "ringing", "answered", "completed"]

Stub = Callable[[str, str, Callable[[web.Request], Awaitable[web.StreamResponse]]], Awaitable[str]]


def tone_ulaw(ms: int = 20, freq: float = 440.0, amplitude: int = 12_000) -> bytes:
    """A loud tone as 8 kHz mu-law, what an agent says on a phone line."""
    t = np.arange(8 * ms) / 8000.0
    pcm = (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.int16)
    return ulaw_encode(pcm.tobytes())


def rms(ulaw: bytes) -> float:
    pcm = np.frombuffer(ulaw_decode(ulaw), dtype=np.int16).astype(np.float64)
    return float(np.sqrt(np.mean(pcm**2))) if pcm.size else 0.0


class FakeAgent:
    """A media-stream agent: records what Twilio sends; can talk (a tone) and hang up."""

    def __init__(self, *, talk: bool = False) -> None:
        self.talk = talk
        self.messages: list[dict[str, Any]] = []
        self.start: dict[str, Any] | None = None
        self.headers: dict[str, str] = {}
        self.started = asyncio.Event()
        self.heard_voice = asyncio.Event()
        self.stopped = asyncio.Event()
        self.url = ""
        self._server: Server | None = None
        self._ws: ServerConnection | None = None

    async def __aenter__(self) -> FakeAgent:
        self._server = await serve(self._handle, "127.0.0.1", 0)
        port = next(iter(self._server.sockets)).getsockname()[1]
        self.url = f"ws://127.0.0.1:{port}/ws"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _handle(self, ws: ServerConnection) -> None:
        self._ws = ws
        assert ws.request is not None
        self.headers = dict(ws.request.headers)
        talker = asyncio.create_task(self._talk(ws)) if self.talk else None
        try:
            async for raw in ws:
                message = json.loads(raw)
                self.messages.append(message)
                if message["event"] == "start":
                    self.start = message["start"]
                    self.started.set()
                elif message["event"] == "media":
                    if rms(base64.b64decode(message["media"]["payload"])) > 2000:
                        self.heard_voice.set()
                elif message["event"] == "stop":
                    self.stopped.set()
        except ConnectionClosed:
            pass
        finally:
            if talker is not None:
                talker.cancel()

    async def _talk(self, ws: ServerConnection) -> None:
        await self.started.wait()
        assert self.start is not None
        frame = base64.b64encode(tone_ulaw()).decode()
        while True:  # paced as a real agent sends: one 20 ms frame every 20 ms
            media = {"event": "media", "streamSid": self.start["streamSid"]}
            await ws.send(json.dumps({**media, "media": {"payload": frame}}))
            await asyncio.sleep(0.02)

    async def hang_up(self) -> None:
        assert self._ws is not None
        await self._ws.close()

    def events(self) -> list[str]:
        return [m["event"] for m in self.messages]


class Callbacks:
    """A status-callback endpoint: every request with whether its signature is Twilio's."""

    def __init__(self) -> None:
        self.url = ""
        self.received: list[dict[str, str]] = []
        self.signed: list[bool] = []
        self._changed = asyncio.Event()

    async def serve(self, http_stub: Stub) -> Callbacks:
        self.url = "http://" + await http_stub("POST", "/status", self._handle) + "/status"
        return self

    async def _handle(self, request: web.Request) -> web.Response:
        form = await request.post()
        params = {k: str(v) for k, v in form.items()}
        signature = request.headers.get("X-Twilio-Signature", "")
        self.signed.append(RequestValidator(TOKEN).validate(self.url, params, signature))
        self.received.append(params)
        self._changed.set()
        return web.Response(text="")

    def statuses(self) -> list[str]:
        return [p["CallStatus"] for p in self.received]

    async def until(self, status: str, timeout: float = 5.0) -> dict[str, str]:
        async def arrived() -> dict[str, str]:
            while True:
                for params in self.received:
                    if params["CallStatus"] == status:
                        return params
                self._changed.clear()
                await self._changed.wait()

        return await asyncio.wait_for(arrived(), timeout)


def stream_twiml(url: str, **parameters: str) -> str:
    params = "".join(f'<Parameter name="{k}" value="{v}"/>' for k, v in parameters.items())
    return f'<Response><Connect><Stream url="{url}">{params}</Stream></Connect></Response>'


def sdk_client(emulator: TwilioEmulator, user: str = ACCOUNT, password: str = TOKEN) -> Client:
    client = Client(user, password, ACCOUNT)
    client.api.base_url = emulator.base_url
    return client


def config(*numbers: NumberConfig, **options: Any) -> EmulatorConfig:
    owned = (NumberConfig(CALLER, behaviour="failed"), *numbers)
    return EmulatorConfig(
        account_sid=ACCOUNT,
        auth_token=TOKEN,
        numbers=owned,
        api_keys={KEY_SID: KEY_SECRET},
        **options,
    )


@pytest.fixture
async def agents() -> AsyncIterator[tuple[FakeAgent, FakeAgent]]:
    async with FakeAgent(talk=True) as caller, FakeAgent() as callee:
        yield caller, callee


# --------------------------------------------------------------------------- REST


async def test_sdk_creates_and_fetches_a_call() -> None:
    async with TwilioEmulator(config(NumberConfig(BUSY, behaviour="busy", ring_s=RING_S))) as emu:
        client = sdk_client(emu)
        call = await asyncio.to_thread(
            client.calls.create, to=BUSY, from_=CALLER, twiml="<Response/>"
        )
        assert call.sid is not None and call.sid.startswith("CA") and len(call.sid) == 34
        assert call.status == "queued"
        assert (call.to, call._from, call.account_sid) == (BUSY, CALLER, ACCOUNT)
        assert call.direction == "outbound-api" and call.api_version == "2010-04-01"
        assert call.price_unit == "USD" and call.duration is None
        assert call.date_created is not None  # the SDK parsed the RFC 2822 date
        assert call.uri == f"/2010-04-01/Accounts/{ACCOUNT}/Calls/{call.sid}.json"

        await emu.wait_status(call.sid, "busy")
        fetched = await asyncio.to_thread(client.calls(call.sid).fetch)
        assert fetched.status == "busy" and fetched.duration == "0"
        assert emu.calls[call.sid].history == ["queued", "ringing", "busy"]


async def test_async_sdk_and_api_key_auth() -> None:
    async with TwilioEmulator(config(NumberConfig(BUSY, behaviour="busy", ring_s=RING_S))) as emu:
        http = AsyncTwilioHttpClient()
        try:
            client = Client(KEY_SID, KEY_SECRET, ACCOUNT, http_client=http)
            client.api.base_url = emu.base_url
            call = await client.calls.create_async(to=BUSY, from_=CALLER, twiml="<Response/>")
            assert call.sid in emu.calls
            fetched = await client.calls(call.sid).fetch_async()
            assert fetched.sid == call.sid
        finally:
            await http.close()


async def test_rest_errors_are_twilios() -> None:
    numbers = (NumberConfig(BUSY, behaviour="busy"),)
    async with TwilioEmulator(config(*numbers, verified_callers=("+15559990000",))) as emu:

        async def error(client: Client, **params: Any) -> TwilioRestException:
            params = {"to": BUSY, "from_": CALLER, "twiml": "<Response/>", **params}
            with pytest.raises(TwilioRestException) as info:
                await asyncio.to_thread(client.calls.create, **params)
            return info.value

        bad_token = await error(sdk_client(emu, password="wrong"))
        assert (bad_token.status, bad_token.code) == (401, 20003)
        bad_key = await error(sdk_client(emu, user=KEY_SID, password="wrong"))
        assert (bad_key.status, bad_key.code) == (401, 20003)

        client = sdk_client(emu)
        unverified = await error(client, from_="+15558887777")
        assert (unverified.status, unverified.code) == (400, 21210)
        assert "+15558887777" in unverified.msg and "not yet verified" in unverified.msg
        bad_to = await error(client, to="5551234")
        assert (bad_to.status, bad_to.code) == (400, 21211)
        no_twiml = await error(client, twiml=None)
        assert (no_twiml.status, no_twiml.code) == (400, 21205)

        other_account = Client(ACCOUNT, TOKEN, "AC" + "0" * 32)
        other_account.api.base_url = emu.base_url
        with pytest.raises(TwilioRestException) as info:
            await asyncio.to_thread(
                other_account.calls.create, to=BUSY, from_=CALLER, twiml="<Response/>"
            )
        assert info.value.status == 404
        with pytest.raises(TwilioRestException) as info:
            await asyncio.to_thread(client.calls("CA" + "0" * 32).fetch)
        assert (info.value.status, info.value.code) == (404, 20404)

        # A verified caller ID may call; nothing was created by the failures above.
        call = await asyncio.to_thread(
            client.calls.create, to=BUSY, from_="+15559990000", twiml="<Response/>"
        )
        assert list(emu.calls) == [call.sid]


# ---------------------------------------------------------------------- a bridged call


async def test_bridged_call_carries_audio_and_reports_progress(
    http_stub: Stub, agents: tuple[FakeAgent, FakeAgent]
) -> None:
    caller_agent, callee_agent = agents
    callbacks = await Callbacks().serve(http_stub)
    webhook_requests: list[tuple[dict[str, str], bool]] = []

    async def voice(request: web.Request) -> web.Response:
        params = {k: str(v) for k, v in (await request.post()).items()}
        signature = request.headers.get("X-Twilio-Signature", "")
        webhook_requests.append(
            (params, RequestValidator(TOKEN).validate(voice_url, params, signature))
        )
        twiml = stream_twiml(callee_agent.url, side="callee")
        return web.Response(text=twiml, content_type="text/xml")

    voice_url = "http://" + await http_stub("POST", "/voice", voice) + "/voice"
    numbers = (NumberConfig(CALLEE, voice_url=voice_url, ring_s=RING_S),)
    async with TwilioEmulator(config(*numbers)) as emu:
        call = await asyncio.to_thread(
            sdk_client(emu).calls.create,
            to=CALLEE,
            from_=CALLER,
            twiml=stream_twiml(caller_agent.url, case="booking", side="caller"),
            status_callback=callbacks.url,
            status_callback_event=ALL_EVENTS,
        )
        sid = call.sid
        await emu.wait_status(sid, "in-progress")

        # The callee's voice webhook was asked, signed, about an inbound call.
        [(params, signed)] = webhook_requests
        assert signed
        assert params["CallSid"] == sid and params["Direction"] == "inbound"
        assert (params["From"], params["To"], params["CallStatus"]) == (CALLER, CALLEE, "ringing")

        # Both agents got Twilio's start, each with its own side's <Parameter>s.
        for agent, custom in (
            (caller_agent, {"case": "booking", "side": "caller"}),
            (callee_agent, {"side": "callee"}),
        ):
            await asyncio.wait_for(agent.started.wait(), 5)
            assert agent.events()[:2] == ["connected", "start"]
            assert agent.start is not None
            assert agent.start["callSid"] == sid and agent.start["accountSid"] == ACCOUNT
            assert agent.start["customParameters"] == custom
            assert agent.start["mediaFormat"] == {
                "encoding": "audio/x-mulaw",
                "sampleRate": 8000,
                "channels": 1,
            }
            assert RequestValidator(TOKEN).validate(
                agent.url, {}, agent.headers.get("x-twilio-signature", "")
            )
        assert caller_agent.start["streamSid"] != callee_agent.start["streamSid"]  # type: ignore[index]

        # What the caller's agent says, the callee's agent hears (and not the other way).
        await asyncio.wait_for(callee_agent.heard_voice.wait(), 5)
        assert not caller_agent.heard_voice.is_set()

        await callee_agent.hang_up()
        await asyncio.wait_for(caller_agent.stopped.wait(), 5)
        assert not callee_agent.stopped.is_set()  # it hung up; nobody tells it to stop
        ended = await emu.wait_status(sid, "completed")
        assert ended.history == ["queued", "ringing", "in-progress", "completed"]
        final = await callbacks.until("completed")

    assert callbacks.statuses() == ["initiated", "ringing", "in-progress", "completed"]
    assert all(callbacks.signed)
    assert [p["SequenceNumber"] for p in callbacks.received] == ["0", "1", "2", "3"]
    assert all(p["CallSid"] == sid and p["Direction"] == "outbound-api" for p in callbacks.received)
    assert int(final["CallDuration"]) >= 1 and final["Duration"] == "1"
    assert "CallDuration" not in callbacks.received[2]
    assert ended.resource()["duration"] == final["CallDuration"]
    assert ended.resource()["price"] == "-0.01400"


async def test_rest_hangup_stops_both_agents(
    http_stub: Stub, agents: tuple[FakeAgent, FakeAgent]
) -> None:
    caller_agent, callee_agent = agents
    callbacks = await Callbacks().serve(http_stub)
    fetches: list[tuple[dict[str, str], bool]] = []

    async def caller_twiml(request: web.Request) -> web.Response:
        params = {k: str(v) for k, v in (await request.post()).items()}
        signature = request.headers.get("X-Twilio-Signature", "")
        fetches.append((params, RequestValidator(TOKEN).validate(twiml_url, params, signature)))
        return web.Response(text=stream_twiml(caller_agent.url), content_type="text/xml")

    twiml_url = "http://" + await http_stub("POST", "/twiml", caller_twiml) + "/twiml"
    numbers = (NumberConfig(CALLEE, stream_url=callee_agent.url, ring_s=RING_S),)
    async with TwilioEmulator(config(*numbers)) as emu:
        client = sdk_client(emu)
        call = await asyncio.to_thread(
            client.calls.create,
            to=CALLEE,
            from_=CALLER,
            url=twiml_url,  # the caller's TwiML is fetched, signed, once the callee answers
            status_callback=callbacks.url,  # no events given: Twilio sends only the final one
        )
        await emu.wait_status(call.sid, "in-progress")
        [(params, signed)] = fetches
        assert signed and params["CallSid"] == call.sid
        assert (params["Direction"], params["CallStatus"]) == ("outbound-api", "in-progress")
        assert callee_agent.start is not None and callee_agent.start["customParameters"] == {}
        updated = await asyncio.to_thread(client.calls(call.sid).update, status="completed")
        assert updated.status == "completed" and updated.end_time is not None
        await asyncio.wait_for(caller_agent.stopped.wait(), 5)
        await asyncio.wait_for(callee_agent.stopped.wait(), 5)
        final = await callbacks.until("completed")
        assert callbacks.statuses() == ["completed"] and all(callbacks.signed)
        assert final["SequenceNumber"] == "0"
        # A completed call stays completed.
        again = await asyncio.to_thread(client.calls(call.sid).update, status="completed")
        assert again.status == "completed"
        assert emu.calls[call.sid].history == ["queued", "ringing", "in-progress", "completed"]


# ------------------------------------------------------------------ unanswered calls


async def test_busy_and_no_answer(http_stub: Stub) -> None:
    callbacks = await Callbacks().serve(http_stub)
    numbers = (
        NumberConfig(BUSY, behaviour="busy", ring_s=RING_S),
        NumberConfig(NO_ANSWER, behaviour="no-answer"),
    )
    async with TwilioEmulator(config(*numbers)) as emu:
        client = sdk_client(emu)
        create = client.calls.create
        events = ALL_EVENTS
        busy = await asyncio.to_thread(
            create, to=BUSY, from_=CALLER, twiml="<Response/>",
            status_callback=callbacks.url, status_callback_event=events,
        )  # fmt: skip
        unanswered = await asyncio.to_thread(
            create, to=NO_ANSWER, from_=CALLER, twiml="<Response/>", timeout=1,
            status_callback=callbacks.url, status_callback_event=events,
        )  # fmt: skip
        assert (await emu.wait_status(busy.sid, "busy")).history == ["queued", "ringing", "busy"]
        ended = await emu.wait_status(unanswered.sid, "no-answer", timeout=3)
        assert ended.history == ["queued", "ringing", "no-answer"]
        busy_final = await callbacks.until("busy")
        no_answer_final = await callbacks.until("no-answer")

    assert all(callbacks.signed)
    by_call = {
        sid: [p["CallStatus"] for p in callbacks.received if p["CallSid"] == sid]
        for sid in (busy.sid, unanswered.sid)
    }
    assert by_call[busy.sid] == ["initiated", "ringing", "busy"]
    assert by_call[unanswered.sid] == ["initiated", "ringing", "no-answer"]
    assert busy_final["CallDuration"] == "0" and busy_final["SipResponseCode"] == "486"
    assert no_answer_final["CallDuration"] == "0"
    assert ended.resource()["price"] is None


async def test_cancel_while_ringing(http_stub: Stub) -> None:
    callbacks = await Callbacks().serve(http_stub)
    async with TwilioEmulator(config(NumberConfig(NO_ANSWER, behaviour="no-answer"))) as emu:
        client = sdk_client(emu)
        call = await asyncio.to_thread(
            client.calls.create,
            to=NO_ANSWER,
            from_=CALLER,
            twiml="<Response/>",
            status_callback=callbacks.url,
        )
        await emu.wait_status(call.sid, "ringing")
        canceled = await asyncio.to_thread(client.calls(call.sid).update, status="canceled")
        assert canceled.status == "canceled"
        final = await callbacks.until("canceled")
        assert final["CallDuration"] == "0"
        assert emu.calls[call.sid].history == ["queued", "ringing", "canceled"]


async def test_calls_that_fail(agents: tuple[FakeAgent, FakeAgent]) -> None:
    caller_agent, callee_agent = agents
    numbers = (NumberConfig(CALLEE, stream_url=callee_agent.url, ring_s=RING_S),)
    async with TwilioEmulator(config(*numbers)) as emu:
        client = sdk_client(emu)

        async def ends_failed(to: str, twiml: str) -> str:
            call = await asyncio.to_thread(client.calls.create, to=to, from_=CALLER, twiml=twiml)
            ended = await emu.wait_status(call.sid, "failed")
            assert "in-progress" not in ended.history
            return ended.end_reason

        # Nobody has that number.
        assert "+15557770000" in await ends_failed("+15557770000", stream_twiml(caller_agent.url))
        # TwiML the emulator does not run.
        reason = await ends_failed(CALLEE, "<Response><Say>hi</Say></Response>")
        assert "<Say>" in reason
        # The caller's agent cannot be reached; the callee's stream is closed again.
        reason = await ends_failed(CALLEE, stream_twiml("ws://127.0.0.1:9/ws"))
        assert "127.0.0.1:9" in reason
        await asyncio.wait_for(callee_agent.stopped.wait(), 5)
        assert not caller_agent.started.is_set()


# ------------------------------------------------------------------------ parsing


def test_parse_number_spec() -> None:
    assert parse_number_spec("+15550001111=ws://127.0.0.1:7860/ws") == NumberConfig(
        "+15550001111", stream_url="ws://127.0.0.1:7860/ws"
    )
    assert parse_number_spec(" +15550001111 = voice:http://host:8000/twilio/voice?x=1 ") == (
        NumberConfig("+15550001111", voice_url="http://host:8000/twilio/voice?x=1")
    )
    for behaviour in ("busy", "no-answer", "failed"):
        assert parse_number_spec(f"+15550001111={behaviour}").behaviour == behaviour
    for bad, why in (
        ("+15550001111", "expected"),
        ("15550001111=busy", "E.164"),
        ("+15550001111=", "expected"),
        ("+15550001111=ringing", "expected"),
        ("+15550001111=http://host/ws", "expected"),
        ("+15550001111=voice:ws://host/voice", "http"),
    ):
        with pytest.raises(ValueError, match=why):
            parse_number_spec(bad)


def test_parse_stream_twiml() -> None:
    twiml = (
        '<?xml version="1.0" encoding="UTF-8"?>\n<Response><Connect>'
        '<Stream url="wss://agent.example/ws"><Parameter name="a" value="1"/></Stream>'
        "</Connect></Response>"
    )
    spec = parse_stream_twiml(twiml)
    assert spec.url == "wss://agent.example/ws" and spec.parameters == {"a": "1"}
    for bad in (
        "<Response><Connect><Stream url='ws://x/ws'></Connect></Response>",  # not XML
        "<Response><Start><Stream url='ws://x/ws'/></Start></Response>",
        "<Response><Connect><Stream url='http://x/ws'/></Connect></Response>",
        "<Response><Connect><Stream url='ws://x/ws'><Parameter value='1'/></Stream>"
        "</Connect></Response>",
    ):
        with pytest.raises(TwimlError):
            parse_stream_twiml(bad)
