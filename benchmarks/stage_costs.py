"""What each stage of a call costs in CPU: codec, resampling, RTP, VAD, STT, TTS.

(``benchmarks/capacity.py`` measures whole calls at rising concurrency.)

The first measurement for issue 6 (how many calls one machine drives): every
stage a call runs is timed in CPU seconds (``time.process_time``, all threads of
this process) over enough work to be stable, and reported as the share of one
core a single call spends on it in real time.  A call runs its codec, resampling,
RTP and VAD on every 20 ms frame both ways; STT and TTS run per second of
speech.  Nothing goes over the network except RTP on 127.0.0.1.

    .venv/bin/python benchmarks/stage_costs.py [--seconds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import socket
import time
from collections.abc import Callable

import numpy as np

from audio.g711 import ulaw_decode, ulaw_encode
from audio.resample import Downsampler, Upsampler
from telephony.sip.jitter import JitterBuffer, RtpStats, parse_rtp
from telephony.sip.rtp import RtpSession

FRAME_S = 0.02
RATE = 16_000


def _speechlike(seconds: float, rate: int = RATE) -> np.ndarray:
    """A voiced-sounding test signal: a 140 Hz buzz with formant-ish partials, syllable-gated."""
    t = np.arange(int(seconds * rate)) / rate
    buzz = sum(np.sin(2 * np.pi * f * t) / k for k, f in enumerate((140, 280, 700, 1200, 2500), 1))
    gate = (np.sin(2 * np.pi * 3 * t) > 0).astype(float)
    return (buzz * gate * 6000).astype(np.int16)


def _children_cpu() -> float:
    """CPU seconds of finished child processes (flite runs as one)."""
    t = os.times()
    return t.children_user + t.children_system


def _cpu(work: Callable[[], None], repeat: int) -> float:
    """CPU seconds per call of ``work``: this process's threads (``process_time``, ns
    resolution) plus its finished children; the median of three batches of ``repeat``."""
    batches = []
    for _ in range(3):
        start, children = time.process_time(), _children_cpu()
        for _ in range(repeat):
            work()
        spent = time.process_time() - start + _children_cpu() - children
        batches.append(spent / repeat)
    return float(np.median(batches))


def codec_rows(seconds: float) -> list[tuple[str, float, str]]:
    frames = [f.tobytes() for f in np.split(_speechlike(seconds), int(seconds / FRAME_S))]
    down, up = Downsampler(), Upsampler()
    narrow = [down.process(f) for f in frames]
    encoded = [ulaw_encode(n) for n in narrow]
    state = {"i": 0}

    def each(fn: Callable[[int], object]) -> Callable[[], None]:
        def run() -> None:
            fn(state["i"] % len(frames))
            state["i"] += 1

        return run

    rows = []
    for name, fn in (
        ("downsample 16 -> 8 kHz (31-tap half-band)", lambda i: down.process(frames[i])),
        ("mu-law encode", lambda i: ulaw_encode(narrow[i])),
        ("mu-law decode", lambda i: ulaw_decode(encoded[i])),
        ("upsample 8 -> 16 kHz", lambda i: up.process(ulaw_decode(encoded[i]))),
    ):
        per_frame = _cpu(each(fn), len(frames))
        rows.append((name, per_frame / FRAME_S, f"{per_frame * 1e6:.1f} us per 20 ms frame"))
    return rows


def rtp_rows(seconds: float) -> list[tuple[str, float, str]]:
    frames = int(seconds / FRAME_S)
    packets = [
        bytes([0x80, 0]) + (i % 65536).to_bytes(2, "big") + bytes(8) + bytes([0xFF]) * 160
        for i in range(frames)
    ]
    send, receive = asyncio.run(_rtp_socket_costs(frames, packets))
    # Parsing and reordering alone, without the socket.
    buffer: JitterBuffer[int] = JitterBuffer(3, RtpStats())
    state = {"i": 0}

    def parse_and_order() -> None:
        packet = parse_rtp(packets[state["i"] % frames])
        assert packet is not None
        buffer.push(packet.sequence, 0)
        state["i"] += 1

    parse = _cpu(parse_and_order, frames)
    return [
        ("RTP send (encode + header + sendto)", send / FRAME_S, f"{send * 1e6:.1f} us per packet"),
        (
            "RTP receive (recvmsg, kernel time, parse, reorder, decode)",
            receive / FRAME_S,
            f"{receive * 1e6:.1f} us per packet",
        ),
        ("  of which parse + reorder", parse / FRAME_S, f"{parse * 1e6:.1f} us per packet"),
    ]


async def _rtp_socket_costs(frames: int, packets: list[bytes]) -> tuple[float, float]:
    """CPU per packet of ``RtpSession`` sending, and of it receiving (raw sending excluded)."""
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # never read: sending only
    sink.bind(("127.0.0.1", 0))
    sender = RtpSession(local_host="127.0.0.1", on_audio=lambda *_: None)
    await sender.open()
    sender.set_remote("127.0.0.1", sink.getsockname()[1])
    start = time.process_time()
    for _ in range(frames):
        sender.send_frame(bytes(320))
    send = (time.process_time() - start) / frames
    sender.close()
    sink.close()

    got = asyncio.Event()
    count = {"n": 0}

    def on_audio(_pcm: bytes, _t: float) -> None:
        count["n"] += 1
        if count["n"] == frames:
            got.set()

    receiver = RtpSession(local_host="127.0.0.1", on_audio=on_audio)
    await receiver.open()
    raw = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    target = ("127.0.0.1", receiver.local_port)
    raw_cost = 0.0
    start = time.process_time()
    for i in range(0, frames, 20):
        mark = time.process_time()
        for packet in packets[i : i + 20]:
            raw.sendto(packet, target)
        raw_cost += time.process_time() - mark
        await asyncio.sleep(0)  # the session reads what arrived
    await asyncio.wait_for(got.wait(), 30)
    receive = (time.process_time() - start - raw_cost) / frames
    raw.close()
    receiver.close()
    return send, receive


def vad_rows(seconds: float) -> list[tuple[str, float, str]]:
    from pipecat.audio.vad.silero import SileroVADAnalyzer

    vad = SileroVADAnalyzer(sample_rate=RATE)
    vad.set_sample_rate(RATE)  # what the pipeline's StartFrame does
    window = vad.num_frames_required() * 2  # bytes per analysis window (512 samples)
    audio = _speechlike(seconds).tobytes()
    windows = [audio[i : i + window] for i in range(0, len(audio) - window, window)]
    state = {"i": 0}

    def run() -> None:
        vad.voice_confidence(windows[state["i"] % len(windows)])
        state["i"] += 1

    per_window = _cpu(run, len(windows))
    window_s = vad.num_frames_required() / RATE
    return [
        (
            "Silero VAD (pipecat, 32 ms windows)",
            per_window / window_s,
            f"{per_window * 1e3:.2f} ms per 32 ms window",
        )
    ]


def endpointer_rows(seconds: float) -> list[tuple[str, float, str]]:
    """The lean caller's turn-taking: the harness's energy endpointer on every frame."""
    from audio.endpointer import StreamingEndpointer

    rows = []
    for rate in (8000, RATE):
        speech = _speechlike(seconds, rate)
        step = rate * 20 // 1000
        frames = [speech[i : i + step] for i in range(0, speech.size - step, step)]
        endpointer = StreamingEndpointer(rate, hangover_ms=800)
        state = {"i": 0}

        def run(
            e: StreamingEndpointer = endpointer,
            f: list[np.ndarray] = frames,
            at: dict[str, int] = state,
        ) -> None:
            e.push(f[at["i"] % len(f)])
            at["i"] += 1

        per_frame = _cpu(run, len(frames))
        rows.append(
            (
                f"energy endpointer (lean caller's VAD), {rate // 1000} kHz",
                per_frame / FRAME_S,
                f"{per_frame * 1e6:.1f} us per 20 ms frame (half speech, half silence)",
            )
        )
    return rows


def stt_rows() -> list[tuple[str, float, str]]:
    from audio.speech import Transcriber, get_voice

    speech = get_voice("flite:slt").synthesize(
        "Hi, this is Alex Morgan. I would like to book a cleaning on Tuesday at ten, please."
    )
    length = speech.size / RATE
    rows = []
    for threads in (1, 2):
        transcriber = Transcriber(cpu_threads=threads)
        transcriber.transcribe(speech)  # warm-up
        wall = time.perf_counter()
        cpu = _cpu(lambda t=transcriber: t.transcribe(speech), 1)  # type: ignore[misc]
        wall = (time.perf_counter() - wall) / 3
        rows.append(
            (
                f"Whisper tiny.en, {threads} thread(s), {length:.1f} s utterance",
                cpu / length,
                f"{cpu:.2f} CPU s, {wall:.2f} s wall per utterance (RTF {wall / length:.2f})",
            )
        )
    return rows


def tts_rows() -> list[tuple[str, float, str]]:
    from audio.speech import Voice, default_agent_voice

    text = "Perfect, you are all set for Tuesday at ten. Is there anything else I can help with?"
    counter = {"n": 0}
    rows = []
    for voice_id in ("flite:slt", default_agent_voice()):
        engine, name = voice_id.split(":", 1)
        voice = Voice(engine, name)
        length = voice.synthesize(text).size / RATE

        def fresh(v: Voice = voice) -> None:
            counter["n"] += 1
            v.synthesize(f"{text} {counter['n']}")  # a new text: no cache hit

        per_line = _cpu(fresh, 2)
        rows.append(
            (
                f"TTS {voice_id}, {length:.1f} s line, uncached",
                per_line / length,
                f"{per_line * 1e3:.0f} CPU ms per line (cached: a dictionary lookup)",
            )
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="audio per frame-level stage")
    args = parser.parse_args()
    print(
        f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}"
    )
    rows = codec_rows(args.seconds) + rtp_rows(args.seconds) + vad_rows(args.seconds)
    rows += endpointer_rows(args.seconds)
    rows += stt_rows() + tts_rows()
    width = max(len(name) for name, _, _ in rows)
    print(f"\n{'stage':<{width}}  {'share of a core per call':>24}  detail")
    for name, share, detail in rows:
        print(f"{name:<{width}}  {share * 100:>23.3f}%  {detail}")
    print(
        "\nshare of a core: CPU seconds the stage spends per second of call audio "
        "(per second of speech for STT and TTS)."
    )


if __name__ == "__main__":
    main()
