"""loopcall's SIP phone against real SIP peers on 127.0.0.1: SIPp and baresip.

SIPp (Debian's sip-tester) plays the agent under test: an RTP echo (twenty
calls at once, none may lose a packet), a dumb agent playing a recording, the
bad answers a carrier gives (486, 404, 503, no answer, a dropped call, a
malformed response, digest challenges), and a caller that rings loopcall and
presses keys.  baresip is an ordinary softphone that auto-answers and talks from
a file.  Every failure must end as a stored ``failed`` Run whose ``error`` says
what the peer did.
"""

from __future__ import annotations

import asyncio
import wave
from pathlib import Path

import numpy as np
import pytest
from dental import normalise
from sip_peer_procs import (
    DTMF_DIGITS,
    start_baresip,
    start_sipp_uac,
    start_sipp_uas,
    tts_wav,
)

from audio.edges import detect_speech
from audio.g711 import ulaw_decode, ulaw_encode
from audio.resample import Upsampler
from harness.models import Case, Run
from harness.orchestrator import RunOptions, run_case
from harness.recording import Recorder, Recording
from harness.store import RunStore
from telephony import Call, CallSetup, ConnectError, open_call, parse_target
from telephony.credentials import SipCredentials

pytestmark = pytest.mark.e2e

FRAME = bytes(640)
QUICK = RunOptions(calibrate=False, connect_timeout_s=5, media_timeout_s=5)


def _case(**extra: object) -> Case:
    return Case.model_validate(
        {
            "name": "sip peer",
            "persona": {"name": "Alex"},
            "script": ["Hi, this is Alex Morgan."],
            "wait_for_greeting_s": 8,
            "max_duration_s": 40,
            **extra,
        }
    )


async def _run(target: str, tmp_path: Path, options: RunOptions = QUICK, **case: object) -> Run:
    store = RunStore(tmp_path / "runs")
    run = await run_case(_case(**case), target, store, options=options)
    stored = store.load(run.id)
    assert (stored.status, stored.error) == (run.status, run.error)  # nothing lost
    return run


async def _tone_call(call: Call, seconds: float) -> None:
    """Send a 1 kHz tone burst every 300 ms for ``seconds``, on the call's real-time pacing."""
    t = np.arange(1280) / 16_000
    burst = (np.sin(2 * np.pi * 1000 * t) * 8000).astype(np.int16).tobytes()
    for _ in range(int(seconds / 0.3)):
        await call.send_audio(burst + bytes(2 * 3520))
    await call.wait_sent()


# --------------------------------------------------------------------- echo, load


async def test_twenty_concurrent_calls_to_sipp_echo_lose_no_rtp() -> None:
    async with await start_sipp_uas("uas_echo.xml", rtp_echo=True, calls=20) as sipp:
        calls = [open_call(parse_target(sipp.uri)) for _ in range(20)]
        recorders = []
        for call in calls:
            recorder = Recorder(call.sample_rate)
            call.add_tap(recorder)
            recorders.append(recorder)
        await asyncio.gather(*(call.connect(10) for call in calls))
        await asyncio.gather(*(_tone_call(call, 3.0) for call in calls))
        stats = [call.rtp.stats for call in calls]  # type: ignore[attr-defined]
        for call in calls:
            await call.hangup()
        assert await sipp.wait(30) == 0, sipp.describe()
    for s in stats:
        assert s.sent >= 150, s
        assert (s.lost, s.late, s.duplicates, s.malformed) == (0, 0, 0, 0), s
        assert s.sent - s.received <= 2, s  # at most the packets in flight at hang-up
    # The echo comes back with the transport's round trip: a few ms on loopback.
    rtts = []
    for call, recorder in zip(calls, recorders, strict=True):
        assert call.connected_at is not None
        recording = recorder.recording(call.connected_at)
        sent = detect_speech(recording.persona, 16_000, hangover_ms=40, min_speech_ms=20)
        back = detect_speech(recording.agent, 16_000, hangover_ms=40, min_speech_ms=20)
        assert len(sent) == len(back) >= 9
        rtts += [(b.start - s.start) / 16 for s, b in zip(sent, back, strict=True)]
    print(
        f"SIPp echo round trip over 20 calls: median {np.median(rtts):.1f} ms, max {max(rtts):.1f}"
    )
    # Measured (5 runs of this test alone, after the playout stopped putting silence
    # in front of jitter-late packets; `pytest -s` prints it): at least 180 echoes a
    # run, median 0.1 ms, worst 0.7 ms.  (The bound was the median under 10 ms, for
    # "a few echoes up to ~10 ms early" under this load; that was not measured
    # again before the fix.)  5 ms on every echo is 7x the worst measured.
    assert abs(float(np.median(rtts))) < 2, rtts
    assert max(abs(r) for r in rtts) < 5, rtts


