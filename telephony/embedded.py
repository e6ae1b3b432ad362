"""An ASGI app served inside the running event loop: uvicorn without its signal handling.

Stage: plumbing for the servers loopcall runs in-process: the echo endpoint of
the calibration, the Twilio gateway of ``loopcall run``, the Twilio emulator
embedded in tests.  The socket is bound before serving, so connections made at
once queue until uvicorn accepts them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any, Literal

import uvicorn

from runtime.sockets import tcp_listener
from runtime.tasks import spawn

__all__ = ["EmbeddedServer", "serve_embedded"]


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:  # the caller owns the signals
        yield


class EmbeddedServer:
    """``app`` on ``host:port`` (0: any free port) between ``start()`` and ``close()``."""

    def __init__(self, app: Any, *, lifespan: Literal["on", "off"] = "off") -> None:
        self.app = app
        self.lifespan = lifespan
        self.port: int | None = None
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._server is not None

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        if self._server is None:
            sock = tcp_listener(host, port)
            self.port = int(sock.getsockname()[1])
            config = uvicorn.Config(self.app, log_level="warning", lifespan=self.lifespan)
            self._server = _Server(config)
            self._task = spawn(self._server.serve(sockets=[sock]), name="embedded-server")
        assert self.port is not None
        return self.port

    async def close(self) -> None:
        server, task = self._server, self._task
        self._server = self._task = None
        if server is not None and task is not None:
            server.should_exit = True
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 10)


@contextlib.asynccontextmanager
async def serve_embedded(app: Any, host: str, port: int) -> AsyncIterator[int]:
    """Serve ``app`` on ``host:port`` for the ``with`` block; yields the port."""
    server = EmbeddedServer(app)
    try:
        yield await server.start(host, port)
    finally:
        await server.close()
