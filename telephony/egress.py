"""Where loopcall may connect: the egress policy a shared controller enforces.

Stage: under every channel that opens a connection to an agent (WebRTC
signalling, media-stream websockets, SIP) and under the controller's webhooks.
A controller takes targets and webhook URLs from anyone holding an API key, so
it must not become their way into the networks only it can reach.  The policy
(``docs/security.md``) refuses link-local, cloud-metadata, unspecified,
multicast and reserved addresses, in every spelling (``::ffff:169.254.169.254``,
``2852039166``, a name that resolves there), unless the operator allows them;
loopback and private networks stay reachable (loopcall's agents live there).

Names are checked where they resolve: ``resolve`` returns only addresses the
policy allows and the caller connects to exactly those (``connector`` does it
for aiohttp), so a name that resolves elsewhere between a check and the call
(DNS rebinding) is caught at the call.  ``EgressPolicy.local()`` is the CLI's:
the user's own machine, nothing refused, and an agent's error page may be
quoted back to its user.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from telephony.errors import ConnectError

__all__ = [
    "METADATA_NAMES",
    "REFUSED_NETWORKS",
    "AddressRefused",
    "EgressPolicy",
    "literal_address",
    "parse_networks",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# What a shared controller refuses unless allowed, most specific first (the first
# match names the address in the error).
REFUSED_NETWORKS: tuple[tuple[IPNetwork, str], ...] = tuple(
    (ipaddress.ip_network(net), what)
    for net, what in (
        ("169.254.169.254/32", "a cloud metadata address"),  # AWS, GCP, Azure, OCI, ...
        ("169.254.170.2/32", "a cloud metadata address"),  # AWS ECS task credentials
        ("fd00:ec2::254/128", "a cloud metadata address"),  # AWS IMDS over IPv6
        ("100.100.100.200/32", "a cloud metadata address"),  # Alibaba Cloud
        ("168.63.129.16/32", "a cloud metadata address"),  # Azure's platform endpoint
        ("169.254.0.0/16", "a link-local address"),
        ("fe80::/10", "a link-local address"),
        ("0.0.0.0/8", "an unspecified address"),  # 0.0.0.0 reaches this host's services
        ("::/128", "an unspecified address"),
        ("224.0.0.0/4", "a multicast address"),
        ("ff00::/8", "a multicast address"),
        ("240.0.0.0/4", "a reserved address"),  # and 255.255.255.255
    )
)
METADATA_NAMES = frozenset(
    {
        "metadata",
        "metadata.google.internal",
        "metadata.goog",
        "instance-data",
        "instance-data.ec2.internal",
    }
)
# IPv6 prefixes that carry an IPv4 address a connection ends up at (NAT64, 6to4).
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
_LEGACY_IPV4 = re.compile(r"^[0-9a-fA-FxX.]+$")
ALLOW_HINT = "allow it with LOOPCALL_ALLOWED_NETWORKS or LOOPCALL_ALLOWED_HOSTS"


class AddressRefused(ConnectError):
    """The egress policy forbids the host or the address it resolves to."""


def parse_networks(text: str | None, setting: str) -> tuple[IPNetwork, ...]:
    """``"10.0.0.0/8, fe80::/10"`` -> networks; ``ValueError`` naming ``setting`` otherwise."""
    networks = []
    for item in (text or "").split(","):
        if item.strip():
            try:
                networks.append(ipaddress.ip_network(item.strip(), strict=False))
            except ValueError as exc:
                raise ValueError(f"{setting}: {item.strip()!r} is not a network ({exc})") from exc
    return tuple(networks)


def literal_address(host: str) -> IPAddress | None:
    """The address ``host`` spells, in any form a resolver accepts; None for a name.

    Besides the usual forms: IPv6 with a zone (``fe80::1%eth0``) and the legacy
    IPv4 ones ``inet_aton`` takes (``2852039166``, ``0xa9fea9fe``, ``169.254.43518``,
    octal parts), which ``getaddrinfo`` would turn into an address.
    """
    text = host.strip().strip("[]")
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        pass
    if _LEGACY_IPV4.match(text) and any(c.isdigit() for c in text):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(text))
        except OSError:
            return None
    return None


def _embedded_v4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one reaches (mapped, compatible, NAT64, 6to4)."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if any(address in net for net in _NAT64) or (
        int(address) >> 32 == 0 and int(address) > 1  # ::a.b.c.d (deprecated "compatible")
    ):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


@dataclass(frozen=True)
class EgressPolicy:
    """Which hosts and addresses loopcall may connect to, and what it may quote back.

    ``allowed_hosts``: when set, the only hosts it calls (and a host named there
    is exempt from the refused ranges: the operator asked for it).
    ``allowed_networks``: exempt from the refused ranges (a link-local agent).
    ``refused_networks``: refused besides the built-in ranges (say, 10.0.0.0/8).
    ``guard``: refuse the built-in ranges and metadata names at all.
    ``quote_peer``: an agent's error page may go into the run's error (the CLI's
    user calls their own agent); a shared controller records the status only.
    """

    allowed_hosts: frozenset[str] | None = None
    allowed_networks: tuple[IPNetwork, ...] = ()
    refused_networks: tuple[IPNetwork, ...] = ()
    guard: bool = True
    quote_peer: bool = False
    resolve_timeout_s: float = 10.0

    @classmethod
    def local(cls) -> EgressPolicy:
        """The CLI's policy: the user's own machine and agents; nothing refused."""
        return cls(guard=False, quote_peer=True)

    @classmethod
    def of(
        cls,
        *,
        allowed_hosts: Iterable[str] | None = None,
        allowed_networks: Sequence[IPNetwork] = (),
        refused_networks: Sequence[IPNetwork] = (),
    ) -> EgressPolicy:
        """A shared controller's policy from its settings."""
        hosts = None
        if allowed_hosts is not None:
            hosts = frozenset(_host_key(h) for h in allowed_hosts if h.strip())
        return cls(
            allowed_hosts=hosts or None,
            allowed_networks=tuple(allowed_networks),
            refused_networks=tuple(refused_networks),
        )

    @property
    def checks(self) -> bool:
        """Whether this policy refuses anything at all."""
        return self.guard or self.allowed_hosts is not None or bool(self.refused_networks)

    # ------------------------------------------------------------------ checks

    def check_host(self, host: str) -> None:
        """Refuse ``host`` by its name or its literal address (no lookup)."""
        if not self.checks:
            return
        key = _host_key(host)
        if self.allowed_hosts is not None and key not in self.allowed_hosts:
            raise AddressRefused(
                f"host {host!r} is not in this controller's LOOPCALL_ALLOWED_HOSTS"
            )
        if self._named(key):
            return
        if self.guard and key.rstrip(".") in METADATA_NAMES:
            raise AddressRefused(
                f"{host} is a cloud metadata host name: a shared controller does not call it; "
                + ALLOW_HINT
            )
        address = literal_address(key)
        if address is not None:
            spelled = "" if str(address) == key else f" ({address})"
            self._check_address(address, f"{host}{spelled} is")

    def check_address(self, host: str, address: str) -> None:
        """Refuse the address ``host`` resolved to (what a connection would reach)."""
        if not self.checks or self._named(_host_key(host)):
            return
        parsed = literal_address(address)
        if parsed is None:
            raise AddressRefused(f"{host} resolves to {address!r}, which is not an address")
        if str(parsed) == _host_key(host):
            self._check_address(parsed, f"{host} is")
        else:
            self._check_address(parsed, f"{host} resolves to {parsed},")

    def _named(self, key: str) -> bool:
        return self.allowed_hosts is not None and key in self.allowed_hosts

    def _check_address(self, address: IPAddress, subject: str) -> None:
        candidates = [address]
        if (inner := _embedded_v4(address)) is not None:
            candidates.append(inner)
        for candidate in candidates:
            plain = ipaddress.ip_address(str(candidate).split("%")[0])
            if any(plain in net for net in self.allowed_networks):
                return
        for candidate in candidates:
            plain = ipaddress.ip_address(str(candidate).split("%")[0])
            for net in self.refused_networks:
                if plain in net:
                    raise AddressRefused(
                        f"{subject} in LOOPCALL_REFUSED_NETWORKS ({net}): "
                        "this controller does not call it"
                    )
            if not self.guard:
                continue
            for net, what in REFUSED_NETWORKS:
                if plain in net:
                    raise AddressRefused(
                        f"{subject} {what}: a shared controller does not call it; {ALLOW_HINT}"
                    )

    # --------------------------------------------------------------- resolving

    async def resolve(
        self, host: str, port: int = 0, *, type: int = socket.SOCK_STREAM
    ) -> list[tuple[socket.AddressFamily, str]]:
        """The addresses to connect to for ``host``, each allowed; ``ConnectError`` if none.

        Connect to these and nothing else: checking a name and letting the
        connection resolve it again would let it resolve elsewhere in between.
        """
        self.check_host(host)
        literal = literal_address(host)
        if literal is not None:
            family = socket.AF_INET6 if literal.version == 6 else socket.AF_INET
            # A URL spells an IPv6 zone %25eth0; sockets want %eth0.
            return [(family, str(literal).replace("%25", "%"))]
        loop = asyncio.get_running_loop()
        try:
            infos = await asyncio.wait_for(
                loop.getaddrinfo(host, port, type=type), self.resolve_timeout_s
            )
        except (OSError, TimeoutError) as exc:
            raise ConnectError(f"cannot resolve {host!r}: {exc or 'timed out'}") from exc
        found: list[tuple[socket.AddressFamily, str]] = []
        for family, _, _, _, sockaddr in infos:
            address = str(sockaddr[0])
            self.check_address(host, address)  # any refused address refuses the name
            if (family, address) not in found:
                found.append((family, address))
        if not found:
            raise ConnectError(f"cannot resolve {host!r}: no address")
        return found

    async def check(self, host: str) -> str | None:
        """Why ``host`` is refused, or None: for checking a URL when it is given.

        A name that does not resolve now passes (the agent may not be up yet);
        it is checked again wherever it is dialled.
        """
        try:
            await self.resolve(host)
        except AddressRefused as exc:
            return str(exc)
        except ConnectError:
            return None
        return None

    def connector(self) -> aiohttp.TCPConnector | None:
        """An aiohttp connector that connects only to addresses this policy allows.

        aiohttp does not resolve literal addresses: check the URL's host with
        ``check_host`` first.  None when the policy refuses nothing.
        """
        if not self.checks:
            return None
        return aiohttp.TCPConnector(resolver=_PolicyResolver(self), use_dns_cache=False)


def _host_key(host: str) -> str:
    return host.strip().lower().strip("[]")


class _PolicyResolver(AbstractResolver):
    """aiohttp's resolver, through ``EgressPolicy.resolve``."""

    def __init__(self, policy: EgressPolicy) -> None:
        self._policy = policy

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._policy.resolve(host, port)
        wanted = [(f, a) for f, a in found if family in (socket.AF_UNSPEC, f)] or found
        results: list[ResolveResult] = []
        for fam, address in wanted:
            result: Any = {
                "hostname": host,
                "host": address,
                "port": port,
                "family": fam,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
            results.append(result)
        return results

    async def close(self) -> None:
        return None
