"""The dispatcher in process, on SQLite and PostgreSQL: which runs start, which never
dial, and that its bookkeeping empties once runs end.

Most tests use a fake ``run_case`` that stores a run the way the orchestrator does
(running, then completed with an evaluation) and waits on a gate the test holds;
the cancel races use the real orchestrator against a loopback HTTP stub that
counts the WebRTC offers it receives, so "never dialled" is seen on the wire.
"""

from __future__ import annotations

import asyncio
import gc
import uuid
import weakref
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

import harness.api.dispatcher as dispatcher_module
from harness.api.dispatcher import Dispatcher
from harness.api.webhooks import WebhookSender
from harness.db import DbRunSink, RunRepository, create_engine
from harness.db.resources import Catalogue
from harness.db.secrets import SecretBox
from harness.db.tables import SuiteRunRow
from harness.models import Case, Evaluation, Persona, Run, utcnow
from harness.orchestrator import RunOptions

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
BOUND_S = 10.0  # a failure bound, never a synchronisation


@pytest.fixture
async def make_dispatcher(
    engine: AsyncEngine, tmp_path: Path
) -> AsyncIterator[Callable[[int], Dispatcher]]:
    """Factory: a dispatcher with ``concurrency`` workers (not started); stopped after."""
    made: list[Dispatcher] = []

    def make(concurrency: int = 1) -> Dispatcher:
        dispatcher = Dispatcher(
            DbRunSink(RunRepository(engine), tmp_path / "recordings"),
            RunOptions(calibrate=False, transcribe=False),
            catalogue=Catalogue(engine),
            secret_box=SecretBox("test key"),
            concurrency=concurrency,
            webhooks=WebhookSender("webhook key"),
            calibrate=False,
        )
        made.append(dispatcher)
        return dispatcher

    yield make
    for dispatcher in made:
        await dispatcher.stop()


def new_run(target: str = "webrtc://127.0.0.1:9/api/offer", **fields: Any) -> Run:
    case = Case(name="c", persona=Persona(name="p"), **fields)
    return Run(case=case, target=target, channel="webrtc")


async def create_request(repo: RunRepository, n: int, limit: int | None) -> tuple[str, list[Run]]:
    """Store ``n`` queued runs as one request (one suite run) with ``limit``."""
    group = str(uuid.uuid4())
    runs = [new_run() for _ in range(n)]
    for run in runs:
        run.suite_run_id = group
    row = SuiteRunRow(id=group, created_at=utcnow(), concurrency_limit=limit, frequency=n)
    await repo.create(runs, suite_run=row)
    return group, runs


class FakeOrchestrator:
    """Stands in for ``run_case``: stores running, waits on the run's gate (if any),
    stores completed with an evaluation; stored cancelled if cancelled."""

    def __init__(self) -> None:
        self.started: defaultdict[str, asyncio.Event] = defaultdict(asyncio.Event)
        self.gates: dict[str, asyncio.Event] = {}
        self.calls: list[str] = []

    async def run_case(self, case: Case, target: str, sink: Any, **kw: Any) -> Run:
        run: Run = kw["run"]
        self.calls.append(run.id)
        run.status, run.started_at = "running", utcnow()
        await sink.put(run)
        kw["progress"](run, "started")
        self.started[run.id].set()
        try:
            if run.id in self.gates:
                await self.gates[run.id].wait()
        except asyncio.CancelledError:
            run.status, run.termination_reason, run.ended_at = "cancelled", "cancelled", utcnow()
            await sink.put(run)
            raise
        run.status, run.termination_reason, run.ended_at = "completed", "agent_ended", utcnow()
        run.evaluation = Evaluation(score=100, pass_fail=True)
        await sink.put(run)
        return run


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeOrchestrator:
    orchestrator = FakeOrchestrator()
    monkeypatch.setattr(dispatcher_module, "run_case", orchestrator.run_case)
    return orchestrator


def end_events(dispatcher: Dispatcher, runs: Iterable[Run]) -> dict[str, asyncio.Event]:
    """The runs' end events, taken (and held) before anything can end them."""
    return {run.id: dispatcher.ended(run.id) for run in runs}


async def all_set(events: dict[str, asyncio.Event], repo: RunRepository) -> None:
    """Every run ended within the bound; else fail saying where each one stands."""
    try:
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in events.values())), BOUND_S)
    except TimeoutError:
        stored = {run_id: (await RunRepository.get(repo, run_id)).status for run_id in events}
        raise AssertionError(f"runs still not ended after {BOUND_S:g} s: {stored}") from None


