"""The switchboard: every call of the emulated account and its progress.

Each call progresses as Twilio's would: ``queued``, then ``ringing``, then what
the callee's ``NumberConfig`` says: ``busy``, ``no-answer`` (after the ring
timeout), ``failed``, or answered.  An answered call bridges two media streams:
the callee's (its ``stream_url``, or the ``<Connect><Stream>`` its ``voice_url``
returns) and the caller's (the ``<Connect><Stream>`` of the TwiML given when the
call was created, inline or fetched from ``Url``); see ``bridge``.  Either agent
closing its websocket, or the REST hang-up, ends the call: the other side gets
``stop``.  Status callbacks go out along the way, in order.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Coroutine
from typing import Any

from fastapi import Request
from loguru import logger
from starlette.datastructures import FormData

from runtime.tasks import spawn
from telephony.media_stream import MediaStreamLeg, new_sid
from telephony.twilio_emulator.bridge import bridge
from telephony.twilio_emulator.calls import (
    FINAL_STATUSES,
    ApiError,
    CallFailure,
    EmulatedCall,
    utcnow,
)
from telephony.twilio_emulator.config import EmulatorConfig, NumberConfig
from telephony.twilio_emulator.rest import authenticate, call_from_form, hang_up_status
from telephony.twilio_emulator.twiml import StreamSpec, TwimlError, parse_stream_twiml
from telephony.twilio_emulator.webhooks import Webhooks, call_params, status_callback_params

__all__ = ["UNKNOWN_NUMBER_DELAY_S", "Switchboard"]

UNKNOWN_NUMBER_DELAY_S = 0.1  # how long a call to a number nobody owns takes to fail


class Switchboard:
    """The emulated account: its calls, their progress, and the webhooks they send."""

    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self.calls: dict[str, EmulatedCall] = {}
        self._numbers = {n.number: n for n in config.numbers}
        self._number_sids = {n.number: new_sid("PN") for n in config.numbers}
        self._webhooks = Webhooks(config.auth_token)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False

    # ------------------------------------------------------------------------ REST

    def authenticate(self, request: Request, account_sid: str) -> None:
        """Check HTTP Basic auth and that the path names this account; raise ``ApiError``."""
        authenticate(request, account_sid, self.config)

    def lookup(self, request: Request, call_sid: str) -> EmulatedCall:
        call = self.calls.get(call_sid)
        if call is None:
            raise ApiError(404, 20404, f"The requested resource {request.url.path} was not found")
        return call

    def create_call(self, form: FormData) -> EmulatedCall:
        """Validate ``POST .../Calls.json`` as Twilio does and start the call's progress."""
        if self._closed:
            raise ApiError(503, 20503, "the emulator is shutting down")
        call = call_from_form(form, self.config, self._numbers, self._number_sids)
        self.calls[call.sid] = call
        logger.info(f"twilio emulator: call {call.sid} from {call.from_} to {call.to} queued")
        call.task = self._spawn(self._progress(call))
        return call

    async def update_call(self, call: EmulatedCall, form: FormData) -> EmulatedCall:
        """``POST .../Calls/{CallSid}.json``: ``Status=completed`` or ``canceled`` hangs up."""
        status = hang_up_status(form)
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
        except CallFailure as exc:
            await self._end(call, "failed", str(exc))
        except Exception as exc:
            logger.exception(f"twilio emulator: call {call.sid} crashed")
            await self._end(call, "failed", f"emulator error: {exc!r}")

    async def _dial(self, call: EmulatedCall) -> None:
        call.start_time = utcnow()
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
        params = call_params(call, "ringing", direction="inbound")
        twiml = await self._webhooks.fetch_twiml(
            number.voice_url, "POST", params, f"{call.to}'s voice URL"
        )
        try:
            return parse_stream_twiml(twiml)
        except TwimlError as exc:
            raise CallFailure(f"{call.to}'s voice URL returned TwiML it cannot run: {exc}") from exc

    async def _caller_stream(self, call: EmulatedCall) -> StreamSpec:
        if call.caller_twiml is not None:
            twiml: str | bytes = call.caller_twiml
            source = "the call's Twiml"
        else:
            assert call.caller_url is not None
            params = call_params(call, "in-progress", direction="outbound-api")
            twiml = await self._webhooks.fetch_twiml(
                call.caller_url, call.caller_method, params, "the call's Url"
            )
            source = f"the call's Url {call.caller_url}"
        try:
            return parse_stream_twiml(twiml)
        except TwimlError as exc:
            raise CallFailure(f"{source} cannot run: {exc}") from exc

    async def _bridge(self, call: EmulatedCall, caller: StreamSpec, callee: StreamSpec) -> None:
        """Bridge the two media streams; the call is then in progress."""
        await bridge(call, caller, callee, self._webhooks, self._leg_ended)
        call.answered_at = time.monotonic()
        self._set_status(call, "in-progress")
        self._callback(call, "answered", "in-progress")
        logger.info(f"twilio emulator: call {call.sid} answered: {caller.url} <-> {callee.url}")

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
        call.end_time = utcnow()
        call.end_reason = reason
        self._set_status(call, status)
        log = logger.warning if status == "failed" else logger.info
        log(f"twilio emulator: call {call.sid} {status}: {reason}")
        self._callback(call, "completed", status, final=True, sip_code=sip_code)
        if call.record and call.recording_status_callback and call.duration_s is not None:
            # Twilio's recording of the call is ready once the call has ended.
            recording = new_sid("RE")
            params = {
                "AccountSid": call.account_sid,
                "CallSid": call.sid,
                "RecordingSid": recording,
                "RecordingUrl": f"https://api.twilio.com/2010-04-01/Accounts/"
                f"{call.account_sid}/Recordings/{recording}",
                "RecordingStatus": "completed",
                "RecordingDuration": str(call.duration_s),
                "RecordingChannels": "1",
                "RecordingSource": "OutboundAPI",
            }
            self._spawn(self._webhooks.send_quietly(call.recording_status_callback, params))
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
        call.date_updated = utcnow()
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

    # ------------------------------------------------------------------- callbacks

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
        params = status_callback_params(call, call_status, final=final, sip_code=sip_code)
        previous = call.last_callback
        call.last_callback = self._spawn(
            self._webhooks.send_callback(
                previous, call.status_callback, call.status_callback_method, params
            )
        )

    # ------------------------------------------------------------------ lifecycle

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        return spawn(coro, owner=self._tasks)

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
        await self._webhooks.aclose()
