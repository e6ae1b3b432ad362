"""SIP calls on 127.0.0.1 between loopcall's own phones: inbound, DTMF, re-INVITE, CANCEL, drops.

The far ends here are loopcall's SIP stack driven by hand (a second ``SipCall``,
or a bare ``SipPhone`` that answers as the test says), so each protocol path is
exercised exactly; ``test_sip_peers.py`` does the same against SIPp and baresip.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from harness.models import Case
from harness.orchestrator import RunOptions, run_case
from harness.store import RunStore
from telephony import Call, CallSetup, ConnectError, DialOptions, open_call, parse_target
from telephony.sip.dialing import answer
from telephony.sip.message import SipMessage
from telephony.sip.phone import SipPhone
from telephony.sip.rtp import RtpSession
from telephony.sip.session import SipSession
from telephony.sip.transport import Peer

FRAME = bytes(640)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class StubAgent:
    """A bare SIP phone that answers (or not) as a test tells it to."""

    def __init__(self, behaviour: str = "answer") -> None:
        self.behaviour = behaviour
        self.phone = SipPhone("127.0.0.1", 0, user="stub", on_invite=self._on_invite)
        self.invites: list[SipMessage] = []
        self.session: SipSession | None = None
        self.answered = asyncio.Event()
        self.received: list[bytes] = []
        self.rtp: RtpSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def uri(self) -> str:
        return f"sip:stub@127.0.0.1:{self.phone.port}"

    def _on_invite(self, invite: SipMessage, peer: Peer) -> None:
        self.invites.append(invite)
        if self.behaviour == "ring":
            self.phone._spawn(self.phone.respond(invite, peer, 180, "Ringing", to_tag="r1"))
            return
        task = asyncio.ensure_future(self._answer(invite, peer))
        self._tasks.add(task)

    async def _answer(self, invite: SipMessage, peer: Peer) -> None:
        self.rtp = RtpSession(
            local_host="127.0.0.1", on_audio=lambda pcm, _t: self.received.append(pcm)
        )
        await self.rtp.open()
        self.session = await answer(self.phone, self.rtp, invite, peer, on_event=lambda *_: None)
        self.answered.set()

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self.rtp is not None:
            self.rtp.close()
        await self.phone.close()


@pytest.fixture
async def stub() -> AsyncIterator[Callable[[str], asyncio.Future[StubAgent]]]:
    made: list[StubAgent] = []

    async def make(behaviour: str = "answer") -> StubAgent:
        agent = StubAgent(behaviour)
        await agent.phone.open()
        made.append(agent)
        return agent

    yield make  # type: ignore[misc]
    for agent in made:
        await agent.close()


def _recorder(call: Call) -> tuple[list[tuple[str, str]], asyncio.Event]:
    """The call's events, and an event set once it listens for an inbound INVITE."""
    events: list[tuple[str, str]] = []
    listening = asyncio.Event()

    def on_event(kind: str, detail: str) -> None:
        events.append((kind, detail))
        if kind == "sip_listening":
            listening.set()

    call.on_event = on_event
    return events, listening


async def _pump(call: Call, seconds: float) -> None:
    for _ in range(int(seconds / 0.02)):
        await call.send_audio(FRAME)


async def test_outbound_call_sends_run_id_and_user_headers_and_hangs_up(stub) -> None:
    agent = await stub()
    call = open_call(
        parse_target(agent.uri),
        CallSetup(
            dial=DialOptions(
                request_data={"loopcall_run_id": "run-42"}, headers={"X-Tenant": "acme"}
            )
        ),
    )
    events: list[tuple[str, str]] = []
    call.on_event = lambda kind, detail: events.append((kind, detail))
    await call.connect(5)
    invite = agent.invites[0]
    assert invite.get("X-Loopcall-Run-Id") == "run-42"
    assert invite.get("X-Tenant") == "acme"
    assert "101 telephone-event/8000" in invite.body.decode()
    await _pump(call, 0.4)
    await call.wait_sent()
    await call.hangup()
    assert agent.session is not None
    assert agent.session.ended  # our BYE reached it
    assert len(agent.received) >= 15  # 20 ms RTP packets
    assert [k for k, _ in events][:2] == ["sip_invite", "sip_provisional"]
    assert any(k == "sip_bye" and "200 OK" in d for k, d in events)


