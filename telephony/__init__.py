"""How audio reaches the agent under test: one ``Call`` interface, one module per channel.

``open_call`` is the only place that names a channel.
"""

from __future__ import annotations

from typing import Any

from telephony.base import (
    TARGET_PATTERN,
    Call,
    CallStateError,
    CallTap,
    ConnectError,
    ConnectionLost,
    DialOptions,
    Target,
    TargetError,
    TelephonyError,
    parse_target,
)

__all__ = [
    "TARGET_PATTERN",
    "Call",
    "CallStateError",
    "CallTap",
    "ConnectError",
    "ConnectionLost",
    "DialOptions",
    "Target",
    "TargetError",
    "TelephonyError",
    "open_call",
    "parse_target",
]


def open_call(target: Target, **options: Any) -> Call:
    """A new, unconnected ``Call`` for ``target``'s channel."""
    if target.channel == "webrtc":
        from telephony.webrtc import WebRTCCall

        return WebRTCCall(target, **options)
    if target.channel == "twilio-ws":
        from telephony.twilio_stream import TwilioStreamCall

        return TwilioStreamCall(target, **options)
    if target.channel == "tel":
        from telephony.twilio_phone import TwilioPhoneCall

        if options.get("gateway") is None or options.get("account") is None:
            raise TargetError(
                "tel: targets need a Twilio account and a public base URL: set "
                "LOOPCALL_TWILIO_ACCOUNT_SID, LOOPCALL_TWILIO_AUTH_TOKEN, "
                "LOOPCALL_TWILIO_FROM_NUMBER and LOOPCALL_PUBLIC_BASE_URL"
            )
        return TwilioPhoneCall(target, **options)
    if target.channel == "sip":
        from telephony.sip.call import SipCall

        return SipCall(target, **options)
    raise TargetError(f"channel {target.channel!r} is not supported yet")
