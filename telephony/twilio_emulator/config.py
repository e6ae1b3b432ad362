"""The emulated Twilio account: its phone numbers, what each does when called, and
the CLI's number specs (``+15550001111=ws://...``) that describe them."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

from telephony.target import E164_PATTERN

__all__ = [
    "BEHAVIOURS",
    "Behaviour",
    "EmulatorConfig",
    "NumberConfig",
    "is_e164",
    "is_url",
    "parse_number_spec",
]

Behaviour = Literal["answer", "busy", "no-answer", "failed"]
BEHAVIOURS: dict[str, Behaviour] = {"busy": "busy", "no-answer": "no-answer", "failed": "failed"}


def is_e164(number: str) -> bool:
    return re.fullmatch(E164_PATTERN, number) is not None


def is_url(url: str, schemes: tuple[str, ...]) -> bool:
    parts = urlsplit(url)
    return parts.scheme.lower() in schemes and bool(parts.netloc)


@dataclass(frozen=True)
class NumberConfig:
    """One phone number of the emulated account and what happens when it is called."""

    number: str  # E.164, e.g. "+15550001111"
    stream_url: str | None = None  # a Twilio media-stream websocket answering this number
    voice_url: str | None = None  # or a voice webhook returning <Connect><Stream> TwiML
    behaviour: Behaviour = "answer"
    ring_s: float = 0.2  # time spent ringing before answering (or being busy)

    def __post_init__(self) -> None:
        if not is_e164(self.number):
            raise ValueError(f"{self.number!r} is not an E.164 phone number (+15550001111)")
        if self.stream_url is not None and not is_url(self.stream_url, ("ws", "wss")):
            raise ValueError(f"stream URL {self.stream_url!r} is not a ws:// or wss:// URL")
        if self.voice_url is not None and not is_url(self.voice_url, ("http", "https")):
            raise ValueError(f"voice URL {self.voice_url!r} is not an http:// or https:// URL")
        if self.stream_url is not None and self.voice_url is not None:
            raise ValueError(f"{self.number}: give a stream URL or a voice URL, not both")
        if self.behaviour not in ("answer", *BEHAVIOURS):
            raise ValueError(f"{self.number}: unknown behaviour {self.behaviour!r}")
        if self.behaviour == "answer" and self.stream_url is None and self.voice_url is None:
            raise ValueError(f"{self.number} answers calls but has no stream URL or voice URL")
        if not self.ring_s >= 0:
            raise ValueError(f"{self.number}: ring_s must be >= 0, got {self.ring_s!r}")


@dataclass(frozen=True)
class EmulatorConfig:
    """The emulated Twilio account."""

    account_sid: str
    auth_token: str
    numbers: tuple[NumberConfig, ...] = ()
    # Extra From numbers allowed besides the owned ones (Twilio's verified caller IDs).
    verified_callers: tuple[str, ...] = ()
    # API key SID (SK...) -> secret: the Basic-auth alternative to the auth token.
    api_keys: Mapping[str, str] = field(default_factory=dict)
    # How long a call rings unanswered at most; a smaller ``Timeout`` parameter wins.
    no_answer_timeout_s: float = 5.0


def parse_number_spec(spec: str) -> NumberConfig:
    """Parse a CLI number spec: ``+15550001111=ws://HOST:PORT/ws`` (a media-stream agent),
    ``+15550001111=voice:http://HOST/PATH`` (a voice webhook), or ``+15550001111=busy``,
    ``=no-answer``, ``=failed``.  Raises ``ValueError`` with what is wrong."""
    expected = (
        "expected NUMBER=ws://HOST:PORT/PATH, NUMBER=voice:http://HOST:PORT/PATH, "
        "NUMBER=busy, NUMBER=no-answer or NUMBER=failed"
    )
    number, sep, what = spec.strip().partition("=")
    number, what = number.strip(), what.strip()
    if not sep or not number or not what:
        raise ValueError(f"bad number spec {spec!r}: {expected}")
    if not is_e164(number):
        raise ValueError(
            f"bad number spec {spec!r}: {number!r} is not an E.164 phone number (+15550001111)"
        )
    if what.lower() in BEHAVIOURS:
        return NumberConfig(number, behaviour=BEHAVIOURS[what.lower()])
    if what.lower().startswith("voice:"):
        url = what[len("voice:") :].strip()
        if not is_url(url, ("http", "https")):
            raise ValueError(
                f"bad number spec {spec!r}: the voice webhook {url!r} is not an http(s) URL"
            )
        return NumberConfig(number, voice_url=url)
    if is_url(what, ("ws", "wss")):
        return NumberConfig(number, stream_url=what)
    raise ValueError(f"bad number spec {spec!r}: {expected}")