async def test_agent_bye_ends_the_call_as_remote_hangup(stub) -> None:
    agent = await stub()
    call = open_call(parse_target(agent.uri))
    await call.connect(5)
    await asyncio.wait_for(agent.answered.wait(), 5)
    assert agent.session is not None
    await agent.session.bye('SIP;cause=16;text="normal"')
    await asyncio.wait_for(call.ended.wait(), 5)
    assert call.end_cause == "remote_hangup"
    assert "the agent hung up (BYE" in call.end_detail
    await call.hangup()


async def test_reinvite_moves_the_media(stub) -> None:
    agent = await stub()
    call = open_call(parse_target(agent.uri))
    events: list[tuple[str, str]] = []
    call.on_event = lambda kind, detail: events.append((kind, detail))
    await call.connect(5)
    await asyncio.wait_for(agent.answered.wait(), 5)
    session = agent.session
    assert session is not None and agent.rtp is not None
    moved: list[bytes] = []
    got = asyncio.Event()

    def on_audio(pcm: bytes, _t: float) -> None:
        moved.append(pcm)
        got.set()

    second = RtpSession(local_host="127.0.0.1", on_audio=on_audio)
    await second.open()
    try:
        reinvite = session.request("INVITE")
        reinvite.add("Contact", agent.phone.contact(session.peer, "stub"))
        reinvite.add("Content-Type", "application/sdp")
        original, session.rtp = session.rtp, second
        reinvite.body = session.local_sdp()
        final = await agent.phone.start_request(reinvite, session.peer).final(5)
        assert final.status == 200
        assert b"m=audio" in final.body  # loopcall answered with its SDP
        ack = session.request("ACK")
        ack.set("CSeq", f"{session.local_cseq} ACK")
        agent.phone.send_ack(ack, session.peer)
        session.rtp = original
        await asyncio.wait_for(got.wait(), 5)
        assert moved, "no RTP reached the new media address"
        assert any(k == "sip_reinvite" and str(second.local_port) in d for k, d in events)
    finally:
        second.close()
        await call.hangup()


async def test_rtp_from_another_source_is_rejected_and_reported(stub) -> None:
    agent = await stub()
    call = open_call(parse_target(agent.uri))
    events: list[tuple[str, str]] = []
    call.on_event = lambda kind, detail: events.append((kind, detail))
    await call.connect(5)
    await asyncio.wait_for(agent.answered.wait(), 5)
    assert agent.rtp is not None and call.rtp is not None  # type: ignore[attr-defined]
    rtp = call.rtp  # type: ignore[attr-defined]
    agent.rtp.send_frame(bytes(320))  # the agent's media: loopcall latches onto it
    rtp.poll()  # loopback delivers at once
    latched = rtp.source
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stranger:
        stranger.bind(("127.0.0.1", 0))
        packet = bytes([0x80, 0]) + (1).to_bytes(2, "big") + bytes(4) + (0xBEEF).to_bytes(4, "big")
        stranger.sendto(packet + bytes(160), ("127.0.0.1", rtp.local_port))
        rtp.poll()
        source = stranger.getsockname()
    assert rtp.source == rtp.remote == latched == ("127.0.0.1", agent.rtp.local_port)
    await call.hangup()
    rejected = [d for k, d in events if k == "sip_rtp_rejected"]
    assert rejected == [
        f"ignored RTP from 127.0.0.1:{source[1]} (SSRC 0x0000beef): "
        f"the call's media is latched to 127.0.0.1:{latched[1]}"
    ]
    summary = next(d for k, d in events if k == "sip_media")
    assert "from other sources (rejected) 1;" in summary


async def test_ringing_without_answer_is_cancelled(stub) -> None:
    agent = await stub("ring")
    call = open_call(parse_target(agent.uri))
    with pytest.raises(ConnectError, match=r"no answer within 1 s: CANCEL sent, .*487"):
        await call.connect(1)
    assert call.state == "ended"


