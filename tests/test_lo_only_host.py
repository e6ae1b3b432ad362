"""A host whose only interface is loopback (a CI container with networking off).

The calibration's echo call must work wherever a call works.  aioice gathers no
loopback address, so on such a host an aiortc end that must be reached has no
host candidate unless it is given 127.0.0.1: the harness's own offer is, and so
must be the in-process echo endpoint's answer.  Runs in a network namespace of
its own with only ``lo`` up (needs root and ``ip``), removed afterwards.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[1]

# Both echo endpoints (built like the full agent, and like the light one), then a
# calibration per channel, in one process inside the namespace; one JSON line out.
SCRIPT = """
import asyncio, json
from harness.orchestrator import EchoCalibrator
from telephony import parse_target

# A call over each stack (the address is never dialled: the echo answers instead).
TARGETS = {
    "webrtc": "webrtc://127.0.0.1:9/api/offer",
    "twilio-ws": "twilio-ws://127.0.0.1:9/ws",
    "sip": "sip:agent@127.0.0.1:9",
}

async def main():
    out = {}
    for light in (False, True):
        async with EchoCalibrator(light=light) as calibrator:
            for channel, url in TARGETS.items():
                key = ("light " if light else "") + channel
                try:
                    out[key] = (await calibrator.measure(parse_target(url))).rtt_ms
                except Exception as exc:
                    out[key] = f"{type(exc).__name__}: {exc}"
    print(json.dumps(out))

asyncio.run(main())
"""


@pytest.fixture
def lo_only_netns() -> Iterator[str]:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2 to make a network namespace")
    name = f"loopcall-lo-{uuid.uuid4().hex[:8]}"
    made = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot make a network namespace here: {made.stderr.strip()}")
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False)


async def test_calibration_works_on_a_host_with_only_loopback(lo_only_netns: str) -> None:
    links = subprocess.run(  # noqa: ASYNC221 (before the call: nothing else runs)
        ["ip", "-n", lo_only_netns, "-o", "link"], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert len(links) == 1 and ": lo:" in links[0], links  # really nothing but lo

    proc = await asyncio.create_subprocess_exec(
        *("ip", "netns", "exec", lo_only_netns, sys.executable, "-c", SCRIPT),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 180)
    assert proc.returncode == 0, err.decode()[-3000:]
    rtts = json.loads(out.decode().strip().splitlines()[-1])
    # Every channel calibrated: a round trip, not an error.
    for channel, rtt in rtts.items():
        assert isinstance(rtt, float) and 0 < rtt < 1000, (channel, rtt)
