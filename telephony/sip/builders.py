"""SIP messages built from other messages: responses, the ACK of a failure, CANCEL.

Stage: inside the user agent (``phone.py``, ``transaction.py``).  In comes the
request (or the INVITE and its answer) a message derives from; out goes the new
message with the headers RFC 3261 copies over: a response to a request (8.2.6),
the ACK for a non-2xx final response (17.1.1.3), the CANCEL of an INVITE (9.1).
"""

from __future__ import annotations

from telephony.sip.message import SipMessage

__all__ = ["ack_for_failure", "cancel_for", "response_to"]


def response_to(
    request: SipMessage, status: int, reason: str, *, to_tag: str | None, server: str
) -> SipMessage:
    """A response to ``request``: its Vias, Record-Routes, From, To (tagged), Call-ID, CSeq."""
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
    response.add("Server", server)
    return response


def ack_for_failure(invite: SipMessage, response: SipMessage) -> SipMessage:
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


def cancel_for(invite: SipMessage, user_agent: str) -> SipMessage:
    """The CANCEL of ``invite``: its Request-URI, top Via, Routes, From, To, Call-ID (9.1)."""
    cancel = SipMessage(method="CANCEL", uri=invite.uri)
    cancel.add("Via", invite.top_via)
    for name in ("Route", "From", "To", "Call-ID"):
        for value in invite.get_all(name) if name == "Route" else [invite.require(name)]:
            cancel.add(name, value)
    cancel.add("CSeq", f"{invite.cseq[0]} CANCEL")
    cancel.add("Max-Forwards", "70")
    cancel.add("User-Agent", user_agent)
    return cancel