def bookkeeping(dispatcher: Dispatcher) -> dict[str, object]:
    """What the dispatcher holds per request and per run (all empty when idle)."""
    names = ("_limits", "_active", "_parked", "_group_of", "_running", "_live", "_subscribers")
    held = {name: getattr(dispatcher, name) for name in names}
    return {name: dict(value) for name, value in held.items() if value}


async def test_an_end_event_lives_only_while_someone_waits(make_dispatcher) -> None:
    # Long-polls and event streams on thousands of runs must not pile up in memory.
    dispatcher = make_dispatcher()
    forgotten = weakref.ref(dispatcher.ended("run-nobody-waits-on"))
    gc.collect()
    assert forgotten() is None

    repo = dispatcher._repo  # noqa: SLF001 - the store the dispatcher reads
    run = new_run()
    await repo.save(run)
    dispatcher.submit(run.id)
    held = dispatcher.ended(run.id)
    gc.collect()
    assert dispatcher.ended(run.id) is held, "the same event while it is held"

    cancelled = await dispatcher.cancel(run.id)

    assert cancelled.status == "cancelled"
    assert held.is_set(), "whoever waited is woken"


async def test_cancelling_a_parked_run_lets_the_rest_of_its_group_run(
    make_dispatcher, fake: FakeOrchestrator
) -> None:
    # Two workers, one request of three runs with concurrency_limit 1: the first runs
    # (held by its gate), the other two wait aside.  Cancel the second while it waits.
    dispatcher = make_dispatcher(2)
    repo: RunRepository = dispatcher._repo  # noqa: SLF001
    picked = asyncio.Event()  # set whenever a worker has read a run (it parks it after)
    real_get = repo.get

    async def get(run_id: str) -> Run:
        run = await real_get(run_id)
        picked.set()
        return run

    repo.get = get  # type: ignore[method-assign]
    group, (first, second, third) = await create_request(repo, 3, limit=1)
    fake.gates[first.id] = asyncio.Event()
    ended = end_events(dispatcher, (first, second, third))
    await dispatcher.start()
    for run in (first, second, third):
        dispatcher.submit(run.id, group=group, limit=1)
    await asyncio.wait_for(fake.started[first.id].wait(), BOUND_S)

    def waiting_aside() -> bool:
        parked = dispatcher._parked.get(group, ())  # noqa: SLF001
        return second.id in parked and third.id in parked

    while not waiting_aside():  # woken by each worker's read, never by a timer
        picked.clear()
        await asyncio.wait_for(picked.wait(), BOUND_S)

    cancelled = await dispatcher.cancel(second.id)
    assert cancelled.status == "cancelled"
    fake.gates[first.id].set()
    await all_set(ended, repo)

    assert [(await real_get(r.id)).status for r in (first, second, third)] == [
        "completed",
        "cancelled",
        "completed",
    ]
    assert fake.calls == [first.id, third.id], "the cancelled run never started"


@pytest.mark.parametrize("moment", ["while a worker reads it", "while its agent is reached"])
async def test_a_cancel_between_picking_and_starting_wins_and_never_dials(
    make_dispatcher, http_stub, monkeypatch: pytest.MonkeyPatch, moment: str
) -> None:
    # The real orchestrator; the "agent" is a stub that counts the WebRTC offers it gets.
    offers: list[bytes] = []

    async def offer(request: web.Request) -> web.Response:
        offers.append(await request.read())
        return web.Response(status=503, text="not answering")

    host = await http_stub("POST", "/api/offer", offer)
    entered: list[str] = []
    real_run_case = dispatcher_module.run_case

    async def spy(*args: Any, **kw: Any) -> Run:
        entered.append(kw["run"].id)
        return await real_run_case(*args, **kw)

    monkeypatch.setattr(dispatcher_module, "run_case", spy)

    dispatcher = make_dispatcher()
    repo: RunRepository = dispatcher._repo  # noqa: SLF001
    run = new_run(f"webrtc://{host}/api/offer")
    await repo.save(run)
    cancels: list[asyncio.Task[Run]] = []

    async def cancel_now() -> None:
        # The user's cancel arrives now, in a task of its own as a request handler's
        # would be (shielded: cancelling this run must not cancel the canceller).
        if not cancels:
            cancels.append(asyncio.create_task(dispatcher.cancel(run.id)))
            await asyncio.shield(cancels[0])

    if moment == "while a worker reads it":
        real_get = repo.get

        async def get(run_id: str) -> Run:
            read = await real_get(run_id)
            await cancel_now()
            return read

        repo.get = get  # type: ignore[method-assign]
    else:
        real_reach = dispatcher_module.reach

        async def reach(*args: Any) -> Any:
            await cancel_now()
            return await real_reach(*args)

        monkeypatch.setattr(dispatcher_module, "reach", reach)

    ended = dispatcher.ended(run.id)
    await dispatcher.start()
    dispatcher.submit(run.id)
    await asyncio.wait_for(ended.wait(), BOUND_S)
    returned = await asyncio.wait_for(cancels[0], BOUND_S)

    stored = await RunRepository.get(repo, run.id)
    assert (stored.status, stored.termination_reason) == ("cancelled", "cancelled"), stored.error
    assert returned.status == "cancelled"
    assert entered == [], "the orchestrator was never started"
    assert offers == [], "no call was placed"


