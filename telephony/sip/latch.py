"""Which source a call's RTP comes from, and where ours goes: latching, once (RFC 7362).

Stage: inside the RTP session (``rtp.py``).  In come the peer's SDP address
(``signalled``) and the source address and SSRC of every RTP packet
(``accept``); out come where to send (``remote``), the latched source, and for
each packet whether it is the peer's.  The rule:

* We send from the socket we receive on.  Each new SDP from the peer (the
  answer, early media's 183, a re-INVITE that moves the media: ``signalled``)
  names where to send, and opens *learning*: the next RTP packet that arrives
  decides the peer's source, and from then on we send to where it came from
  (a peer behind NAT sends from another address than its SDP says).
* A source learned at the SDP's address is latched for good.  One learned
  elsewhere (NAT) is latched until a packet comes from the SDP's address, which
  then takes over: the signalled address wins a race with a stray sender, or
  with the packets still in flight from the old address after a re-INVITE.
* Once latched, a packet from any other address is rejected whatever its SSRC:
  not played, not counted as the peer's media (the RTP inactivity timeout still
  runs), and never moves our outgoing RTP.  The session counts it
  (``RtpStats.rejected``); the first packet of each such source is reported to
  ``on_rejected`` (the call's ``sip_rtp_rejected`` event).
  RFC 3550 section 8.2 treats a known SSRC from a new address the same way
  (discard: a collision or a loop), and SBCs with strict latching accept only
  the latched address/port once media has flowed.
* A new SSRC from the latched address is the same peer starting a new stream
  (RFC 3550 8.2 lets a source change its SSRC; a PBX re-originates media after
  a transfer or an announcement): it is played, the reorder buffer starts over,
  and where we send does not change.
* There is no re-latching on silence or a timer: a peer that moves its media
  says so with a re-INVITE (new SDP), and a source that falls silent ends the
  call by the inactivity timeout.  An SDP that names the address already in use
  (a session refresh, a codec change) keeps the latch.
"""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Callable

from loguru import logger

__all__ = ["MAX_REPORTED", "Addr", "SourceLatch"]

Addr = tuple[str, int]
# Rejected sources reported one by one at most (a flood from many ports is only counted).
MAX_REPORTED = 8


class SourceLatch:
    """The peer's RTP source for one session, learned once per SDP address."""

    def __init__(self, on_rejected: Callable[[Addr, int], None] | None = None) -> None:
        self._on_rejected = on_rejected
        # Where to send; the SDP's address; whether the peer's source is learned
        # (None: learning), and for good (it is the SDP's address).
        self.remote: Addr | None = None
        self._signalled: Addr | None = None
        self.source: Addr | None = None
        self._source_final = False
        self._rejected_sources: set[Addr] = set()

    def signalled(self, host: str, port: int) -> None:
        """The peer's SDP names ``host:port``: a new address re-opens learning."""
        with contextlib.suppress(ValueError):  # compared with where packets come from
            host = str(ipaddress.ip_address(host))
        address = (host, port)
        if address == self._signalled:
            return  # the same media address: the latch stands
        self._signalled = address
        self.remote = address
        self.source = None
        self._source_final = False

    def accept(self, addr: Addr, ssrc: int) -> bool:
        """Whether a packet from ``addr`` is the peer's, latching as the rule above says."""
        if addr == self.source:
            return True
        if self.source is None or (not self._source_final and addr == self._signalled):
            self.source = addr
            self._source_final = addr == self._signalled
            if self.remote != addr:
                logger.debug(f"rtp: sending to {addr[0]}:{addr[1]}, where the peer sends from")
                self.remote = addr
            return True
        if addr not in self._rejected_sources and len(self._rejected_sources) < MAX_REPORTED:
            self._rejected_sources.add(addr)
            if self._on_rejected is not None:
                self._on_rejected(addr, ssrc)
        return False
