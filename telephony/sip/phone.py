"""A small SIP user agent core: transactions, retransmission and dispatch (RFC 3261 17).

Stage: between the transport and the calls.  A ``SipPhone`` owns one
``SipTransport`` and plays both roles:

* client: ``start_request`` sends a request and returns a ``ClientTransaction``
  whose ``final()`` is the final response; over UDP the request is retransmitted
  (timers A/E, T1 = 500 ms doubling, capped at T2 for non-INVITE) until a response
  comes, and a non-2xx final answer to an INVITE is ACKed here (timers B/F bound
  the wait at 64 x T1).  ``ClientTransaction.cancel()`` sends CANCEL for a ringing
  INVITE.
* server: a request is matched to its server transaction by Via branch; a
  retransmitted request gets the last response again; ``respond`` answers,
  retransmitting a 2xx to an INVITE over UDP until ``wait_ack`` sees the ACK.

Requests inside a dialog go to the ``DialogHandler`` registered for their Call-ID;
a new INVITE goes to ``on_invite``; OPTIONS is answered here; anything else gets
481.  A malformed message or an ICMP "port unreachable" fails the pending client
transactions toward that peer, so a call set-up never waits out a timer for an
answer that cannot come.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from loguru import logger

from runtime.tasks import spawn
from telephony.sip.message import SipMessage, SipParseError, new_branch, new_tag
from telephony.sip.transaction import (
    T1,
    T2,
    TIMEOUT,
    ClientTransaction,
    TransactionFailed,
    TransactionTimeout,
)
from telephony.sip.transport import Peer, SipTransport, TransportClosed, local_address_for

__all__ = [
    "ALLOW",
    "ClientTransaction",
    "DialogHandler",
    "SipPhone",
    "TransactionFailed",
    "TransactionTimeout",
]

ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE"
USER_AGENT = "loopcall"
K = TypeVar("K")
V = TypeVar("V")
_CALL_ID = re.compile(rb"^(?:call-id|i)[ \t]*:[ \t]*(\S+)", re.IGNORECASE | re.MULTILINE)


class DialogHandler(Protocol):
    """What a call registers with the phone for its Call-ID."""

    def on_request(self, request: SipMessage, peer: Peer) -> None: ...

    def on_malformed(self, error: SipParseError, peer: Peer) -> None: ...


class Recent(dict[K, V]):
    """A dict that forgets entries older than ``ttl`` seconds, checked as it grows."""

    def __init__(self, ttl: float = 2 * TIMEOUT, check_every: int = 64) -> None:
        super().__init__()
        self._ttl = ttl
        self._check_every = check_every
        self._born: dict[K, float] = {}

    def __setitem__(self, key: K, value: V) -> None:
        super().__setitem__(key, value)
        self._born[key] = time.monotonic()
        if len(self._born) % self._check_every == 0:
            self.prune()

    def prune(self, now: float | None = None) -> None:
        cutoff = (time.monotonic() if now is None else now) - self._ttl
        for key, born in list(self._born.items()):
            if born < cutoff or key not in self:
                del self._born[key]
                self.pop(key, None)


@dataclass
class _ServerTransaction:
    request: SipMessage
    peer: Peer
    last_response: SipMessage | None = None


class SipPhone:
    """A SIP user agent on ``host:port`` (UDP and TCP) that calls register with."""

    def __init__(
        self,
        host: str,
        port: int = 0,
        *,
        user: str = "loopcall",
        on_invite: Callable[[SipMessage, Peer], None] | None = None,
        user_agent: str = USER_AGENT,
        tcp: bool = True,
    ) -> None:
        self.user = user
        self.user_agent = user_agent
        self.on_invite = on_invite
        self.transport = SipTransport(
            host,
            port,
            on_message=self._on_message,
            on_malformed=self._on_malformed,
            on_unreachable=self._on_unreachable,
            tcp=tcp,
        )
        self.dialogs: dict[str, DialogHandler] = {}
        self._client: dict[tuple[str, str], ClientTransaction] = {}
        # What a long-lived phone (an inbound listener, the reference agent) keeps
        # about past transactions is forgotten after twice their lifetime.
        self._acks_for_non2xx: Recent[tuple[str, str], tuple[SipMessage, Peer]] = Recent()
        self._acks_for_2xx: Recent[tuple[str, int], tuple[SipMessage, Peer]] = Recent()
        # Every INVITE sent, by branch: a final answer that comes after we gave up on
        # its transaction (a 487 after our CANCEL of a failed set-up) is still ACKed.
        self._invites: Recent[str, tuple[SipMessage, Peer]] = Recent()
        self._late_finals: dict[str, asyncio.Future[SipMessage]] = {}
        self._server: Recent[tuple[str, str], _ServerTransaction] = Recent()
        self._awaiting_ack: Recent[tuple[str, int], asyncio.Future[SipMessage]] = Recent()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def host(self) -> str:
        return self.transport.host

    @property
    def port(self) -> int:
        return self.transport.port

    async def open(self) -> int:
        return await self.transport.open()

    async def close(self) -> None:
        for transaction in list(self._client.values()):
            transaction._fail(TransactionFailed("the SIP phone closed"))
        for task in list(self._tasks):
            task.cancel()
        await self.transport.close()

    def address_for(self, peer: Peer) -> str:
        """Our address as ``peer`` sees it: the bound one, or (bound to all) the route's."""
        if self.host in ("0.0.0.0", "::"):
            return local_address_for(peer.host)
        return self.host

    def hostport(self, peer: Peer) -> str:
        host = self.address_for(peer)
        return f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"

    def contact(self, peer: Peer, user: str | None = None) -> str:
        suffix = ";transport=tcp" if peer.proto == "tcp" else ""
        return f"<sip:{user or self.user}@{self.hostport(peer)}{suffix}>"

    def via(self, peer: Peer, branch: str | None = None) -> str:
        via = f"SIP/2.0/{peer.proto.upper()} {self.hostport(peer)}"
        return f"{via};branch={branch or new_branch()};rport"

    # ------------------------------------------------------------------ client

    def start_request(
        self,
        request: SipMessage,
        peer: Peer,
        *,
        on_provisional: Callable[[SipMessage], None] | None = None,
        via: bool = True,
    ) -> ClientTransaction:
        """Send ``request`` (adding our Via) and return its transaction."""
        if via:
            request.headers.insert(0, ("Via", self.via(peer)))
        transaction = ClientTransaction(self, request, peer, on_provisional)
        self._client[transaction.key] = transaction
        if request.method == "INVITE":
            self._invites[request.branch] = (request, peer)
        transaction._final.add_done_callback(lambda _f: self._client.pop(transaction.key, None))
        transaction._retransmit = self._spawn(self._send_and_retransmit(transaction))
        return transaction

    async def _send_and_retransmit(self, transaction: ClientTransaction) -> None:
        try:
            await self.transport.send(transaction.request, transaction.peer)
            if transaction.peer.proto != "udp":
                return
            interval = T1
            while not transaction.done:
                await asyncio.sleep(interval)
                if transaction.done:
                    return
                await self.transport.send(transaction.request, transaction.peer)
                interval = 2 * interval
                if transaction.request.method != "INVITE":
                    interval = min(interval, T2)
        except TransportClosed as exc:
            transaction._fail(TransactionFailed(str(exc)))

    def send_ack(self, ack: SipMessage, peer: Peer) -> None:
        """Send the ACK for a 2xx (a dialog's job) and resend it if the 2xx comes again."""
        self._acks_for_2xx[(ack.call_id, ack.cseq[0])] = (ack, peer)
        self._spawn(self._send_quietly(ack, peer))

    async def _send_quietly(self, message: SipMessage, peer: Peer) -> None:
        with contextlib.suppress(TransportClosed):
            await self.transport.send(message, peer)

    def _on_response(self, response: SipMessage, peer: Peer) -> None:
        number, method = response.cseq
        transaction = self._client.get((response.branch, method))
        if transaction is None:
            if method == "INVITE" and 200 <= response.status < 300:
                stored = self._acks_for_2xx.get((response.call_id, number))
                if stored is not None:  # our ACK was lost: the 2xx comes again
                    self._spawn(self._send_quietly(*stored))
            elif method == "INVITE" and response.status >= 300:
                stored = self._acks_for_non2xx.get((response.branch, method))
                invite = self._invites.get(response.branch)
                if stored is None and invite is not None:
                    stored = (self._ack_for(invite[0], response), invite[1])
                    self._acks_for_non2xx[(response.branch, method)] = stored
                if stored is not None:
                    self._spawn(self._send_quietly(*stored))
                late = self._late_finals.get(response.branch)
                if late is not None and not late.done():
                    late.set_result(response)
            return
        if method == "INVITE" and response.status >= 300:
            ack = self._ack_for(transaction.request, response)
            self._acks_for_non2xx[transaction.key] = (ack, transaction.peer)
            self._spawn(self._send_quietly(ack, transaction.peer))
        transaction._resolve(response)

    @staticmethod
    def _ack_for(invite: SipMessage, response: SipMessage) -> SipMessage:
        """The ACK for a non-2xx final response: same branch, the response's To (17.1.1.3)."""
        ack = SipMessage(method="ACK", uri=invite.uri)
        ack.add("Via", invite.top_via)
        for route in invite.get_all("Route"):
            ack.add("Route", route)
        ack.add("From", invite.require("From"))
        ack.add("To", response.require("To"))
        ack.add("Call-ID", invite.call_id)
        ack.add("CSeq", f"{invite.cseq[0]} ACK")
        ack.add("Max-Forwards", "70")
        return ack

    # ------------------------------------------------------------------ server

    async def respond(
        self,
        request: SipMessage,
        peer: Peer,
        status: int,
        reason: str,
        *,
        to_tag: str | None = None,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
        content_type: str = "application/sdp",
    ) -> bool:
        """Answer ``request``; a 2xx to an INVITE is retransmitted until its ACK (UDP).

        Returns False, sending nothing, when the request already has a final answer
        (a CANCEL ended the INVITE while its call was being answered).
        """
        server = self._server.get((request.branch, request.method))
        last = server.last_response if server is not None else None
        if last is not None and last.status >= 200 and status > 100:
            return False
        response = SipMessage(status=status, reason=reason)
        for via in request.get_all("Via"):
            response.add("Via", via)
        for route in request.get_all("Record-Route"):
            response.add("Record-Route", route)
        response.add("From", request.require("From"))
        to = request.to
        if to_tag and to.tag is None and status > 100:
            to = to.with_tag(to_tag)
        response.add("To", str(to))
        response.add("Call-ID", request.call_id)
        response.add("CSeq", request.require("CSeq"))
        response.add("Server", self.user_agent)
        for name, value in headers:
            response.add(name, value)
        if body:
            response.add("Content-Type", content_type)
        response.body = body
        if server is not None:
            server.last_response = response
        try:
            await self.transport.send(response, peer)
        except TransportClosed as exc:
            logger.warning(f"sip: could not answer {request.method} from {peer}: {exc}")
            return True
        if request.method == "INVITE" and 200 <= status < 300:
            key = (request.call_id, request.cseq[0])
            if key not in self._awaiting_ack:
                self._awaiting_ack[key] = asyncio.get_running_loop().create_future()
            if peer.proto == "udp":
                self._spawn(self._retransmit_2xx(key, response, peer))
        return True

    async def _retransmit_2xx(self, key: tuple[str, int], response: SipMessage, peer: Peer) -> None:
        interval = T1
        waited = 0.0
        acked = self._awaiting_ack[key]
        while not acked.done() and waited < TIMEOUT:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(acked), interval)
            waited += interval
            if acked.done():
                return
            await self._send_quietly(response, peer)
            interval = min(2 * interval, T2)

    async def wait_ack(self, request: SipMessage, timeout: float = TIMEOUT) -> SipMessage:
        """The ACK for our 2xx to ``request`` (an INVITE); ``TransactionTimeout`` if none."""
        key = (request.call_id, request.cseq[0])
        future = self._awaiting_ack.get(key)
        if future is None:
            future = self._awaiting_ack[key] = asyncio.get_running_loop().create_future()
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout)
        except TimeoutError as exc:
            raise TransactionTimeout(f"no ACK for our 200 OK within {timeout:g} s") from exc

    def _on_request(self, request: SipMessage, peer: Peer) -> None:
        if request.method == "ACK":
            server = self._server.get((request.branch, "INVITE"))
            if server is not None and (server.last_response or SipMessage()).status >= 300:
                return  # the ACK of a rejection: the transaction is done
            future = self._awaiting_ack.get((request.call_id, request.cseq[0]))
            if future is not None and not future.done():
                future.set_result(request)
            handler = self.dialogs.get(request.call_id)
            if handler is not None:
                handler.on_request(request, peer)
            return
        key = (request.branch, request.method)
        server = self._server.get(key)
        if server is not None:  # a retransmission: the same answer again
            if server.last_response is not None:
                self._spawn(self._send_quietly(server.last_response, peer))
            return
        self._server[key] = _ServerTransaction(request, peer)
        if request.method == "CANCEL":
            self._spawn(self._on_cancel(request, peer))
            return
        handler = self.dialogs.get(request.call_id)
        if handler is not None:
            handler.on_request(request, peer)
        elif request.method == "INVITE" and request.to.tag is None and self.on_invite is not None:
            self.on_invite(request, peer)
        elif request.method == "OPTIONS":
            self._spawn(
                self.respond(
                    request,
                    peer,
                    200,
                    "OK",
                    headers=[("Allow", ALLOW), ("Accept", "application/sdp")],
                )
            )
        elif request.method == "INVITE" and request.to.tag is None:
            self._spawn(self.respond(request, peer, 480, "Temporarily Unavailable"))
        else:
            self._spawn(self.respond(request, peer, 481, "Call/Transaction Does Not Exist"))

    async def _on_cancel(self, cancel: SipMessage, peer: Peer) -> None:
        invite = self._server.get((cancel.branch, "INVITE"))
        if invite is None or (invite.last_response and invite.last_response.status >= 200):
            await self.respond(cancel, peer, 481, "Call/Transaction Does Not Exist")
            return
        await self.respond(cancel, peer, 200, "OK")
        # The INVITE ends here, whatever its call was about to do (section 9.2).
        await self.respond(invite.request, invite.peer, 487, "Request Terminated", to_tag=new_tag())
        handler = self.dialogs.get(cancel.call_id)
        if handler is not None:
            handler.on_request(cancel, peer)

    # --------------------------------------------------------------- dispatch

    def _on_message(self, message: SipMessage, peer: Peer) -> None:
        try:
            if message.is_request:
                self._on_request(message, peer)
            else:
                self._on_response(message, peer)
        except SipParseError as exc:  # a header that only fails when read (a bad To)
            self._on_malformed(bytes(message), peer, exc)

    def _on_malformed(self, data: bytes, peer: Peer, error: SipParseError) -> None:
        match = _CALL_ID.search(data)
        call_id = match.group(1).decode("utf-8", "replace") if match else None
        failure = TransactionFailed(f"malformed SIP message from {peer}: {error}")
        hit = False
        for transaction in list(self._client.values()):
            if transaction.peer.addr == peer.addr and (
                call_id is None or call_id == transaction.request.get("Call-ID")
            ):
                transaction._fail(failure)
                hit = True
        handler = self.dialogs.get(call_id) if call_id else None
        if handler is not None and not hit:
            handler.on_malformed(error, peer)

    def _on_unreachable(self, exc: Exception) -> None:
        for transaction in list(self._client.values()):
            if transaction.peer.proto == "udp":
                transaction._fail(
                    TransactionFailed(
                        f"nothing answers SIP at {transaction.peer} ({exc.strerror or exc})"
                        if isinstance(exc, OSError)
                        else f"nothing answers SIP at {transaction.peer} ({exc})"
                    )
                )

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        return spawn(coro, owner=self._tasks)
