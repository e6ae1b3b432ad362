"""Twilio's way into loopcall: the webhooks and media streams of phone calls.

Stage: the HTTP edge of the ``tel:`` channel, mounted in the controller or
served by ``loopcall run``.  In come Twilio's requests: status and recording
callbacks, the voice webhook of an inbound call, the call's media stream
(websocket), and a media-stream agent's REST hang-up.  Each is checked against
``X-Twilio-Signature`` and handed to the live call it names (``GatewayCall``,
which ``TwilioPhoneCall`` is; a ``twilio-ws`` call for the REST hang-up); one
that names no live call is refused.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from fastapi import APIRouter, Request, Response, WebSocket, WebSocketDisconnect
from loguru import logger

from telephony.errors import ConnectError
from telephony.target import Target
from telephony.twilio_account import TwilioAccount
from telephony.twilio_stream import LIVE_CALLS

__all__ = ["GatewayCall", "TwilioGateway"]


class GatewayCall(Protocol):
    """What the gateway needs of a phone call registered with it."""

    token: str  # names the call in its callback URLs and its stream's parameters
    inbound: bool
    target: Target
    account: TwilioAccount

    def twiml(self) -> str: ...

    def on_status(self, form: Mapping[str, str]) -> None: ...

    def on_recording(self, form: Mapping[str, str]) -> None: ...

    def on_ringing(self, form: Mapping[str, str]) -> None: ...

    async def serve_stream(self, websocket: WebSocket, start: Mapping[str, Any]) -> None: ...


class TwilioGateway:
    """Twilio's way into loopcall: status callbacks, voice webhooks, media streams, hang-ups.

    One per process, mounted with ``router()``.  Calls register here while they
    live; a webhook or stream that names no live call is refused.
    """

    def __init__(self) -> None:
        self._by_token: dict[str, GatewayCall] = {}
        self._inbound: dict[str, GatewayCall] = {}

    def register(self, call: GatewayCall) -> None:
        self._by_token[call.token] = call
        if call.inbound:
            if call.target.number in self._inbound:
                raise ConnectError(f"another run already waits for a call on {call.target.number}")
            self._inbound[call.target.number] = call

    def unregister(self, call: GatewayCall) -> None:
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
            request: Request, token: str, handle: Callable[[GatewayCall, dict[str, str]], None]
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
