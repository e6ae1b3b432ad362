"""A local Twilio: the parts of the Voice REST API and Media Streams that loopcall uses.

Stage: stands in for Twilio's cloud on 127.0.0.1, so phone-number targets
(``tel:+E164``) can be tested offline.  ``create_emulator_app`` serves
``POST /2010-04-01/Accounts/{AccountSid}/Calls.json`` (place a call),
``GET .../Calls/{CallSid}.json`` (fetch it) and ``POST .../Calls/{CallSid}.json``
(``Status=completed`` or ``canceled``: hang up), with Twilio's HTTP Basic auth
(account SID and auth token, or an API key and its secret), its error bodies and
its call resource JSON, so the official ``twilio`` SDK works against it with
``client.api.base_url`` pointed here.

Each call progresses as Twilio's would: ``queued``, then ``ringing``, then what
the callee's ``NumberConfig`` says: ``busy``, ``no-answer`` (after the ring
timeout), ``failed``, or answered.  An answered call bridges two media streams:
the callee's (its ``stream_url``, or the ``<Connect><Stream>`` its ``voice_url``
returns) and the caller's (the ``<Connect><Stream>`` of the TwiML given when the
call was created, inline or fetched from ``Url``).  Each stream is a
``MediaStreamLeg`` playing Twilio toward that side's agent, and what one agent
says is what the other hears.  Either agent closing its websocket, or the REST
hang-up, ends the call: the other side gets ``stop``.  Status callbacks, voice
webhooks and TwiML fetches are signed with ``X-Twilio-Signature`` exactly as
Twilio signs them.

``TwilioEmulator`` runs the app inside the caller's event loop (tests, the CLI);
``parse_number_spec`` reads the CLI's ``+15550001111=ws://...`` number specs.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hmac
import math
import re
import socket
import time
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Coroutine, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any, Literal
from urllib.parse import urlencode, urlsplit

import aiohttp
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from loguru import logger
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException as StarletteHTTPException
from twilio.request_validator import RequestValidator

from telephony.base import E164_PATTERN, ConnectError
from telephony.twilio_stream import MediaStreamLeg, StreamIds, new_sid

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

API_VERSION = "2010-04-01"
Behaviour = Literal["answer", "busy", "no-answer", "failed"]
CALL_EVENTS = ("initiated", "ringing", "answered", "completed")
FINAL_STATUSES = frozenset({"completed", "busy", "no-answer", "failed", "canceled"})
# What a status callback's SipResponseCode says for each final status.
SIP_CODES = {"completed": 200, "busy": 486, "no-answer": 487, "canceled": 487, "failed": 500}
PRICE_PER_MINUTE = 0.014  # USD, outbound to a US number; Twilio bills per started minute
MAX_TIMEOUT_S = 600.0  # Twilio's cap on Timeout
LEG_OPEN_TIMEOUT_S = 10.0
WEBHOOK_TIMEOUT_S = 15.0  # Twilio's default webhook timeout
UNKNOWN_NUMBER_DELAY_S = 0.1  # how long a call to a number nobody owns takes to fail
_BEHAVIOURS: dict[str, Behaviour] = {"busy": "busy", "no-answer": "no-answer", "failed": "failed"}


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _rfc2822(moment: datetime | None) -> str | None:
    """Twilio's date format: ``Tue, 30 Jun 2020 21:12:26 +0000``."""
    return None if moment is None else format_datetime(moment)


def _is_e164(number: str) -> bool:
    return re.fullmatch(E164_PATTERN, number) is not None


def _is_url(url: str, schemes: tuple[str, ...]) -> bool:
    parts = urlsplit(url)
    return parts.scheme.lower() in schemes and bool(parts.netloc)


# ------------------------------------------------------------------ configuration


