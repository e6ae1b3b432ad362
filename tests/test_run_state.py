"""One run, one state on every read path: never ``completed`` before it is scored.

A run is ``running`` from its claim until its end is stored; ``completed`` (or
``failed``, ``cancelled``) arrives in one write together with its transcript,
metrics and evaluation.  These tests read every path that shows a run (loopcall's
own, the Vapi, Yappr and Cekura shapes, the suite run, the event stream, the
webhook, ``loopcall show``) at the moment between "call over" and "stored" (held
there by the orchestrator's analysis gate), and in a tight loop over a whole run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import uvicorn
from aiohttp import web
from dental import EXAMPLES

from harness.api import create_app
from harness.cases import load_cases
from harness.cli import show
from harness.models import Case, Run
from harness.orchestrator import RunOptions, run_case
from harness.settings import Settings
from harness.store import RunStore

pytestmark = pytest.mark.e2e
TERMINAL = ("completed", "failed", "cancelled")
RANK = {"queued": 0, "pending": 0, "running": 1, "claimed": 1, "ended": 2, "done": 2}
RANK.update(dict.fromkeys(TERMINAL, 2))
BOUND_S = 120.0  # a failure bound for a whole call, never a synchronisation


def early_case() -> Case:
    """'Caller leaves early': one persona line, scored on three criteria."""
    return load_cases(EXAMPLES / "dental_suite.yaml").cases[1]


class Gate(asyncio.Event):
    """The orchestrator's analysis gate, which also says when a run reached it."""

    def __init__(self) -> None:
        super().__init__()
        self.reached = asyncio.Event()

    async def wait(self) -> bool:  # type: ignore[override]
        self.reached.set()
        return await super().wait()


@dataclass
class Reading:
    """What one read path said about the run: its state's rank and whether it is scored."""

    path: str
    state: str
    rank: int | None  # 0 queued, 1 running, 2 ended; None: this path shows no state
    scored: bool | None = None  # the evaluation is there (None: the path does not show it)
    transcript: bool | None = None


async def _get(http: aiohttp.ClientSession, path: str, **params: str) -> Any:
    async with http.get(path, params=params) as response:
        assert response.status == 200, (path, response.status, await response.text())
        return json.loads(await response.text())


async def read_every_path(
    http: aiohttp.ClientSession, run_id: str, suite_run_id: str
) -> list[Reading]:
    """Every read path of the controller, one after the other."""
    readings = []
    run = await _get(http, f"/runs/{run_id}")
    readings.append(
        Reading(
            "/runs/{id}",
            run["status"],
            RANK[run["status"]],
            run["evaluation"] is not None,
            bool(run["turns"]),
        )
    )
    listing = await _get(http, "/runs", suite_run_id=suite_run_id)
    [item] = listing["items"]
    readings.append(
        Reading("/runs", item["status"], RANK[item["status"]], item["evaluation"] is not None)
    )
    vapi = await _get(http, f"/eval/run/{run_id}")
    vapi_scored = vapi["loopcall"]["evaluation"] is not None
    assert (vapi["status"] == "ended") == bool(vapi["results"]), vapi["status"]
    readings.append(Reading("/eval/run/{id}", vapi["status"], RANK[vapi["status"]], vapi_scored))
    yappr = await _get(http, f"/agent-eval/runs/{run_id}")
    readings.append(
        Reading(
            "/agent-eval/runs/{id}",
            f"{yappr['status']}/{yappr['queue_status']}",
            RANK[yappr["status"]],
            yappr["evaluation"] is not None,
        )
    )
    assert RANK[yappr["queue_status"]] == RANK[yappr["status"]], "queue_status says the same"
    turns = await _get(http, f"/agent-eval/runs/{run_id}/turns")
    readings.append(Reading("/turns", "", None, None, bool(turns["turns"])))
    evaluation = await _get(http, f"/agent-eval/runs/{run_id}/evaluation")
    readings.append(
        Reading(
            "/evaluation",
            f"{evaluation['status']}/{evaluation['queue_status']}",
            RANK[evaluation["status"]],
            evaluation["evaluation"] is not None,
        )
    )
    assert RANK[evaluation["queue_status"]] == RANK[evaluation["status"]]
    suite_run = await _get(http, f"/suite-runs/{suite_run_id}")
    [(status, _)] = suite_run["status_counts"].items()
    readings.append(Reading("/suite-runs/{id}", status, RANK[status]))
    cekura = await _get(http, f"/test_framework/v1/results/{suite_run_id}/")
    entry = cekura["runs"][run_id]["loopcall"]
    readings.append(
        Reading("cekura result", entry["status"], RANK[entry["status"]], entry["score"] is not None)
    )
    assert (cekura["status"] in ("pending", "running")) == (RANK[entry["status"]] < 2)
    return readings


