"""What the emulator sends out, as Twilio sends it: voice webhooks and TwiML
fetches, and status callbacks with their call-progress parameters, each signed
with ``X-Twilio-Signature`` exactly as Twilio signs them."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping
from email.utils import format_datetime
from urllib.parse import urlencode, urlsplit

import aiohttp
from loguru import logger
from twilio.request_validator import RequestValidator

from telephony.twilio_emulator.calls import API_VERSION, CallFailure, EmulatedCall, utcnow

__all__ = [
    "SIP_CODES",
    "WEBHOOK_TIMEOUT_S",
    "Webhooks",
    "call_params",
    "status_callback_params",
]

# What a status callback's SipResponseCode says for each final status.
SIP_CODES = {"completed": 200, "busy": 486, "no-answer": 487, "canceled": 487, "failed": 500}
WEBHOOK_TIMEOUT_S = 15.0  # Twilio's default webhook timeout


def call_params(call: EmulatedCall, status: str, *, direction: str) -> dict[str, str]:
    """The parameters every webhook about ``call`` carries."""
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


def status_callback_params(
    call: EmulatedCall,
    call_status: str,
    *,
    final: bool = False,
    sip_code: int | None = None,
) -> dict[str, str]:
    """The next status callback of ``call``: its parameters, numbered in sequence."""
    params = call_params(call, call_status, direction="outbound-api")
    params.update(
        {
            "Timestamp": format_datetime(utcnow()),
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
    return params


class Webhooks:
    """The account's signed outgoing requests, over one lazily opened HTTP session."""

    def __init__(self, auth_token: str) -> None:
        self._validator = RequestValidator(auth_token)
        self._session: aiohttp.ClientSession | None = None

    def signature(self, url: str, params: Mapping[str, str]) -> str:
        """``X-Twilio-Signature`` for a request to ``url`` with form ``params``."""
        return self._validator.compute_signature(url, dict(params))

    async def fetch_twiml(
        self, url: str, method: str, params: Mapping[str, str], what: str
    ) -> bytes:
        try:
            status, body = await self.request(url, method, params)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise CallFailure(f"{what} ({url}) could not be reached: {exc!r}") from exc
        if not 200 <= status < 300:
            raise CallFailure(f"{what} ({url}) answered HTTP {status}")
        return body

    async def send_callback(
        self,
        previous: asyncio.Task[None] | None,
        url: str,
        method: str,
        params: dict[str, str],
    ) -> None:
        """Send a status callback once ``previous`` (the call's last one) is done."""
        if previous is not None:
            await asyncio.wait({previous})
        what = f"status callback {params['CallStatus']} for {params['CallSid']} to {url}"
        try:
            status, _ = await self.request(url, method, params)
        except (aiohttp.ClientError, TimeoutError) as exc:
            logger.warning(f"twilio emulator: {what} failed: {exc!r}")
            return
        if not 200 <= status < 300:
            logger.warning(f"twilio emulator: {what} answered HTTP {status}")

    async def send_quietly(self, url: str, params: dict[str, str]) -> None:
        """A signed POST whose failure is only logged (the recording callback)."""
        try:
            status, _ = await self.request(url, "POST", params)
        except (aiohttp.ClientError, TimeoutError) as exc:
            logger.warning(f"twilio emulator: callback to {url} failed: {exc!r}")
            return
        if not 200 <= status < 300:
            logger.warning(f"twilio emulator: callback to {url} answered HTTP {status}")

    async def request(self, url: str, method: str, params: Mapping[str, str]) -> tuple[int, bytes]:
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

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
