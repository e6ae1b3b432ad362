"""loopcall's servers answer without Nagle's algorithm (TCP_NODELAY on every connection)."""

from __future__ import annotations

import asyncio
import socket

import aiohttp
import pytest
from fastapi import FastAPI

from harness.cli.common import listen_or_say
from runtime.sockets import tcp_listener
from telephony import embedded
from telephony.embedded import serve_embedded


async def _nodelay_of_a_connection(listener: socket.socket) -> int:
    """Serve ``listener`` with asyncio, connect once, and read the accepted side's option."""
    seen: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    class Probe(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            sock = transport.get_extra_info("socket")
            seen.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            transport.close()

    server = await asyncio.get_running_loop().create_server(Probe, sock=listener)
    try:
        host, port = listener.getsockname()[:2]
        _, writer = await asyncio.open_connection(host, port)
        writer.close()
        return await asyncio.wait_for(seen, 5)
    finally:
        server.close()


async def test_a_socket_bound_the_usual_way_keeps_nagle_on() -> None:
    """Why the helper exists: asyncio sets TCP_NODELAY only when ``proto`` says TCP."""
    assert await _nodelay_of_a_connection(socket.create_server(("127.0.0.1", 0))) == 0


async def test_loopcall_listeners_turn_nagle_off() -> None:
    assert await _nodelay_of_a_connection(tcp_listener("127.0.0.1", 0)) != 0
    cli = listen_or_say("127.0.0.1", 0)
    assert cli is not None
    assert await _nodelay_of_a_connection(cli) != 0


async def test_the_embedded_server_listens_on_such_a_socket(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The Twilio gateway's and the tests' controllers' server."""
    made: list[socket.socket] = []

    def recording(host: str, port: int) -> socket.socket:
        made.append(tcp_listener(host, port))
        return made[-1]

    monkeypatch.setattr(embedded, "tcp_listener", recording)
    app = FastAPI()

    @app.get("/")
    async def root() -> dict[str, str]:
        return {"ok": "yes"}

    async with (
        serve_embedded(app, "127.0.0.1", 0) as port,
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}/") as response,
    ):
        assert (await response.json()) == {"ok": "yes"}
    assert [s.proto for s in made] == [socket.IPPROTO_TCP]