def check_each(readings: list[Reading]) -> None:
    """No path says completed without the evaluation and the transcript."""
    for reading in readings:
        if reading.rank == 2 and reading.state.startswith(("completed", "ended")):
            assert reading.scored is not False, f"{reading.path}: ended, not scored: {reading}"
            assert reading.transcript is not False, f"{reading.path}: ended, no transcript"
        if reading.rank is not None and reading.rank < 2:
            assert not reading.scored, f"{reading.path}: scored while {reading.state}"


def check_in_order(readings: list[Reading]) -> None:
    """Reads made one after the other never go back: once any path said the run ended
    (or showed its stored transcript), every later read says so too."""
    ended_at: Reading | None = None
    for reading in readings:
        says_ended = reading.rank == 2 or (reading.rank is None and reading.transcript)
        if ended_at is not None:
            assert says_ended, f"{reading.path} says {reading.state!r} after {ended_at}"
        elif says_ended:
            ended_at = reading


@contextlib.asynccontextmanager
async def controller_in_process(tmp_path: Path) -> AsyncIterator[tuple[Any, str, str]]:
    """The controller app in this process (its dispatcher at hand), served on loopback:
    (app, base URL, API key)."""
    settings = Settings(
        db_url=f"sqlite:///{tmp_path / 'loopcall.db'}", data_dir=tmp_path / "data", concurrency=1
    )
    app = create_app(settings, calibrate=False)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()  # connections wait in the backlog until the server takes the socket
    async with app.router.lifespan_context(app):
        key = await app.state.keys.create("tests")
        server = uvicorn.Server(uvicorn.Config(app, lifespan="off", log_level="warning"))
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        try:
            yield app, f"http://127.0.0.1:{sock.getsockname()[1]}", key
        finally:
            server.should_exit = True
            await serving
    sock.close()


async def test_no_path_says_ended_between_call_over_and_stored(
    shared_agent, tmp_path: Path
) -> None:
    agent = shared_agent
    gate = Gate()
    async with controller_in_process(tmp_path) as (app, url, key):
        dispatcher = app.state.dispatcher
        # Hold each run between its hang-up and its analysis.
        dispatcher._options = dataclasses.replace(dispatcher._options, analysis_gate=gate)  # noqa: SLF001
        headers = {"Authorization": f"Bearer {key}"}
        async with aiohttp.ClientSession(url, headers=headers) as http:
            body = {"case": early_case().model_dump(mode="json"), "target": agent.target}
            async with http.post("/runs", json=body) as response:
                assert response.status == 202
                created = json.loads(await response.text())
            [run_id], suite_run_id = created["run_ids"], created["suite_run_id"]
            ended = dispatcher.ended(run_id)
            progress = dispatcher.subscribe(run_id)

            await asyncio.wait_for(gate.reached.wait(), BOUND_S)  # the call is over
            held = await read_every_path(http, run_id, suite_run_id)
            published = [progress.get_nowait() for _ in range(progress.qsize())]

            gate.set()
            await asyncio.wait_for(ended.wait(), BOUND_S)
            stored = await read_every_path(http, run_id, suite_run_id)
            run = Run.model_validate(await _get(http, f"/runs/{run_id}"))

    assert [(r.path, r.state) for r in held if r.rank is not None and r.rank != 1] == []
    check_each(held)
    assert [e for e in published if e is None or e["status"] != "running"] == [], published
    assert any(e["message"] == "call over" for e in published if e)
    assert [(r.path, r.state) for r in stored if r.rank is not None and r.rank != 2] == []
    check_each(stored)
    assert run.status == "completed" and run.evaluation is not None and run.turns


