"""The ACKs a SIP phone sends for its INVITEs, sends again, and the answers that come late.

Stage: inside the phone (``phone.py``), on the client side.  In come the final
answers to our INVITEs: within their transaction, or outside it (a 2xx sent
again because our ACK was lost; a 487 after we gave up on the transaction, our
CANCEL of a failed set-up).  Out go ACKs: for a non-2xx final answer, built here
(RFC 3261 17.1.1.3) and sent again each time the answer comes again; for a 2xx,
the dialog's own ACK (13.2.2.4), remembered and sent again the same way.  A
late final answer is also handed to whoever still waits for it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from telephony.sip.builders import ack_for_failure
from telephony.sip.message import SipMessage
from telephony.sip.recent import Recent
from telephony.sip.transport import Peer

__all__ = ["Acks"]


class Acks:
    """What a phone remembers to ACK its INVITEs' final answers, however often they come."""

    def __init__(self, send: Callable[[SipMessage, Peer], object]) -> None:
        self._send = send
        # What a long-lived phone (an inbound listener, the reference agent) keeps
        # about past transactions is forgotten after twice their lifetime.
        self._for_non2xx: Recent[tuple[str, str], tuple[SipMessage, Peer]] = Recent()
        self._for_2xx: Recent[tuple[str, int], tuple[SipMessage, Peer]] = Recent()
        # Every INVITE sent, by branch: a final answer that comes after we gave up on
        # its transaction (a 487 after our CANCEL of a failed set-up) is still ACKed.
        self._invites: Recent[str, tuple[SipMessage, Peer]] = Recent()
        self._late_finals: dict[str, asyncio.Future[SipMessage]] = {}

    def invite_sent(self, invite: SipMessage, peer: Peer) -> None:
        self._invites[invite.branch] = (invite, peer)

    def ack_2xx(self, ack: SipMessage, peer: Peer) -> None:
        """Send the ACK for a 2xx (a dialog's job) and resend it if the 2xx comes again."""
        self._for_2xx[(ack.call_id, ack.cseq[0])] = (ack, peer)
        self._send(ack, peer)

    def ack_failure(self, invite: SipMessage, response: SipMessage, peer: Peer) -> None:
        """ACK a non-2xx final answer to ``invite`` within its transaction."""
        ack = ack_for_failure(invite, response)
        self._for_non2xx[(invite.branch, invite.method)] = (ack, peer)
        self._send(ack, peer)

    def outside_transaction(self, response: SipMessage) -> None:
        """A final answer to an INVITE whose transaction is over: ACK it (again)."""
        number, method = response.cseq
        if 200 <= response.status < 300:
            stored = self._for_2xx.get((response.call_id, number))
            if stored is not None:  # our ACK was lost: the 2xx comes again
                self._send(*stored)
        elif response.status >= 300:
            stored = self._for_non2xx.get((response.branch, method))
            invite = self._invites.get(response.branch)
            if stored is None and invite is not None:
                stored = (ack_for_failure(invite[0], response), invite[1])
                self._for_non2xx[(response.branch, method)] = stored
            if stored is not None:
                self._send(*stored)
            late = self._late_finals.get(response.branch)
            if late is not None and not late.done():
                late.set_result(response)

    def expect_late_final(self, branch: str) -> asyncio.Future[SipMessage]:
        """A future for the final answer to the INVITE ``branch`` after its transaction."""
        future: asyncio.Future[SipMessage] = asyncio.get_running_loop().create_future()
        self._late_finals[branch] = future
        return future

    def forget_late_final(self, branch: str) -> None:
        self._late_finals.pop(branch, None)
