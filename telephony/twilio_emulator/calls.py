"""A call as the REST API sees it: ``EmulatedCall``'s state and its call resource
JSON, and the errors that end a request (``ApiError``, in Twilio's error body
shape) or a call (``CallFailure``)."""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

from fastapi.responses import JSONResponse

from telephony.media_stream import MediaStreamLeg

__all__ = [
    "API_VERSION",
    "CALL_EVENTS",
    "FINAL_STATUSES",
    "PRICE_PER_MINUTE",
    "ApiError",
    "CallFailure",
    "EmulatedCall",
    "rfc2822",
    "utcnow",
]

API_VERSION = "2010-04-01"
CALL_EVENTS = ("initiated", "ringing", "answered", "completed")
FINAL_STATUSES = frozenset({"completed", "busy", "no-answer", "failed", "canceled"})
PRICE_PER_MINUTE = 0.014  # USD, outbound to a US number; Twilio bills per started minute


def utcnow() -> datetime:
    return datetime.now(UTC)


def rfc2822(moment: datetime | None) -> str | None:
    """Twilio's date format: ``Tue, 30 Jun 2020 21:12:26 +0000``."""
    return None if moment is None else format_datetime(moment)


class ApiError(Exception):
    """An error answered in Twilio's JSON shape."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def response(self) -> JSONResponse:
        body = {
            "code": self.code,
            "message": self.message,
            "more_info": f"https://www.twilio.com/docs/errors/{self.code}",
            "status": self.status,
        }
        headers = {"WWW-Authenticate": 'Basic realm="Twilio API"'} if self.status == 401 else None
        return JSONResponse(body, status_code=self.status, headers=headers)


class CallFailure(Exception):
    """The call cannot go on; it ends ``failed`` with this reason."""


@dataclass(eq=False)
class EmulatedCall:
    """One call's state, as the REST API reports it."""

    sid: str
    account_sid: str
    to: str
    from_: str
    caller_twiml: str | None
    caller_url: str | None
    caller_method: str
    status_callback: str | None
    status_callback_method: str
    events: frozenset[str]
    ring_timeout_s: float
    record: bool = False
    recording_status_callback: str | None = None
    phone_number_sid: str | None = None
    status: str = "queued"
    history: list[str] = field(default_factory=lambda: ["queued"])
    date_created: datetime = field(default_factory=utcnow)
    date_updated: datetime = field(default_factory=utcnow)
    start_time: datetime | None = None
    end_time: datetime | None = None
    answered_at: float | None = None  # monotonic
    duration_s: int | None = None
    end_reason: str = ""
    legs: list[MediaStreamLeg] = field(default_factory=list, repr=False)
    ended: asyncio.Event = field(default_factory=asyncio.Event, repr=False)
    task: asyncio.Task[None] | None = field(default=None, repr=False)
    changed: asyncio.Event = field(default_factory=asyncio.Event, repr=False)
    callback_sequence: int = 0
    last_callback: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES

    @property
    def price(self) -> str | None:
        """What the call cost, per started minute, once an answered call has ended."""
        if not self.is_final or self.duration_s is None:
            return None
        minutes = max(1, math.ceil(self.duration_s / 60))
        return f"{-PRICE_PER_MINUTE * minutes:.5f}"

    @property
    def uri(self) -> str:
        return f"/{API_VERSION}/Accounts/{self.account_sid}/Calls/{self.sid}.json"

    def resource(self) -> dict[str, Any]:
        """The call as Twilio's REST API returns it."""
        duration: str | None = None
        if self.is_final:
            duration = str(self.duration_s or 0)
        return {
            "sid": self.sid,
            "account_sid": self.account_sid,
            "parent_call_sid": None,
            "date_created": rfc2822(self.date_created),
            "date_updated": rfc2822(self.date_updated),
            "to": self.to,
            "to_formatted": self.to,
            "from": self.from_,
            "from_formatted": self.from_,
            "phone_number_sid": self.phone_number_sid,
            "status": self.status,
            "start_time": rfc2822(self.start_time),
            "end_time": rfc2822(self.end_time),
            "duration": duration,
            "price": self.price,
            "price_unit": "USD",
            "direction": "outbound-api",
            "answered_by": None,
            "annotation": None,
            "api_version": API_VERSION,
            "forwarded_from": None,
            "group_sid": None,
            "caller_name": None,
            "queue_time": "0",
            "trunk_sid": None,
            "uri": self.uri,
            "subresource_uris": {},
        }
