"""ICE host candidates: loopback-only for a loopback peer, untouched for any other."""

from __future__ import annotations

from aiortc import RTCPeerConnection

from telephony.loopback import loopback_ice


async def _offered_addresses(loopback: bool) -> list[str]:
    pc = RTCPeerConnection()
    pc.addTransceiver("audio")
    with loopback_ice(loopback):
        await pc.setLocalDescription(await pc.createOffer())
    await pc.close()
    return [
        line.split()[4]
        for line in pc.localDescription.sdp.splitlines()
        if line.startswith("a=candidate") and " typ host" in line
    ]


async def test_loopback_call_offers_only_127_0_0_1() -> None:
    assert await _offered_addresses(True) == ["127.0.0.1"]


async def test_a_loopback_call_does_not_leak_into_the_next_remote_call() -> None:
    await _offered_addresses(True)
    remote = await _offered_addresses(False)
    assert "127.0.0.1" not in remote
