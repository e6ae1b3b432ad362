"""The controller's worker pool: queued runs in, executed runs (stored) out.

Stage: between the API and the orchestrator.  ``submit`` queues a run id; up to
``concurrency`` workers take ids in order, claim each run in the database
(queued -> running, only if it is still queued) and run it through ``run_case``
with the record the client already holds.  A request's runs beyond its
``concurrency_limit`` wait aside until one of its runs ends; what is kept per
request is dropped once its last run ends.

``cancel`` ends a waiting run at once (queued -> cancelled, only if it is still
queued) and a run a worker holds by cancelling its task: before its call is
placed the dispatcher stores it cancelled, after that the orchestrator hangs up
and stores it.  Whichever of a cancel and a claim commits first wins, so a
cancelled run never dials.  Whoever waits on a run (``ended``, the event streams)
is woken, and its webhook sent, only once its final state is stored.
"""

from __future__ import annotations

import asyncio
import weakref
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from loguru import logger

from harness.api.reach import AgentUnavailable, reach
from harness.api.webhooks import WebhookSender
from harness.db.resources import Catalogue
from harness.db.runs import DbRunSink, RunRepository
from harness.db.secrets import SecretBox
from harness.models import Run, RunStatus, utcnow
from harness.orchestrator import EchoCalibrator, ProgressFn, RunOptions, run_case
from harness.redact import ScrubbingSink, scrub, scrub_text
from runtime.tasks import spawn

__all__ = ["Dispatcher"]

TERMINAL = ("completed", "failed", "cancelled")
NOT_STARTED = "cancelled before it started"


@dataclass
class _Pick:
    """A run a worker has taken, until its end is stored."""

    task: asyncio.Task[None] | None = None
    claimed: bool = False  # stored as running by this worker
    calling: bool = False  # run_case has begun: the orchestrator stores how it ends
    settled: asyncio.Event = field(default_factory=asyncio.Event)


def _ended(status: RunStatus, message: str) -> Callable[[Run], None]:
    """A change that ends a run that placed no call (or whose orchestrator stored no end)."""

    def change(run: Run) -> None:
        run.status = status
        run.termination_reason = "cancelled" if status == "cancelled" else "error"
        run.error = message
        run.ended_at = utcnow()
        if run.started_at is not None:
            run.duration_ms = round((run.ended_at - run.started_at).total_seconds() * 1000.0, 1)

    return change


def _unclaimed(run: Run) -> None:
    run.status = "queued"
    run.started_at = None


