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
from typing import Any

from loguru import logger

from harness.api.webhooks import WebhookSender
from harness.calibration import EchoCalibrator
from harness.db.runs import DbRunSink, RunRepository
from harness.models import Run, utcnow
from harness.orchestrator import RunOptions, run_case

__all__ = ["Dispatcher"]

TERMINAL = ("completed", "failed", "cancelled")


class Dispatcher:
    """Runs queued runs, at most ``concurrency`` at a time."""

    def __init__(
        self,
        sink: DbRunSink,
        options: RunOptions,
        *,
        concurrency: int,
        webhooks: WebhookSender,
        calibrate: bool = True,
    ) -> None:
        self._webhooks = webhooks
        self._sink = sink
        self._repo: RunRepository = sink.repository
        self._options = options
        self._concurrency = concurrency
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._workers: list[asyncio.Task[None]] = []
        self._running: dict[str, asyncio.Task[Run]] = {}
        self._ended: dict[str, asyncio.Event] = {}
        self._subscribers: dict[str, set[asyncio.Queue[dict[str, Any] | None]]] = {}
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

    def submit(self, run_id: str) -> None:
        self._ended.setdefault(run_id, asyncio.Event())
        self._queue.put_nowait(run_id)

    def is_running(self, run_id: str) -> bool:
        return run_id in self._running

    def ended(self, run_id: str) -> asyncio.Event:
        """Set once the run has ended here.  Take it *before* reading the run's status."""
        return self._ended.setdefault(run_id, asyncio.Event())

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
            run.status = "cancelled"
            run.termination_reason = "cancelled"
            run.error = "cancelled before it started"
            run.ended_at = utcnow()
            await self._repo.save(run)
            self._publish(run, "cancelled before it started")
            await self._ended_run(run)
        return run

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

    async def _ended_run(self, run: Run) -> None:
        """Wake the waiters, close the event streams, send the webhook."""
        self._signal(run.id)
        url = await self._repo.webhook_for(run.id)
        if url is not None:
            self._webhooks.send(url, run)

    def _signal(self, run_id: str) -> None:
        self.ended(run_id).set()
        for queue in self._subscribers.get(run_id, ()):
            queue.put_nowait(None)

    async def _work(self) -> None:
        while True:
            run_id = await self._queue.get()
            try:
                run = await self._repo.get(run_id)
                if run.status != "queued":
                    continue  # cancelled while it waited
                task = asyncio.create_task(
                    run_case(
                        run.case,
                        run.target,
                        self._sink,
                        options=self._options,
                        calibrator=self._calibrator,
                        run=run,
                        progress=self._publish,
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
                self._running.pop(run_id, None)
                with contextlib.suppress(Exception):
                    await self._ended_run(await self._repo.get(run_id))
