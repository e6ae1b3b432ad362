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
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from loguru import logger

from runtime.tasks import spawn
from telephony.sip.acks import Acks
from telephony.sip.builders import response_to
from telephony.sip.message import SipMessage, SipParseError, new_branch, new_tag
from telephony.sip.recent import Recent
from telephony.sip.transaction import (
    T1,
    T2,
    TIMEOUT,
    ClientTransaction,
    TransactionFailed,
    TransactionTimeout,
)
from telephony.sip.transport import Peer, SipTransport, TransportClosed, local_address_for

# ``Recent`` lives in ``recent.py``; importable from here as before.
__all__ = [
    "ALLOW",
    "ClientTransaction",
    "DialogHandler",
    "Recent",
    "SipPhone",
    "TransactionFailed",
    "TransactionTimeout",
]

ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE"
USER_AGENT = "loopcall"
_CALL_ID = re.compile(rb"^(?:call-id|i)[ \t]*:[ \t]*(\S+)", re.IGNORECASE | re.MULTILINE)


class DialogHandler(Protocol):
    """What a call registers with the phone for its Call-ID."""

    def on_request(self, request: SipMessage, peer: Peer) -> None: ...

    def on_malformed(self, error: SipParseError, peer: Peer) -> None: ...


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
        self.acks = Acks(lambda message, peer: self._spawn(self._send_quietly(message, peer)))
        # What a long-lived phone (an inbound listener, the reference agent) keeps
        # about past transactions is forgotten after twice their lifetime.
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
            self.acks.invite_sent(request, peer)
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

    def expect_late_final(self, branch: str) -> asyncio.Future[SipMessage]:
        return self.acks.expect_late_final(branch)

    def forget_late_final(self, branch: str) -> None:
        self.acks.forget_late_final(branch)

    def send_ack(self, ack: SipMessage, peer: Peer) -> None:
        """Send the ACK for a 2xx (a dialog's job) and resend it if the 2xx comes again."""
        self.acks.ack_2xx(ack, peer)

    async def _send_quietly(self, message: SipMessage, peer: Peer) -> None:
        with contextlib.suppress(TransportClosed):
            await self.transport.send(message, peer)

    def _on_response(self, response: SipMessage, peer: Peer) -> None:
        _number, method = response.cseq
        transaction = self._client.get((response.branch, method))
        if transaction is None:
            if method == "INVITE":
                self.acks.outside_transaction(response)
            return
        if method == "INVITE" and response.status >= 300:
            self.acks.ack_failure(transaction.request, response, transaction.peer)
        transaction._resolve(response)

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
        response = response_to(request, status, reason, to_tag=to_tag, server=self.user_agent)
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