class Dispatcher:
    """Runs queued runs, at most ``concurrency`` at a time."""

    def __init__(
        self,
        sink: DbRunSink,
        options: RunOptions,
        *,
        catalogue: Catalogue,
        secret_box: SecretBox,
        concurrency: int,
        webhooks: WebhookSender,
        calibrate: bool = True,
    ) -> None:
        self._catalogue = catalogue
        self._secret_box = secret_box
        self._webhooks = webhooks
        self._sink = sink
        self._repo: RunRepository = sink.repository
        self._options = options
        self._concurrency = concurrency
        self._ready: deque[str] = deque()  # ids a worker may take, in order
        self._has_ready = asyncio.Event()
        self._workers: list[asyncio.Task[None]] = []
        self._stopping = False
        self._running: dict[str, _Pick] = {}
        # The record of each running run as the orchestrator holds it (live events and
        # transcript; the database has it at the start and the end), with its secrets.
        self._live: dict[str, tuple[Run, list[str]]] = {}
        # Held only while someone waits on them, so reads of many runs do not pile up.
        self._ended: weakref.WeakValueDictionary[str, asyncio.Event] = weakref.WeakValueDictionary()
        self._subscribers: dict[str, set[asyncio.Queue[dict[str, Any] | None]]] = {}
        # Per request (suite run) with a concurrency limit: its runs that are ready or
        # running (``_active``) and those waiting aside (``_parked``).  A group's
        # entries go when its last run ends.
        self._limits: dict[str, int] = {}
        self._active: Counter[str] = Counter()
        self._parked: dict[str, deque[str]] = {}
        self._group_of: dict[str, str] = {}
        self._calibrator = EchoCalibrator() if calibrate else None

    async def start(self) -> None:
        self._workers = [
            spawn(self._work(), name=f"loopcall-worker-{i}") for i in range(self._concurrency)
        ]

    async def stop(self) -> None:
        """Cancel the workers; runs in progress hang up and are stored as cancelled, runs
        not yet dialling stay queued (the next start resumes them)."""
        self._stopping = True
        for worker in self._workers:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers = []
        if self._calibrator is not None:
            await self._calibrator.close()
        await self._webhooks.close()

    def submit(self, run_id: str, *, group: str | None = None, limit: int | None = None) -> None:
        """Queue a run; runs of one ``group`` run at most ``limit`` at a time."""
        if group is None or limit is None:
            self._push(run_id)
            return
        self._limits[group] = limit
        self._group_of[run_id] = group
        if self._active[group] < limit:
            self._active[group] += 1
            self._push(run_id)
        else:
            self._parked.setdefault(group, deque()).append(run_id)

    async def resume(self, runs: list[Run]) -> None:
        """Queue runs a previous controller left queued, with their requests' limits."""
        groups = {run.suite_run_id for run in runs if run.suite_run_id is not None}
        limits = await self._catalogue.suite_runs.limits(groups)
        for run in runs:
            group = run.suite_run_id
            self.submit(run.id, group=group, limit=limits.get(group) if group else None)

    def is_running(self, run_id: str) -> bool:
        return run_id in self._running

    def live(self, run_id: str) -> Run | None:
        """A snapshot of the run as it is now, while it runs here (secrets masked).

        ``None`` once the orchestrator has given it its end state: from then on the
        database has the say (it is being stored, or stored).
        """
        entry = self._live.get(run_id)
        if entry is None or entry[0].status != "running":
            return None
        run, secrets = entry
        return scrub(run, secrets) if secrets else run.model_copy(deep=True)

    def ended(self, run_id: str) -> asyncio.Event:
        """Set once the run's end is stored.  Take it *before* reading the run's status."""
        event = self._ended.get(run_id)
        if event is None:
            event = self._ended[run_id] = asyncio.Event()
        return event

    async def cancel(self, run_id: str) -> Run:
        """Cancel a queued or running run and return it as stored."""
        while True:
            pick = self._running.get(run_id)
            if pick is not None and pick.task is not None:
                pick.task.cancel()
                await pick.settled.wait()  # its end is stored (or it was never claimed)
            ended = await self._repo.transition(
                run_id, _ended("cancelled", NOT_STARTED), only_from=("queued",)
            )
            if ended is not None:
                self._withdraw(run_id)
                self._publish(ended, NOT_STARTED)
                await self._ended_run(ended)
                return ended
            if run_id not in self._running:  # it has ended (or another controller runs it)
                return await self._repo.get(run_id)
            # A worker claimed it between our look and our write: cancel that.

    def subscribe(self, run_id: str) -> asyncio.Queue[dict[str, Any] | None]:
        """A queue of the run's progress events; ``None`` once the run has ended."""
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self._subscribers.setdefault(run_id, set()).add(queue)
        return queue

    def unsubscribe(self, run_id: str, queue: asyncio.Queue[dict[str, Any] | None]) -> None:
        subscribers = self._subscribers.get(run_id)
        if subscribers is not None:
            subscribers.discard(queue)
            if not subscribers:
                del self._subscribers[run_id]

    def _publish(self, run: Run, message: str) -> None:
        event = {
            "run_id": run.id,
            "status": run.status,
            "message": message,
            "t_ms": run.events[-1].t_ms if run.events else 0.0,
        }
        for queue in self._subscribers.get(run.id, ()):
            queue.put_nowait(event)

    def _progress(self, secrets: list[str]) -> ProgressFn:
        def progress(run: Run, message: str) -> None:
            self._live[run.id] = (run, secrets)
            self._publish(run, scrub_text(message, secrets) if secrets else message)

        return progress

    # The queue and the per-request limits (no awaits: the event loop is their lock).

    def _push(self, run_id: str) -> None:
        self._ready.append(run_id)
        self._has_ready.set()

    async def _next(self) -> str:
        while not self._ready:
            self._has_ready.clear()
            await self._has_ready.wait()
        return self._ready.popleft()

    def _done(self, run_id: str) -> None:
        """A run that held its group's slot is over: the group's next waiting run may go."""
        group = self._group_of.pop(run_id, None)
        if group is None:
            return
        self._active[group] -= 1
        parked = self._parked.get(group)
        while parked and self._active[group] < self._limits[group]:
            self._active[group] += 1
            self._push(parked.popleft())
        self._forget_if_idle(group)

    def _withdraw(self, run_id: str) -> None:
        """A run that never started was cancelled: out of the queue, or from aside."""
        group = self._group_of.get(run_id)
        parked = self._parked.get(group) if group is not None else None
        if group is not None and parked is not None and run_id in parked:
            parked.remove(run_id)
            del self._group_of[run_id]
            self._forget_if_idle(group)
            return
        if run_id in self._ready:
            self._ready.remove(run_id)
        self._done(run_id)

    def _forget_if_idle(self, group: str) -> None:
        if self._parked.get(group) == deque():
            del self._parked[group]
        if self._active[group] <= 0 and group not in self._parked:
            self._active.pop(group, None)
            self._limits.pop(group, None)

    # Ends: stored first, then the waiters are woken.

    async def _ended_run(self, run: Run) -> None:
        """Wake the waiters, close the event streams, send the webhook."""
        self._signal(run.id)
        url = await self._repo.webhook_for(run.id)
        if url is not None:
            self._webhooks.send(url, run)

    def _signal(self, run_id: str) -> None:
        event = self._ended.get(run_id)
        if event is not None:
            event.set()
        for queue in self._subscribers.get(run_id, ()):
            queue.put_nowait(None)

    async def _work(self) -> None:
        while True:
            run_id = await self._next()
            try:
                await self._handle(run_id)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception(f"controller: run {run_id} could not be settled")
            worker = asyncio.current_task()
            if worker is not None and worker.cancelling():
                raise asyncio.CancelledError  # the worker itself is stopping

    async def _handle(self, run_id: str) -> None:
        """Execute one run in a task of its own (``cancel`` cancels that), then make sure
        its end is stored, release its slot, and only then wake whoever waits on it."""
        pick = _Pick()
        pick.task = asyncio.create_task(self._execute(run_id, pick), name=f"run-{run_id}")
        self._running[run_id] = pick
        failure: str | None = None
        ended: Run | None = None
        try:
            await pick.task
        except asyncio.CancelledError:
            pass  # cancelled by ``cancel``, or the worker is stopping (``_work`` checks)
        except AgentUnavailable as exc:
            failure = str(exc)
        except Exception as exc:
            logger.exception(f"controller: run {run_id} could not be executed")
            failure = f"{type(exc).__name__}: {exc}"
        try:
            if pick.claimed:
                ended = await self._settle(run_id, pick, failure)
        finally:
            self._done(run_id)
            del self._running[run_id]
            self._live.pop(run_id, None)
            pick.settled.set()
        if ended is not None:
            await self._ended_run(ended)

    async def _execute(self, run_id: str, pick: _Pick) -> None:
        """Claim the run (queued -> running), reach its agent, run its case."""
        run = await self._repo.get(run_id)
        if run.status != "queued":
            return  # cancelled while it waited
        claiming = asyncio.ensure_future(self._repo.claim(run_id))
        try:
            claimed = await asyncio.shield(claiming)
        except asyncio.CancelledError:
            # Cancelled while claiming: the claim is one short transaction, so wait for
            # it, then the worker knows whether it has a running run to settle.
            pick.claimed = (await claiming) is not None
            raise
        if claimed is None:
            return  # a cancel stored first: it wins, nothing is dialled
        pick.claimed = True
        agent = await reach(claimed, self._catalogue, self._secret_box)
        secrets = [*agent.secrets, *self._options.secrets()]
        pick.calling = True
        await run_case(
            claimed.case,
            claimed.target,
            ScrubbingSink(self._sink, secrets),
            options=self._options,
            calibrator=self._calibrator,
            run=claimed,
            progress=self._progress(secrets),
            dial=agent.dial,
        )

    async def _settle(self, run_id: str, pick: _Pick, failure: str | None) -> Run | None:
        """The run this worker claimed is over here: its end stored, or stored now.

        The orchestrator stores how a call ended; a run that stopped before its call
        (cancelled, its agent unavailable) or whose orchestrator stored no end is
        stored here.  A stopping controller puts a run that had not dialled back in
        the queue (``None``: it has not ended).
        """
        stored = await self._repo.get(run_id)
        if stored.status != "running":
            return stored
        cancelled = pick.task is not None and pick.task.cancelled()
        if cancelled and self._stopping and not pick.calling:
            await self._repo.transition(run_id, _unclaimed, only_from=("running",))
            return None
        if cancelled:
            status: RunStatus = "cancelled"
            message = "cancelled by the user" if pick.calling else NOT_STARTED
        else:
            status, message = "failed", failure or "the run stopped without storing its end"
        ended = await self._repo.transition(run_id, _ended(status, message), only_from=("running",))
        if ended is None:
            return await self._repo.get(run_id)
        self._publish(ended, message)
        return ended
