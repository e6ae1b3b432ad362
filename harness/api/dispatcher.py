"""The controller's worker pool: queued runs in, executed runs (stored) out.

Stage: between the API and the orchestrator.  ``submit`` queues a run id; up to
``concurrency`` workers take ids in order and run them through ``run_case`` with
the run record the client already holds.  ``cancel`` cancels a queued run at
once and a running one by cancelling its task (the orchestrator hangs up and
stores it as cancelled).  Whoever waits on a run (``wait``) is woken when it
ends, so clients can long-poll without the server polling.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections import Counter, deque
from typing import Any

from loguru import logger

from harness.api.reach import AgentUnavailable, reach
from harness.api.webhooks import WebhookSender
from harness.db.resources import Catalogue
from harness.db.runs import DbRunSink, RunRepository
from harness.db.secrets import SecretBox
from harness.models import Run, utcnow
from harness.orchestrator import EchoCalibrator, ProgressFn, RunOptions, run_case
from harness.redact import ScrubbingSink, scrub, scrub_text

__all__ = ["Dispatcher"]

TERMINAL = ("completed", "failed", "cancelled")


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
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._workers: list[asyncio.Task[None]] = []
        self._running: dict[str, asyncio.Task[Run]] = {}
        # The record of each running run as the orchestrator holds it (live events and
        # transcript; the database has it at the start and the end), with its secrets.
        self._live: dict[str, tuple[Run, list[str]]] = {}
        # Held only while someone waits on them, so reads of many runs do not pile up.
        self._ended: weakref.WeakValueDictionary[str, asyncio.Event] = weakref.WeakValueDictionary()
        self._subscribers: dict[str, set[asyncio.Queue[dict[str, Any] | None]]] = {}
        # Per-request concurrency limits: runs over the limit wait aside, not in a worker.
        self._limits: dict[str, int] = {}
        self._active: Counter[str] = Counter()
        self._parked: dict[str, deque[str]] = {}
        self._group_of: dict[str, str] = {}
        self._calibrator = EchoCalibrator() if calibrate else None

    async def start(self) -> None:
        self._workers = [
            asyncio.create_task(self._work(), name=f"loopcall-worker-{i}")
            for i in range(self._concurrency)
        ]

    async def stop(self) -> None:
        """Cancel the workers; runs in progress hang up and are stored as cancelled."""
        for worker in self._workers:
            worker.cancel()
        for worker in self._workers:
            with contextlib.suppress(asyncio.CancelledError):
                await worker
        self._workers = []
        if self._calibrator is not None:
            await self._calibrator.close()
        await self._webhooks.close()

    def submit(self, run_id: str, *, group: str | None = None, limit: int | None = None) -> None:
        """Queue a run; runs of one ``group`` run at most ``limit`` at a time."""
        if group is not None and limit is not None:
            self._limits[group] = limit
        self._queue.put_nowait(run_id)

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
        """A snapshot of the run as it is now, if it is running here (secrets masked)."""
        entry = self._live.get(run_id)
        if entry is None:
            return None
        run, secrets = entry
        return scrub(run, secrets) if secrets else run.model_copy(deep=True)

    def ended(self, run_id: str) -> asyncio.Event:
        """Set once the run has ended here.  Take it *before* reading the run's status."""
        event = self._ended.get(run_id)
        if event is None:
            event = self._ended[run_id] = asyncio.Event()
        return event

    async def cancel(self, run_id: str) -> Run:
        """Cancel a queued or running run and return it as stored."""
        task = self._running.get(run_id)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            return await self._repo.get(run_id)
        run = await self._repo.get(run_id)
        if run.status == "queued":
            await self._end_unstarted(run, "cancelled", "cancelled before it started")
            await self._ended_run(run)
        return run

    async def _end_unstarted(self, run: Run, status: str, reason: str) -> None:
        """Store a run that never placed its call as ended (cancelled, or failed)."""
        run.status = "cancelled" if status == "cancelled" else "failed"
        run.termination_reason = "cancelled" if status == "cancelled" else "error"
        run.error = reason
        run.ended_at = utcnow()
        await self._repo.save(run)
        self._publish(run, reason)

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

    def _release(self, run_id: str) -> None:
        """A run of a limited group is done: let the next parked one of that group go."""
        group = self._group_of.pop(run_id, None)
        if group is None:
            return
        self._active[group] -= 1
        parked = self._parked.get(group)
        if parked:
            self._queue.put_nowait(parked.popleft())

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
            run_id = await self._queue.get()
            started = False
            try:
                run = await self._repo.get(run_id)
                if run.status != "queued":
                    continue  # cancelled while it waited
                group = run.suite_run_id
                if group is not None and self._active[group] >= self._limits.get(group, 1 << 30):
                    self._parked.setdefault(group, deque()).append(run_id)
                    continue
                if group is not None:
                    self._active[group] += 1
                    self._group_of[run_id] = group
                started = True
                try:
                    agent = await reach(run, self._catalogue, self._secret_box)
                except AgentUnavailable as exc:
                    await self._end_unstarted(run, "failed", str(exc))
                    continue
                secrets = [*agent.secrets, *self._options.secrets()]
                task = asyncio.create_task(
                    run_case(
                        run.case,
                        run.target,
                        ScrubbingSink(self._sink, secrets),
                        options=self._options,
                        calibrator=self._calibrator,
                        run=run,
                        progress=self._progress(secrets),
                        dial=agent.dial,
                    )
                )
                self._running[run_id] = task
                try:
                    await task
                except asyncio.CancelledError:
                    current = asyncio.current_task()
                    if current is not None and current.cancelling():
                        raise  # the worker itself is stopping
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception(f"controller: run {run_id} could not be executed")
            finally:
                if started:
                    self._running.pop(run_id, None)
                    self._live.pop(run_id, None)
                    self._release(run_id)
                    with contextlib.suppress(Exception):
                        await self._ended_run(await self._repo.get(run_id))
