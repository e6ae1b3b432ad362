"""WebRTC round trip against a stack that is not aiortc: Debian's Chromium as an echo.

loopcall's ``WebRTCCall`` calls two echo far ends with tone bursts, as the
calibration does (``harness/orchestrator/calibration.py``), and times each burst's round trip
from the recorded audio:

- **Chromium echo**: headless Chromium (Debian's ``/usr/bin/chromium``, driven by
  Python Playwright) behind a SmallWebRTC-style ``POST /api/offer``: a local page
  answers the offer and echoes the received track through WebAudio
  (``MediaStreamSource -> DelayNode(hold) -> MediaStreamDestination``, then
  ``sender.replaceTrack``; the remote track is also attached to a muted
  ``<audio>``, without which Chromium feeds WebAudio nothing);
- **loopcall echo**: the calibration's own echo endpoint (pipecat SmallWebRTC in,
  stream-clocked playout out).

Each burst is timed twice from the same call: with the frame stamps the harness
uses now (each frame at its RTP packet's arrival, ``telephony/wire_stamps.py``)
and with the time aiortc's ``recv()`` returned it (what the harness did before).
The round trip printed is onset back minus onset out minus the far end's hold.

Chromium gathers ICE candidates only on the machine's non-loopback addresses, so
everything runs in a network namespace of its own with only ``lo`` up (created and
removed here; needs root and ``ip``), where ``--allow-loopback-in-peer-connection``
makes Chromium offer 127.0.0.1 (without it, there, it offers nothing and the call
never connects); no packet can leave the namespace.  Nothing is fetched: the page
is served locally.

    flock /tmp/loopcall-heavy.lock .venv/bin/python benchmarks/chromium_webrtc.py [--calls 3]
        [--bursts 8] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from aiohttp import web

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from audio.edges import detect_speech  # noqa: E402
from harness.recording import Recorder  # noqa: E402
from refagent.echo import ECHO_HOLD_MS, EchoEndpoint  # noqa: E402
from telephony import parse_target  # noqa: E402
from telephony.webrtc import WebRTCCall  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--autoplay-policy=no-user-gesture-required",
    # In a namespace with only lo, Chromium 156 gathers no candidate at all (its
    # gathering never completes, and no peer-reflexive path forms); with this it
    # offers a 127.0.0.1 host candidate.
    "--allow-loopback-in-peer-connection",
]
RATE = 16_000
BURST_MS = 80
BURST_GAP_MS = 420
LEAD_IN_MS = 1000
WARM_UP_MS = 400  # one longer tone first: Chromium drops the start of the first sound
TAIL_MS = 800
INSIDE_ENV = "LOOPCALL_CHROMIUM_NETNS"

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>loopcall chromium echo</title></head>
<body>
<script>
// A WebRTC echo: what arrives goes back out through WebAudio, HOLD seconds later.
const ctx = new AudioContext();
window.echoes = [];

async function gathered(pc) {
  if (pc.iceGatheringState === "complete") return;
  await new Promise((resolve) => {
    const done = () => { if (pc.iceGatheringState === "complete") resolve(); };
    pc.addEventListener("icegatheringstatechange", done);
    setTimeout(resolve, 3000);  // only lo: there may be nothing to gather
  });
}

window.answerOffer = async (offer, holdS) => {
  if (ctx.state !== "running") await ctx.resume();
  const pc = new RTCPeerConnection({iceServers: []});
  window.echoes.push(pc);
  pc.addEventListener("datachannel", () => {});  // the caller's pings need no answer
  await pc.setRemoteDescription(offer);
  const transceiver = pc.getTransceivers().find((t) => t.receiver.track.kind === "audio");
  const track = transceiver.receiver.track;
  // Chromium feeds a remote track to WebAudio only while a media element plays it.
  const audio = document.createElement("audio");
  audio.muted = true;
  audio.srcObject = new MediaStream([track]);
  document.body.appendChild(audio);
  audio.play().catch(() => {});
  const source = ctx.createMediaStreamSource(new MediaStream([track]));
  const delay = ctx.createDelay(2.0);
  delay.delayTime.value = holdS;
  const sink = ctx.createMediaStreamDestination();
  source.connect(delay).connect(sink);
  transceiver.direction = "sendrecv";
  await transceiver.sender.replaceTrack(sink.stream.getAudioTracks()[0]);
  await pc.setLocalDescription(await pc.createAnswer());
  await gathered(pc);
  return {sdp: pc.localDescription.sdp, type: "answer", pc_id: "chromium-" + window.echoes.length};
};

window.closeAll = () => { for (const pc of window.echoes) pc.close(); window.echoes = []; };
</script>
</body></html>
"""


# ------------------------------------------------------------ network namespace


