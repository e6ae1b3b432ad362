"""The loopback server ``loopcall run`` starts for its runs' agents: tools URL and webhook.

Stage: the CLI's counterpart of the controller's agent-facing routes.  It serves
``routes.router`` over an ``Inboxes`` registry on ``host:port`` (127.0.0.1 and a
free port by default) inside the running event loop; ``base_url`` is what agents
are told, the server's own address unless a public URL is given (a tunnel in
front of it, for an agent on another machine).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from fastapi import FastAPI

from harness.ingest.inbox import Inboxes
from harness.ingest.routes import router
from telephony.embedded import EmbeddedServer

__all__ = ["IngestServer", "ingest_app", "serve_ingest"]


def ingest_app(inboxes: Inboxes) -> FastAPI:
    """An app with only the agent-facing routes, over ``inboxes``."""
    app = FastAPI(title="loopcall agent inbox", openapi_url=None)
    app.state.inboxes = inboxes
    app.include_router(router)
    return app


@dataclass(frozen=True)
class IngestServer:
    """A running ingest server: its registry and the base URL agents are given."""

    inboxes: Inboxes
    base_url: str
    port: int


@contextlib.asynccontextmanager
async def serve_ingest(
    host: str = "127.0.0.1", port: int = 0, public_url: str | None = None
) -> AsyncIterator[IngestServer]:
    """Serve the agent-facing routes for the ``with`` block."""
    inboxes = Inboxes()
    server = EmbeddedServer(ingest_app(inboxes))
    try:
        bound = await server.start(host, port)
        shown = "127.0.0.1" if host in ("0.0.0.0", "") else f"[{host}]" if ":" in host else host
        base = public_url.rstrip("/") if public_url else f"http://{shown}:{bound}"
        yield IngestServer(inboxes, base, bound)
    finally:
        await server.close()