# -------------------------------------------------------------------- dumb agent

SIPP_LINE = "Thank you for calling Bright Smile Dental. How can I help?"


async def test_sipp_playing_a_recording_is_heard_and_gets_the_run_id(tmp_path: Path) -> None:
    wav = tts_wav(SIPP_LINE, tmp_path / "a.wav")
    async with await start_sipp_uas("uas_play.xml", play=wav) as sipp:
        run = await _run(sipp.uri, tmp_path, max_turns=1)
        assert await sipp.wait(30) == 0, sipp.describe()
        invite = sipp.messages()
    assert run.status == "completed", run.error
    assert run.recording is not None
    heard_audio = Recording.read_wav(Path(run.recording)).agent
    fidelity = _fidelity(heard_audio, _on_the_line(wav))
    print(f"SIPp's recording as heard: {fidelity:.0%} of its voiced windows intact")
    # Arrived as played: the recording's agent side holds the line SIPp played, as
    # G.711 carries it, window by window (see ``_fidelity``).  Measured over 6 runs:
    # 60, 91, 94, 94, 100, 100 % of the voiced windows sample-exact, with no RTP lost
    # or dropped; the rest carry loopcall's zero-buffer playout's concealment of
    # SIPp's sender jitter (silence for a late packet), which is how a phone without a
    # jitter buffer would play it.  Half is below every run seen; audio that did not
    # arrive, or arrived garbled, has none.
    assert fidelity >= 0.5, fidelity
    # And understood, where Whisper (tiny) on flite's voice at 8 kHz through G.711 is
    # reliable.  Seen: "bright my old mental", "right to my old candle" for the name,
    # and once "can you for calling" (with 94 % of the windows intact); "for calling"
    # and "how can i help" were heard in every run.
    heard = normalise(" ".join(t.text for t in run.turns if t.role == "agent"))
    assert "for calling" in heard and "how can i help" in heard, heard
    assert f"X-Loopcall-Run-Id: {run.id}" in invite


def _on_the_line(wav: Path) -> np.ndarray:
    """The 8 kHz WAV SIPp plays, as loopcall hears it: mu-law coded, decoded to 16 kHz."""
    with wave.open(str(wav), "rb") as fh:
        pcm = fh.readframes(fh.getnframes())
    line = Upsampler().process(ulaw_decode(ulaw_encode(pcm)))
    return np.frombuffer(line, dtype=np.int16)


def _fidelity(heard: np.ndarray, sent: np.ndarray, window_ms: int = 100) -> float:
    """The share of ``sent``'s voiced 100 ms windows found in ``heard`` nearly as they are.

    Each window is looked for near where the whole line lies in ``heard`` (a playout
    may shift the audio by a few ms mid-stream), by normalised cross-correlation; one
    is found when its best correlation is at least 0.9.
    """
    h, x = heard.astype(np.float64), sent.astype(np.float64)
    start = int(np.argmax(_xcorr(h, x))) if h.size >= x.size else 0
    n, slack = window_ms * 16, 40 * 16
    voiced = found = 0
    for at in range(0, x.size - n + 1, n):
        piece = x[at : at + n]
        if np.abs(piece).max() < 1000:
            continue
        voiced += 1
        lo = max(0, start + at - slack)
        region = h[lo : start + at + n + slack]
        if region.size >= n and _xcorr(region, piece).max() >= 0.9:
            found += 1
    return found / voiced if voiced else 0.0


