"""Real phone calls through Twilio: ``tel:+E164`` targets, outbound and inbound.

Stage: the channel for phone numbers.  Outbound, ``TwilioPhoneCall`` places the
call with the official twilio SDK (``calls.create`` with inline TwiML
``<Connect><Stream url="wss://PUBLIC_BASE/twilio/stream">`` carrying the run id as
a ``<Parameter>``, and status callbacks); inbound, it waits for the agent to call
a loopcall number, whose voice webhook answers with the same TwiML.  Either way
Twilio then opens the media stream to loopcall (``TwilioGateway``, mounted in the
controller or served by the CLI), and loopcall is the *agent* side of that stream:
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
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any
from xml.sax.saxutils import quoteattr

from fastapi import APIRouter, Request, Response, WebSocket, WebSocketDisconnect
from loguru import logger
from pydantic import SecretStr
from twilio.base.exceptions import TwilioRestException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from audio.g711 import ulaw_decode, ulaw_encode
from audio.resample import Downsampler, Upsampler
from telephony.base import Call, CallStateError, ConnectError, Target
from telephony.credentials import TwilioOverrides
from telephony.twilio_stream import LIVE_CALLS, FrameClock

__all__ = ["TwilioAccount", "TwilioGateway", "TwilioPhoneCall"]

PROGRESS_EVENTS = ["initiated", "ringing", "answered", "completed"]
FINAL_STATUS_WAIT_S = 5.0
UNANSWERED = {"busy", "no-answer", "failed", "canceled"}
READABLE = {
    "busy": "the line was busy",
    "no-answer": "nobody answered",
    "failed": "Twilio could not connect the call",
    "canceled": "the call was cancelled before it was answered",
}


@dataclass(frozen=True)
class TwilioAccount:
    """What loopcall needs to place and receive Twilio calls.

    ``auth_token`` signs Twilio's webhooks, so it is needed even when calls are
    placed with an API key.  ``public_base_url`` is where Twilio reaches loopcall
    (a tunnel such as ngrok or cloudflared in front of the controller).
    """

    account_sid: str
    auth_token: SecretStr
    from_number: str
    public_base_url: str
    api_key_sid: str | None = None
    api_key_secret: SecretStr | None = None
    api_base_url: str | None = None  # None: Twilio itself
    record: bool = False
    ring_timeout_s: int = 30

    def __post_init__(self) -> None:
        # A token given as a plain string (a test, a script) is wrapped at once.
        for name in ("auth_token", "api_key_secret"):
            value = getattr(self, name)
            if isinstance(value, str):
                object.__setattr__(self, name, SecretStr(value))

    def with_overrides(self, overrides: TwilioOverrides) -> TwilioAccount:
        """This account with an agent's own ``account_sid``, ``auth_token``, ``from_number``..."""
        changes = {
            name: getattr(overrides, name)
            for name in overrides.__dataclass_fields__
            if getattr(overrides, name)
        }
        return replace(self, **changes)

    def client(self) -> Client:
        if self.api_key_sid and self.api_key_secret:
            username, password = self.api_key_sid, self.api_key_secret.get_secret_value()
        else:
            username, password = self.account_sid, self.auth_token.get_secret_value()
        client = Client(username, password, self.account_sid, http_client=AsyncTwilioHttpClient())
        if self.api_base_url:
            client.api.base_url = self.api_base_url.rstrip("/")
        return client

    def validator(self) -> RequestValidator:
        """Checks Twilio's signatures (``X-Twilio-Signature``) with the auth token."""
        return RequestValidator(self.auth_token.get_secret_value())

    def url(self, path: str) -> str:
        return self.public_base_url.rstrip("/") + path

    @property
    def stream_url(self) -> str:
        base = self.public_base_url.rstrip("/")
        scheme, rest = base.split("://", 1)
        return f"{'wss' if scheme == 'https' else 'ws'}://{rest}/twilio/stream"


def connect_twiml(stream_url: str, parameters: Mapping[str, str]) -> str:
    """``<Connect><Stream>`` TwiML that sends the call's audio to ``stream_url``."""
    params = "".join(
        f"<Parameter name={quoteattr(k)} value={quoteattr(v)}/>" for k, v in parameters.items()
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?><Response><Connect>'
        f"<Stream url={quoteattr(stream_url)}>{params}</Stream></Connect></Response>"
    )


