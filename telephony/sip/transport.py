"""SIP over UDP and TCP on one local address (RFC 3261 section 18).

Stage: under the user agent (``phone.py``).  A ``SipTransport`` binds a UDP
socket and a TCP listener on the same port, hands every parsed message to its
owner with the ``Peer`` it came from, and sends messages to a ``Peer``: over UDP
as one datagram, over TCP on the connection that peer already has with us (ours
or theirs), opening one when there is none.  Bytes that do not parse are
reported, with the parse error, to ``on_malformed``: the call they were meant for
fails with that cause instead of timing out.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from loguru import logger

from runtime.tasks import spawn
from telephony.egress import EgressPolicy
from telephony.sip.message import SipMessage, SipParseError, parse_message, split_stream

__all__ = ["Peer", "SipTransport", "TransportClosed", "local_address_for", "resolve"]

Proto = Literal["udp", "tcp"]
Addr = tuple[str, int]
BIND_ATTEMPTS = 20


class TransportClosed(ConnectionError):
    """Sending failed: the socket is closed or the peer cannot be reached."""


@dataclass(frozen=True)
class Peer:
    """Where a message came from, or goes to: transport and address."""

    proto: Proto
    host: str
    port: int

    @property
    def addr(self) -> Addr:
        return (self.host, self.port)

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}/{self.proto}"


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, owner: SipTransport) -> None:
        self.owner = owner

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.owner._received(data, Peer("udp", addr[0], addr[1]))

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable after a datagram we sent: nothing listens there.
        self.owner._unreachable(exc)


def _report_icmp_errors(udp: asyncio.DatagramTransport) -> None:
    """Have Linux report ICMP "port unreachable" on this unconnected socket (IP_RECVERR).

    Without it an INVITE to a port where nothing listens waits out its timers;
    with it asyncio calls ``error_received`` and the call fails at once.
    """
    if sys.platform != "linux":
        return
    sock = udp.get_extra_info("socket")
    if sock.family == socket.AF_INET6:
        level, option = socket.IPPROTO_IPV6, 25  # IPV6_RECVERR
    else:
        level, option = socket.IPPROTO_IP, 11  # IP_RECVERR
    with contextlib.suppress(OSError):
        sock.setsockopt(level, option, 1)


async def resolve(host: str, egress: EgressPolicy | None = None) -> str:
    """The IP address to send to: a name is resolved once, at dialling, and the
    address is one the egress policy allows (the call goes there and nowhere else)."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        (egress or EgressPolicy.local()).check_host(host)
        return host
    found = await (egress or EgressPolicy.local()).resolve(host, type=socket.SOCK_DGRAM)
    return found[0][1]


def local_address_for(ip: str) -> str:
    """The address of our interface that routes to ``ip`` (no packet is sent)."""
    address = ipaddress.ip_address(ip)
    if address.is_loopback:
        return ip
    family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        probe.connect((ip, 9))
        return str(probe.getsockname()[0])


class SipTransport:
    """A UDP socket and a TCP listener on ``host:port`` (``port`` 0: any free port)."""

    def __init__(
        self,
        host: str,
        port: int = 0,
        *,
        on_message: Callable[[SipMessage, Peer], None],
        on_malformed: Callable[[bytes, Peer, SipParseError], None],
        on_unreachable: Callable[[Exception], None] | None = None,
        tcp: bool = True,
    ) -> None:
        self.host = host
        self.port = port
        self._on_message = on_message
        self._on_malformed = on_malformed
        self._on_unreachable = on_unreachable
        self._tcp_enabled = tcp
        self._udp: asyncio.DatagramTransport | None = None
        self._server: asyncio.Server | None = None
        self._streams: dict[Addr, asyncio.StreamWriter] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    async def open(self) -> int:
        """Bind UDP (and TCP on the same port); return the port."""
        loop = asyncio.get_running_loop()
        for _ in range(BIND_ATTEMPTS if self.port == 0 else 1):
            udp, _ = await loop.create_datagram_endpoint(
                lambda: _Udp(self), local_addr=(self.host, self.port)
            )
            port = udp.get_extra_info("sockname")[1]
            _report_icmp_errors(udp)
            if not self._tcp_enabled:
                self._udp, self.port = udp, port
                return port
            try:
                self._server = await asyncio.start_server(self._accept, self.host, port)
            except OSError as exc:
                udp.close()
                if exc.errno != errno.EADDRINUSE or self.port != 0:
                    raise
                continue  # TCP twin of this UDP port is taken: try another port
            self._udp, self.port = udp, port
            return port
        raise OSError(errno.EADDRINUSE, f"no port free for both UDP and TCP on {self.host}")

    async def close(self) -> None:
        self._closed = True
        if self._udp is not None:
            self._udp.close()
        if self._server is not None:
            self._server.close()
        for writer in list(self._streams.values()):
            writer.close()
        self._streams.clear()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    # ------------------------------------------------------------------ sending

    async def send(self, message: SipMessage, peer: Peer) -> None:
        data = bytes(message)
        if self._closed:
            raise TransportClosed("the SIP transport is closed")
        if peer.proto == "udp":
            assert self._udp is not None
            self._udp.sendto(data, peer.addr)
            return
        writer = self._streams.get(peer.addr)
        if writer is None or writer.is_closing():
            try:
                reader, writer = await asyncio.open_connection(peer.host, peer.port)
            except OSError as exc:
                raise TransportClosed(f"could not connect to {peer}: {exc}") from exc
            self._adopt(reader, writer, peer)
        try:
            writer.write(data)
            await writer.drain()
        except (ConnectionError, OSError) as exc:
            raise TransportClosed(f"the TCP connection to {peer} broke: {exc}") from exc

    # ---------------------------------------------------------------- receiving

    def _received(self, data: bytes, peer: Peer) -> None:
        if data.strip() == b"":
            return  # keep-alive (RFC 5626 CRLF ping)
        try:
            message = parse_message(data)
        except SipParseError as exc:
            logger.warning(f"sip: malformed message from {peer}: {exc}")
            self._on_malformed(data, peer, exc)
            return
        self._on_message(message, peer)

    def _unreachable(self, exc: Exception) -> None:
        if self._on_unreachable is not None:
            self._on_unreachable(exc)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        host, port = writer.get_extra_info("peername")[:2]
        self._adopt(reader, writer, Peer("tcp", host, port))

    def _adopt(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: Peer
    ) -> None:
        self._streams[peer.addr] = writer
        spawn(self._read_stream(reader, writer, peer), owner=self._tasks)

    async def _read_stream(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: Peer
    ) -> None:
        buffer = bytearray()
        try:
            while chunk := await reader.read(65_536):
                buffer += chunk
                while True:
                    try:
                        data = split_stream(buffer)
                    except SipParseError as exc:
                        # A stream without framing cannot be resynchronised: drop it.
                        self._on_malformed(bytes(buffer), peer, exc)
                        return
                    if data is None:
                        break
                    self._received(data, peer)
        except (ConnectionError, OSError):
            pass
        finally:
            if self._streams.get(peer.addr) is writer:
                del self._streams[peer.addr]
            writer.close()
