"""How audio reaches the agent under test: one ``Call`` interface, one module per channel.

``open_call`` (``dial.py``) is the only place that maps a channel to its code.
"""

from __future__ import annotations

from telephony.base import Call, CallTap
from telephony.dial import CallSetup, call_class, line_rate, open_call, uses_twilio
from telephony.egress import AddressRefused, EgressPolicy
from telephony.errors import (
    CallStateError,
    ConnectError,
    ConnectionLost,
    TargetError,
    TelephonyError,
)
from telephony.target import TARGET_PATTERN, DialOptions, Target, parse_target

__all__ = [
    "TARGET_PATTERN",
    "AddressRefused",
    "Call",
    "CallSetup",
    "CallStateError",
    "CallTap",
    "ConnectError",
    "ConnectionLost",
    "DialOptions",
    "EgressPolicy",
    "Target",
    "TargetError",
    "TelephonyError",
    "call_class",
    "line_rate",
    "open_call",
    "parse_target",
    "uses_twilio",
]
