"""A SIP dialog with its RTP stream, once set up (``dialing.py`` sets it up).

Stage: between the phone (transactions) and the two users of a call: loopcall's
``SipCall`` and the reference agent's SIP line.  A ``SipSession`` handles what
the peer sends inside the dialog: BYE, re-INVITE (new media address or codec),
INFO (DTMF), UPDATE and OPTIONS; and sends our own requests, BYE included.
"""

from __future__ import annotations

import asyncio
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field

from telephony.sip.message import NameAddr, SipMessage, SipParseError
from telephony.sip.phone import ALLOW, SipPhone
from telephony.sip.rtp import RtpSession
from telephony.sip.sdp import SdpError, build_sdp, negotiate, parse_sdp
from telephony.sip.transaction import TransactionFailed, TransactionTimeout
from telephony.sip.transport import Peer

__all__ = ["EventSink", "SipCallError", "SipSession"]

BYE_TIMEOUT_S = 4.0
_INFO_SIGNAL = re.compile(r"^Signal\s*=\s*([0-9*#A-Da-d])", re.MULTILINE)
EventSink = Callable[[str, str], None]


class SipCallError(Exception):
    """A call that could not be set up, with the SIP status when there is one."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class SipSession:
    """One dialog (RFC 3261 section 12) and its media."""

    phone: SipPhone
    peer: Peer
    call_id: str
    local: NameAddr  # our From (UAC) or To (UAS), with our tag
    remote: NameAddr  # theirs, with their tag
    remote_target: str  # the peer's Contact URI: the Request-URI of our requests
    rtp: RtpSession
    local_cseq: int
    session_version: int = 1
    session_id: int = field(default_factory=lambda: secrets.randbelow(2**31))
    on_event: EventSink = lambda _kind, _detail: None
    on_dtmf: Callable[[str], None] | None = None
    # Called once when the dialog ends from the far side: (cause, detail).
    on_end: Callable[[str, str], None] | None = None
    ended: bool = False
    route: tuple[str, ...] = ()
    far_end: str = "the agent"  # who the peer is, in event texts

    # ----------------------------------------------------------- in the dialog

    def on_request(self, request: SipMessage, peer: Peer) -> None:
        method = request.method
        if method == "ACK":
            return
        if method == "BYE":
            self._spawn_reply(request, peer, 200, "OK")
            reason = request.get("Reason")
            self._end(
                "remote_hangup",
                f"{self.far_end} hung up (BYE" + (f"; {reason})" if reason else ")"),
            )
        elif method == "INVITE":
            self._on_reinvite(request, peer)
        elif method == "INFO":
            match = _INFO_SIGNAL.search(request.body.decode("utf-8", "replace"))
            self._spawn_reply(request, peer, 200, "OK")
            if match and self.on_dtmf is not None:
                self.on_dtmf(match.group(1).upper())
        elif method in ("UPDATE", "OPTIONS"):
            self._spawn_reply(request, peer, 200, "OK", headers=[("Allow", ALLOW)])
        elif method == "CANCEL":
            pass  # too late: the call is answered (the phone already said 200 to it)
        else:
            self._spawn_reply(request, peer, 501, "Not Implemented")

    def on_malformed(self, error: SipParseError, peer: Peer) -> None:
        self.on_event("sip_malformed", f"ignored a malformed SIP message from {peer}: {error}")

    def _on_reinvite(self, request: SipMessage, peer: Peer) -> None:
        detail = "re-INVITE without SDP: media unchanged"
        if request.body:
            try:
                offer = parse_sdp(request.body)
                codec, dtmf = negotiate(offer)
            except SdpError as exc:
                self._spawn_reply(request, peer, 488, "Not Acceptable Here")
                self.on_event("sip_reinvite", f"refused a re-INVITE: {exc}")
                return
            self.rtp.set_remote(offer.host, offer.port)
            self.rtp.set_codec(codec, dtmf)
            detail = f"re-INVITE: media now {offer.host}:{offer.port} ({offer.direction})"
        self.session_version += 1
        self.on_event("sip_reinvite", detail)
        self._spawn_reply(
            request,
            peer,
            200,
            "OK",
            headers=[("Contact", self.phone.contact(peer)), ("Allow", ALLOW)],
            body=self.local_sdp(),
        )

    def local_sdp(self) -> bytes:
        codec = self.rtp.codec_pt
        return build_sdp(
            self.phone.address_for(self.peer),
            self.rtp.local_port,
            codecs=(codec,),
            dtmf_pt=self.rtp.dtmf_pt,
            session_id=self.session_id,
            version=self.session_version,
        )

    def request(self, method: str) -> SipMessage:
        """A new request inside the dialog (section 12.2.1.1)."""
        self.local_cseq += 1
        message = SipMessage(method=method, uri=self.remote_target)
        for route in self.route:
            message.add("Route", route)
        message.add("Max-Forwards", "70")
        message.add("From", str(self.local))
        message.add("To", str(self.remote))
        message.add("Call-ID", self.call_id)
        message.add("CSeq", f"{self.local_cseq} {method}")
        message.add("User-Agent", self.phone.user_agent)
        return message

    async def bye(self, reason: str | None = None) -> None:
        """Hang up: send BYE and wait (briefly) for its answer."""
        if self.ended:
            return
        self.ended = True
        bye = self.request("BYE")
        if reason:
            bye.add("Reason", reason)
        transaction = self.phone.start_request(bye, self.peer)
        try:
            final = await transaction.final(timeout=BYE_TIMEOUT_S)
            self.on_event("sip_bye", f"BYE answered {final.summary()}")
        except (TransactionTimeout, TransactionFailed) as exc:
            self.on_event("sip_bye", f"BYE not answered: {exc}")
        except asyncio.CancelledError:
            self.on_event("sip_bye", "BYE sent; the hang-up stopped waiting for its answer")
            raise

    def _end(self, cause: str, detail: str) -> None:
        if self.ended:
            return
        self.ended = True
        self.on_event("sip_ended", detail)
        if self.on_end is not None:
            self.on_end(cause, detail)

    def _spawn_reply(
        self,
        request: SipMessage,
        peer: Peer,
        status: int,
        reason: str,
        *,
        headers: list[tuple[str, str]] | None = None,
        body: bytes = b"",
    ) -> None:
        self.phone._spawn(
            self.phone.respond(
                request,
                peer,
                status,
                reason,
                to_tag=self.local.tag,
                headers=headers or [],
                body=body,
            )
        )