@contextlib.contextmanager
def lo_only_netns() -> Any:
    """A fresh network namespace with only ``lo`` up; removed afterwards."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        raise SystemExit("needs root and iproute2 (ip netns) to keep Chromium on loopback")
    name = f"loopcall-chromium-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False)


# --------------------------------------------------------------- Chromium far end


@contextlib.asynccontextmanager
async def chromium_echo(hold_ms: float) -> AsyncIterator[str]:
    """Headless Chromium answering SmallWebRTC offers with an echo; yields the target URL."""
    from playwright.async_api import async_playwright

    page_holder: dict[str, Any] = {}

    async def index(_request: web.Request) -> web.Response:
        return web.Response(text=PAGE, content_type="text/html")

    async def offer(request: web.Request) -> web.Response:
        body = await request.json()
        if body.get("type") != "offer" or not body.get("sdp"):
            return web.json_response({"error": "expected an SDP offer"}, status=400)
        page = page_holder["page"]
        answer = await page.evaluate(
            "([offer, hold]) => window.answerOffer(offer, hold)",
            [{"type": "offer", "sdp": body["sdp"]}, hold_ms / 1000.0],
        )
        return web.json_response(answer)

    app = web.Application()
    app.router.add_get("/", index)
    app.router.add_post("/api/offer", offer)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    profile = tempfile.mkdtemp(prefix="loopcall-chromium-")
    try:
        async with async_playwright() as playwright:
            context = await playwright.chromium.launch_persistent_context(
                profile, executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS
            )
            try:
                # Chromium enumerates network interfaces (so lo, with the flag above) only
                # for a page that may use the microphone; otherwise it offers nothing here.
                await context.grant_permissions(["microphone"])
                page = await context.new_page()
                await page.goto(f"http://127.0.0.1:{port}/")
                page_holder["page"] = page
                yield f"webrtc://127.0.0.1:{port}/api/offer"
                with contextlib.suppress(Exception):
                    await page.evaluate("window.closeAll()")
            finally:
                await context.close()
    finally:
        await runner.cleanup()
        shutil.rmtree(profile, ignore_errors=True)


def chromium_version() -> str:
    try:
        out = subprocess.run([CHROMIUM, "--version"], capture_output=True, text=True, timeout=20)
        return out.stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "?"


# ------------------------------------------------------------------ measurement


def _tone(ms: int) -> np.ndarray:
    n = RATE * ms // 1000
    t = np.arange(n) / RATE
    return (np.sin(2 * np.pi * 1000.0 * t) * 0.25 * 32767).astype(np.int16)


@dataclass
class _RecvClock:
    """A second recorder whose agent chunks carry the time aiortc's recv() returned them."""

    recorder: Recorder
    last_recv: float = 0.0

    def on_sent(self, t: float, pcm: bytes) -> None:
        self.recorder.on_sent(t, pcm)

    def on_received(self, _t: float, pcm: bytes) -> None:
        self.recorder.on_received(self.last_recv, pcm)


@dataclass
class CallResult:
    wire_ms: list[float] = field(default_factory=list)
    recv_ms: list[float] = field(default_factory=list)
    sent: int = 0
    unstamped_frames: int = 0


def _round_trips(recorder: Recorder, t0: float, hold_ms: float, skip: int) -> list[float]:
    """Per-burst round trip minus the hold: each burst out, the first onset back after it."""
    recording = recorder.recording(t0)
    out = detect_speech(recording.persona, RATE, hangover_ms=40, min_speech_ms=20)[skip:]
    back = detect_speech(recording.agent, RATE, hangover_ms=40, min_speech_ms=20)
    rtts = []
    for burst in out:
        lo = burst.start + int(hold_ms * RATE / 1000)
        later = [b.start for b in back if lo <= b.start < lo + int(0.6 * RATE)]
        if later:
            rtts.append(round((later[0] - burst.start) * 1000.0 / RATE - hold_ms, 2))
    return rtts