@dataclass(frozen=True)
class NumberConfig:
    """One phone number of the emulated account and what happens when it is called."""

    number: str  # E.164, e.g. "+15550001111"
    stream_url: str | None = None  # a Twilio media-stream websocket answering this number
    voice_url: str | None = None  # or a voice webhook returning <Connect><Stream> TwiML
    behaviour: Behaviour = "answer"
    ring_s: float = 0.2  # time spent ringing before answering (or being busy)

    def __post_init__(self) -> None:
        if not _is_e164(self.number):
            raise ValueError(f"{self.number!r} is not an E.164 phone number (+15550001111)")
        if self.stream_url is not None and not _is_url(self.stream_url, ("ws", "wss")):
            raise ValueError(f"stream URL {self.stream_url!r} is not a ws:// or wss:// URL")
        if self.voice_url is not None and not _is_url(self.voice_url, ("http", "https")):
            raise ValueError(f"voice URL {self.voice_url!r} is not an http:// or https:// URL")
        if self.stream_url is not None and self.voice_url is not None:
            raise ValueError(f"{self.number}: give a stream URL or a voice URL, not both")
        if self.behaviour not in ("answer", *_BEHAVIOURS):
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
    if not _is_e164(number):
        raise ValueError(
            f"bad number spec {spec!r}: {number!r} is not an E.164 phone number (+15550001111)"
        )
    if what.lower() in _BEHAVIOURS:
        return NumberConfig(number, behaviour=_BEHAVIOURS[what.lower()])
    if what.lower().startswith("voice:"):
        url = what[len("voice:") :].strip()
        if not _is_url(url, ("http", "https")):
            raise ValueError(
                f"bad number spec {spec!r}: the voice webhook {url!r} is not an http(s) URL"
            )
        return NumberConfig(number, voice_url=url)
    if _is_url(what, ("ws", "wss")):
        return NumberConfig(number, stream_url=what)
    raise ValueError(f"bad number spec {spec!r}: {expected}")


# ------------------------------------------------------------------------- TwiML


class TwimlError(ValueError):
    """TwiML the emulator cannot run (malformed, or verbs it does not implement)."""


@dataclass(frozen=True)
class StreamSpec:
    """A ``<Connect><Stream>``: where the media stream goes and its ``<Parameter>``s."""

    url: str
    parameters: Mapping[str, str] = field(default_factory=dict)


def parse_stream_twiml(twiml: str | bytes) -> StreamSpec:
    """Read ``<Response><Connect><Stream url="..."><Parameter .../></Stream></Connect></Response>``.

    That is the only TwiML the emulator runs; anything else raises ``TwimlError``.
    """
    data = twiml.encode("utf-8") if isinstance(twiml, str) else twiml
    try:
        root = ET.fromstring(data.strip())
    except ET.ParseError as exc:
        raise TwimlError(f"the TwiML is not well-formed XML: {exc}") from exc
    if root.tag != "Response":
        raise TwimlError(f"the TwiML's root is <{root.tag}>, expected <Response>")
    verbs = [child.tag for child in root]
    if verbs != ["Connect"]:
        found = "".join(f"<{v}>" for v in verbs) or "nothing"
        raise TwimlError(
            f"the emulator runs only <Response><Connect><Stream>; the TwiML has {found}"
        )
    nouns = [child.tag for child in root[0]]
    if nouns != ["Stream"]:
        found = "".join(f"<{n}>" for n in nouns) or "nothing"
        raise TwimlError(f"the emulator runs only <Connect><Stream>; <Connect> holds {found}")
    stream = root[0][0]
    url = (stream.get("url") or "").strip()
    if not _is_url(url, ("ws", "wss")):
        raise TwimlError(f"<Stream url={url!r}> is not an absolute ws:// or wss:// URL")
    parameters: dict[str, str] = {}
    for child in stream:
        if child.tag != "Parameter":
            raise TwimlError(f"<Stream> may hold only <Parameter>, found <{child.tag}>")
        name = child.get("name")
        if not name:
            raise TwimlError("a <Parameter> has no name")
        parameters[name] = child.get("value", "")
    return StreamSpec(url, parameters)


# -------------------------------------------------------------------------- calls


class _ApiError(Exception):
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


