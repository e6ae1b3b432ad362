"""Setting a call up: placing one (``dial``) and answering one (``answer``).

Stage: between the phone (transactions) and the two users of a call: loopcall's
``SipCall`` and the reference agent's SIP line.  ``dial`` sends the INVITE with
our SDP offer and custom headers, reports 100/180/183 as they come, answers a
401/407 challenge once with the configured credentials, CANCELs when nobody
answers within the ring timeout, and ACKs the 200.  ``answer`` takes an INVITE,
rings, and answers it with our SDP.  Either way the result is a ``SipSession``;
every failure is a ``SipCallError`` whose text is what a user needs: the SIP
status, or the cause.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field

from loguru import logger
from pydantic import SecretStr

from telephony.sip.digest import DigestError, authorization, parse_challenge, response_of
from telephony.sip.message import NameAddr, SipMessage, SipParseError, new_tag, parse_name_addr
from telephony.sip.phone import ALLOW, SipPhone
from telephony.sip.rtp import RtpSession
from telephony.sip.sdp import SdpError, build_sdp, negotiate, parse_sdp
from telephony.sip.session import EventSink, SipCallError, SipSession
from telephony.sip.transaction import (
    ClientTransaction,
    TransactionFailed,
    TransactionTimeout,
)
from telephony.sip.transport import Peer

__all__ = ["DialRequest", "answer", "dial"]

CANCEL_WAIT_S = 4.0


# ------------------------------------------------------------------- placing a call


@dataclass(frozen=True)
class DialRequest:
    """What ``dial`` needs to know beyond the phone and the media."""

    uri: str  # the Request-URI: sip:USER@HOST:PORT[;transport=tcp]
    peer: Peer  # where to send it
    run_id: str = ""
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    username: str | None = None
    password: SecretStr | None = None
    from_user: str = "loopcall"
    ring_timeout_s: float = 30.0
    # What this call sends that a peer must not see back: ``dial`` adds its digest
    # answers here, the caller masks them in whatever the peer says.
    sent: list[str] = field(default_factory=list, repr=False)


async def dial(
    phone: SipPhone,
    rtp: RtpSession,
    request: DialRequest,
    *,
    on_event: EventSink,
) -> SipSession:
    """Place a call and return the answered session; ``SipCallError`` otherwise."""
    here = phone.hostport(request.peer)
    call_id = f"{secrets.token_hex(12)}@{phone.address_for(request.peer)}"
    local = parse_name_addr(f"<sip:{request.from_user}@{here}>").with_tag(new_tag())
    to = parse_name_addr(f"<{request.uri}>")
    session_id = secrets.randbelow(2**31)
    offer = build_sdp(phone.address_for(request.peer), rtp.local_port, session_id=session_id)
    cseq = 1
    authorized: str | None = None
    answered_with: str | None = None
    while True:
        invite = _invite(phone, request, call_id, local, to, cseq, offer)
        if authorized is not None:
            invite.add(*_credentials_header(authorized, answered_with))
        final = await _ring(phone, rtp, invite, request, on_event)
        status = final.status
        if status in (401, 407):
            challenge_header = "WWW-Authenticate" if status == 401 else "Proxy-Authenticate"
            challenge_text = final.get(challenge_header) or ""
            if authorized is not None:
                raise SipCallError(
                    f"the agent's SIP peer rejected the credentials for user "
                    f"{request.username!r}: {final.summary()} again after digest authentication",
                    status,
                )
            if not request.username:
                raise SipCallError(
                    f"the agent's SIP peer asks for digest authentication ({final.summary()}) "
                    "but no SIP credentials are configured (sip_username / sip_password)",
                    status,
                )
            try:
                challenge = parse_challenge(challenge_text)
                authorized = authorization(
                    challenge,
                    method="INVITE",
                    uri=request.uri,
                    username=request.username,
                    password=request.password or SecretStr(""),
                )
                request.sent.extend(v for v in (authorized, response_of(authorized)) if v)
            except DigestError as exc:
                raise SipCallError(f"cannot answer the SIP challenge: {exc}", status) from exc
            answered_with = challenge_header
            on_event("sip_auth", f"{final.summary()}: answering realm {challenge['realm']!r}")
            cseq += 1
            continue
        if status >= 300:
            detail = f"the agent's SIP peer answered {final.summary()}"
            if authorized is not None and status == 403:
                detail += (
                    f" after digest authentication as {request.username!r}: check the credentials"
                )
            raise SipCallError(detail, status)
        return await _confirm(phone, rtp, invite, final, request, session_id, on_event)


def _invite(
    phone: SipPhone,
    request: DialRequest,
    call_id: str,
    local: NameAddr,
    to: NameAddr,
    cseq: int,
    offer: bytes,
) -> SipMessage:
    invite = SipMessage(method="INVITE", uri=request.uri)
    invite.add("Max-Forwards", "70")
    invite.add("From", str(local))
    invite.add("To", str(to))
    invite.add("Call-ID", call_id)
    invite.add("CSeq", f"{cseq} INVITE")
    invite.add("Contact", phone.contact(request.peer, request.from_user))
    invite.add("User-Agent", phone.user_agent)
    invite.add("Allow", ALLOW)
    if request.run_id:
        invite.add("X-Loopcall-Run-Id", request.run_id)
    for name, value in request.headers.items():
        invite.add(name, value)
    invite.add("Content-Type", "application/sdp")
    invite.body = offer
    return invite


def _credentials_header(value: str, challenge_header: str | None) -> tuple[str, str]:
    if challenge_header == "Proxy-Authenticate":
        return ("Proxy-Authorization", value)
    return ("Authorization", value)


async def _ring(
    phone: SipPhone,
    rtp: RtpSession,
    invite: SipMessage,
    request: DialRequest,
    on_event: EventSink,
) -> SipMessage:
    """Send one INVITE; return its final response (CANCEL after the ring timeout)."""

    def provisional(response: SipMessage) -> None:
        on_event("sip_provisional", response.summary())
        if response.status == 183 and response.body:
            with contextlib.suppress(SdpError):
                media = parse_sdp(response.body)
                rtp.set_remote(media.host, media.port)
                on_event("sip_early_media", f"early media from {media.host}:{media.port}")

    transaction: ClientTransaction = phone.start_request(
        invite, request.peer, on_provisional=provisional
    )
    try:
        try:
            return await transaction.final(timeout=request.ring_timeout_s)
        except TransactionTimeout:
            pass
        if not transaction.provisional:
            raise SipCallError(
                f"no SIP response from {request.peer} within {request.ring_timeout_s:g} s "
                f"(is a SIP peer listening there?)",
                None,
            )
        on_event("sip_cancel", f"no answer within {request.ring_timeout_s:g} s: sending CANCEL")
        await transaction.cancel()
        try:
            final = await transaction.final(timeout=CANCEL_WAIT_S)
        except TransactionTimeout as exc:
            raise SipCallError(
                f"no answer within {request.ring_timeout_s:g} s (CANCEL sent, not confirmed)", 408
            ) from exc
        if 200 <= final.status < 300:
            return final  # answered as we cancelled: the caller ACKs and may hang up
        raise SipCallError(
            f"no answer within {request.ring_timeout_s:g} s: CANCEL sent, "
            f"the peer answered {final.summary()}",
            final.status,
        )
    except TransactionFailed as exc:
        if transaction.provisional:  # it rang: tell it we are gone
            await transaction.cancel(abandon=True)
        raise SipCallError(str(exc), None) from exc


async def _confirm(
    phone: SipPhone,
    rtp: RtpSession,
    invite: SipMessage,
    ok: SipMessage,
    request: DialRequest,
    session_id: int,
    on_event: EventSink,
) -> SipSession:
    """ACK the 200 and build the session; hang up at once if its SDP is unusable."""
    try:
        remote = ok.to
        contact_values = ok.get_all("Contact")
        target = parse_name_addr(contact_values[0]).uri if contact_values else request.uri
    except SipParseError as exc:
        raise SipCallError(f"malformed 200 OK: {exc}", 200) from exc
    route = tuple(reversed(ok.get_all("Record-Route")))
    session = SipSession(
        phone=phone,
        peer=request.peer,
        call_id=invite.call_id,
        local=invite.from_,
        remote=remote,
        remote_target=target,
        rtp=rtp,
        local_cseq=invite.cseq[0],
        session_id=session_id,
        on_event=on_event,
        route=route,
    )
    ack = SipMessage(method="ACK", uri=target)
    ack.add("Via", phone.via(request.peer))
    for hop in route:
        ack.add("Route", hop)
    ack.add("Max-Forwards", "70")
    ack.add("From", str(session.local))
    ack.add("To", str(remote))
    ack.add("Call-ID", session.call_id)
    ack.add("CSeq", f"{invite.cseq[0]} ACK")
    phone.send_ack(ack, request.peer)
    try:
        media = parse_sdp(ok.body) if ok.body else None
        if media is None:
            raise SdpError("the 200 OK carries no SDP answer")
        codec, dtmf = negotiate(media)
    except SdpError as exc:
        await session.bye('SIP;cause=488;text="unusable SDP"')
        raise SipCallError(f"answered, but {exc}", 200) from exc
    rtp.set_codec(codec, dtmf)
    rtp.set_remote(media.host, media.port)
    on_event(
        "sip_answered",
        f"{ok.summary()}: {media.codec_name(codec)} to {media.host}:{media.port}"
        + (f", telephone-event {dtmf}" if dtmf is not None else ", no telephone-event"),
    )
    return session


# ------------------------------------------------------------------ answering a call


async def answer(
    phone: SipPhone,
    rtp: RtpSession,
    invite: SipMessage,
    peer: Peer,
    *,
    on_event: EventSink,
    ring: bool = True,
    far_end: str = "the agent",
) -> SipSession:
    """Answer ``invite`` (100, 180, 200 with our SDP) and wait for the ACK."""
    tag = new_tag()
    try:
        offer = parse_sdp(invite.body) if invite.body else None
        if offer is None:
            raise SdpError("the INVITE carries no SDP offer (late offer is not supported)")
        codec, dtmf = negotiate(offer)
        remote = invite.from_
        contacts = invite.get_all("Contact")
        target = parse_name_addr(contacts[0]).uri if contacts else remote.uri
    except (SdpError, SipParseError) as exc:
        await phone.respond(invite, peer, 488, "Not Acceptable Here", to_tag=tag)
        raise SipCallError(f"refused an INVITE from {peer}: {exc}", 488) from exc
    await phone.respond(invite, peer, 100, "Trying")
    if ring:
        await phone.respond(invite, peer, 180, "Ringing", to_tag=tag)
    rtp.set_codec(codec, dtmf)
    rtp.set_remote(offer.host, offer.port)
    session = SipSession(
        phone=phone,
        peer=peer,
        call_id=invite.call_id,
        local=invite.to.with_tag(tag),
        remote=remote,
        remote_target=target,
        rtp=rtp,
        local_cseq=secrets.randbelow(2**16),
        on_event=on_event,
        route=tuple(invite.get_all("Record-Route")),
        far_end=far_end,
    )
    phone.dialogs[invite.call_id] = session
    answered = await phone.respond(
        invite,
        peer,
        200,
        "OK",
        to_tag=tag,
        headers=[("Contact", phone.contact(peer)), ("Allow", ALLOW)],
        body=session.local_sdp(),
    )
    if not answered:
        phone.dialogs.pop(invite.call_id, None)
        raise SipCallError(f"the caller at {peer} cancelled the call before it was answered", 487)
    on_event(
        "sip_answered",
        f"answered {invite.summary()} from {peer}: {offer.codec_name(codec)} "
        f"to {offer.host}:{offer.port}",
    )
    try:
        await phone.wait_ack(invite)
    except TransactionTimeout as exc:
        phone.dialogs.pop(invite.call_id, None)
        raise SipCallError(f"answered {peer}, but {exc}", 408) from exc
    logger.debug(f"sip: call {invite.call_id} confirmed")
    return session
