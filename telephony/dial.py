"""Opening a call: the one place that maps a target's channel to the code that carries it.

Stage: the orchestrator (and the calibration, the bench) hand ``open_call`` a
parsed ``Target`` and a ``CallSetup``, everything a call may need besides its
address; each channel takes what applies to it and the rest is ignored.  Nothing
above this module names a channel.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from telephony.base import Call
from telephony.credentials import SipCredentials
from telephony.egress import EgressPolicy
from telephony.errors import TargetError
from telephony.target import DialOptions, Target

if TYPE_CHECKING:  # for the annotations only: the gateway imports FastAPI
    from telephony.twilio_account import TwilioAccount
    from telephony.twilio_gateway import TwilioGateway

__all__ = [
    "HANDOVER_HEADERS",
    "HANDOVER_PARAMS",
    "CallSetup",
    "call_class",
    "handover",
    "line_rate",
    "open_call",
    "uses_twilio",
]

# Channel -> (module, Call class).  Imported on first use: aiortc, SIP and Twilio
# code load only for the channels a process calls.
_CALL_CLASSES = {
    "webrtc": ("telephony.webrtc", "WebRTCCall"),
    "twilio-ws": ("telephony.twilio_stream", "TwilioStreamCall"),
    "tel": ("telephony.twilio_phone", "TwilioPhoneCall"),
    "sip": ("telephony.sip.call", "SipCall"),
}
# Channels whose line runs at 8 kHz of its own (G.711): a caller may use that rate.
_NARROWBAND = ("twilio-ws", "sip")
# Channels on which the agent can call loopcall (the target is where loopcall answers).
_INBOUND = ("tel", "sip")


@dataclass(frozen=True)
class CallSetup:
    """Everything a call may need besides its target; each channel takes what applies.

    ``twilio`` and ``sip`` are the configured defaults; a stored agent's own fields
    (``dial.phone``, ``dial.sip``) win over them.
    """

    dial: DialOptions = field(default_factory=DialOptions)
    media_timeout_s: float | None = 10.0
    inbound: bool = False
    answer_timeout_s: float = 60.0
    # Carry the line's own 8 kHz where the channel has one (no resampling).
    use_line_rate: bool = False
    twilio: TwilioAccount | None = field(default=None, repr=False)
    gateway: TwilioGateway | None = None
    sip: SipCredentials = field(default_factory=SipCredentials)
    # Where the call may connect, and whether an agent's error page may be quoted
    # (a controller's policy; the default is the CLI's: the user's own machine).
    egress: EgressPolicy = field(default_factory=EgressPolicy.local)
    # What the agent may call back during the run (loopcall's mock tools and its event
    # webhook) and the run's token for it; handed over per channel (``handover``).
    tools_url: str | None = field(default=None, repr=False)  # it holds the token
    events_url: str | None = None
    agent_token: str | None = field(default=None, repr=False)


# The handover's names: request data / media-stream custom parameters, and SIP headers.
HANDOVER_PARAMS = {
    "tools_url": "loopcall_tools_url",
    "events_url": "loopcall_events_url",
    "agent_token": "loopcall_token",
}
HANDOVER_HEADERS = {
    "tools_url": "X-Loopcall-Tools-Url",
    "events_url": "X-Loopcall-Events-Url",
    "agent_token": "X-Loopcall-Token",
}


def handover(setup: CallSetup, names: dict[str, str]) -> dict[str, str]:
    """The tools URL, events URL and token of ``setup`` under ``names`` (those that are set).

    WebRTC carries them in the offer's ``request_data``, a Twilio media stream in
    the start message's ``customParameters`` (with ``loopcall_run_id``), SIP as
    ``X-Loopcall-*`` headers on the INVITE.  A phone call (tel:) carries only audio
    and caller ID to the agent: nothing is handed over there.
    """
    return {
        names[key]: value
        for key in ("tools_url", "events_url", "agent_token")
        if (value := getattr(setup, key)) is not None
    }


def line_rate(target: Target) -> int | None:
    """The sample rate of ``target``'s line when it has one of its own (G.711: 8 kHz)."""
    return 8000 if target.channel in _NARROWBAND else None


def uses_twilio(target: Target) -> bool:
    """Whether the call goes through Twilio (an account and a webhook gateway are needed)."""
    return target.channel == "tel"


def call_class(target: Target) -> type[Call]:
    """The ``Call`` class that carries ``target``'s channel (its module imported)."""
    try:
        module, name = _CALL_CLASSES[target.channel]
    except KeyError:
        raise TargetError(f"channel {target.channel!r} is not supported yet") from None
    cls: type[Call] = getattr(importlib.import_module(module), name)
    return cls


def open_call(target: Target, setup: CallSetup | None = None) -> Call:
    """A new, unconnected ``Call`` for ``target``'s channel."""
    setup = setup or CallSetup()
    channel = target.channel
    if setup.inbound and channel not in _INBOUND:
        raise TargetError(
            "inbound cases wait for the agent to call: their target is tel:+NUMBER "
            f"or sip:USER@HOST:PORT (where loopcall listens), not {channel}"
        )
    cls = call_class(target)
    dial = setup.dial
    request_data = dict(dial.request_data)
    headers = dict(dial.headers)
    if channel in ("webrtc", "twilio-ws"):
        request_data.update(handover(setup, HANDOVER_PARAMS))
    elif channel == "sip":
        headers.update(handover(setup, HANDOVER_HEADERS))
    options: dict[str, Any] = {
        "request_data": request_data,
        "headers": headers,
        "media_timeout_s": setup.media_timeout_s,
    }
    if setup.use_line_rate and (rate := line_rate(target)) is not None:
        options["sample_rate"] = rate
    if channel != "tel":
        options["egress"] = setup.egress
    if channel in _INBOUND:
        options["inbound"] = setup.inbound
        options["answer_timeout_s"] = setup.answer_timeout_s
    if channel == "sip":
        options["credentials"] = dial.sip.over(setup.sip)
    if channel == "tel":
        account = setup.twilio
        if account is not None and dial.phone:
            account = account.with_overrides(dial.phone)
        if setup.gateway is None or account is None:
            raise TargetError(
                "tel: targets need a Twilio account and a public base URL: set "
                "LOOPCALL_TWILIO_ACCOUNT_SID, LOOPCALL_TWILIO_AUTH_TOKEN, "
                "LOOPCALL_TWILIO_FROM_NUMBER and LOOPCALL_PUBLIC_BASE_URL"
            )
        options["gateway"] = setup.gateway
        options["account"] = account
    return cls(target, **options)