class TwilioGateway:
    """Twilio's way into loopcall: status callbacks, voice webhooks, media streams, hang-ups.

    One per process, mounted with ``router()``.  Calls register here while they
    live; a webhook or stream that names no live call is refused.
    """

    def __init__(self) -> None:
        self._by_token: dict[str, TwilioPhoneCall] = {}
        self._inbound: dict[str, TwilioPhoneCall] = {}

    def register(self, call: TwilioPhoneCall) -> None:
        self._by_token[call.token] = call
        if call.inbound:
            if call.target.number in self._inbound:
                raise ConnectError(f"another run already waits for a call on {call.target.number}")
            self._inbound[call.target.number] = call

    def unregister(self, call: TwilioPhoneCall) -> None:
        self._by_token.pop(call.token, None)
        if self._inbound.get(call.target.number) is call:
            del self._inbound[call.target.number]

    @staticmethod
    def _signed(request: Request, form: Mapping[str, str], account: TwilioAccount) -> bool:
        signature = request.headers.get("X-Twilio-Signature", "")
        url = account.url(request.url.path) + (f"?{request.url.query}" if request.url.query else "")
        return bool(signature) and account.validator().validate(url, dict(form), signature)

    def router(self) -> APIRouter:
        router = APIRouter(tags=["twilio"])

        async def call_callback(
            request: Request, token: str, handle: Callable[[TwilioPhoneCall, dict[str, str]], None]
        ) -> Response:
            form = {k: str(v) for k, v in (await request.form()).items()}
            target = self._by_token.get(token)
            if target is None:
                return Response("unknown call", status_code=404)
            if not self._signed(request, form, target.account):
                logger.warning(f"twilio gateway: refused {request.url.path} with a bad signature")
                return Response("invalid signature", status_code=403)
            handle(target, form)
            return Response(status_code=204)

        @router.post("/twilio/status", include_in_schema=False)
        async def status(request: Request, call: str = "") -> Response:
            return await call_callback(request, call, lambda c, form: c.on_status(form))

        @router.post("/twilio/recording", include_in_schema=False)
        async def recording(request: Request, call: str = "") -> Response:
            return await call_callback(request, call, lambda c, form: c.on_recording(form))

        @router.post("/twilio/voice", include_in_schema=False)
        async def voice(request: Request) -> Response:
            form = {k: str(v) for k, v in (await request.form()).items()}
            waiting = self._inbound.get(form.get("To", ""))
            if waiting is None:
                twiml = "<Response><Reject/></Response>"
                return Response(twiml, media_type="application/xml", status_code=200)
            if not self._signed(request, form, waiting.account):
                logger.warning("twilio gateway: refused a voice webhook with a bad signature")
                return Response("invalid signature", status_code=403)
            waiting.on_ringing(form)
            return Response(waiting.twiml(), media_type="application/xml")

        @router.websocket("/twilio/stream")
        async def stream(websocket: WebSocket) -> None:
            await websocket.accept()
            try:
                start = await _read_start(websocket)
            except (WebSocketDisconnect, ValueError) as exc:
                logger.warning(f"twilio gateway: media stream without a start: {exc}")
                with contextlib.suppress(Exception):
                    await websocket.close(1008)
                return
            params = start.get("customParameters") or {}
            call = self._by_token.get(str(params.get("loopcall_call_token", "")))
            if call is None:
                await websocket.close(1008, "no loopcall run waits for this stream")
                return
            # Twilio signs the websocket request too (over the stream URL, no parameters).
            signature = websocket.headers.get("X-Twilio-Signature")
            if signature is not None and not call.account.validator().validate(
                call.account.stream_url, {}, signature
            ):
                logger.warning("twilio gateway: refused a media stream with a bad signature")
                await websocket.close(1008, "invalid signature")
                return
            await call.serve_stream(websocket, start)

        @router.post(
            "/2010-04-01/Accounts/{account_sid}/Calls/{call_sid}.json", include_in_schema=False
        )
        async def hang_up(account_sid: str, call_sid: str, request: Request) -> Response:
            """The REST hang-up a media-stream agent sends (pipecat's ``auto_hang_up``)."""
            form = {k: str(v) for k, v in (await request.form()).items()}
            live = LIVE_CALLS.get(call_sid)
            if live is None:
                body = {"code": 20404, "message": f"Call {call_sid} not found", "status": 404}
                return Response(json.dumps(body), status_code=404, media_type="application/json")
            if form.get("Status") in ("completed", "canceled"):
                live.remote_hangup(f"the agent hung up through the REST API ({form['Status']})")
            body = {"sid": call_sid, "account_sid": account_sid, "status": "completed"}
            return Response(json.dumps(body), media_type="application/json")

        return router


async def _read_start(websocket: WebSocket) -> dict[str, Any]:
    """Read Twilio's ``connected`` and ``start``; return the ``start`` body."""
    for _ in range(3):
        message = json.loads(await websocket.receive_text())
        if message.get("event") == "start":
            start = message.get("start")
            if not isinstance(start, dict):
                raise ValueError("start message without a start body")
            return start
    raise ValueError("no start message among the first messages")


class TwilioPhoneCall(Call):
    """A phone call through Twilio; loopcall serves the call's media stream."""

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
        sender = asyncio.ensure_future(self._send_loop(websocket))
        try:
            await self._receive_loop(websocket)
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender

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
        self._mark_ended("local_hangup")
        if self._client is not None and self.call_sid and self._final_status is None:
            try:
                await self._client.calls(self.call_sid).update_async(status="completed")
                self.event("twilio_hangup", self.call_sid)
            except TwilioRestException as exc:
                self.event("twilio_hangup_failed", f"{exc.msg} (error {exc.code})")
            except Exception as exc:
                self.event("twilio_hangup_failed", str(exc))
        ws, self._ws = self._ws, None
        if ws is not None:
            with contextlib.suppress(Exception):
                await ws.close(1000)
        if self._client is not None and self.call_sid:
            # Twilio's final status callback (with the duration) follows the hang-up.
            await self._until_final_status(FINAL_STATUS_WAIT_S)
        self.gateway.unregister(self)
        await self._report_price()
        if self._client is not None:
            with contextlib.suppress(Exception):
                await self._client.http_client.close()  # type: ignore[attr-defined]
        for task in list(self._tasks):
            if task is not asyncio.current_task():
                task.cancel()

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
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
