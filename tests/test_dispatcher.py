"""The dispatcher's bookkeeping, in process: waiting on runs leaves nothing behind."""

from __future__ import annotations

import gc
import weakref
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from harness.api.dispatcher import Dispatcher
from harness.api.webhooks import WebhookSender
from harness.db import DbRunSink, RunRepository, create_engine, migrate
from harness.db.resources import Catalogue
from harness.db.secrets import SecretBox
from harness.models import Case, Persona, Run
from harness.orchestrator import RunOptions


@pytest.fixture
async def dispatcher(tmp_path: Path) -> AsyncIterator[Dispatcher]:
    engine = create_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    await migrate(engine)
    dispatcher = Dispatcher(
        DbRunSink(RunRepository(engine), tmp_path / "recordings"),
        RunOptions(calibrate=False),
        catalogue=Catalogue(engine),
        secret_box=SecretBox("test key"),
        concurrency=1,
        webhooks=WebhookSender("webhook key"),
        calibrate=False,
    )
    yield dispatcher  # never started: runs stay queued
    await dispatcher.stop()
    await engine.dispose()


async def test_an_end_event_lives_only_while_someone_waits(dispatcher: Dispatcher) -> None:
    # Long-polls and event streams on thousands of runs must not pile up in memory.
    forgotten = weakref.ref(dispatcher.ended("run-nobody-waits-on"))
    gc.collect()
    assert forgotten() is None

    repo = dispatcher._repo  # noqa: SLF001 - the store the dispatcher reads
    run = Run(
        case=Case(name="c", persona=Persona(name="p")), target="webrtc://h:1/x", channel="webrtc"
    )
    await repo.save(run)
    dispatcher.submit(run.id)
    held = dispatcher.ended(run.id)
    gc.collect()
    assert dispatcher.ended(run.id) is held, "the same event while it is held"

    cancelled = await dispatcher.cancel(run.id)

    assert cancelled.status == "cancelled"
    assert held.is_set(), "whoever waited is woken"
