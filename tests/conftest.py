"""Shared fixtures: the reference agent as a real separate process, on loopback."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import subprocess
import urllib.request
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from harness.cli.processes import start_agent_process, start_controller_process, stop_process
from harness.db import create_engine, migrate
from harness.db.keys import KeyRepository

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"

# Tests whose assertions are timing: latency oracles, bounds on a bench's figures,
# the loop monitor, the pump's grid, RTP arrival times, concurrent calls losing no
# packet.  ``make test`` runs every other test on two workers first, then these
# alone, so no timing test shares the two cores with another test.  Module name ->
# test names ("*": the whole module).
TIMING_TESTS: dict[str, set[str]] = {
    "test_e2e_webrtc": {"test_latency_oracle"},
    "test_e2e_twilio_ws": {"*"},
    "test_e2e_agent_reports": {"*"},
    "test_e2e_sip": {"test_latency_oracle_over_sip"},
    # Issue 14: the dynamics oracle (an agent that interrupts X ms into each caller line).
    "test_e2e_dynamics": {"*"},
    "test_e2e_twilio_phone": {
        "test_outbound_tel_call_reaches_the_agent_behind_the_emulator",
        "test_a_bench_places_phone_calls_through_the_carrier",
    },
    "test_bench": {"*"},
    "test_bench_api": {"*"},
    "test_stock_pipecat_agent": {"*"},
    "test_stock_pipecat_twilio_agent": {"*"},
    "test_sip_peers": {
        "test_twenty_concurrent_calls_to_sipp_echo_lose_no_rtp",
        # Whisper must hear SIPp's recording: beside two CPU hogs, 1 run in 3 heard
        # "bright my old mental" for "Bright Smile Dental" (SIPp's own pacing).
        "test_sipp_playing_a_recording_is_heard_and_gets_the_run_id",
    },
    "test_sip_rtp": {"*"},
    "test_health": {"test_monitor_sees_a_stalled_loop"},
    "test_pump": {"*"},
    # Added with issue 13: the loop's delay while a user regex runs, WebRTC arrival
    # stamps against the loop's read time, Chromium's and loopcall's echo round trips.
    "test_user_patterns": {
        "test_a_catastrophic_when_line_leaves_the_event_loop_alone",
        "test_scoring_off_the_loop_leaves_it_alone",
        "test_next_line_bounds_the_pattern_too",
    },
    "test_wire_stamps": {"*"},
    "test_chromium_peer": {"*"},
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        names = TIMING_TESTS.get(item.module.__name__ if item.module else "", set())
        if "*" in names or getattr(item, "originalname", item.name) in names:
            item.add_marker(pytest.mark.timing)


ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "harness" / "examples"


@dataclass
class AgentProcess:
    target: str
    timing_log: Path
    log: Path
    process: subprocess.Popen[bytes]

    @property
    def http(self) -> str:
        address = self.target.split("://", 1)[1]
        return "http://" + address.rsplit("/api/offer", 1)[0].rsplit("/ws", 1)[0]

    def health(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.http}/health", timeout=5) as response:
            return dict(json.loads(response.read()))

    def timings(self) -> list[dict[str, Any]]:
        if not self.timing_log.exists():
            return []
        return [json.loads(line) for line in self.timing_log.read_text().splitlines() if line]

    def timings_of(self, run_id: str) -> list[dict[str, Any]]:
        """The replies of one run (a shared agent's log holds many runs')."""
        return [record for record in self.timings() if record.get("run_id") == run_id]


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@pytest.fixture
async def http_stub() -> AsyncIterator[Callable[[str, str, Handler], Awaitable[str]]]:
    """Factory: serve one aiohttp handler on 127.0.0.1; returns the server's base URL."""
    runners: list[web.AppRunner] = []

    async def serve(method: str, path: str, handler: Handler) -> str:
        app = web.Application()
        app.router.add_route(method, path, handler)
        runner = web.AppRunner(app, shutdown_timeout=0.1)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return f"127.0.0.1:{port}"

    yield serve
    for runner in runners:
        await runner.cleanup()


@pytest.fixture(scope="session")
def _session_agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[AgentProcess]]:
    holder: list[AgentProcess] = []
    yield holder
    for agent in holder:
        stop_process(agent.process, 10)