async def test_a_local_run_and_loopcall_show_say_running_until_scored(
    shared_agent, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    agent = shared_agent
    store = RunStore(tmp_path / "runs")
    gate = Gate()
    case = early_case()
    run = Run(case=case, target=agent.target, channel="webrtc")
    options = RunOptions(calibrate=False, analysis_gate=gate)
    task = asyncio.create_task(run_case(case, agent.target, store, options=options, run=run))

    def shown(view: str) -> dict[str, Any]:
        capsys.readouterr()
        args = argparse.Namespace(run_id=run.id, view=view, out=store.root)
        assert show.execute(args) == 0
        return dict(json.loads(capsys.readouterr().out))

    await asyncio.wait_for(gate.reached.wait(), BOUND_S)
    held = {view: shown(view) for view in ("loopcall", "vapi", "yappr")}
    assert run.status == "running", "the record in hand says so too"
    gate.set()
    await asyncio.wait_for(task, BOUND_S)
    final = {view: shown(view) for view in ("loopcall", "vapi", "yappr")}

    assert (held["loopcall"]["status"], held["loopcall"]["evaluation"]) == ("running", None)
    assert held["vapi"]["status"] == "running"
    assert (held["yappr"]["status"], held["yappr"]["queue_status"]) == ("running", "claimed")
    assert final["loopcall"]["status"] == "completed"
    assert final["loopcall"]["evaluation"] is not None and final["loopcall"]["turns"]
    assert (final["vapi"]["status"], final["yappr"]["queue_status"]) == ("ended", "done")


async def test_every_read_path_agrees_while_a_run_ends(
    shared_agent, start_controller, http_stub, db_url: str
) -> None:
    agent = shared_agent
    controller = start_controller(db_url, "--no-calibrate")
    webhook: list[tuple[dict[str, Any], dict[str, Any]]] = []
    delivered = asyncio.Event()

    async def receive(request: web.Request) -> web.Response:
        payload = json.loads(await request.read())
        async with controller.client() as http:  # what a receiver reads back at once
            webhook.append((payload, await _get(http, f"/runs/{payload['run']['id']}")))
        delivered.set()
        return web.Response(status=204)

    host = await http_stub("POST", "/hook", receive)
    timeline: list[Reading] = []
    sse: list[tuple[dict[str, Any], dict[str, Any]]] = []  # (event, the run read just after)

    async with controller.client() as http:
        body = {
            "case": early_case().model_dump(mode="json"),
            "target": agent.target,
            "webhook_url": f"http://{host}/hook",
        }
        async with http.post("/runs", json=body) as response:
            created = json.loads(await response.text())
        [run_id], suite_run_id = created["run_ids"], created["suite_run_id"]

        async def follow() -> None:
            async with controller.client() as own, own.get(f"/runs/{run_id}/events") as stream:
                kind = ""
                async for raw in stream.content:
                    line = raw.decode().strip()
                    if line.startswith("event: "):
                        kind = line[len("event: ") :]
                    elif line.startswith("data: "):
                        event = {"kind": kind, **json.loads(line[len("data: ") :])}
                        after = None
                        if kind == "end" or event["status"] in TERMINAL:
                            after = await _get(own, f"/runs/{run_id}")
                        sse.append((event, after or {}))
                        if kind == "end":
                            return

        async def long_poll() -> dict[str, Any]:
            async with controller.client() as own:
                return dict(await _get(own, f"/runs/{run_id}", wait_s="120"))

        following = asyncio.create_task(follow())
        polling = asyncio.create_task(long_poll())
        # The tight loop: every path, one read after another, until all say it ended
        # (and a last round after the webhook and the event stream are done).
        rounds = 0
        while True:
            readings = await read_every_path(http, run_id, suite_run_id)
            timeline.extend(readings)
            rounds += 1
            done = following.done() and delivered.is_set()
            if all(r.rank is None or r.rank == 2 for r in readings) and done:
                break
            assert rounds < 5000, "the run never ended on every path"
        await asyncio.wait_for(following, BOUND_S)
        polled = await asyncio.wait_for(polling, BOUND_S)

    check_each(timeline)
    check_in_order(timeline)
    assert any(r.rank == 1 for r in timeline), "the loop saw the run running"
    states = {r.state for r in timeline[-8:]}
    assert states == {"completed", "ended", "completed/done", ""}, states

    # The event stream: nothing says ended before the run is stored; `end` comes last.
    events = [event for event, _ in sse]
    assert events[-1]["kind"] == "end" and events[-1]["status"] == "completed"
    for event, after in sse:
        if after:
            assert after["status"] == event["status"], (event, after["status"])
            assert after["evaluation"] is not None and after["turns"], event
    progress = [e for e in events if e["kind"] == "progress"]
    messages = [e["message"] for e in progress]
    assert "call over" in messages and messages[-1] == "stored", messages
    assert [e for e in progress[:-1] if e["status"] != "running"] == []
    assert progress[-1]["status"] == "completed"

    assert polled["status"] == "completed" and polled["evaluation"] is not None
    [(payload, read_back)] = webhook
    assert payload["run"]["status"] == "completed" and payload["run"]["evaluation"] is not None
    assert read_back["status"] == "completed" and read_back["evaluation"] is not None


async def test_a_cancel_during_the_analysis_still_stores_the_scored_run(
    shared_agent, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The call is over and being analysed when the cancel lands (Ctrl-C, a stop, an
    # API cancel): the run is still stored, scored, as its call ended; then the
    # cancellation goes on.
    from harness.orchestrator import execution

    analysing, release = asyncio.Event(), asyncio.Event()
    real_analyse = execution._Execution._analyse  # noqa: SLF001

    async def held_analyse(self: Any, *args: Any) -> None:
        analysing.set()
        await release.wait()
        await real_analyse(self, *args)

    monkeypatch.setattr(execution._Execution, "_analyse", held_analyse)  # noqa: SLF001
    agent = shared_agent
    store = RunStore(tmp_path / "runs")
    case = early_case()
    run = Run(case=case, target=agent.target, channel="webrtc")
    options = RunOptions(calibrate=False)
    task = asyncio.create_task(run_case(case, agent.target, store, options=options, run=run))
    await asyncio.wait_for(analysing.wait(), BOUND_S)
    task.cancel()
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, BOUND_S)

    stored = store.load(run.id)
    assert stored.status == "completed", stored.error
    assert stored.evaluation is not None and stored.turns
