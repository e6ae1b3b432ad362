"""The REST API's requests, read as Twilio reads them: HTTP Basic auth (account
SID and auth token, or an API key and its secret), the ``POST .../Calls.json``
form that places a call, and the ``POST .../Calls/{CallSid}.json`` form that
hangs one up.  Whatever Twilio would refuse raises ``ApiError`` with its code."""

from __future__ import annotations

import base64
import binascii
import contextlib
import hmac
import math
from collections.abc import Container, Mapping

from fastapi import Request
from starlette.datastructures import FormData

from telephony.media_stream import new_sid
from telephony.twilio_emulator.calls import CALL_EVENTS, ApiError, EmulatedCall
from telephony.twilio_emulator.config import EmulatorConfig, is_e164, is_url

__all__ = [
    "MAX_TIMEOUT_S",
    "authenticate",
    "call_from_form",
    "form_value",
    "hang_up_status",
]

MAX_TIMEOUT_S = 600.0  # Twilio's cap on Timeout


def form_value(form: FormData, name: str) -> str | None:
    value = form.get(name)
    if not isinstance(value, str):
        return None
    return value.strip() or None


def authenticate(request: Request, account_sid: str, config: EmulatorConfig) -> None:
    """Check HTTP Basic auth and that the path names this account; raise ``ApiError``."""
    scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
    user = password = ""
    if scheme.lower() == "basic":
        with contextlib.suppress(binascii.Error, UnicodeDecodeError):
            user, _, password = (
                base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
            )
    if user == config.account_sid:
        secret: str | None = config.auth_token
    else:
        secret = config.api_keys.get(user) if user.startswith("SK") else None
    if secret is None or not hmac.compare_digest(password.encode(), secret.encode()):
        raise ApiError(401, 20003, "Authenticate")
    if account_sid != config.account_sid:
        raise ApiError(404, 20404, f"The requested resource {request.url.path} was not found")


def call_from_form(
    form: FormData,
    config: EmulatorConfig,
    owned_numbers: Container[str],
    number_sids: Mapping[str, str],
) -> EmulatedCall:
    """Validate ``POST .../Calls.json`` as Twilio does: the new call, still ``queued``."""
    to = form_value(form, "To")
    from_ = form_value(form, "From")
    if to is None:
        raise ApiError(400, 21201, "No 'To' number is specified")
    if not is_e164(to):
        raise ApiError(400, 21211, f"Invalid 'To' Phone Number: {to}")
    if from_ is None:
        raise ApiError(400, 21213, "No 'From' number is specified")
    if from_ not in owned_numbers and from_ not in config.verified_callers:
        raise ApiError(
            400,
            21210,
            f"The source phone number provided, {from_}, is not yet verified for your "
            "account. You may only make calls from phone numbers that you've verified "
            "or purchased from Twilio.",
        )
    twiml = form_value(form, "Twiml")
    url = form_value(form, "Url")
    if twiml is None and url is None:
        raise ApiError(400, 21205, "Url parameter is required.")
    if twiml is None and url is not None and not is_url(url, ("http", "https")):
        raise ApiError(400, 21205, f"Url is not a valid URL: {url}")
    method = _method(form, "Method")
    status_callback = form_value(form, "StatusCallback")
    if status_callback is not None and not is_url(status_callback, ("http", "https")):
        raise ApiError(400, 21609, f"StatusCallback is not a valid URL: {status_callback}")
    callback_method = _method(form, "StatusCallbackMethod")
    recording_callback = form_value(form, "RecordingStatusCallback")
    if recording_callback is not None and not is_url(recording_callback, ("http", "https")):
        raise ApiError(
            400, 21609, f"RecordingStatusCallback is not a valid URL: {recording_callback}"
        )
    events = {
        event.lower()
        for value in form.getlist("StatusCallbackEvent")
        if isinstance(value, str)
        for event in value.split()
    }
    unknown = sorted(events - set(CALL_EVENTS))
    if unknown:
        raise ApiError(
            400,
            20001,
            f"StatusCallbackEvent {unknown[0]!r} is not one of {', '.join(CALL_EVENTS)}",
        )
    if not events:
        events = {"completed"}  # Twilio's default: only the final status
    timeout = config.no_answer_timeout_s
    raw_timeout = form_value(form, "Timeout")
    if raw_timeout is not None:
        try:
            requested = float(raw_timeout)
        except ValueError:
            requested = math.nan
        if not requested > 0:
            raise ApiError(400, 20001, f"Timeout must be a positive number: {raw_timeout}")
        timeout = min(timeout, requested, MAX_TIMEOUT_S)
    return EmulatedCall(
        sid=new_sid("CA"),
        account_sid=config.account_sid,
        to=to,
        from_=from_,
        caller_twiml=twiml,
        caller_url=None if twiml is not None else url,
        caller_method=method,
        status_callback=status_callback,
        status_callback_method=callback_method,
        events=frozenset(events),
        ring_timeout_s=timeout,
        record=(form_value(form, "Record") or "").lower() == "true",
        recording_status_callback=recording_callback,
        phone_number_sid=number_sids.get(from_),
    )


def hang_up_status(form: FormData) -> str:
    """Validate ``POST .../Calls/{CallSid}.json``: its ``Status``, completed or canceled."""
    unsupported = sorted(k for k in form if k not in ("Status",))
    if unsupported:
        raise ApiError(
            400, 20001, f"the emulator updates only Status, not {', '.join(unsupported)}"
        )
    status = (form_value(form, "Status") or "").lower()
    if status not in ("completed", "canceled"):
        raise ApiError(400, 20001, f"Status must be completed or canceled, got {status!r}")
    return status


def _method(form: FormData, name: str) -> str:
    method = (form_value(form, name) or "POST").upper()
    if method not in ("GET", "POST"):
        raise ApiError(400, 20001, f"{name} must be GET or POST, got {method}")
    return method
