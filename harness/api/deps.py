"""Route dependencies: the stores, the dispatcher and the settings, from the app's state."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from harness.api.dispatcher import Dispatcher
from harness.db.resources import Catalogue
from harness.db.runs import DbRunSink, RunRepository
from harness.db.secrets import SecretBox
from harness.errors import RunNotFound
from harness.models import Run
from harness.settings import Settings

__all__ = [
    "CatalogueDep",
    "DispatcherDep",
    "RepoDep",
    "SecretBoxDep",
    "SettingsDep",
    "SinkDep",
    "require_api_key",
    "run_or_404",
]

_bearer = HTTPBearer(auto_error=False, description="an API key from `loopcall keys create`")


async def require_api_key(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """Every route but /health needs ``Authorization: Bearer <key>``."""
    if credentials is None or not await request.app.state.keys.verify(credentials.credentials):
        raise HTTPException(
            401,
            "a valid API key is required (Authorization: Bearer ...)",
            headers={"WWW-Authenticate": "Bearer"},
        )


def _repo(request: Request) -> RunRepository:
    return request.app.state.sink.repository  # type: ignore[no-any-return]


def _sink(request: Request) -> DbRunSink:
    return request.app.state.sink  # type: ignore[no-any-return]


def _dispatcher(request: Request) -> Dispatcher:
    return request.app.state.dispatcher  # type: ignore[no-any-return]


def _catalogue(request: Request) -> Catalogue:
    return request.app.state.catalogue  # type: ignore[no-any-return]


def _secret_box(request: Request) -> SecretBox:
    return request.app.state.secret_box  # type: ignore[no-any-return]


def _settings(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


async def run_or_404(repo: RunRepository, run_id: str) -> Run:
    """The stored run, or a 404 naming the id."""
    try:
        return await repo.get(run_id)
    except RunNotFound as exc:
        raise HTTPException(404, f"no run {run_id!r}") from exc


RepoDep = Annotated[RunRepository, Depends(_repo)]
SettingsDep = Annotated[Settings, Depends(_settings)]
SinkDep = Annotated[DbRunSink, Depends(_sink)]
DispatcherDep = Annotated[Dispatcher, Depends(_dispatcher)]
CatalogueDep = Annotated[Catalogue, Depends(_catalogue)]
SecretBoxDep = Annotated[SecretBox, Depends(_secret_box)]
