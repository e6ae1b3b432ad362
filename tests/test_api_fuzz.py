"""Fuzz the controller from its own OpenAPI document: no input may produce a 5xx."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")


@pytest.mark.timeout(600)  # 40 operations, real calls behind some of them
async def test_no_generated_request_gets_a_server_error(start_controller, tmp_path: Path) -> None:
    controller = start_controller(
        f"sqlite:///{tmp_path / 'db.sqlite'}",
        "--no-calibrate",
        # Whatever the fuzzer invents, the controller only ever calls loopback.
        env={
            "LOOPCALL_ALLOWED_HOSTS": "127.0.0.1,::1,localhost",
            "LOOPCALL_WEBHOOK_ATTEMPTS": "1",
            # A fuzzed bench may start: keep it small.
            "LOOPCALL_BENCH_MAX_CONCURRENCY": "5",
        },
    )
    proc = await asyncio.create_subprocess_exec(
        str(SCHEMATHESIS),
        "run",
        f"{controller.url}/openapi.json",
        "-H",
        f"Authorization: Bearer {controller.key}",
        "--checks",
        "not_a_server_error",
        "--max-examples",
        "25",
        "--seed",
        "1",
        "--workers",
        "1",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        cwd=tmp_path,  # its cache of past findings stays out of the checkout
    )
    out, _ = await proc.communicate()
    report = out.decode(errors="replace")
    assert proc.returncode == 0, report[-3000:]
    assert "passed" in report and "Server error" not in report
