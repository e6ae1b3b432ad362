"""loopcall's SIP phones that wait for the agent's call: one per address, shared.

Stage: the start of an inbound SIP case (``call.py``).  A case that waits for
the agent to call ``sip:USER@HOST:PORT`` takes its place on the listener for
HOST:PORT (``listen``), opened by the first case and closed by the last one
(``unlisten``); an INVITE for USER goes to the case that has waited longest, one
for a user nobody waits for gets 404.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from loguru import logger

from telephony.errors import ConnectError
from telephony.sip.message import SipMessage
from telephony.sip.phone import SipPhone
from telephony.sip.transport import Peer

__all__ = ["Listener", "listen", "listening", "unlisten"]


@dataclass
class Listener:
    """loopcall's SIP phone on one address, shared by the inbound cases waiting there."""

    phone: SipPhone
    users: int = 0
    waiting: dict[str, list[asyncio.Future[tuple[SipMessage, Peer]]]] = field(default_factory=dict)

    def on_invite(self, invite: SipMessage, peer: Peer) -> None:
        user = invite.uri.split(":", 1)[-1].split("@", 1)[0] if "@" in invite.uri else ""
        queue = [f for f in self.waiting.get(user, []) if not f.done()]
        if not queue:
            logger.info(f"sip: INVITE for {user!r} from {peer}, but no case waits for it: 404")
            self.phone._spawn(self.phone.respond(invite, peer, 404, "Not Found"))
            return
        queue[0].set_result((invite, peer))


# Every open listener, by the address it listens on.
_LISTENERS: dict[tuple[str, int], Listener] = {}


async def listen(host: str, port: int) -> Listener:
    listener = _LISTENERS.get((host, port))
    if listener is None:
        listener = Listener(SipPhone(host, port, user="loopcall"))
        listener.phone.on_invite = listener.on_invite
        _LISTENERS[(host, port)] = listener
        try:
            await listener.phone.open()
        except OSError as exc:
            del _LISTENERS[(host, port)]
            raise ConnectError(f"cannot listen for SIP calls on {host}:{port}: {exc}") from exc
    listener.users += 1
    return listener


async def unlisten(listener: Listener) -> None:
    """One case less waits on ``listener``; the last one closes it (its sockets at once)."""
    listener.users -= 1
    if listener.users <= 0:
        key = (listener.phone.host, listener.phone.port)
        if _LISTENERS.get(key) is listener:
            del _LISTENERS[key]
        await listener.phone.close()


def listening() -> dict[tuple[str, int], Listener]:
    """The listeners open now, by address (for tests and diagnostics)."""
    return dict(_LISTENERS)