async def test_nothing_listening_fails_fast() -> None:
    call = open_call(parse_target(f"sip:nobody@127.0.0.1:{free_port()}"))
    with pytest.raises(ConnectError, match="nothing answers SIP at 127.0.0.1"):
        await asyncio.wait_for(call.connect(10), 5)


async def test_inbound_answers_the_agents_call_and_hears_its_dtmf() -> None:
    port = free_port()
    target = parse_target(f"sip:persona@127.0.0.1:{port}")
    inbound = open_call(target, CallSetup(inbound=True, answer_timeout_s=5))
    events, listening = _recorder(inbound)
    waiting = asyncio.ensure_future(inbound.connect(5))
    # The "agent" calls loopcall: another SipCall, dialling the persona's number.
    await asyncio.wait_for(listening.wait(), 5)
    caller = open_call(
        target, CallSetup(dial=DialOptions(request_data={"loopcall_run_id": "agent-call"}))
    )
    await caller.connect(5)
    await waiting
    assert ("sip_header", "X-Loopcall-Run-Id: agent-call") in events
    await caller.send_dtmf("5")
    await caller.send_dtmf("#")
    await _pump(caller, 0.2)
    await caller.wait_sent()
    await caller.hangup()
    await asyncio.wait_for(inbound.ended.wait(), 5)
    assert [d for k, d in events if k == "dtmf_received"] == ["5", "#"]
    assert inbound.end_cause == "remote_hangup"
    await inbound.hangup()


async def test_inbound_for_another_user_gets_404_and_waiting_times_out() -> None:
    port = free_port()
    inbound = open_call(
        parse_target(f"sip:persona@127.0.0.1:{port}"), CallSetup(inbound=True, answer_timeout_s=1)
    )
    _events, listening = _recorder(inbound)
    waiting = asyncio.ensure_future(inbound.connect(1))
    await asyncio.wait_for(listening.wait(), 5)
    wrong = open_call(parse_target(f"sip:someone-else@127.0.0.1:{port}"))
    with pytest.raises(ConnectError, match="404 Not Found"):
        await wrong.connect(5)
    with pytest.raises(ConnectError, match=r"no SIP call arrived for sip:persona@127\.0\.0\.1"):
        await waiting


async def test_silent_agent_fails_the_run_with_the_rtp_timeout(stub, tmp_path: Path) -> None:
    agent = await stub()
    # Answer, then never send RTP and never BYE: a dropped call.
    case = Case.model_validate(
        {
            "name": "silent",
            "persona": {"name": "Alex"},
            "script": ["Hello?"],
            "wait_for_greeting_s": 0,
        }
    )
    store = RunStore(tmp_path / "runs")
    options = RunOptions(calibrate=False, media_timeout_s=1.5, transcribe=False)
    run = await run_case(case, agent.uri, store, options=options)
    assert run.status == "failed"
    assert "no RTP from the agent for 1.5 s" in (run.error or "")
    stored = store.load(run.id)
    assert stored.status == "failed" and stored.error == run.error
    assert agent.session is not None and agent.session.ended  # we sent BYE anyway


async def test_a_phone_bound_to_all_interfaces_advertises_the_route_to_the_peer() -> None:
    phone = SipPhone("0.0.0.0", 0)
    await phone.open()
    try:
        peer = Peer("tcp", "127.0.0.1", 5060)
        assert phone.contact(peer) == f"<sip:loopcall@127.0.0.1:{phone.port};transport=tcp>"
        assert phone.via(peer).startswith(f"SIP/2.0/TCP 127.0.0.1:{phone.port};branch=z9hG4bK")
    finally:
        await phone.close()


def test_a_long_lived_phone_forgets_old_transactions() -> None:
    from telephony.sip.phone import Recent

    kept: Recent[str, int] = Recent(ttl=10.0, check_every=2)
    kept["a"] = 1
    kept["b"] = 2  # the second insertion checks: nothing is old yet
    assert dict(kept) == {"a": 1, "b": 2}
    kept.prune(now=time.monotonic() + 11.0)
    assert dict(kept) == {}
    kept["c"] = 3
    kept.prune()
    assert dict(kept) == {"c": 3}