class _CallFailure(Exception):
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
    phone_number_sid: str | None = None
    status: str = "queued"
    history: list[str] = field(default_factory=lambda: ["queued"])
    date_created: datetime = field(default_factory=_utcnow)
    date_updated: datetime = field(default_factory=_utcnow)
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
            "date_created": _rfc2822(self.date_created),
            "date_updated": _rfc2822(self.date_updated),
            "to": self.to,
            "to_formatted": self.to,
            "from": self.from_,
            "from_formatted": self.from_,
            "phone_number_sid": self.phone_number_sid,
            "status": self.status,
            "start_time": _rfc2822(self.start_time),
            "end_time": _rfc2822(self.end_time),
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


def _form_value(form: FormData, name: str) -> str | None:
    value = form.get(name)
    if not isinstance(value, str):
        return None
    return value.strip() or None


class Switchboard:
    """The emulated account: its calls, their progress, and the webhooks they send."""

    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self.calls: dict[str, EmulatedCall] = {}
        self._numbers = {n.number: n for n in config.numbers}
        self._number_sids = {n.number: new_sid("PN") for n in config.numbers}
        self._validator = RequestValidator(config.auth_token)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._session: aiohttp.ClientSession | None = None
        self._closed = False

    # ------------------------------------------------------------------------ auth

    def authenticate(self, request: Request, account_sid: str) -> None:
        """Check HTTP Basic auth and that the path names this account; raise ``_ApiError``."""
        scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
        user = password = ""
        if scheme.lower() == "basic":
            with contextlib.suppress(binascii.Error, UnicodeDecodeError):
                user, _, password = (
                    base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
                )
        if user == self.config.account_sid:
            secret: str | None = self.config.auth_token
        else:
            secret = self.config.api_keys.get(user) if user.startswith("SK") else None
        if secret is None or not hmac.compare_digest(password.encode(), secret.encode()):
            raise _ApiError(401, 20003, "Authenticate")
        if account_sid != self.config.account_sid:
            raise _ApiError(404, 20404, f"The requested resource {request.url.path} was not found")

    def lookup(self, request: Request, call_sid: str) -> EmulatedCall:
        call = self.calls.get(call_sid)
        if call is None:
            raise _ApiError(404, 20404, f"The requested resource {request.url.path} was not found")
        return call

    # ---------------------------------------------------------------------- create

    def create_call(self, form: FormData) -> EmulatedCall:
        """Validate ``POST .../Calls.json`` as Twilio does and start the call's progress."""
        if self._closed:
            raise _ApiError(503, 20503, "the emulator is shutting down")
        to = _form_value(form, "To")
        from_ = _form_value(form, "From")
        if to is None:
            raise _ApiError(400, 21201, "No 'To' number is specified")
        if not _is_e164(to):
            raise _ApiError(400, 21211, f"Invalid 'To' Phone Number: {to}")
        if from_ is None:
            raise _ApiError(400, 21213, "No 'From' number is specified")
        if from_ not in self._numbers and from_ not in self.config.verified_callers:
            raise _ApiError(
                400,
                21210,
                f"The source phone number provided, {from_}, is not yet verified for your "
                "account. You may only make calls from phone numbers that you've verified "
                "or purchased from Twilio.",
            )
        twiml = _form_value(form, "Twiml")
        url = _form_value(form, "Url")
        if twiml is None and url is None:
            raise _ApiError(400, 21205, "Url parameter is required.")
        if twiml is None and url is not None and not _is_url(url, ("http", "https")):
            raise _ApiError(400, 21205, f"Url is not a valid URL: {url}")
        method = self._method(form, "Method")
        status_callback = _form_value(form, "StatusCallback")
        if status_callback is not None and not _is_url(status_callback, ("http", "https")):
            raise _ApiError(400, 21609, f"StatusCallback is not a valid URL: {status_callback}")
        callback_method = self._method(form, "StatusCallbackMethod")
        events = {
            event.lower()
            for value in form.getlist("StatusCallbackEvent")
            if isinstance(value, str)
            for event in value.split()
        }
        unknown = sorted(events - set(CALL_EVENTS))
        if unknown:
            raise _ApiError(
                400,
                20001,
                f"StatusCallbackEvent {unknown[0]!r} is not one of {', '.join(CALL_EVENTS)}",
            )
        if not events:
            events = {"completed"}  # Twilio's default: only the final status
        timeout = self.config.no_answer_timeout_s
        raw_timeout = _form_value(form, "Timeout")
        if raw_timeout is not None:
            try:
                requested = float(raw_timeout)
            except ValueError:
                requested = math.nan
            if not requested > 0:
                raise _ApiError(400, 20001, f"Timeout must be a positive number: {raw_timeout}")
            timeout = min(timeout, requested, MAX_TIMEOUT_S)
        call = EmulatedCall(
            sid=new_sid("CA"),
            account_sid=self.config.account_sid,
            to=to,
            from_=from_,
            caller_twiml=twiml,
            caller_url=None if twiml is not None else url,
            caller_method=method,
            status_callback=status_callback,
            status_callback_method=callback_method,
            events=frozenset(events),
            ring_timeout_s=timeout,
            record=(_form_value(form, "Record") or "").lower() == "true",
            phone_number_sid=self._number_sids.get(from_),
        )
        self.calls[call.sid] = call
        logger.info(f"twilio emulator: call {call.sid} from {from_} to {to} queued")
        call.task = self._spawn(self._progress(call))
        return call

    @staticmethod
    def _method(form: FormData, name: str) -> str:
        method = (_form_value(form, name) or "POST").upper()
        if method not in ("GET", "POST"):
            raise _ApiError(400, 20001, f"{name} must be GET or POST, got {method}")
        return method

    # ---------------------------------------------------------------------- update

    async def update_call(self, call: EmulatedCall, form: FormData) -> EmulatedCall:
        """``POST .../Calls/{CallSid}.json``: ``Status=completed`` or ``canceled`` hangs up."""
        unsupported = sorted(k for k in form if k not in ("Status",))
        if unsupported:
            raise _ApiError(
                400, 20001, f"the emulator updates only Status, not {', '.join(unsupported)}"
            )
        status = (_form_value(form, "Status") or "").lower()
        if status not in ("completed", "canceled"):
            raise _ApiError(400, 20001, f"Status must be completed or canceled, got {status!r}")
        if call.is_final:
            return call
        if status == "canceled" and call.answered_at is not None:
            return call  # canceled leaves an answered call alone
        final = "completed" if call.answered_at is not None else "canceled"
        await self._end(call, final, f"hung up through the REST API (Status={status})")
        return call

    # -------------------------------------------------------------------- progress

    async def _progress(self, call: EmulatedCall) -> None:
        try:
            await self._dial(call)
        except _CallFailure as exc:
            await self._end(call, "failed", str(exc))
        except Exception as exc:
            logger.exception(f"twilio emulator: call {call.sid} crashed")
            await self._end(call, "failed", f"emulator error: {exc!r}")

    async def _dial(self, call: EmulatedCall) -> None:
        call.start_time = _utcnow()
        self._callback(call, "initiated", "initiated")
        number = self._numbers.get(call.to)
        if number is None:
            await asyncio.sleep(UNKNOWN_NUMBER_DELAY_S)
            await self._end(call, "failed", f"{call.to} is not a number of this account", 404)
            return
        if number.behaviour == "failed":
            await self._end(call, "failed", f"{call.to} is configured to fail", 503)
            return
        self._set_status(call, "ringing")
        self._callback(call, "ringing", "ringing")
        if number.behaviour == "busy":
            await asyncio.sleep(number.ring_s)
            await self._end(call, "busy", f"{call.to} is busy")
            return
        if number.behaviour == "no-answer" or number.ring_s > call.ring_timeout_s:
            await asyncio.sleep(call.ring_timeout_s)
            await self._end(
                call, "no-answer", f"{call.to} rang for {call.ring_timeout_s:g} s unanswered"
            )
            return
        await asyncio.sleep(number.ring_s)
        callee = await self._callee_stream(call, number)
        caller = await self._caller_stream(call)
        await self._bridge(call, caller, callee)

    async def _callee_stream(self, call: EmulatedCall, number: NumberConfig) -> StreamSpec:
        if number.stream_url is not None:
            return StreamSpec(number.stream_url)
        assert number.voice_url is not None
        params = self._call_params(call, "ringing", direction="inbound")
        twiml = await self._fetch_twiml(number.voice_url, "POST", params, f"{call.to}'s voice URL")
        try:
            return parse_stream_twiml(twiml)
        except TwimlError as exc:
            raise _CallFailure(
                f"{call.to}'s voice URL returned TwiML it cannot run: {exc}"
            ) from exc

    async def _caller_stream(self, call: EmulatedCall) -> StreamSpec:
        if call.caller_twiml is not None:
            twiml: str | bytes = call.caller_twiml
            source = "the call's Twiml"
        else:
            assert call.caller_url is not None
            params = self._call_params(call, "in-progress", direction="outbound-api")
            twiml = await self._fetch_twiml(
                call.caller_url, call.caller_method, params, "the call's Url"
            )
            source = f"the call's Url {call.caller_url}"
        try:
            return parse_stream_twiml(twiml)
        except TwimlError as exc:
            raise _CallFailure(f"{source} cannot run: {exc}") from exc

    async def _fetch_twiml(
        self, url: str, method: str, params: Mapping[str, str], what: str
    ) -> bytes:
        try:
            status, body = await self._request(url, method, params)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _CallFailure(f"{what} ({url}) could not be reached: {exc!r}") from exc
        if not 200 <= status < 300:
            raise _CallFailure(f"{what} ({url}) answered HTTP {status}")
        return body

    async def _bridge(self, call: EmulatedCall, caller: StreamSpec, callee: StreamSpec) -> None:
        """Open both media streams and cross their audio; the call is then in progress.

        Each leg plays what its agent sends at real-time pace (``Playout``: bursts
        wait their turn, silence fills the pauses), and whatever plays is sent on
        to the other leg at once, as 20 ms frames: one carrier clock per direction,
        so the bridge adds no buffering of its own.
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
                self._leg_ended(call, leg, f"{side}: {detail}")

            leg = MediaStreamLeg(
                spec.url,
                ids=StreamIds(
                    account_sid=call.account_sid, call_sid=call.sid, stream_sid=new_sid("MZ")
                ),
                next_frame=None,
                on_audio=heard,
                on_end=ended,
                custom_parameters=spec.parameters,
                headers={"X-Twilio-Signature": self._validator.compute_signature(spec.url, {})},
            )
            legs[side] = leg
            return leg

        call.legs = [make_leg("caller", caller, "callee"), make_leg("callee", callee, "caller")]
        results = await asyncio.gather(
            *(self._open_leg(leg) for leg in call.legs), return_exceptions=True
        )
        failures = [str(r) for r in results if isinstance(r, BaseException)]
        if failures:
            raise _CallFailure("; ".join(failures))
        bridged = True
        call.answered_at = time.monotonic()
        self._set_status(call, "in-progress")
        self._callback(call, "answered", "in-progress")
        logger.info(f"twilio emulator: call {call.sid} answered: {caller.url} <-> {callee.url}")

    @staticmethod
    async def _open_leg(leg: MediaStreamLeg) -> None:
        try:
            await asyncio.wait_for(leg.open(), LEG_OPEN_TIMEOUT_S)
        except TimeoutError as exc:
            raise ConnectError(
                f"no media stream to {leg.url} within {LEG_OPEN_TIMEOUT_S:g} s"
            ) from exc

    def _leg_ended(self, call: EmulatedCall, leg: MediaStreamLeg, detail: str) -> None:
        """An agent closed its media stream: the call is over (Twilio runs out of TwiML)."""
        status = "completed" if call.answered_at is not None else "failed"
        self._spawn(self._end(call, status, detail, ended_leg=leg))

    async def _end(
        self,
        call: EmulatedCall,
        status: str,
        reason: str,
        sip_code: int | None = None,
        *,
        ended_leg: MediaStreamLeg | None = None,
    ) -> None:
        """Finish the call once: final status and callback, both media streams closed."""
        if call.is_final:
            return
        if call.answered_at is not None:
            call.duration_s = math.ceil(time.monotonic() - call.answered_at)
        call.end_time = _utcnow()
        call.end_reason = reason
        self._set_status(call, status)
        log = logger.warning if status == "failed" else logger.info
        log(f"twilio emulator: call {call.sid} {status}: {reason}")
        self._callback(call, "completed", status, final=True, sip_code=sip_code)
        task = call.task
        if task is not None and task is not asyncio.current_task() and not task.done():
            task.cancel()
            await asyncio.wait({task})
        await asyncio.gather(
            *(leg.close(send_stop=leg is not ended_leg) for leg in call.legs),
            return_exceptions=True,
        )

    def _set_status(self, call: EmulatedCall, status: str) -> None:
        call.status = status
        call.history.append(status)
        call.date_updated = _utcnow()
        changed, call.changed = call.changed, asyncio.Event()
        changed.set()
        if status in FINAL_STATUSES:
            call.ended.set()

    async def wait_status(self, sid: str, status: str, timeout: float = 5.0) -> EmulatedCall:
        """Wait until call ``sid`` has been ``status`` (at any point); raise ``TimeoutError``."""
        call = self.calls[sid]

        async def reached() -> None:
            while status not in call.history:
                if call.is_final:
                    raise AssertionError(
                        f"call {sid} ended {call.status} ({call.end_reason}) without "
                        f"reaching {status}: {call.history}"
                    )
                await call.changed.wait()

        try:
            await asyncio.wait_for(reached(), timeout)
        except TimeoutError as exc:
            raise TimeoutError(
                f"call {sid} not {status} within {timeout:g} s: {call.history}"
            ) from exc
        return call

    # -------------------------------------------------------------------- webhooks

    def _call_params(self, call: EmulatedCall, status: str, *, direction: str) -> dict[str, str]:
        return {
            "AccountSid": call.account_sid,
            "ApiVersion": API_VERSION,
            "CallSid": call.sid,
            "CallStatus": status,
            "Called": call.to,
            "Caller": call.from_,
            "Direction": direction,
            "From": call.from_,
            "To": call.to,
        }

    def _callback(
        self,
        call: EmulatedCall,
        event: str,
        call_status: str,
        *,
        final: bool = False,
        sip_code: int | None = None,
    ) -> None:
        """Queue a status callback for ``event``; callbacks of a call go out in order."""
        if call.status_callback is None or event not in call.events:
            return
        params = self._call_params(call, call_status, direction="outbound-api")
        params.update(
            {
                "Timestamp": format_datetime(_utcnow()),
                "CallbackSource": "call-progress-events",
                "SequenceNumber": str(call.callback_sequence),
            }
        )
        call.callback_sequence += 1
        if final:
            seconds = call.duration_s or 0
            params["CallDuration"] = str(seconds)
            params["Duration"] = str(math.ceil(seconds / 60))
            params["SipResponseCode"] = str(sip_code or SIP_CODES.get(call_status, 500))
        previous = call.last_callback
        call.last_callback = self._spawn(
            self._send_callback(previous, call.status_callback, call.status_callback_method, params)
        )

    async def _send_callback(
        self,
        previous: asyncio.Task[None] | None,
        url: str,
        method: str,
        params: dict[str, str],
    ) -> None:
        if previous is not None:
            await asyncio.wait({previous})
        what = f"status callback {params['CallStatus']} for {params['CallSid']} to {url}"
        try:
            status, _ = await self._request(url, method, params)
        except (aiohttp.ClientError, TimeoutError) as exc:
            logger.warning(f"twilio emulator: {what} failed: {exc!r}")
            return
        if not 200 <= status < 300:
            logger.warning(f"twilio emulator: {what} answered HTTP {status}")

    async def _request(self, url: str, method: str, params: Mapping[str, str]) -> tuple[int, bytes]:
        """A signed webhook request, as Twilio sends it: form POST, or GET with a query."""
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=WEBHOOK_TIMEOUT_S)
            )
        headers = {"User-Agent": "TwilioProxy/1.1"}
        if method == "GET":
            full = url + ("&" if urlsplit(url).query else "?") + urlencode(params)
            headers["X-Twilio-Signature"] = self._validator.compute_signature(full, {})
            request = self._session.get(full, headers=headers)
        else:
            headers["X-Twilio-Signature"] = self._validator.compute_signature(url, dict(params))
            request = self._session.post(url, data=dict(params), headers=headers)
        async with request as response:
            return response.status, await response.read()

    # ------------------------------------------------------------------ lifecycle

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.opt(exception=task.exception()).error("twilio emulator: a task failed")

    async def aclose(self) -> None:
        """Stop every call: cancel their progress and callbacks, close their media streams."""
        self._closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        await asyncio.gather(
            *(leg.close() for call in self.calls.values() for leg in call.legs),
            return_exceptions=True,
        )
        if self._session is not None:
            await self._session.close()
            self._session = None


# ------------------------------------------------------------------------ the app


def create_emulator_app(config: EmulatorConfig) -> FastAPI:
    """The emulator's HTTP API; its ``Switchboard`` is ``app.state.switchboard``."""
    board = Switchboard(config)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await board.aclose()

    app = FastAPI(title="loopcall Twilio emulator", lifespan=lifespan, openapi_url=None)
    app.state.switchboard = board

    @app.exception_handler(_ApiError)
    async def api_error(_: Request, exc: _ApiError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            message = f"The requested resource {request.url.path} was not found"
            return _ApiError(404, 20404, message).response()
        return _ApiError(exc.status_code, 20001, str(exc.detail)).response()

    base = f"/{API_VERSION}/Accounts/{{account_sid}}/Calls"

    @app.post(base + ".json", status_code=201)
    async def create_call(account_sid: str, request: Request) -> JSONResponse:
        board.authenticate(request, account_sid)
        call = board.create_call(await request.form())
        return JSONResponse(call.resource(), status_code=201)

    @app.get(base + "/{call_sid}.json")
    async def fetch_call(account_sid: str, call_sid: str, request: Request) -> JSONResponse:
        board.authenticate(request, account_sid)
        return JSONResponse(board.lookup(request, call_sid).resource())

    @app.post(base + "/{call_sid}.json")
    async def update_call(account_sid: str, call_sid: str, request: Request) -> JSONResponse:
        board.authenticate(request, account_sid)
        call = board.lookup(request, call_sid)
        await board.update_call(call, await request.form())
        return JSONResponse(call.resource())

    return app


class _EmbeddedServer(uvicorn.Server):
    """uvicorn inside the caller's loop: leave SIGINT to the caller."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class TwilioEmulator:
    """The emulator served on ``host:port`` (0: any free port) inside the running loop."""

    def __init__(self, config: EmulatorConfig, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.config = config
        self.host = host
        self.port = port
        self.app = create_emulator_app(config)
        self.switchboard: Switchboard = self.app.state.switchboard
        self._server: uvicorn.Server | None = None
        self._serve_task: asyncio.Task[None] | None = None

    @property
    def base_url(self) -> str:
        """For the SDK: ``client.api.base_url = emulator.base_url``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def calls(self) -> dict[str, EmulatedCall]:
        return self.switchboard.calls

    async def wait_status(self, sid: str, status: str, timeout: float = 5.0) -> EmulatedCall:
        return await self.switchboard.wait_status(sid, status, timeout)

    async def start(self) -> None:
        if self._server is not None:
            return
        # Bound before serving: the first request queues until uvicorn accepts.
        sock = socket.create_server((self.host, self.port))
        self.port = sock.getsockname()[1]
        server = _EmbeddedServer(uvicorn.Config(self.app, log_level="warning", lifespan="on"))
        self._server = server
        self._serve_task = asyncio.create_task(server.serve(sockets=[sock]))
        logger.info(f"twilio emulator: serving on {self.base_url}")

    async def close(self) -> None:
        await self.switchboard.aclose()
        if self._server is not None and self._serve_task is not None:
            self._server.should_exit = True
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._serve_task, 10)
        self._server = None
        self._serve_task = None

    async def __aenter__(self) -> TwilioEmulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
