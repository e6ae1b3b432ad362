"""An ASGI app served inside the current event loop, for as long as a ``with`` block lasts.

Stage: plumbing.  ``loopcall run`` serves the Twilio gateway this way while it
places phone calls (``tel:`` targets), so Twilio's webhooks and media streams
reach the process that runs the calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import uvicorn

__all__ = ["serve_embedded"]


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:  # the CLI owns the signals
        yield


@contextlib.asynccontextmanager
async def serve_embedded(app: Any, host: str, port: int) -> AsyncIterator[int]:
    """Serve ``app`` on ``host:port`` (0: any free port); yields the port."""
    # Bound before serving: connections queue until uvicorn accepts them.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.create_server((host, port), family=family)
    server = _Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        yield int(sock.getsockname()[1])
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 10)
