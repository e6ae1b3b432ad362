"""A WebRTC stack that is not aiortc: Debian's Chromium as the far end of an echo call.

Runs ``benchmarks/chromium_webrtc.py`` small (one call to each far end): headless
Chromium echoes loopcall's tone bursts through WebAudio, in a network namespace
with only ``lo`` up, next to loopcall's own echo endpoint.  Checks that loopcall
interoperates with it, that every frame it sent was stamped with its RTP
packet's arrival, and that those stamps sit aiortc's jitter-buffer share ahead
of aiortc's ``recv()`` on both far ends.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import shutil
import statistics
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[1]
BURSTS = 6


@pytest.fixture
def chromium() -> None:
    if not Path("/usr/bin/chromium").exists():
        pytest.skip("Debian's chromium is not installed (make setup installs it)")
    if importlib.util.find_spec("playwright") is None:
        pytest.skip("playwright is not installed (the dev extra has it)")
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2 for a network namespace")


async def test_chromium_echo_against_loopcall_echo(chromium: None) -> None:
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, str(ROOT / "benchmarks" / "chromium_webrtc.py")),
        *("--calls", "1", "--bursts", str(BURSTS), "--json"),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 240)
    assert proc.returncode == 0, err.decode()[-3000:]
    summary = json.loads(out.decode().strip().splitlines()[-1])
    for far_end in ("chromium", "loopcall"):
        data = summary[far_end]
        # Every burst came back, and every frame found its RTP packet.
        assert len(data["wire_ms"]) == len(data["recv_ms"]) == BURSTS, (far_end, data)
        assert data["unstamped_frames"] == 0, (far_end, data)
        assert all(0 < rtt < 1000 for rtt in data["wire_ms"]), (far_end, data)
        # aiortc's jitter buffer holds a packet until four more have come (4 x 20 ms):
        # the frames' wire stamps are that much ahead of recv().  Measured 80.2-80.7 ms
        # per frame, and 80.2 / 80.4 ms between the medians (loopcall / Chromium echo,
        # 24 bursts each); 5 ms is more than the decoder thread's hop back to the loop.
        share = statistics.median(data["recv_ms"]) - statistics.median(data["wire_ms"])
        assert abs(share - 80) <= 5, (far_end, share, data)
