"""``loopcall report``/``compare`` on stored runs, and the controller's suite-run report and
comparison routes, over HTTP on loopback: runs built by hand and stored, no calls."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
import uvicorn
from suite_runs import BOOKED, make_run, noisy_suite

from harness.api import create_app
from harness.cli.main import main
from harness.models import Run
from harness.reports import Comparison, SuiteReport
from harness.settings import Settings
from harness.store import RunStore

BEFORE = "aaaa1111-0000-4000-8000-000000000001"
AFTER = "bbbb2222-0000-4000-8000-000000000002"


def _suites() -> tuple[list[Run], list[Run]]:
    """Suite run BEFORE: 19 of 20 pass; AFTER: 8 of 20, and its agent answers later."""
    rng = np.random.default_rng(3)
    before = noisy_suite(rng, BEFORE, runs=20, pass_p=1.0, median_ms=700)
    before[-1] = make_run(suite_run_id=BEFORE, verdicts=[(BOOKED, False, "never reached")])
    after = noisy_suite(rng, AFTER, runs=20, pass_p=0.0, median_ms=1100)
    after[:8] = [
        make_run(suite_run_id=AFTER, verdicts=[(BOOKED, True, "ok")], latencies=[1000, 1200])
        for _ in range(8)
    ]
    return before, after


@pytest.fixture
def store(tmp_path: Path) -> Path:
    root = tmp_path / "runs"
    saved = RunStore(root)
    for run in [*_suites()[0], *_suites()[1]]:
        saved.save(run)
    return root


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_report_of_a_stored_suite_run(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _cli(capsys, "report", BEFORE[:6], "--out", str(store))
    assert code == 0
    assert "19/20 = 95.0 % (95 % CI 76.4–99.1 %) passed" in out
    assert "node_id: never reached" in out  # the failure, by cause
    code, out, _ = _cli(capsys, "report", AFTER[:6], "--out", str(store), "--json")
    report = SuiteReport.model_validate_json(out)
    assert (report.success.passed, report.success.total) == (8, 20)
    assert report.suite_run_ids == [AFTER]


def test_compare_by_ids_and_by_folders(
    store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _cli(capsys, "compare", BEFORE[:6], AFTER[:6], "--out", str(store), "--json")
    assert code == 1  # something regressed: a CI step can gate on it
    by_ids = Comparison.model_validate_json(out)
    assert (by_ids.success.label, by_ids.success.test) == ("regressed", "fisher_exact")
    assert by_ids.success.p_value is not None and by_ids.success.p_value < 0.001
    latency = {c.name: c for c in by_ids.metrics}["turn_latency_ms"]
    assert (latency.label, latency.test) == ("regressed", "mann_whitney_u")

    # A folder of run.json files (copied anywhere, any names) stands for a suite run.
    flat = tmp_path / "copied"
    flat.mkdir()
    for i, run_json in enumerate(sorted(store.glob("*/run.json"))):
        if json.loads(run_json.read_text())["suite_run_id"] == BEFORE:
            shutil.copy(run_json, flat / f"{i}.json")
    code, out, _ = _cli(capsys, "compare", str(flat), AFTER, "--out", str(store), "--json")
    by_path = Comparison.model_validate_json(out)
    assert code == 1
    assert by_path.success == by_ids.success and by_path.metrics == by_ids.metrics

    code, out, _ = _cli(capsys, "compare", BEFORE, BEFORE, "--out", str(store))
    assert code == 0
    assert "0 regressed, 0 improved" in out and "no significant change" in out


def test_compare_says_what_it_cannot_read(
    store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _cli(capsys, "compare", str(store), AFTER, "--out", str(store))
    assert (code, out) == (2, "")
    assert "2 suite runs (aaaa1111, bbbb2222)" in err  # a runs dir holding both
    code, _, err = _cli(capsys, "compare", "zzzz", AFTER, "--out", str(store))
    assert code == 2 and "no suite run matching 'zzzz'" in err
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "x.json").write_text('{"id": 1}')
    code, _, err = _cli(capsys, "report", str(tmp_path / "junk"))
    assert code == 2 and "x.json is not a loopcall run" in err
    code, _, err = _cli(capsys, "compare", BEFORE, AFTER, "--out", str(store), "--alpha", "2")
    assert code == 2 and "--alpha" in err


@contextlib.asynccontextmanager
async def controller(tmp_path: Path, runs: list[Run]) -> AsyncIterator[tuple[str, str]]:
    """The controller app, paused (nothing dials), holding ``runs``, on loopback."""
    settings = Settings(db_url=f"sqlite:///{tmp_path / 'loopcall.db'}", data_dir=tmp_path / "d")
    app = create_app(settings, calibrate=False, paused=True)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    async with app.router.lifespan_context(app):
        for run in runs:
            await app.state.sink.repository.save(run)
        key = await app.state.keys.create("tests")
        server = uvicorn.Server(uvicorn.Config(app, lifespan="off", log_level="warning"))
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        try:
            yield f"http://127.0.0.1:{sock.getsockname()[1]}", key
        finally:
            server.should_exit = True
            await serving
    sock.close()


async def _get(http: aiohttp.ClientSession, path: str, status: int = 200, **params: Any) -> Any:
    async with http.get(path, params=params) as response:
        body = await response.text()
        assert response.status == status, body
        return json.loads(body)


async def test_the_controller_serves_the_report_and_the_comparison(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    before, after = _suites()
    async with controller(tmp_path, [*before, *after]) as (url, key):
        headers = {"Authorization": f"Bearer {key}"}
        async with aiohttp.ClientSession(url, headers=headers) as http:
            suite_run = await _get(http, f"/suite-runs/{AFTER}")
            # The fields it had, and the report beside them.
            assert (suite_run["passed"], suite_run["finished"], suite_run["success_rate"]) == (
                8,
                20,
                0.4,
            )
            report = SuiteReport.model_validate(suite_run["report"])
            assert report.success.ci95 is not None and report.success.ci95[0] < 0.4
            assert [c.label for c in report.worst_criteria] == ["reached the confirmation"]

            comparison = Comparison.model_validate(
                await _get(http, f"/suite-runs/{BEFORE}/compare/{AFTER}")
            )
            assert comparison.success.label == "regressed" and comparison.regressed >= 2
            strict = Comparison.model_validate(
                await _get(http, f"/suite-runs/{BEFORE}/compare/{AFTER}", alpha="1e-9")
            )
            assert strict.alpha == 1e-9 and strict.success.label == "no significant change"
            await _get(http, f"/suite-runs/{BEFORE}/compare/{AFTER}", 422, alpha="2")
            missing = await _get(http, f"/suite-runs/{BEFORE}/compare/nope", 404)
            assert "nope" in missing["detail"]
        async with aiohttp.ClientSession(url) as anonymous:
            await _get(anonymous, f"/suite-runs/{BEFORE}/compare/{AFTER}", 401)

        # The CLI asks the controller the same (main runs its own event loop: a thread).
        monkeypatch.setenv("LOOPCALL_API_KEY", key)
        capsys.readouterr()
        code = await asyncio.to_thread(main, ["compare", BEFORE, AFTER, "--server", url, "--json"])
        assert code == 1
        assert Comparison.model_validate_json(capsys.readouterr().out) == comparison
        code = await asyncio.to_thread(main, ["report", AFTER, "--server", url])
        assert code == 0 and "8/20 = 40.0 %" in capsys.readouterr().out
        code = await asyncio.to_thread(main, ["report", "nope", "--server", url])
        assert code == 2 and "HTTP 404" in capsys.readouterr().err
