"""Client transactions: one request in flight and the responses it gets (RFC 3261 17.1).

Stage: inside the SIP phone (``phone.py``), which creates them with
``SipPhone.start_request`` and routes responses to them.  A transaction's
``final()`` is its final response; ``cancel()`` sends CANCEL for a ringing
INVITE.  The timers: T1 = 500 ms doubling (capped at T2 for non-INVITE
requests), and 64 x T1 before a request without a final answer times out.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from telephony.sip.builders import cancel_for
from telephony.sip.message import SipMessage
from telephony.sip.transport import Peer

__all__ = [
    "T1",
    "T2",
    "TIMEOUT",
    "ClientTransaction",
    "TransactionFailed",
    "TransactionTimeout",
    "TransactionUser",
]

T1 = 0.5
T2 = 4.0
TIMEOUT = 64 * T1


class TransactionTimeout(TimeoutError):
    """No final response within the transaction timer."""


class TransactionFailed(ConnectionError):
    """The transaction cannot complete: the peer is unreachable or answered garbage."""


class TransactionUser(Protocol):
    """What a transaction needs of the phone that runs it (``SipPhone``)."""

    user_agent: str

    def start_request(
        self, request: SipMessage, peer: Peer, *, via: bool = True
    ) -> ClientTransaction: ...

    def expect_late_final(self, branch: str) -> asyncio.Future[SipMessage]:
        """A future for the final answer to the INVITE ``branch`` once its transaction is over."""
        ...

    def forget_late_final(self, branch: str) -> None: ...


@dataclass
class ClientTransaction:
    """One request in flight, and the responses it gets."""

    phone: TransactionUser
    request: SipMessage
    peer: Peer
    on_provisional: Callable[[SipMessage], None] | None = None
    provisional: list[SipMessage] = field(default_factory=list)
    _final: asyncio.Future[SipMessage] = field(default_factory=asyncio.Future)
    _retransmit: asyncio.Task[None] | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.request.branch, self.request.method)

    @property
    def done(self) -> bool:
        return self._final.done()

    async def final(self, timeout: float | None = TIMEOUT) -> SipMessage:
        """The final response; ``TransactionTimeout`` or ``TransactionFailed`` otherwise."""
        try:
            return await asyncio.wait_for(asyncio.shield(self._final), timeout)
        except TimeoutError as exc:
            raise TransactionTimeout(
                f"no final response to {self.request.method} from {self.peer} within {timeout:g} s"
            ) from exc

    async def cancel(self, *, abandon: bool = False) -> None:
        """Send CANCEL for this INVITE (section 9.1); its final response then follows.

        ``abandon``: the transaction already failed on our side (the peer answered
        garbage), but the peer rang: CANCEL anyway so it stops ringing.
        """
        if self.request.method != "INVITE" or (self.done and not abandon):
            return
        late_final: asyncio.Future[SipMessage] | None = None
        if abandon:  # the INVITE's own final answer (487) will come outside its transaction
            late_final = self.phone.expect_late_final(self.request.branch)
        cancel = cancel_for(self.request, self.phone.user_agent)
        transaction = self.phone.start_request(cancel, self.peer, via=False)
        with contextlib.suppress(TransactionTimeout, TransactionFailed):
            await transaction.final(timeout=2 * T2)
        if late_final is not None:
            # Wait for the 487 so that it is ACKed before the phone closes.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(late_final, T2)
            self.phone.forget_late_final(self.request.branch)

    def _resolve(self, response: SipMessage) -> None:
        if response.status < 200:
            self.provisional.append(response)
            if self._retransmit is not None and self.request.method == "INVITE":
                self._retransmit.cancel()  # timer A stops at the first provisional
            if self.on_provisional is not None:
                self.on_provisional(response)
            return
        if not self._final.done():
            self._final.set_result(response)
        if self._retransmit is not None:
            self._retransmit.cancel()

    def _fail(self, exc: Exception) -> None:
        if not self._final.done():
            self._final.set_exception(exc)
            self._final.exception()  # retrieved: an unawaited failure is not an error
        if self._retransmit is not None:
            self._retransmit.cancel()
