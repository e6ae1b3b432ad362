"""The egress policy in process: every spelling of a refused address, names where they resolve.

The controller-level behaviour (422s, failed runs) is ``test_api_ssrf.py``; here
the policy itself, and the webhook sender and the WebRTC offer against real
aiohttp servers on loopback with a name table standing in for DNS.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from aiohttp import web

from harness.api.webhooks import WebhookSender
from harness.models import Case, Persona, Run
from harness.settings import Settings
from telephony import AddressRefused, ConnectError, EgressPolicy, parse_target
from telephony.egress import literal_address
from telephony.webrtc import WebRTCCall

SHARED = EgressPolicy.of()


@pytest.mark.parametrize(
    ("host", "why"),
    [
        ("169.254.169.254", "cloud metadata"),
        ("2852039166", "cloud metadata"),  # one decimal number
        ("0xa9fea9fe", "cloud metadata"),  # hex
        ("0251.0376.0251.0376", "cloud metadata"),  # octal parts
        ("169.254.43518", "cloud metadata"),  # the last two parts as one
        ("::ffff:169.254.169.254", "cloud metadata"),  # IPv4-mapped
        ("[::ffff:a9fe:a9fe]", "cloud metadata"),
        ("64:ff9b::a9fe:a9fe", "cloud metadata"),  # NAT64
        ("2002:a9fe:a9fe::1", "cloud metadata"),  # 6to4
        ("fd00:ec2::254", "cloud metadata"),  # AWS IMDS over IPv6
        ("100.100.100.200", "cloud metadata"),
        ("169.254.170.2", "cloud metadata"),
        ("metadata.google.internal", "metadata host name"),
        ("Metadata.Google.Internal.", "metadata host name"),
        ("169.254.1.1", "link-local"),
        ("fe80::1", "link-local"),
        ("fe80::1%eth0", "link-local"),
        ("[fe80::abcd%25lo]", "link-local"),
        ("0.0.0.0", "unspecified"),
        ("0", "unspecified"),
        ("::", "unspecified"),
        ("224.0.0.251", "multicast"),
        ("ff02::1", "multicast"),
        ("255.255.255.255", "reserved"),
    ],
)
def test_refused_in_every_spelling(host: str, why: str) -> None:
    with pytest.raises(AddressRefused, match=why):
        SHARED.check_host(host)
    EgressPolicy.local().check_host(host)  # the CLI's user owns the machine


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1", "127.1", "::1", "localhost", "10.1.2.3", "172.16.0.9", "192.168.1.2",
     "fd12:3456::1", "100.64.0.1", "agent.example.com", "cafe", "2001:db8::1"],
)  # fmt: skip
def test_loopback_private_and_public_hosts_are_allowed(host: str) -> None:
    SHARED.check_host(host)


def test_legacy_ipv4_spellings_are_read_as_addresses() -> None:
    assert str(literal_address("2852039166")) == "169.254.169.254"
    assert str(literal_address("127.1")) == "127.0.0.1"
    assert literal_address("agent.example.com") is None
    assert literal_address("deadbeef") is None  # a name, not hex without 0x


def test_settings_make_the_allow_and_refuse_lists() -> None:
    policy = Settings(
        allowed_networks="fe80::/10, 169.254.10.0/24",
        refused_networks="10.0.0.0/8",
    ).egress_policy()
    policy.check_host("fe80::1")
    policy.check_host("169.254.10.7")
    with pytest.raises(AddressRefused, match="metadata"):
        policy.check_host("169.254.169.254")
    with pytest.raises(AddressRefused, match="LOOPCALL_REFUSED_NETWORKS"):
        policy.check_host("::ffff:10.9.8.7")

    named = Settings(allowed_hosts="metadata.google.internal, 127.0.0.1").egress_policy()
    named.check_host("metadata.google.internal")  # named by the operator: allowed
    with pytest.raises(AddressRefused, match="LOOPCALL_ALLOWED_HOSTS"):
        named.check_host("10.0.0.1")

    with pytest.raises(ValueError, match="not a network"):
        Settings(allowed_networks="fe80::/10, nonsense")


@pytest.fixture
def dns(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """A name table in front of ``socket.getaddrinfo`` (asyncio's resolver runs it)."""
    table: dict[str, str] = {}
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        return real(table.get(host, host), port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    yield table


async def test_names_are_refused_by_what_they_resolve_to(dns: dict[str, str]) -> None:
    dns.update({"imds.example.test": "169.254.169.254", "ok.example.test": "127.0.0.1"})
    with pytest.raises(AddressRefused, match=r"imds.example.test resolves to 169.254.169.254"):
        await SHARED.resolve("imds.example.test")
    assert await SHARED.resolve("ok.example.test") == [(socket.AF_INET, "127.0.0.1")]
    assert "resolves to 169.254.169.254" in (await SHARED.check("imds.example.test") or "")
    assert await SHARED.check("no-such-name.invalid") is None  # checked again at dial time
    # A literal is connected to as the address it spells (a URL's zone, a legacy form).
    local = EgressPolicy.local()
    assert await local.resolve("[fe80::1%25lo]") == [(socket.AF_INET6, "fe80::1%lo")]
    assert await local.resolve("2130706433") == [(socket.AF_INET, "127.0.0.1")]


def _run() -> Run:
    case = Case(name="c", persona=Persona(name="p"))
    return Run(case=case, target="webrtc://h:1/x", channel="webrtc")


async def test_a_webhook_whose_name_moves_to_link_local_is_not_delivered(
    dns: dict[str, str], http_stub: Callable[..., Any]
) -> None:
    received: list[bytes] = []

    async def receive(request: web.Request) -> web.Response:
        received.append(await request.read())
        return web.Response(status=204)

    port = (await http_stub("POST", "/hook", receive)).rsplit(":", 1)[1]
    url = f"http://hook.example.test:{port}/hook"
    dns["hook.example.test"] = "127.0.0.1"
    sender = WebhookSender("k", attempts=3, backoff_s=0.01)
    try:
        assert await sender.deliver(url, _run()) is None
    finally:
        await sender.close()
    # The name moves after the URL was checked (a connection already open to the
    # old address may carry on: it still goes there, not to the new one).
    dns["hook.example.test"] = "169.254.169.254"
    sender = WebhookSender("k", attempts=3, backoff_s=0.01)
    try:
        problem = await sender.deliver(url, _run())
        literal = await sender.deliver("http://[::ffff:169.254.169.254]/hook", _run())
    finally:
        await sender.close()
    assert len(received) == 1
    assert problem is not None and "resolves to 169.254.169.254" in problem, problem
    assert literal is not None and literal.startswith("refused: "), literal


async def test_a_webhook_redirect_is_a_failed_attempt(http_stub: Callable[..., Any]) -> None:
    reached: list[str] = []

    async def internal(request: web.Request) -> web.Response:
        reached.append(request.method)
        return web.Response(status=204)

    inner = await http_stub("*", "/internal", internal)

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPPermanentRedirect(f"http://{inner}/internal")

    hook = await http_stub("POST", "/hook", redirect)
    sender = WebhookSender("k", attempts=2, backoff_s=0.01)
    try:
        problem = await sender.deliver(f"http://{hook}/hook", _run())
    finally:
        await sender.close()
    assert reached == []
    assert problem == "HTTP 308 (a redirect: not followed) (2 attempts)"


async def test_the_offer_goes_only_where_the_name_resolved_to(
    dns: dict[str, str], http_stub: Callable[..., Any]
) -> None:
    dns["agent.example.test"] = "169.254.169.254"
    call = WebRTCCall(parse_target("webrtc://agent.example.test:7860/api/offer"), egress=SHARED)
    with pytest.raises(ConnectError, match="agent.example.test resolves to 169.254.169.254"):
        await call.connect(10)
    assert (call.state, call.end_cause) == ("ended", "transport_failed")
