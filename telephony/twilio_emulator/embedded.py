"""The emulator served inside the caller's event loop (tests, the CLI):
``TwilioEmulator``, uvicorn on ``host:port`` without its signal handling."""

from __future__ import annotations

from loguru import logger

from telephony.embedded import EmbeddedServer
from telephony.twilio_emulator.app import create_emulator_app
from telephony.twilio_emulator.calls import EmulatedCall
from telephony.twilio_emulator.config import EmulatorConfig
from telephony.twilio_emulator.switchboard import Switchboard

__all__ = ["TwilioEmulator"]


class TwilioEmulator:
    """The emulator served on ``host:port`` (0: any free port) inside the running loop."""

    def __init__(self, config: EmulatorConfig, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.config = config
        self.host = host
        self.port = port
        self.app = create_emulator_app(config)
        self.switchboard: Switchboard = self.app.state.switchboard
        self._server = EmbeddedServer(self.app, lifespan="on")

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
        if not self._server.running:
            self.port = await self._server.start(self.host, self.port)
            logger.info(f"twilio emulator: serving on {self.base_url}")

    async def close(self) -> None:
        await self.switchboard.aclose()
        await self._server.close()

    async def __aenter__(self) -> TwilioEmulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
