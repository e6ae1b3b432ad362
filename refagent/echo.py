"""The echo endpoint: the reference agent in echo mode, served inside the harness's process.

Stage: before a conversation, the harness's calibration calls it to time the
transport alone.  It is built exactly like the reference agent (the same
transports, the same stream-clocked playout) and plays every sound it hears back
``ECHO_HOLD_MS`` later, over whichever protocol the call it stands in for uses:
a SmallWebRTC offer, a Twilio media stream (also for a phone call: the part of
its path on this machine), or a SIP call.
"""

from __future__ import annotations

from refagent.core import AgentOptions
from refagent.server import create_agent_app
from refagent.sip_line import SipLine
from refagent.turn_taker import ECHO_HOLD_MS
from telephony.base import Target, TargetError, parse_target
from telephony.embedded import EmbeddedServer
from telephony.loopback import LoopbackIceMiddleware

__all__ = ["ECHO_HOLD_MS", "EchoEndpoint"]


class EchoEndpoint:
    """An in-process echo agent; ``light`` builds it like the light agent (no pipeline)."""

    def __init__(self, *, light: bool = False) -> None:
        self._light = light
        self._server: EmbeddedServer | None = None
        self._sip: SipLine | None = None
        self.port: int | None = None

    async def start(self) -> None:
        if self._server is None:
            app = create_agent_app(AgentOptions(echo=True, light=self._light))
            # Only ever called on 127.0.0.1: answer with loopback candidates, which
            # aioice never gathers by itself (a host with only lo up had none).
            app.add_middleware(LoopbackIceMiddleware)
            self._server = EmbeddedServer(app, lifespan="on")
        if not self._server.running:
            self.port = await self._server.start()

    async def close(self) -> None:
        if self._sip is not None:
            await self._sip.close()
            self._sip = None
        if self._server is not None:
            await self._server.close()
        self._server = None

    async def target_for(self, target: Target) -> Target:
        """Where to call the echo over the same stack as a call to ``target``."""
        await self.start()
        if target.channel == "webrtc":
            return parse_target(f"webrtc://127.0.0.1:{self.port}/api/offer")
        if target.channel in ("twilio-ws", "tel"):
            return parse_target(f"twilio-ws://127.0.0.1:{self.port}/ws")
        if target.channel == "sip":
            if self._sip is None:
                assert self._server is not None
                self._sip = SipLine(self._server.app.state.agent, "127.0.0.1", 0)
                await self._sip.start()
            return parse_target(self._sip.uri)
        raise TargetError(f"no echo endpoint for channel {target.channel!r}")
