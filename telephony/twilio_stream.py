"""Twilio Media Streams, carrier side: loopcall plays Twilio's part toward an agent's websocket.

Stage: the channel for ``twilio-ws://HOST:PORT/PATH`` targets.  The wire is a
``MediaStreamLeg`` (``media_stream.py``: loopcall connects to the agent's media
websocket exactly as Twilio does for ``<Connect><Stream>``, and plays back what
the agent sends as a phone would).

``TwilioStreamCall`` is that leg as a ``Call``: 16 kHz PCM in and out, taps at the
websocket.  The persona's side is tapped as the line carries it (band-limited to
4 kHz, mu-law quantized), so an utterance ends in the recording where it ends
for the agent: a final "s" above 4 kHz does not reach a phone line.  The agent
ends the call by closing the websocket, or through the REST hang-up
(``POST .../Calls/{CallSid}.json Status=completed``) when its Twilio base URL
points at a loopcall controller, which finds the call in ``LIVE_CALLS``.
"""

from __future__ import annotations

import asyncio
import json
import weakref
from collections.abc import Mapping
from typing import Any

from runtime.tasks import spawn
from telephony.base import Call
from telephony.egress import EgressPolicy
from telephony.errors import CallStateError, ConnectError
from telephony.frame_clock import FrameClock
from telephony.media_stream import MediaStreamLeg, StreamIds, new_sid
from telephony.playout import Playout
from telephony.target import Target
from telephony.ws_client import CLOSE_TIMEOUT_S

# FrameClock, Playout, StreamIds and new_sid live in their own modules; they are
# importable from here as before.
__all__ = [
    "LIVE_CALLS",
    "FrameClock",
    "MediaStreamLeg",
    "Playout",
    "StreamIds",
    "TwilioStreamCall",
    "new_sid",
]

# Every live twilio-ws call by its call SID, for the agent's REST hang-up.
LIVE_CALLS: weakref.WeakValueDictionary[str, TwilioStreamCall] = weakref.WeakValueDictionary()


class TwilioStreamCall(Call):
    """A call to an agent's Twilio media-stream websocket, loopcall playing the carrier."""

    # The websocket's closing handshake: the agent's close frame is awaited this long.
    hangup_timeout_s = CLOSE_TIMEOUT_S

    def __init__(
        self,
        target: Target,
        *,
        request_data: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        media_timeout_s: float | None = None,
        account_sid: str | None = None,
        sample_rate: int = 16_000,
        egress: EgressPolicy | None = None,
    ) -> None:
        # A media stream carries silence only from the carrier: an agent is quiet
        # between utterances, so silence from it says nothing. The websocket's own
        # keepalive (ping/pong) detects a dead peer instead of a media timeout.
        super().__init__(target, media_timeout_s=None, sample_rate=sample_rate)
        self._closing: asyncio.Task[None] | None = None  # the close a REST hang-up starts
        self.ids = StreamIds(account_sid=account_sid) if account_sid else StreamIds()
        custom = {
            k: v if isinstance(v, str) else json.dumps(v) for k, v in (request_data or {}).items()
        }
        self.leg = MediaStreamLeg(
            target.ws_url,
            ids=self.ids,
            next_frame=self._take_outgoing_frame,
            on_audio=self._deliver,
            on_end=self._on_leg_end,
            on_sent=lambda pcm, t: self._tap_sent(pcm, t),
            custom_parameters=custom,
            headers=headers,
            sample_rate=sample_rate,
            egress=egress,
        )

    @property
    def call_sid(self) -> str:
        return self.ids.call_sid

    @property
    def audio_drops(self) -> list[tuple[float, float]]:
        return self.leg.playout.drops

    async def connect(self, timeout: float = 15.0) -> None:
        if self.state != "new":
            raise CallStateError(f'Cannot connect in call state "{self.state}"')
        self.state = "connecting"
        try:
            await asyncio.wait_for(self.leg.open(), timeout)
        except TimeoutError as exc:
            await self._fail_connect()
            raise ConnectError(
                f"no media stream to {self.target.ws_url} within {timeout:g} s"
            ) from exc
        except ConnectError:
            await self._fail_connect()
            raise
        LIVE_CALLS[self.call_sid] = self
        self._mark_connected()

    async def _fail_connect(self) -> None:
        self._mark_ended("transport_failed", "connect failed")
        await self.leg.close(send_stop=False)

    async def send_dtmf(self, digit: str) -> None:
        if self.state != "connected":
            raise CallStateError(f'Cannot send DTMF in call state "{self.state}"')
        await self.leg.send_dtmf(digit)

    def remote_hangup(self, detail: str) -> None:
        """The agent ended the call out of band (its REST hang-up)."""
        if self.state == "connected":
            self._mark_ended("remote_hangup", detail)
            self._closing = spawn(self.leg.close(), name="twilio-stream-close")

    def _on_leg_end(self, detail: str, abnormal: bool) -> None:
        self._mark_ended("transport_failed" if abnormal else "remote_hangup", detail)

    async def _close_transport(self) -> None:
        self._mark_ended("local_hangup")
        LIVE_CALLS.pop(self.call_sid, None)
        await self.leg.close()