async def measure(target: str, hold_ms: float, bursts: int) -> CallResult:
    """One call: a warm-up tone, then ``bursts`` tone bursts; round trips both ways of stamping."""
    call = WebRTCCall(parse_target(target))
    wire = Recorder(RATE)
    recv = _RecvClock(Recorder(RATE))
    call.add_tap(wire)
    call.add_tap(recv)
    stamps = call.wire_stamps
    frame_arrival = stamps.frame_arrival

    def noting_recv(pts: int | None, receiver: Any) -> float | None:
        recv.last_recv = time.monotonic()  # just after recv() returned this frame
        return frame_arrival(pts, receiver)

    stamps.frame_arrival = noting_recv  # type: ignore[method-assign]
    received = 0

    def count(pcm: bytes, _t: float) -> None:
        nonlocal received
        received += len(pcm) // 2

    async def until(samples: int) -> None:
        while received < samples and call.state == "connected":  # noqa: ASYNC110
            await asyncio.sleep(0.02)

    await call.connect(timeout=15)
    call.listen(count)
    try:
        await until(LEAD_IN_MS * RATE // 1000)
        gap = np.zeros(RATE * BURST_GAP_MS // 1000, dtype=np.int16)
        warm = np.concatenate((_tone(WARM_UP_MS), np.zeros(RATE, dtype=np.int16)))
        await call.send_audio(warm.tobytes())
        for _ in range(bursts):
            await call.send_audio(np.concatenate((_tone(BURST_MS), gap)).tobytes())
        await call.wait_sent()
        sent = sum(len(pcm) for _, pcm in wire.sent) // 2
        await until(sent + int((hold_ms + TAIL_MS) * RATE / 1000))
    finally:
        await call.hangup()
    assert call.connected_at is not None
    return CallResult(
        wire_ms=_round_trips(wire, call.connected_at, hold_ms, skip=1),
        recv_ms=_round_trips(recv.recorder, call.connected_at, hold_ms, skip=1),
        sent=bursts,
        unstamped_frames=stamps.frames_unstamped,
    )


async def inside(calls: int, bursts: int) -> dict[str, Any]:
    """Runs in the namespace: both far ends, ``calls`` calls each, alternating."""
    results: dict[str, list[CallResult]] = {"chromium": [], "loopcall": []}
    echo = EchoEndpoint()
    async with contextlib.AsyncExitStack() as stack:
        chromium = await stack.enter_async_context(chromium_echo(ECHO_HOLD_MS))
        stack.push_async_callback(echo.close)
        loopcall = (await echo.target_for(parse_target(chromium))).url
        for _ in range(calls):
            results["chromium"].append(await measure(chromium, ECHO_HOLD_MS, bursts))
            results["loopcall"].append(await measure(loopcall, ECHO_HOLD_MS, bursts))
    summary: dict[str, Any] = {"chromium_version": chromium_version(), "hold_ms": ECHO_HOLD_MS}
    for far_end, rows in results.items():
        summary[far_end] = {
            "wire_ms": [r for row in rows for r in row.wire_ms],
            "recv_ms": [r for row in rows for r in row.recv_ms],
            "bursts_sent": sum(row.sent for row in rows),
            "unstamped_frames": sum(row.unstamped_frames for row in rows),
        }
    return summary


def print_table(summary: dict[str, Any]) -> None:
    print(f"{summary['chromium_version']}; echo hold {summary['hold_ms']:g} ms subtracted")
    print("Per-burst round trip (ms): onset back - onset out - hold, from the recording")
    print(
        f"  {'far end':<15} {'frames stamped at':<28} {'bursts':>7} {'median':>7} "
        f"{'min':>7} {'max':>7}"
    )
    labels = {
        "recv_ms": "recv() (before)",
        "wire_ms": "RTP arrival (after)",
    }
    for far_end, name in (("chromium", "Chromium echo"), ("loopcall", "loopcall echo")):
        data = summary[far_end]
        for key in ("recv_ms", "wire_ms"):
            values = data[key]
            got = f"{len(values)}/{data['bursts_sent']}"
            if not values:
                print(f"  {name:<15} {labels[key]:<28} {got:>7}       -")
                continue
            print(
                f"  {name:<15} {labels[key]:<28} {got:>7} {statistics.median(values):>7.1f} "
                f"{min(values):>7.1f} {max(values):>7.1f}"
            )
    for far_end in ("chromium", "loopcall"):
        data = summary[far_end]
        if data["wire_ms"] and data["recv_ms"]:
            diff = statistics.median(data["recv_ms"]) - statistics.median(data["wire_ms"])
            print(
                f"  {far_end}: recv() - RTP arrival, medians: {diff:.1f} ms "
                f"(frames that fell back to recv(): {data['unstamped_frames']})"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=3, help="calls to each far end")
    parser.add_argument("--bursts", type=int, default=8, help="timed bursts per call")
    parser.add_argument("--json", action="store_true", help="print one JSON line, no table")
    args = parser.parse_args()
    if not Path(CHROMIUM).exists():
        raise SystemExit(f"{CHROMIUM} not found: apt-get install -y chromium")
    if os.environ.get(INSIDE_ENV):
        from loguru import logger

        logger.remove()
        logger.add(sys.stderr, level="ERROR")
        summary = asyncio.run(inside(args.calls, args.bursts))
        print(json.dumps(summary))
        return
    with lo_only_netns() as netns:
        cmd = ["ip", "netns", "exec", netns, sys.executable, __file__]
        cmd += ["--calls", str(args.calls), "--bursts", str(args.bursts)]
        proc = subprocess.run(
            cmd, env={**os.environ, INSIDE_ENV: "1"}, cwd=ROOT, capture_output=True, text=True
        )
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-5000:])
        raise SystemExit(proc.returncode)
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    if args.json:
        print(json.dumps(summary))
    else:
        print_table(summary)


if __name__ == "__main__":
    main()
