"""The emulator's HTTP API, as the ``twilio`` SDK calls it with ``client.api.base_url``
pointed here: ``POST /2010-04-01/Accounts/{AccountSid}/Calls.json`` (place a call),
``GET .../Calls/{CallSid}.json`` (fetch it) and ``POST .../Calls/{CallSid}.json``
(``Status=completed`` or ``canceled``: hang up), with Twilio's error bodies."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from telephony.twilio_emulator.calls import API_VERSION, ApiError
from telephony.twilio_emulator.config import EmulatorConfig
from telephony.twilio_emulator.switchboard import Switchboard

__all__ = ["create_emulator_app"]


def create_emulator_app(config: EmulatorConfig) -> FastAPI:
    """The emulator's HTTP API; its ``Switchboard`` is ``app.state.switchboard``."""
    board = Switchboard(config)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await board.aclose()

    app = FastAPI(title="loopcall Twilio emulator", lifespan=lifespan, openapi_url=None)
    app.state.switchboard = board

    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            message = f"The requested resource {request.url.path} was not found"
            return ApiError(404, 20404, message).response()
        return ApiError(exc.status_code, 20001, str(exc.detail)).response()

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