def _xcorr(h: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Normalised cross-correlation of ``x`` at every offset within ``h`` (1.0: identical)."""
    size = 1 << (h.size + x.size - 1).bit_length()
    xc = np.fft.irfft(np.fft.rfft(h, size) * np.conj(np.fft.rfft(x, size)), size)
    xc = xc[: h.size - x.size + 1]
    energy = np.concatenate(([0.0], np.cumsum(h * h)))
    window = energy[x.size :] - energy[: -x.size]
    return np.asarray(xc / (np.sqrt(np.maximum(window, 0.0) * float(x @ x)) + 1e-9))


# --------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("scenario", "status"),
    [
        ("uas_busy.xml", "486 Busy Here"),
        ("uas_not_found.xml", "404 Not Found"),
        ("uas_unavailable.xml", "503 Service Unavailable"),
    ],
)
async def test_rejections_fail_the_run_with_the_sip_status(
    scenario: str, status: str, tmp_path: Path
) -> None:
    async with await start_sipp_uas(scenario) as sipp:
        run = await _run(sipp.uri, tmp_path)
        assert await sipp.wait(30) == 0, sipp.describe()  # it got our ACK
    assert run.status == "failed"
    assert run.error == f"the agent's SIP peer answered {status}"


async def test_no_answer_is_cancelled_after_the_ring_timeout(tmp_path: Path) -> None:
    async with await start_sipp_uas("uas_no_answer.xml") as sipp:
        options = RunOptions(calibrate=False, connect_timeout_s=2)
        run = await _run(sipp.uri, tmp_path, options)
        assert await sipp.wait(30) == 0, sipp.describe()  # CANCEL, 487, ACK as expected
    assert run.status == "failed"
    assert run.error == (
        "no answer within 2 s: CANCEL sent, the peer answered 487 Request Terminated"
    )
    assert [e.detail for e in run.events if e.kind == "sip_provisional"][-1] == "180 Ringing"


async def test_a_call_dropped_without_bye_fails_on_the_rtp_timeout(tmp_path: Path) -> None:
    async with await start_sipp_uas("uas_silent.xml") as sipp:
        options = RunOptions(calibrate=False, media_timeout_s=2)
        run = await _run(sipp.uri, tmp_path, options)
        assert await sipp.wait(30) == 0, sipp.describe()  # and it got our BYE
    assert run.status == "failed"
    assert run.error == "the call dropped: no RTP from the agent for 2 s, and no BYE"


async def test_a_malformed_answer_fails_the_run_and_the_call_is_cancelled(tmp_path: Path) -> None:
    async with await start_sipp_uas("uas_malformed.xml") as sipp:
        run = await _run(sipp.uri, tmp_path)
        assert await sipp.wait(30) == 0, sipp.describe()  # it got our CANCEL
    assert run.status == "failed"
    assert run.error == (
        f"malformed SIP message from 127.0.0.1:{sipp.port}/udp: bad status line 'sip/2.0 2x0 OK'"
    )


async def test_digest_authentication_against_sipp(tmp_path: Path) -> None:
    keys = {"username": "alice", "password": "wonderland"}
    async with await start_sipp_uas("uas_auth.xml", keys=keys, rtp_echo=True) as sipp:
        call = open_call(parse_target(sipp.uri), CallSetup(sip=SipCredentials.of(keys)))
        events: list[str] = []
        call.on_event = lambda kind, detail: events.append(f"{kind}: {detail}")
        await call.connect(5)
        await _tone_call(call, 0.6)
        await call.hangup()
        assert await sipp.wait(30) == 0, sipp.describe()
    assert any(e.startswith("sip_auth: 401 Unauthorized") for e in events), events

    async with await start_sipp_uas("uas_auth.xml", keys=keys) as sipp:
        wrong = open_call(
            parse_target(sipp.uri), CallSetup(sip=SipCredentials.of({**keys, "password": "x"}))
        )
        with pytest.raises(ConnectError, match="403 Forbidden after digest authentication"):
            await wrong.connect(5)
        await sipp.wait(30)

    async with await start_sipp_uas("uas_proxy_auth.xml", rtp_echo=True) as sipp:
        proxy = open_call(parse_target(sipp.uri), CallSetup(sip=SipCredentials.of(keys)))
        await proxy.connect(5)
        await proxy.hangup()
        assert await sipp.wait(30) == 0, sipp.describe()
        assert 'Proxy-Authorization: Digest username="alice"' in sipp.messages()


# ----------------------------------------------------------------------- inbound


async def test_sipp_calls_loopcall_and_presses_keys(tmp_path: Path) -> None:
    """An inbound case: SIPp (the agent) calls the persona, sends RFC 2833 digits, talks."""
    from sip_peer_procs import free_port

    port = free_port()
    listening = asyncio.Event()

    def progress(_run: Run, message: str) -> None:
        if message.startswith("sip_listening"):
            listening.set()

    store = RunStore(tmp_path / "runs")
    case = _case(direction="inbound", answer_timeout_s=20, max_turns=2, script=["Hello?"])
    running = asyncio.ensure_future(
        run_case(case, f"sip:persona@127.0.0.1:{port}", store, options=QUICK, progress=progress)
    )
    await asyncio.wait_for(listening.wait(), 20)
    async with await start_sipp_uac(
        target_port=port, service="persona", run_id="from-sipp"
    ) as sipp:
        run = await asyncio.wait_for(running, 60)
        assert await sipp.wait(30) == 0, sipp.describe()
    assert run.status == "completed", run.error
    assert run.termination_reason == "agent_ended"  # SIPp's BYE
    pressed = [e.detail for e in run.events if e.kind == "dtmf_received"]
    assert pressed == list(DTMF_DIGITS), pressed
    assert ("sip_header", "X-Loopcall-Run-Id: from-sipp") in [
        (e.kind, e.detail) for e in run.events
    ]
    assert any(t.role == "agent" and t.text for t in run.turns)  # the A-law speech was heard


# ----------------------------------------------------------------------- baresip


async def test_baresip_softphone_answers_and_talks(tmp_path: Path) -> None:
    wav = tts_wav(
        "Hello, you have reached the test line of Bright Smile Dental.", tmp_path / "b.wav"
    )
    async with await start_baresip(wav, trailing_silence=5.0) as phone:
        run = await _run(phone.uri, tmp_path, max_turns=2)
        heard = np.frombuffer(phone.heard(), dtype=np.int16)
    assert run.status == "completed", run.error
    assert run.termination_reason == "agent_ended"  # baresip's BYE at the end of its file
    agent = " ".join(t.text.lower() for t in run.turns if t.role == "agent")
    assert "test line" in agent and "dental" in agent, agent
    assert heard.size and int(np.abs(heard.astype(np.int32)).max()) > 1000  # baresip heard Alex


async def test_keys_go_by_sip_info_when_the_peer_offers_no_telephone_event() -> None:
    # SIPp's built-in uas answers with PCMU only: no RFC 4733 payload type.
    async with await start_sipp_uas(None, rtp_echo=True) as sipp:
        call = open_call(parse_target(sipp.uri))
        await call.connect(5)
        assert call.rtp.dtmf_pt is None  # type: ignore[attr-defined]
        await call.send_dtmf("7")
        await call.hangup()
        assert await sipp.wait(30) == 0, sipp.describe()
        messages = sipp.messages()
    assert "INFO sip:" in messages
    assert "Content-Type: application/dtmf-relay" in messages
    assert "Signal=7" in messages
