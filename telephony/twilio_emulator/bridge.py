"""Bridging an answered call: its two media streams opened, each a
``MediaStreamLeg`` playing Twilio toward one side's agent, with what one agent
says fed to the other."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from telephony.errors import ConnectError
from telephony.media_stream import MediaStreamLeg, StreamIds, new_sid
from telephony.twilio_emulator.calls import CallFailure, EmulatedCall
from telephony.twilio_emulator.twiml import StreamSpec
from telephony.twilio_emulator.webhooks import Webhooks

__all__ = ["LEG_OPEN_TIMEOUT_S", "LegEnded", "bridge"]

LEG_OPEN_TIMEOUT_S = 10.0

# Told when an agent closes its media stream: the call, the leg, and why.
LegEnded = Callable[[EmulatedCall, MediaStreamLeg, str], None]


async def bridge(
    call: EmulatedCall,
    caller: StreamSpec,
    callee: StreamSpec,
    webhooks: Webhooks,
    on_leg_end: LegEnded,
) -> None:
    """Open both media streams (as ``call.legs``) and cross their audio; raise
    ``CallFailure`` if either does not open.

    Each leg plays what its agent sends at real-time pace (``Playout``: bursts
    wait their turn, silence fills the pauses), and whatever plays is sent on
    to the other leg at once, as 20 ms frames: one carrier clock per direction,
    so the bridge adds no buffering of its own.  Each playout is adaptive, as a
    carrier's jitter buffer is: the backlog a sender's jitter leaves (a late
    frame, then two at once) is cut from its next silence, not kept for the call.
    """
    legs: dict[str, MediaStreamLeg] = {}
    bridged = False

    def make_leg(side: str, spec: StreamSpec, other: str) -> MediaStreamLeg:
        leg: MediaStreamLeg

        def heard(pcm: bytes, t: float) -> None:
            # What one side said while the other's stream was still opening is lost.
            if bridged:
                legs[other].feed(pcm)

        def ended(detail: str, abnormal: bool) -> None:
            on_leg_end(call, leg, f"{side}: {detail}")

        leg = MediaStreamLeg(
            spec.url,
            ids=StreamIds(
                account_sid=call.account_sid, call_sid=call.sid, stream_sid=new_sid("MZ")
            ),
            next_frame=None,
            on_audio=heard,
            on_end=ended,
            custom_parameters=spec.parameters,
            headers={"X-Twilio-Signature": webhooks.signature(spec.url, {})},
            adaptive_playout=True,
        )
        legs[side] = leg
        return leg

    call.legs = [make_leg("caller", caller, "callee"), make_leg("callee", callee, "caller")]
    results = await asyncio.gather(*(_open_leg(leg) for leg in call.legs), return_exceptions=True)
    failures = [str(r) for r in results if isinstance(r, BaseException)]
    if failures:
        raise CallFailure("; ".join(failures))
    bridged = True


async def _open_leg(leg: MediaStreamLeg) -> None:
    try:
        await asyncio.wait_for(leg.open(), LEG_OPEN_TIMEOUT_S)
    except TimeoutError as exc:
        raise ConnectError(f"no media stream to {leg.url} within {LEG_OPEN_TIMEOUT_S:g} s") from exc
