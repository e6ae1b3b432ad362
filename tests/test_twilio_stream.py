"""The twilio-ws channel against stub media-stream agents: loopcall speaks Twilio's protocol.

Each stub is a real websocket server on 127.0.0.1 that records what Twilio (here:
loopcall) sends and answers as an agent would: media, marks, clear, a close.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
from fastapi import FastAPI
from websockets.asyncio.server import ServerConnection, serve

from audio.g711 import ulaw_decode, ulaw_encode
from harness.models import Case, Persona
from harness.orchestrator import RunOptions, run_case
from harness.recording import Recorder
from harness.store import RunStore
from telephony import CallSetup, DialOptions, open_call, parse_target
from telephony.embedded import serve_embedded
from telephony.twilio_phone import TwilioGateway
from telephony.twilio_stream import Playout, TwilioStreamCall

Agent = Callable[[ServerConnection, list[dict[str, Any]]], Awaitable[None]]


def tone_ulaw(ms: int) -> bytes:
    t = np.arange(8 * ms) / 8000
    return ulaw_encode((np.sin(2 * np.pi * 440 * t) * 12000).astype(np.int16).tobytes())


def media(stream_sid: str, ulaw: bytes) -> str:
    payload = base64.b64encode(ulaw).decode()
    return json.dumps({"event": "media", "streamSid": stream_sid, "media": {"payload": payload}})


@pytest.fixture
async def stub_agent() -> AsyncIterator[Callable[[Agent], Awaitable[tuple[str, list[Any]]]]]:
    """Factory: serve ``behaviour(ws, received)`` as a media-stream agent; returns its target."""
    servers: list[Any] = []

    async def start(behaviour: Agent) -> tuple[str, list[dict[str, Any]]]:
        received: list[dict[str, Any]] = []

        async def handler(ws: ServerConnection) -> None:
            await behaviour(ws, received)

        server = await serve(handler, "127.0.0.1", 0).__aenter__()
        servers.append(server)
        port = server.sockets[0].getsockname()[1]
        return f"twilio-ws://127.0.0.1:{port}/ws", received

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


async def record_until(ws: ServerConnection, received: list[dict[str, Any]], event: str) -> None:
    async for raw in ws:
        message = json.loads(raw)
        received.append(message)
        if message["event"] == event:
            return
    raise AssertionError(f"the stream closed before {event!r}")


async def test_loopcall_sends_what_twilio_sends(stub_agent) -> None:
    started, stopped = asyncio.Event(), asyncio.Event()

    async def agent(ws: ServerConnection, received: list[dict[str, Any]]) -> None:
        await record_until(ws, received, "start")
        started.set()
        await record_until(ws, received, "stop")
        stopped.set()

    target, received = await stub_agent(agent)
    call = open_call(
        parse_target(target),
        CallSetup(dial=DialOptions(request_data={"loopcall_run_id": "run-1", "n": 3})),
    )
    assert isinstance(call, TwilioStreamCall)
    await call.connect(10)
    await asyncio.wait_for(started.wait(), 10)
    await call.send_audio((np.ones(3200, dtype=np.int16) * 8000).tobytes())
    await call.wait_sent()
    await call.send_dtmf("5")
    with pytest.raises(ValueError):
        await call.send_dtmf("x")
    await call.send_audio(bytes(640 * 5))  # five quiet frames after the key press
    await call.wait_sent()
    await call.hangup()
    await asyncio.wait_for(stopped.wait(), 10)

    connected, start = received[0], received[1]
    assert connected == {"event": "connected", "protocol": "Call", "version": "1.0.0"}
    body = start["start"]
    assert start["event"] == "start" and start["streamSid"] == body["streamSid"]
    assert body["accountSid"].startswith("AC") and len(body["accountSid"]) == 34
    assert body["callSid"] == call.call_sid and body["streamSid"].startswith("MZ")
    assert body["tracks"] == ["inbound"]
    assert body["mediaFormat"] == {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}
    assert body["customParameters"] == {"loopcall_run_id": "run-1", "n": "3"}
    medias = [m for m in received if m["event"] == "media"]
    assert len(medias) >= 15
    # A continuous 20 ms clock: chunk and timestamp advance together, 160 bytes each.
    for a, b in zip(medias, medias[1:], strict=False):
        assert int(b["media"]["chunk"]) == int(a["media"]["chunk"]) + 1
        assert int(b["media"]["timestamp"]) == int(a["media"]["timestamp"]) + 20
    payloads = [base64.b64decode(m["media"]["payload"]) for m in medias]
    assert {len(p) for p in payloads} == {160}
    levels = [int(np.abs(np.frombuffer(ulaw_decode(p), np.int16)).max()) for p in payloads]
    assert max(levels) > 4000 and levels[-1] == 0  # the persona's audio, then silence
    sequence = [int(m["sequenceNumber"]) for m in received[1:]]
    assert sequence == sorted(sequence) and len(set(sequence)) == len(sequence)
    dtmf = [m for m in received if m["event"] == "dtmf"]
    assert [d["dtmf"] for d in dtmf] == [{"track": "inbound_track", "digit": "5"}]
    stop = received[-1]
    assert stop["event"] == "stop"
    assert stop["stop"] == {"accountSid": body["accountSid"], "callSid": call.call_sid}


async def test_marks_echo_after_playout_and_clear_flushes(stub_agent) -> None:
    echoed: list[tuple[str, int]] = []
    both = asyncio.Event()

    async def agent(ws: ServerConnection, received: list[dict[str, Any]]) -> None:
        await record_until(ws, received, "start")
        sid = received[-1]["streamSid"]
        # A burst: one second of speech sent at once, then a mark.
        await ws.send(media(sid, tone_ulaw(1000)))
        await ws.send(json.dumps({"event": "mark", "streamSid": sid, "mark": {"name": "one"}}))
        async for raw in ws:
            message = json.loads(raw)
            if message["event"] == "mark":
                echoed.append((message["mark"]["name"], heard()))
                if message["mark"]["name"] == "one":
                    # Three more seconds, a mark, and at once a clear (barge-in).
                    await ws.send(media(sid, tone_ulaw(3000)))
                    mark = {"event": "mark", "streamSid": sid, "mark": {"name": "two"}}
                    await ws.send(json.dumps(mark))
                    await ws.send(json.dumps({"event": "clear", "streamSid": sid}))
                else:
                    both.set()
                    return

    voiced: list[int] = []

    def heard() -> int:
        return sum(voiced)

    class Tap:
        def on_sent(self, t: float, pcm: bytes) -> None:
            pass

        def on_received(self, t: float, pcm: bytes) -> None:
            samples = np.frombuffer(pcm, np.int16)
            voiced.append(int((np.abs(samples) > 3000).sum()))

    target, _ = await stub_agent(agent)
    call = open_call(parse_target(target))
    call.add_tap(Tap())
    await call.connect(10)
    await asyncio.wait_for(both.wait(), 20)
    await call.hangup()

    assert [name for name, _ in echoed] == ["one", "two"]
    # "one" came back once its second of audio had played, not when it arrived.
    assert echoed[0][1] >= 16000 * 0.9 * 0.6  # most samples of a 440 Hz tone are loud
    # "two" came back at the clear, with most of the three seconds never played.
    assert echoed[1][1] - echoed[0][1] < 16000 * 1.0
    assert isinstance(call, TwilioStreamCall) and call.leg.clears == 1


def closing_case() -> Case:
    return Case(
        name="Hang-up mid-word",
        persona=Persona(name="Caller", voice="flite:slt"),
        script=["Hello?"],  # type: ignore[list-item]
        max_duration_s=30,
        wait_for_greeting_s=10,
    )


@pytest.mark.parametrize("abort", [False, True])
async def test_agent_closing_mid_word_is_a_stored_run_with_the_reason(
    stub_agent, tmp_path: Path, abort: bool
) -> None:
    async def agent(ws: ServerConnection, received: list[dict[str, Any]]) -> None:
        await record_until(ws, received, "start")
        sid = received[-1]["streamSid"]
        await ws.send(media(sid, tone_ulaw(300)))  # the first 300 ms of a word ...
        if abort:
            ws.transport.abort()  # ... and the connection is gone: no close frame
        else:
            await ws.close(1000, "bye")

    target, _ = await stub_agent(agent)
    run = await run_case(
        closing_case(), target, RunStore(tmp_path), options=RunOptions(calibrate=False)
    )
    kinds = {e.kind: e.detail for e in run.events}
    if abort:
        assert run.status == "failed"
        assert "without a websocket close" in (run.error or ""), run.error
    else:
        assert run.status == "completed" and run.termination_reason == "agent_ended"
        assert "websocket close 1000 (bye)" in kinds["agent_hung_up"]
    assert RunStore(tmp_path).load(run.id).status == run.status


async def test_agent_rest_hang_up_reaches_the_call(stub_agent) -> None:
    app = FastAPI()
    app.include_router(TwilioGateway().router())
    async with serve_embedded(app, "127.0.0.1", 0) as port:
        base = f"http://127.0.0.1:{port}"

        async def agent(ws: ServerConnection, received: list[dict[str, Any]]) -> None:
            await record_until(ws, received, "start")
            body = received[-1]["start"]
            url = f"{base}/2010-04-01/Accounts/{body['accountSid']}/Calls/{body['callSid']}.json"
            async with aiohttp.ClientSession() as http:
                async with http.post(url, data={"Status": "completed"}) as response:
                    assert response.status == 200
                unknown = url.replace(body["callSid"], "CA" + "0" * 32)
                async with http.post(unknown, data={"Status": "completed"}) as response:
                    assert response.status == 404
            await record_until(ws, received, "stop")

        target, received = await stub_agent(agent)
        call = open_call(parse_target(target))
        await call.connect(10)
        await asyncio.wait_for(call.ended.wait(), 10)
        assert call.end_cause == "remote_hangup"
        assert "REST" in call.end_detail
        await call.hangup()


async def test_a_script_line_presses_keys_on_the_media_stream(stub_agent, tmp_path: Path) -> None:
    pressed = asyncio.Event()

    async def agent(ws: ServerConnection, received: list[dict[str, Any]]) -> None:
        async for raw in ws:
            received.append(json.loads(raw))
            if len([m for m in received if m["event"] == "dtmf"]) == 3:
                pressed.set()
                await ws.close(1000, "menu done")
                return

    target, received = await stub_agent(agent)
    case = Case(
        name="IVR menu",
        persona=Persona(name="Caller", voice="flite:slt"),
        script=[{"dtmf": "1#9"}],  # type: ignore[list-item]
        wait_for_greeting_s=0.5,  # nobody greets: the persona acts first
        max_duration_s=30,
    )
    run = await run_case(case, target, RunStore(tmp_path), options=RunOptions(calibrate=False))
    assert pressed.is_set()
    digits = [m["dtmf"]["digit"] for m in received if m["event"] == "dtmf"]
    assert digits == ["1", "#", "9"]
    assert [e.detail for e in run.events if e.kind == "persona_pressed"] == ["1", "#", "9"]
    assert run.status == "completed" and run.termination_reason == "agent_ended"


async def test_a_script_line_pressing_keys_on_webrtc_fails_the_run_with_the_reason(
    shared_agent, tmp_path: Path
) -> None:
    agent = shared_agent
    case = Case(
        name="IVR menu",
        persona=Persona(name="Caller", voice="flite:slt"),
        script=[{"dtmf": "1"}],  # type: ignore[list-item]
        max_duration_s=30,
    )
    run = await run_case(
        case, agent.target, RunStore(tmp_path), options=RunOptions(calibrate=False)
    )
    assert run.status == "failed"
    assert run.error == "channel 'webrtc' carries no DTMF"


def _playout() -> tuple[Playout, list[tuple[float, int, bool]]]:
    played: list[tuple[float, int, bool]] = []  # (start time, samples, voiced)
    playout = Playout(16_000, lambda pcm, t: played.append((round(t, 4), len(pcm) // 2, any(pcm))))
    playout.begin(0.0)
    return playout, played


FRAME = b"\x01\x00" * 320  # 20 ms of (very quiet) sound


def voice(played: list[tuple[float, int, bool]]) -> list[tuple[float, int]]:
    return [(t, n) for t, n, voiced in played if voiced]


def test_playout_plays_on_time_frames_as_they_arrive() -> None:
    playout, played = _playout()
    for k, jitter in enumerate([0.0, 0.003, -0.004, 0.001]):
        playout.push(FRAME, 1.0 + 0.02 * k + jitter)
    assert [t for t, _ in voice(played)] == [1.0, 1.023, 1.036, 1.061]
    assert played[0] == (0.0, 16_000, False)  # the second of silence before the first word


def test_playout_paces_a_burst_at_real_time() -> None:
    playout, played = _playout()
    playout.push(FRAME * 5, 1.0)  # 100 ms sent at once
    assert voice(played) == [(1.0, 320)]
    for now in (1.01, 1.02, 1.05, 1.2):
        playout.step(now)
    assert [t for t, _ in voice(played)] == [1.0, 1.02, 1.04, 1.06, 1.08]


def test_playout_cuts_what_silence_stood_in_for_after_a_hiccup() -> None:
    playout, played = _playout()
    playout.push(FRAME, 1.0)
    playout.step(1.04)  # nothing came for a frame: the line plays 20 ms of silence
    playout.push(FRAME * 3, 1.045)  # 25 ms late, then caught up in one message
    playout.step(1.2)
    assert playout.dropped_s == pytest.approx(0.025)
    # 20 ms, then 25 ms of silence, 20 ms at arrival, the next 20 ms cut and 15 ms
    # after: the sound ends at 1.08, where it would have ended without the hiccup.
    assert voice(played) == [(1.0, 320), (1.045, 320), (1.065, 240)]


def test_playout_lets_jitter_through_without_adding_silence() -> None:
    """A frame a few ms late plays at its arrival with nothing put in front of it."""
    playout, played = _playout()
    for k, late in enumerate([0.0, 0.0, 0.005, 0.001, 0.0]):
        playout.push(FRAME, 1.0 + 0.02 * k + late)
    playout.step(1.2)
    assert playout.dropped_s == 0
    assert [t for t, _ in voice(played)] == [1.0, 1.02, 1.045, 1.061, 1.08]
    # Between the first word and the end, only the sender's own samples: the stream's
    # sample count is the sender's, which the recorder's placement relies on.
    assert sum(n for t, n, _ in played if 1.0 <= t < 1.1) == 5 * 320


def test_a_late_frame_mid_reply_does_not_move_the_reply_onset() -> None:
    """The twilio-ws oracle's 5-7 ms: silence put in for late frames moved the onset early.

    A reply's onset arrives on time; frames after it come a few ms late (the agent's
    sender on a busy loop).  The recording must lay the onset where it arrived.
    """
    recorder = Recorder(16_000)
    playout = Playout(16_000, lambda pcm, t: recorder.on_received(t, pcm))
    playout.begin(0.0)
    onset = 1.0
    lateness = [0.0, 0.0, 0.004, 0.0, 0.003, 0.0, 0.006, 0.0] + [0.0] * 60
    loud = np.full(320, 8000, dtype=np.int16).tobytes()
    for k, late in enumerate(lateness):
        now = onset + 0.02 * k + late
        playout.step(now)
        playout.push(loud, now)
    playout.step(onset + 0.02 * len(lateness) + 0.5)
    agent = recorder.recording(0.0).agent
    first = int(np.flatnonzero(agent)[0])
    assert first == round(onset * 16_000), (first / 16.0, "ms")


def test_playout_keeps_every_sample_after_a_pause() -> None:
    playout, played = _playout()
    playout.push(FRAME, 1.0)
    playout.push(FRAME * 3, 1.5)  # a new utterance half a second later, as a burst
    playout.step(1.6)
    assert playout.dropped_s == 0
    assert voice(played) == [(1.0, 320), (1.5, 320), (1.52, 320), (1.54, 320)]
