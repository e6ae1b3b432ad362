"""A websocket client with a synchronous send, on the websockets library's Sans-I/O protocol.

Stage: under ``MediaStreamLeg`` (the carrier side of a Twilio media stream).  A
media stream sends a message every 20 ms per call; the ``websockets`` asyncio
client makes each send a coroutine and wakes a task for every message received,
which at a hundred calls costs more than the audio work.  Here the protocol (the
library's own ``ClientProtocol``: handshake, framing, masking, ping/pong, the
closing handshake) runs inside an ``asyncio.Protocol``: ``send_text`` writes to
the transport at once, and each received text message is handed to ``on_text``
inline, in the transport's ``data_received``.

Keepalive as the asyncio client does it: a ping every ``PING_INTERVAL_S``; no
pong within ``PING_TIMEOUT_S`` and the connection is dropped (an abnormal close,
1006).  ``closed`` resolves with the close code the peer sent (None: none came).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
from collections.abc import Callable, Mapping
from typing import cast

from websockets.client import ClientProtocol
from websockets.exceptions import InvalidHandshake, InvalidStatus
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.protocol import State
from websockets.uri import parse_uri

__all__ = ["WsClient", "WsHandshakeError", "connect_ws"]

PING_INTERVAL_S = 20.0
PING_TIMEOUT_S = 20.0
CLOSE_TIMEOUT_S = 2.0


class WsHandshakeError(Exception):
    """The server did not accept the websocket (``status`` is its HTTP status, if any)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class WsClient(asyncio.Protocol):
    """One client websocket; create it with ``connect_ws``."""

    def __init__(
        self,
        protocol: ClientProtocol,
        on_text: Callable[[str], None],
        headers: Mapping[str, str],
    ) -> None:
        self._ws = protocol
        self._on_text = on_text
        self._headers = dict(headers)
        self._transport: asyncio.Transport | None = None
        loop = asyncio.get_running_loop()
        self.opened: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[tuple[int | None, str]] = loop.create_future()
        self._fragments: list[bytes] | None = None
        self._ping_timer: asyncio.TimerHandle | None = None
        self._pong_deadline: asyncio.TimerHandle | None = None
        self._closer: asyncio.TimerHandle | None = None

    # ------------------------------------------------------------------ asyncio

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Not always an asyncio.Transport subclass (uvloop's is not), but one in kind.
        self._transport = cast(asyncio.Transport, transport)
        request = self._ws.connect()
        for name, value in self._headers.items():
            request.headers[name] = value
        self._ws.send_request(request)
        self._flush()

    def data_received(self, data: bytes) -> None:
        self._ws.receive_data(data)
        self._process()

    def eof_received(self) -> bool | None:
        self._ws.receive_eof()
        self._process()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_keepalive()
        if not self.opened.done():
            self.opened.set_exception(
                ConnectionError(f"the connection closed during the handshake: {exc}")
            )
        if not self.closed.done():
            rcvd = self._ws.close_rcvd
            self.closed.set_result((rcvd.code, rcvd.reason) if rcvd else (None, ""))

    # ------------------------------------------------------------------ protocol

    def _process(self) -> None:
        for event in self._ws.events_received():
            if isinstance(event, Response):
                self._on_response()
            elif isinstance(event, Frame):
                self._on_frame(event)
        self._flush()

    def _on_response(self) -> None:
        exc = self._ws.handshake_exc
        if exc is None:
            self.opened.set_result(None)
            self._schedule_ping()
            return
        status = exc.response.status_code if isinstance(exc, InvalidStatus) else None
        self.opened.set_exception(WsHandshakeError(str(exc), status))

    def _on_frame(self, frame: Frame) -> None:
        if frame.opcode is Opcode.TEXT or frame.opcode is Opcode.CONT:
            if frame.opcode is Opcode.TEXT:
                self._fragments = []
            if self._fragments is None:
                return
            self._fragments.append(bytes(frame.data))
            if frame.fin:
                data, self._fragments = b"".join(self._fragments), None
                self._on_text(data.decode("utf-8", errors="replace"))
        elif frame.opcode is Opcode.PONG and self._pong_deadline is not None:
            self._pong_deadline.cancel()
            self._pong_deadline = None
            self._schedule_ping()
        # Binary messages carry nothing in a media stream; pings are answered and
        # close frames handled by the protocol itself.

    def _flush(self) -> None:
        transport = self._transport
        if transport is None:
            return
        for data in self._ws.data_to_send():
            if data:
                transport.write(data)
            elif transport.can_write_eof():
                transport.write_eof()  # the protocol half-closes after the closing handshake
        closing = self._ws.close_expected() or self._ws.state is State.CLOSED
        if closing and self._closer is None:
            # The peer should end the TCP connection; if it does not, we do.
            self._closer = asyncio.get_running_loop().call_later(CLOSE_TIMEOUT_S, transport.close)

    # ------------------------------------------------------------------ keepalive

    def _schedule_ping(self) -> None:
        loop = asyncio.get_running_loop()
        self._ping_timer = loop.call_later(PING_INTERVAL_S, self._ping)

    def _ping(self) -> None:
        if self._ws.state is not State.OPEN or self._transport is None:
            return
        self._ws.send_ping(os.urandom(4))
        self._flush()
        loop = asyncio.get_running_loop()
        self._pong_deadline = loop.call_later(PING_TIMEOUT_S, self._abort)

    def _abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    def _stop_keepalive(self) -> None:
        for timer in (self._ping_timer, self._pong_deadline, self._closer):
            if timer is not None:
                timer.cancel()

    # ------------------------------------------------------------------ for users

    @property
    def open(self) -> bool:
        return self._ws.state is State.OPEN

    def send_text(self, text: str) -> bool:
        """Send one text message now; False when the websocket is no longer open."""
        if self._ws.state is not State.OPEN:
            return False
        self._ws.send_text(text.encode())
        self._flush()
        return True

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """The closing handshake (bounded), then the TCP connection."""
        if self._ws.state is State.OPEN:
            self._ws.send_close(code, reason)
            self._flush()
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self.closed), CLOSE_TIMEOUT_S)
        finally:  # a caller that stops waiting still gets the connection closed
            if self._transport is not None:
                self._transport.close()
            self._stop_keepalive()


async def connect_ws(
    url: str,
    on_text: Callable[[str], None],
    *,
    headers: Mapping[str, str] | None = None,
    max_size: int = 2**22,
    address: str | None = None,
) -> WsClient:
    """Open ``url`` (ws:// or wss://); raises ``WsHandshakeError`` or ``OSError``.

    ``address``: connect there instead of resolving the URL's host again (an
    address the egress policy checked); the handshake and TLS still name the host.
    A redirect is not followed: it fails the handshake with its status.
    """
    uri = parse_uri(url)
    loop = asyncio.get_running_loop()
    protocol = ClientProtocol(uri, max_size=max_size)
    context = ssl.create_default_context() if uri.secure else None
    _, client = await loop.create_connection(
        lambda: WsClient(protocol, on_text, headers or {}),
        address or uri.host,
        uri.port,
        ssl=context,
        server_hostname=uri.host if context else None,
    )
    try:
        await client.opened
    except (InvalidHandshake, WsHandshakeError, ConnectionError):
        client._abort()
        raise
    return client
