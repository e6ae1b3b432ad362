"""The telephony layer's own exceptions: what a call reports when it cannot go on.

Stage: under every channel.  Nothing comes in; the channels raise these, and the
orchestrator turns them into a failed Run with the message.  Third-party errors
(aiortc, twilio, sockets) are translated at the edge with ``raise ... from exc``
and never leak past ``telephony/``::

    TelephonyError
    +-- TargetError        the target URL is malformed or names an unknown channel
    +-- ConnectError       the agent could not be reached, refused, or never answered
    |   +-- AddressRefused     the egress policy forbids its host (``egress.py``)
    +-- ConnectionLost     the call dropped without a hang-up (no media for too long)
    +-- CallStateError     an operation the call's current state does not allow
"""

from __future__ import annotations

__all__ = ["CallStateError", "ConnectError", "ConnectionLost", "TargetError", "TelephonyError"]


class TelephonyError(Exception):
    """Base of every error the telephony layer raises."""


class TargetError(TelephonyError, ValueError):
    """The target URL cannot be used."""


class ConnectError(TelephonyError):
    """The call could not be set up."""


class ConnectionLost(TelephonyError):
    """The call went silent at the transport level: no media, no hang-up."""


class CallStateError(TelephonyError):
    """The call is not in a state that allows the operation."""
