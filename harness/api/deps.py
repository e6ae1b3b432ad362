"""Route dependencies: the repository and the dispatcher, from the app's state."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from harness.api.dispatcher import Dispatcher
from harness.db.runs import DbRunSink, RunRepository

__all__ = ["DispatcherDep", "RepoDep", "SinkDep"]


def _repo(request: Request) -> RunRepository:
    return request.app.state.sink.repository  # type: ignore[no-any-return]


def _sink(request: Request) -> DbRunSink:
    return request.app.state.sink  # type: ignore[no-any-return]


def _dispatcher(request: Request) -> Dispatcher:
    return request.app.state.dispatcher  # type: ignore[no-any-return]


RepoDep = Annotated[RunRepository, Depends(_repo)]
SinkDep = Annotated[DbRunSink, Depends(_sink)]
DispatcherDep = Annotated[Dispatcher, Depends(_dispatcher)]
