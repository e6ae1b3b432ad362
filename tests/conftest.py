"""Shared fixtures: the reference agent as a real separate process, on loopback."""

from __future__ import annotations

import json
import subprocess
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

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
