"""ICE host candidates: loopback-only for a loopback peer, untouched for any other.

aioice offers every interface's address except 127.0.0.1 and ::1, so on a host
whose only interface is ``lo`` a remote offer has no host candidate at all, and
"127.0.0.1 is not in it" would hold whatever ``loopback_ice`` did.  So every
check here runs where a second address exists by construction:

- the mechanism, on any host: aioice's own gatherer is replaced by one that
  reports 127.0.0.2 (an address every Linux ``lo`` answers on, standing in for a
  LAN address), and the offers must carry exactly what the scope selects;
- the real gatherer, in a network namespace made for the test with ``lo`` and a
  veth pair, one end at 198.51.100.7 (TEST-NET-2), so what aioice finds on real
  interfaces is known.  The namespace needs root or unprivileged user
  namespaces; without either the test fails saying so (it does not skip).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest
from aiortc import RTCPeerConnection

import telephony.loopback
from telephony.loopback import loopback_ice, restrict_ice_to_loopback

STAND_IN = "127.0.0.2"
DUMMY = "198.51.100.7"


async def _offered_addresses(loopback: bool | None) -> list[str]:
    """The host candidates of an offer made inside ``loopback_ice(loopback)`` (None: outside)."""
    pc = RTCPeerConnection()
    pc.addTransceiver("audio")
    with loopback_ice(loopback) if loopback is not None else contextlib.nullcontext():
        await pc.setLocalDescription(await pc.createOffer())
    await pc.close()
    return [
        line.split()[4]
        for line in pc.localDescription.sdp.splitlines()
        if line.startswith("a=candidate") and " typ host" in line
    ]


@pytest.fixture
def second_address(monkeypatch: pytest.MonkeyPatch) -> str:
    """aioice's gatherer finds one address besides loopback: 127.0.0.2."""

    def gather(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [STAND_IN] if use_ipv4 else []

    monkeypatch.setattr(telephony.loopback, "_original_get_host_addresses", gather)
    return STAND_IN


async def test_loopback_call_offers_only_127_0_0_1(second_address: str) -> None:
    assert await _offered_addresses(True) == ["127.0.0.1"]


async def test_a_remote_call_offers_the_host_addresses(second_address: str) -> None:
    assert await _offered_addresses(False) == [second_address]
    assert await _offered_addresses(None) == [second_address]


async def test_a_loopback_call_does_not_leak_into_the_next_remote_call(
    second_address: str,
) -> None:
    await _offered_addresses(True)
    assert await _offered_addresses(None) == [second_address]


async def test_concurrent_loopback_and_remote_calls_keep_their_own_scope(
    second_address: str,
) -> None:
    results = await asyncio.gather(*(_offered_addresses(lb) for lb in (True, False, True, None)))
    assert results == [["127.0.0.1"], [second_address], ["127.0.0.1"], [second_address]]


async def test_the_process_default_yields_to_a_scope(second_address: str) -> None:
    restrict_ice_to_loopback()
    try:
        assert await _offered_addresses(None) == ["127.0.0.1"]
        assert await _offered_addresses(False) == [second_address]
    finally:
        restrict_ice_to_loopback(False)
    assert await _offered_addresses(None) == [second_address]


_IN_NAMESPACE = textwrap.dedent(
    """
    import asyncio, json
    from aiortc import RTCPeerConnection
    from telephony.loopback import loopback_ice, restrict_ice_to_loopback

    async def offered(loopback):
        pc = RTCPeerConnection()
        pc.addTransceiver("audio")
        if loopback is None:  # outside any scope: the process default
            await pc.setLocalDescription(await pc.createOffer())
        else:
            with loopback_ice(loopback):
                await pc.setLocalDescription(await pc.createOffer())
        await pc.close()
        return [l.split()[4] for l in pc.localDescription.sdp.splitlines()
                if l.startswith("a=candidate") and " typ host" in l]

    async def main():
        return [await offered(False), await offered(True), await offered(None)]

    print(json.dumps(asyncio.run(main())))
    """
)


def test_real_interfaces_in_a_namespace_with_a_second_interface() -> None:
    unshare = shutil.which("unshare")
    assert unshare is not None, "util-linux's unshare is needed to make the test's namespace"
    setup = (
        "ip link set lo up && ip link add lc0 type veth peer name lc1 && "
        f"ip addr add {DUMMY}/24 dev lc0 && ip link set lc1 up && ip link set lc0 up && "
        f'exec "{sys.executable}" -c "$0"'
    )
    user_ns = [] if os.geteuid() == 0 else ["--map-root-user"]
    result = subprocess.run(
        [unshare, *user_ns, "--net", "sh", "-c", setup, _IN_NAMESPACE],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    assert result.returncode == 0, (
        "could not make a network namespace with a veth pair (root or user "
        f"namespaces needed): {result.stderr[-2000:]}"
    )
    remote, loopback, remote_after = json.loads(result.stdout.splitlines()[-1])
    assert remote == [DUMMY], remote  # the namespace's own interface, as aioice finds it
    assert loopback == ["127.0.0.1"], loopback
    assert remote_after == [DUMMY], remote_after
