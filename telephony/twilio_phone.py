"""Real phone calls through Twilio: ``tel:+E164`` targets, outbound and inbound.

Stage: the channel for phone numbers.  Outbound, ``TwilioPhoneCall`` places the
call with the official twilio SDK (``calls.create`` with inline TwiML
``<Connect><Stream url="wss://PUBLIC_BASE/twilio/stream">`` carrying the run id as
a ``<Parameter>``, and status callbacks); inbound, it waits for the agent to call
a loopcall number, whose voice webhook answers with the same TwiML.  Either way
Twilio then opens the media stream to loopcall (``TwilioGateway`` in
``twilio_gateway.py``, mounted in the controller or served by the CLI), and
loopcall is the *agent* side of that stream:
``media`` in (the far end's voice, 8 kHz mu-law, every 20 ms), ``media`` out (the
persona) on our own 20 ms clock.  Every webhook is checked against
``X-Twilio-Signature`` (a forged one gets 403).  The call's SID, its status
transitions, Twilio's recording and its price are reported as call events.

The SDK is pointed at another API (the local emulator, ``loopcall twilio-emulator``)
with ``api_base_url``; nothing else changes.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import secrets
import time
from collections.abc import Awaitable, Mapping
from typing import Any

from fastapi import WebSocket, WebSocketDisconnect
from loguru import logger
from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client

from audio.g711 import ulaw_decode, ulaw_encode
from audio.resample import Downsampler, Upsampler
from runtime.tasks import cancel_and_wait, spawn
from telephony.base import Call
from telephony.errors import CallStateError, ConnectError
from telephony.frame_clock import FrameClock
from telephony.target import Target
from telephony.twilio_account import TwilioAccount, connect_twiml
from telephony.twilio_gateway import TwilioGateway

# The account and the gateway have their own modules; importable from here as before.
__all__ = ["TwilioAccount", "TwilioGateway", "TwilioPhoneCall", "connect_twiml"]

PROGRESS_EVENTS = ["initiated", "ringing", "answered", "completed"]
# After our hang-up, how long we wait for Twilio's final status callback (with the
# call's duration); the REST hang-up, that wait and the price's fetch share one
# budget, after which the call is released whatever Twilio did.
FINAL_STATUS_WAIT_S = 5.0
HANGUP_TIMEOUT_S = 7.0
# Closing the stream and the HTTP client, once the call is being released.
RELEASE_WAIT_S = 1.0
UNANSWERED = {"busy", "no-answer", "failed", "canceled"}
READABLE = {
    "busy": "the line was busy",
    "no-answer": "nobody answered",
    "failed": "Twilio could not connect the call",
    "canceled": "the call was cancelled before it was answered",
}


async def _quietly(closing: Awaitable[Any]) -> None:
    """Await a close, bounded and silent: the call is released whatever it does."""
    with contextlib.suppress(Exception):
        await asyncio.wait_for(closing, RELEASE_WAIT_S)


class TwilioPhoneCall(Call):
    """A phone call through Twilio; loopcall serves the call's media stream."""

    hangup_timeout_s = HANGUP_TIMEOUT_S

    def __init__(
        self,
        target: Target,
        *,
        gateway: TwilioGateway,
        account: TwilioAccount,
        inbound: bool = False,
        answer_timeout_s: float = 60.0,
        request_data: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        media_timeout_s: float | None = 10.0,
    ) -> None:
        super().__init__(target, media_timeout_s=media_timeout_s)
        self.gateway = gateway
        self.account = account
        self.inbound = inbound
        self.answer_timeout_s = answer_timeout_s
        self.token = secrets.token_urlsafe(24)
        self.run_id = str((request_data or {}).get("loopcall_run_id", ""))
        self.call_sid: str | None = None
        self.stream_sid: str | None = None
        self._client: Client | None = None
        self._streaming = asyncio.Event()
        self._unanswered: str | None = None
        self._progress = asyncio.Event()
        self._ws: WebSocket | None = None
        self.recording_url: str | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._final_status: str | None = None

    # ------------------------------------------------------------------ TwiML

    def twiml(self) -> str:
        params = {"loopcall_run_id": self.run_id, "loopcall_call_token": self.token}
        return connect_twiml(self.account.stream_url, params)

    def event(self, kind: str, detail: str = "") -> None:
        if self.on_event is not None:
            self.on_event(kind, detail)

    # ------------------------------------------------------------------ setup

    async def connect(self, timeout: float = 15.0) -> None:
        if self.state != "new":
            raise CallStateError(f'Cannot connect in call state "{self.state}"')
        self.state = "connecting"
        self.gateway.register(self)
        try:
            if self.inbound:
                self.event("waiting_for_call", f"on {self.target.number}")
                limit = self.answer_timeout_s
                what = f"no call arrived on {self.target.number} within {limit:g} s"
            else:
                await self._place_call()
                limit = max(timeout, self.account.ring_timeout_s + 15.0)
                what = f"the call to {self.target.number} was not answered within {limit:g} s"
            await self._until_answered(limit, what)
        except BaseException:
            self._mark_ended("transport_failed", "connect failed")
            await self._close_transport()
            raise
        self._mark_connected()
        self._spawn(self._watch_media())

    async def _place_call(self) -> None:
        account = self.account
        self._client = account.client()
        callback = account.url(f"/twilio/status?call={self.token}")
        options: dict[str, Any] = {}
        if account.record:
            options["record"] = True
            options["recording_status_callback"] = account.url(
                f"/twilio/recording?call={self.token}"
            )
        try:
            created = await self._client.calls.create_async(
                to=self.target.number,
                from_=account.from_number,
                twiml=self.twiml(),
                status_callback=callback,
                status_callback_event=PROGRESS_EVENTS,
                status_callback_method="POST",
                timeout=account.ring_timeout_s,
                **options,
            )
        except TwilioRestException as exc:
            raise ConnectError(
                f"Twilio refused the call to {self.target.number}: {exc.msg} "
                f"(HTTP {exc.status}, error {exc.code})"
            ) from exc
        except Exception as exc:  # network trouble reaching the API
            raise ConnectError(f"could not reach Twilio's API: {exc}") from exc
        self.call_sid = created.sid
        self.event("twilio_call", f"{created.sid} from {account.from_number}")

    async def _until_answered(self, limit: float, what: str) -> None:
        deadline = time.monotonic() + limit
        while not self._streaming.is_set():
            if self._unanswered is not None:
                status = self._unanswered
                raise ConnectError(
                    f"the call to {self.target.number} ended '{status}' before it was answered: "
                    f"{READABLE.get(status, status)}"
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ConnectError(what)
            self._progress.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._progress.wait(), remaining)

    # ------------------------------------------------------------ from the gateway

    def on_status(self, form: Mapping[str, str]) -> None:
        status = form.get("CallStatus", "")
        detail = status
        if form.get("CallDuration"):
            detail += f" after {form['CallDuration']} s"
        self.event("twilio_status", detail)
        if self.call_sid is None:
            self.call_sid = form.get("CallSid")
        if status in UNANSWERED and not self._streaming.is_set():
            self._unanswered = status
        if status in UNANSWERED | {"completed"}:
            self._final_status = status
            if self.state == "connected":
                self._mark_ended("remote_hangup", f"the call {status} (Twilio status callback)")
                self._spawn(self._close_transport())
        self._progress.set()

    def on_recording(self, form: Mapping[str, str]) -> None:
        self.recording_url = form.get("RecordingUrl", "")
        duration = form.get("RecordingDuration")
        self.event(
            "twilio_recording", self.recording_url + (f" ({duration} s)" if duration else "")
        )
        self._progress.set()

    def on_ringing(self, form: Mapping[str, str]) -> None:
        self.call_sid = form.get("CallSid")
        self.event("twilio_inbound_call", f"{form.get('CallSid')} from {form.get('From')}")

    async def serve_stream(self, websocket: WebSocket, start: Mapping[str, Any]) -> None:
        """Run the media stream Twilio opened for this call until it ends."""
        if self._ws is not None or self.state == "ended":
            await websocket.close(1008, "this call already has a media stream")
            return
        self._ws = websocket
        self.stream_sid = str(start.get("streamSid", ""))
        self.call_sid = self.call_sid or str(start.get("callSid", ""))
        self.event("twilio_stream", f"{self.stream_sid} for call {self.call_sid}")
        self._streaming.set()
        self._progress.set()
        sender = spawn(self._send_loop(websocket))
        try:
            await self._receive_loop(websocket)
        finally:
            await cancel_and_wait(sender)

    async def _receive_loop(self, websocket: WebSocket) -> None:
        up = Upsampler()
        detail = "Twilio closed the media stream"
        try:
            while True:
                message = json.loads(await websocket.receive_text())
                event = message.get("event")
                if event == "media":
                    payload = base64.b64decode((message.get("media") or {}).get("payload", ""))
                    if payload:
                        self._deliver(up.process(ulaw_decode(payload)))
                elif event == "stop":
                    detail = "the call ended (Twilio stopped the media stream)"
                    break
                elif event == "dtmf":
                    self.event("dtmf_received", str((message.get("dtmf") or {}).get("digit")))
        except (WebSocketDisconnect, RuntimeError):
            pass
        except ValueError:
            detail = "Twilio sent a message that is not JSON"
        if self.state == "connected":
            self._mark_ended("remote_hangup", detail)

    async def _send_loop(self, websocket: WebSocket) -> None:
        down, wire = Downsampler(), Upsampler()
        clock = FrameClock()
        while True:
            await clock.tick()
            ulaw = ulaw_encode(down.process(self._take_outgoing_frame()))
            self._tap_sent(wire.process(ulaw_decode(ulaw)))
            message = {
                "event": "media",
                "streamSid": self.stream_sid,
                "media": {"payload": base64.b64encode(ulaw).decode("ascii")},
            }
            try:
                await websocket.send_text(json.dumps(message))
            except Exception:
                return  # the receive loop reports the end

    # --------------------------------------------------------------- teardown

    async def _close_transport(self) -> None:
        """Hang up through Twilio and hear its last word, within ``hangup_timeout_s``;
        whatever Twilio does (or a caller that stops waiting), the call is then
        unregistered from the gateway and its tasks, stream and HTTP client closed."""
        self._mark_ended("local_hangup")
        try:
            async with asyncio.timeout(self.hangup_timeout_s):
                await self._wind_down()
        except TimeoutError:
            self.event(
                "twilio_hangup_timeout", f"Twilio did not finish within {self.hangup_timeout_s:g} s"
            )
        finally:
            self.gateway.unregister(self)
            current = asyncio.current_task()
            for task in list(self._tasks):
                if task is not current:
                    task.cancel()
            ws, self._ws = self._ws, None
            client, self._client = self._client, None
            try:
                if ws is not None:
                    await _quietly(ws.close(1000))
            finally:
                if client is not None:
                    await _quietly(client.http_client.close())  # type: ignore[attr-defined]

    async def _wind_down(self) -> None:
        """The polite part of hanging up: the REST hang-up, the stream, the final status."""
        client = self._client
        if client is not None and self.call_sid and self._final_status is None:
            try:
                await client.calls(self.call_sid).update_async(status="completed")
                self.event("twilio_hangup", self.call_sid)
            except TwilioRestException as exc:
                self.event("twilio_hangup_failed", f"{exc.msg} (error {exc.code})")
            except Exception as exc:
                self.event("twilio_hangup_failed", str(exc))
        if self._ws is not None:
            await _quietly(self._ws.close(1000))
        if client is not None and self.call_sid:
            # Twilio's final status callback (with the duration) follows the hang-up.
            await self._until_final_status(FINAL_STATUS_WAIT_S)
            if self._final_status is None:
                self.event(
                    "twilio_final_status_missing",
                    f"no final status for {self.call_sid} within {FINAL_STATUS_WAIT_S:g} s",
                )
        await self._report_price()

    async def _until_final_status(self, limit: float) -> None:
        """Wait for Twilio's last word: the call's final status and, if asked, its recording."""
        deadline = time.monotonic() + limit
        recording_due = self.account.record and self._streaming.is_set()
        while self._final_status is None or (recording_due and self.recording_url is None):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._progress.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._progress.wait(), remaining)

    async def _report_price(self) -> None:
        if self._client is None or not self.call_sid:
            return
        try:
            resource = await self._client.calls(self.call_sid).fetch_async()
        except Exception as exc:
            logger.debug(f"twilio: could not fetch call {self.call_sid}: {exc}")
            return
        if resource.price is not None:
            self.event("twilio_price", f"{resource.price} {resource.price_unit}")

    def _spawn(self, coro: Any) -> None:
        spawn(coro, owner=self._tasks)
