"""``create_app``: the controller's FastAPI app, its lifespan and its routes.

Startup: connect, migrate, end the runs a previous controller left ``running``
(it died under them: failed, or re-queued when the case allows retries), then
start the workers and resume the ``queued`` runs with their requests' limits.
Shutdown: cancel the benches, stop the workers (runs in progress hang up and are
stored as cancelled) and close the database.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI
from loguru import logger

from harness import __version__
from harness.api import agents, benches, cases, peers, personas, runs, suite_runs, suites, traces
from harness.api.deps import require_api_key
from harness.api.dispatcher import Dispatcher
from harness.api.webhooks import WebhookSender
from harness.db import DbRunSink, RunRepository, create_engine, migrate
from harness.db.keys import KeyRepository
from harness.db.resources import Catalogue
from harness.db.secrets import SecretBox
from harness.ingest import Inboxes
from harness.ingest import router as agent_router
from harness.ingest.otel import UNTRACED, TraceDesk
from harness.logs import SECRETS, protect
from harness.orchestrator import RunOptions
from harness.pricing import prices_at
from harness.scoring import make_judge
from harness.settings import Settings
from telephony.twilio_phone import TwilioGateway

__all__ = ["create_app"]

INTERRUPTED = "the controller stopped while this run was in progress"


def create_app(settings: Settings, *, calibrate: bool = True, paused: bool = False) -> FastAPI:
    """The controller; ``paused`` stores new runs as queued without executing them."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        protect()  # no secret in a log line, whoever configured the logging
        SECRETS.hold(
            "controller",
            [settings.webhook_key(), settings.credentials_key(), *settings.secret_values()],
        )
        engine = create_engine(settings.db_url)
        await migrate(engine)
        repository = RunRepository(engine)
        sink = DbRunSink(repository, settings.data_dir / "recordings")
        recovered = await repository.recover_interrupted(INTERRUPTED)
        if recovered.failed:
            logger.warning(f"controller: interrupted run(s) failed: {recovered.failed}")
        if recovered.requeued:
            logger.warning(f"controller: interrupted run(s) re-queued: {recovered.requeued}")
        catalogue = Catalogue(engine)
        secret_box = SecretBox(settings.credentials_key())
        options = RunOptions(
            calibrate=calibrate,
            llm=settings.llm_config(),
            judge=make_judge(settings.judge_config()),
            twilio=settings.twilio_account(),
            gateway=gateway,
            sip=settings.sip_credentials(),
            egress=settings.egress_policy(),
            inboxes=inboxes,
            agent_base_url=settings.ingest_public_url or settings.public_base_url,
            traces=desk,
            prices=prices_at(settings.prices),
        )
        webhooks = WebhookSender(
            settings.webhook_key(),
            attempts=settings.webhook_attempts,
            backoff_s=settings.webhook_backoff_s,
            egress=options.egress,
        )
        dispatcher = Dispatcher(
            sink,
            options,
            catalogue=catalogue,
            secret_box=secret_box,
            concurrency=settings.concurrency,
            webhooks=webhooks,
            calibrate=calibrate,
        )
        app.state.sink = sink
        app.state.settings = settings
        app.state.keys = KeyRepository(engine)
        app.state.catalogue = catalogue
        app.state.secret_box = secret_box
        app.state.dispatcher = dispatcher
        app.state.benches = benches.BenchManager(settings.data_dir / "benches", sink, options)
        interrupted = app.state.benches.recover()
        if interrupted:
            logger.warning(f"controller: interrupted bench(es) failed: {interrupted}")
        if not paused:
            await dispatcher.start()
            await dispatcher.resume(await repository.queued())
        try:
            yield
        finally:
            await app.state.benches.close()
            await dispatcher.stop()
            await engine.dispose()

    app = FastAPI(
        title="loopcall controller", version=__version__, lifespan=lifespan, telemetry=UNTRACED
    )
    # Agents' OpenTelemetry spans (POST /v1/traces), for the runs they name.
    desk = app.state.traces = TraceDesk()
    app.include_router(traces.router(desk))
    # Twilio's webhooks and media streams: checked by their signatures, not API keys.
    gateway = TwilioGateway()
    app.include_router(gateway.router())
    # The agent under test's tools URL and event webhook: checked by each run's token.
    inboxes = Inboxes()
    app.state.inboxes = inboxes
    app.include_router(agent_router)

    @app.get("/health", tags=["health"])
    async def health() -> dict[str, Any]:
        # traces_dropped: spans that named no live run (or came past the hold).
        return {"status": "ok", "version": __version__, "traces_dropped": desk.dropped}

    secured = [Depends(require_api_key)]
    for module in (agents, personas, cases, suites):
        app.include_router(module.router, dependencies=secured)
    app.include_router(runs.router, dependencies=secured)
    app.include_router(peers.router, dependencies=secured)
    app.include_router(suite_runs.router, dependencies=secured)
    app.include_router(benches.router, dependencies=secured)
    return app