@pytest.fixture
def shared_agent(
    _session_agent: list[AgentProcess], tmp_path_factory: pytest.TempPathFactory
) -> AgentProcess:
    """The plain reference agent (WebRTC offer and media-stream /ws, its STT on), one per
    test process: starting one costs seconds of both cores, and most tests only need
    *an* agent.  Its calls are independent; its timing log holds every test's replies
    (read them with ``timings_of(run_id)``).  A test that configures, crashes or kills
    its agent starts its own with ``start_agent``.  Started again if it has died."""
    if not _session_agent or _session_agent[0].process.poll() is not None:
        base = tmp_path_factory.mktemp("shared-agent")
        proc, target = start_agent_process(
            "--timing-log", str(base / "timing.jsonl"), log_path=base / "agent.log"
        )
        _session_agent[:] = [AgentProcess(target, base / "timing.jsonl", base / "agent.log", proc)]
    return _session_agent[0]


@pytest.fixture
def start_agent(tmp_path: Path) -> Iterator[Callable[..., AgentProcess]]:
    """Factory: start `loopcall agent` in its own process; every agent is stopped after."""
    started: list[AgentProcess] = []

    def start(*extra: str, channel: str = "webrtc") -> AgentProcess:
        n = len(started)
        timing = tmp_path / f"agent{n}-timing.jsonl"
        log = tmp_path / f"agent{n}.log"
        proc, target = start_agent_process(
            "--timing-log", str(timing), *extra, log_path=log, channel=channel
        )
        agent = AgentProcess(target, timing, log, proc)
        started.append(agent)
        return agent

    yield start
    for agent in started:
        stop_process(agent.process, 10)


@dataclass
class Controller:
    url: str
    key: str
    process: subprocess.Popen[bytes]

    def client(self) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(self.url, headers={"Authorization": f"Bearer {self.key}"})

    def stop(self) -> None:
        """SIGTERM (it stores what it was doing), then SIGKILL if it hangs."""
        stop_process(self.process, 15)


def create_key(db_url: str, name: str) -> str:
    """An API key in the controller's database, made in this process (what `loopcall
    keys create` does; test_api.py runs the command itself), in a thread of its own:
    the callers run inside the test's event loop."""

    async def create() -> str:
        engine = create_engine(db_url)
        try:
            await migrate(engine)
            return await KeyRepository(engine).create(name)
        finally:
            await engine.dispose()

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, create()).result()


@pytest.fixture
def start_controller(tmp_path: Path) -> Iterator[Callable[..., Controller]]:
    """Factory: `loopcall serve` on a free port; every controller is stopped after."""
    started: list[Controller] = []

    def start(db_url: str, *extra: str, env: dict[str, str] | None = None) -> Controller:
        key = create_key(db_url, f"tests-{uuid.uuid4().hex[:6]}")
        proc, url = start_controller_process(
            db_url,
            *extra,
            data_dir=tmp_path / "data",
            log_path=tmp_path / f"controller{len(started)}.log",
            env=env,
        )
        controller = Controller(url, key, proc)
        started.append(controller)
        return controller

    yield start
    for controller in started:
        stop_process(controller.process, 15)


@pytest.fixture(params=["sqlite", "postgresql"])
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'loopcall.db'}"
        return
    name = f"loopcall_api_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(PG_ADMIN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture
def launch_controller(tmp_path: Path) -> Iterator[Callable[..., Controller]]:
    """Factory: `loopcall serve` through tests/controller_launch.py (test doubles inside:
    a DNS table, a fault); its stderr goes to ``tmp_path/controller.log``; stopped after."""
    from controller_launch import start_launched_controller

    started: list[Controller] = []

    def start(db_url: str, *extra: str, env: dict[str, str] | None = None) -> Controller:
        key = create_key(db_url, f"t-{uuid.uuid4().hex[:6]}")
        proc, url = start_launched_controller(
            db_url,
            *extra,
            data_dir=tmp_path / "data",
            log_path=tmp_path / "controller.log",
            env=env or {},
        )
        started.append(Controller(url, key, proc))
        return started[-1]

    yield start
    for controller in started:
        controller.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    """A migrated engine on a database of its own (a fresh PostgreSQL database per test)."""
    if request.param == "sqlite":
        engine = create_engine(f"sqlite:///{tmp_path / 'loopcall.db'}")
        await migrate(engine)
        yield engine
        await engine.dispose()
        return
    name = f"loopcall_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(PG_ADMIN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    engine = create_engine(f"postgresql://postgres@127.0.0.1:5432/{name}")
    try:
        await migrate(engine)
        yield engine
    finally:
        await engine.dispose()
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()
