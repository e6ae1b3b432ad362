"""Shared fixtures: the reference agent as a real separate process, on loopback."""

from __future__ import annotations

import json
import subprocess
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from harness.cli import start_agent_process

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
        return "http://" + self.target.split("://", 1)[1].rsplit("/api/offer", 1)[0]

    def health(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.http}/health", timeout=5) as response:
            return dict(json.loads(response.read()))

    def timings(self) -> list[dict[str, Any]]:
        if not self.timing_log.exists():
            return []
        return [json.loads(line) for line in self.timing_log.read_text().splitlines() if line]


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


@pytest.fixture
def start_agent(tmp_path: Path) -> Iterator[Callable[..., AgentProcess]]:
    """Factory: start `loopcall agent` in its own process; every agent is stopped after."""
    started: list[AgentProcess] = []

    def start(*extra: str) -> AgentProcess:
        n = len(started)
        timing = tmp_path / f"agent{n}-timing.jsonl"
        log = tmp_path / f"agent{n}.log"
        proc, target = start_agent_process("--timing-log", str(timing), *extra, log_path=log)
        agent = AgentProcess(target, timing, log, proc)
        started.append(agent)
        return agent

    yield start
    for agent in started:
        agent.process.terminate()
        try:
            agent.process.wait(10)
        except subprocess.TimeoutExpired:
            agent.process.kill()