async def test_per_request_bookkeeping_is_released_when_its_runs_end(
    make_dispatcher, fake: FakeOrchestrator
) -> None:
    dispatcher = make_dispatcher(1)
    repo: RunRepository = dispatcher._repo  # noqa: SLF001
    await dispatcher.start()
    requests = [await create_request(repo, 3, limit=1) for _ in range(3)]
    unlimited, free_runs = await create_request(repo, 2, limit=None)
    (g1, (a1, b1, c1)), (g2, (a2, b2, _)), (g3, runs3) = requests
    fake.gates[a1.id] = asyncio.Event()  # holds the only worker: the rest wait
    every = [run for _, runs in [*requests, (unlimited, free_runs)] for run in runs]
    ended = end_events(dispatcher, every)
    for group, runs in [*requests, (unlimited, free_runs)]:
        limit = 1 if group != unlimited else None
        for run in runs:
            dispatcher.submit(run.id, group=group, limit=limit)
    await asyncio.wait_for(fake.started[a1.id].wait(), BOUND_S)

    # Cancelled while waiting: one behind its limit, one admitted but not yet picked.
    assert (await dispatcher.cancel(b1.id)).status == "cancelled"
    assert (await dispatcher.cancel(a2.id)).status == "cancelled"
    fake.gates[a1.id].set()
    await all_set(ended, repo)

    statuses = {r.id: (await repo.get(r.id)).status for r in [c1, b2, *runs3, *free_runs]}
    assert set(statuses.values()) == {"completed"}
    assert bookkeeping(dispatcher) == {}


async def test_bookkeeping_is_released_after_a_restart_resumes_runs(
    make_dispatcher, fake: FakeOrchestrator
) -> None:
    # What a controller finds at startup: a request's runs queued, one of them left
    # running by the controller that died (its case allows a retry: re-queued).
    dispatcher = make_dispatcher(2)
    repo: RunRepository = dispatcher._repo  # noqa: SLF001
    group, runs = await create_request(repo, 3, limit=1)
    interrupted = runs[0]
    interrupted.case.retries = 1
    interrupted.status, interrupted.started_at = "running", utcnow()
    await repo.save(interrupted)
    recovered = await repo.recover_interrupted("the controller stopped")
    assert recovered.requeued == [interrupted.id]

    ended = end_events(dispatcher, runs)
    await dispatcher.start()
    await dispatcher.resume(await repo.queued())
    await all_set(ended, repo)

    assert {(await repo.get(r.id)).status for r in runs} == {"completed"}
    assert bookkeeping(dispatcher) == {}


async def test_claims_and_cancels_are_compare_and_set(engine: AsyncEngine) -> None:
    # Two controllers' workers claim the same queued run while a user cancels it, each
    # on its own engine (its own connections): exactly one of the three wins.
    other = create_engine(engine.url.render_as_string(hide_password=False))
    repos = [RunRepository(engine), RunRepository(other)]

    def cancelled(run: Run) -> None:
        run.status = "cancelled"

    try:
        for _ in range(10):
            run = new_run()
            await repos[0].save(run)
            claim_a, claim_b, cancel = await asyncio.gather(
                repos[0].claim(run.id),
                repos[1].claim(run.id),
                repos[1].transition(run.id, cancelled, only_from=("queued",)),
            )
            winners = [r for r in (claim_a, claim_b, cancel) if r is not None]
            assert len(winners) == 1, (claim_a, claim_b, cancel)
            stored = await repos[0].get(run.id)
            assert stored.status == winners[0].status
            assert (await repos[0].page(status=stored.status)).total >= 1  # the column too
    finally:
        await other.dispose()
