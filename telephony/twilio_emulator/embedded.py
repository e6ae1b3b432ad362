"""The emulator served inside the caller's event loop (tests, the CLI):
``TwilioEmulator``, uvicorn on ``host:port`` without its signal handling."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator

import uvicorn
from loguru import logger

from telephony.twilio_emulator.app import create_emulator_app
from telephony.twilio_emulator.calls import EmulatedCall
from telephony.twilio_emulator.config import EmulatorConfig
from telephony.twilio_emulator.switchboard import Switchboard

__all__ = ["TwilioEmulator"]


class _EmbeddedServer(uvicorn.Server):
    """uvicorn inside the caller's loop: leave SIGINT to the caller."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class TwilioEmulator:
    """The emulator served on ``host:port`` (0: any free port) inside the running loop."""

    def __init__(self, config: EmulatorConfig, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.config = config
        self.host = host
        self.port = port
        self.app = create_emulator_app(config)
        self.switchboard: Switchboard = self.app.state.switchboard
        self._server: uvicorn.Server | None = None
        self._serve_task: asyncio.Task[None] | None = None

    @property
    def base_url(self) -> str:
        """For the SDK: ``client.api.base_url = emulator.base_url``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def calls(self) -> dict[str, EmulatedCall]:
        return self.switchboard.calls

    async def wait_status(self, sid: str, status: str, timeout: float = 5.0) -> EmulatedCall:
        return await self.switchboard.wait_status(sid, status, timeout)

    async def start(self) -> None:
        if self._server is not None:
            return
        # Bound before serving: the first request queues until uvicorn accepts.
        sock = socket.create_server((self.host, self.port))
        self.port = sock.getsockname()[1]
        server = _EmbeddedServer(uvicorn.Config(self.app, log_level="warning", lifespan="on"))
        self._server = server
        self._serve_task = asyncio.create_task(server.serve(sockets=[sock]))
        logger.info(f"twilio emulator: serving on {self.base_url}")

    async def close(self) -> None:
        await self.switchboard.aclose()
        if self._server is not None and self._serve_task is not None:
            self._server.should_exit = True
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._serve_task, 10)
        self._server = None
        self._serve_task = None

    async def __aenter__(self) -> TwilioEmulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
