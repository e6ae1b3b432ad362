"""A local Twilio: the parts of the Voice REST API and Media Streams that loopcall uses.

Stage: stands in for Twilio's cloud on 127.0.0.1, so phone-number targets
(``tel:+E164``) can be tested offline, with the official ``twilio`` SDK pointed
at it.  ``create_emulator_app`` is the HTTP API (``app``); ``TwilioEmulator``
runs it inside the caller's event loop (``embedded``); ``parse_number_spec``
reads the CLI's ``+15550001111=ws://...`` number specs (``config``).  Calls ring,
answer and bridge two media streams as Twilio's would (``switchboard``).
"""

from __future__ import annotations

from telephony.twilio_emulator.app import create_emulator_app
from telephony.twilio_emulator.calls import EmulatedCall
from telephony.twilio_emulator.config import EmulatorConfig, NumberConfig, parse_number_spec
from telephony.twilio_emulator.embedded import TwilioEmulator
from telephony.twilio_emulator.switchboard import Switchboard
from telephony.twilio_emulator.twiml import StreamSpec, TwimlError, parse_stream_twiml

__all__ = [
    "EmulatedCall",
    "EmulatorConfig",
    "NumberConfig",
    "StreamSpec",
    "Switchboard",
    "TwilioEmulator",
    "TwimlError",
    "create_emulator_app",
    "parse_number_spec",
    "parse_stream_twiml",
]
