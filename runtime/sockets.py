"""Listening TCP sockets for loopcall's servers, made so that replies are not held by Nagle.

Stage: under every server loopcall starts on a socket it binds itself (the
controller, the Twilio gateway, the reference agent, the emulator).  asyncio
turns Nagle's algorithm off (``TCP_NODELAY``) on a connection only when its
socket says ``proto == IPPROTO_TCP``; ``socket.socket()`` and
``socket.create_server()`` say 0, and an accepted socket inherits it.  With Nagle
on, each 20 ms media message waited for the ACK of the one before, which the far
side sends with its own next message: a delay of up to a frame that held for the
whole call (a ``tel:`` call's persona audio reached the carrier 8-13 ms late).
"""

from __future__ import annotations

import socket

__all__ = ["tcp_listener"]


def tcp_listener(host: str, port: int, *, backlog: int = 512) -> socket.socket:
    """A socket listening on ``host:port`` whose connections asyncio makes no-delay.

    Raises ``OSError`` when the address cannot be bound.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    return sock
