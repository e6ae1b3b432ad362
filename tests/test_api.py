"""The controller over HTTP: `loopcall serve` as a real process, SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from harness.cases import load_cases

EXAMPLES = Path(__file__).resolve().parents[1] / "harness" / "examples"
VAPI_SCHEMA = Path(__file__).resolve().parent / "fixtures" / "vapi_eval_run.schema.json"


def booking_case() -> dict[str, Any]:
    case = load_cases(EXAMPLES / "dental_suite.yaml").cases[0]
    return case.model_dump(mode="json", exclude_none=True)


async def _loopcall(*args: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "harness.cli", *args, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await proc.communicate()
    assert proc.returncode == 0, args
    return out.decode()


async def _json(response: aiohttp.ClientResponse) -> Any:
    return json.loads(await response.text())


async def test_bad_bodies_get_422_with_the_field(start_controller, tmp_path: Path) -> None:
    controller = start_controller(f"sqlite:///{tmp_path / 'db.sqlite'}", "--no-calibrate")
    async with controller.client() as http:
        cases = [
            ({"target": "webrtc://127.0.0.1:9/api/offer"}, "case"),
            ({"case": booking_case(), "target": "http://nope/offer"}, "target"),
            (
                {"case": booking_case(), "target": "webrtc://127.0.0.1:9/x", "frequency": 0},
                "frequency",
            ),
            (
                {"case": {**booking_case(), "max_turns": -1}, "target": "webrtc://h:1/x"},
                "max_turns",
            ),
            (  # 11 cases x 100 = 1100 runs: more than one request may create
                {
                    "suite": {"name": "big", "cases": [booking_case()] * 11},
                    "target": "webrtc://127.0.0.1:9/x",
                    "frequency": 100,
                },
                "frequency",
            ),
            ({"case": booking_case(), "case_id": "c1", "target": "webrtc://h:1/x"}, "case"),
        ]
        for body, field in cases:
            async with http.post("/runs", json=body) as response:
                assert response.status == 422, body
                detail = (await _json(response))["detail"]
                assert any(field in [str(p) for p in d["loc"]] for d in detail), detail
        async with http.get("/runs", params={"limit": "0"}) as response:
            assert response.status == 422


async def test_every_route_but_health_needs_a_valid_key(start_controller, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'db.sqlite'}"
    controller = start_controller(db, "--no-calibrate")
    async with aiohttp.ClientSession(controller.url) as anonymous:
        async with anonymous.get("/health") as response:
            assert response.status == 200
        for headers in ({}, {"Authorization": "Bearer lc_not-a-key"}, {"Authorization": "Basic x"}):
            for path in (
                "/runs",
                "/runs/x",
                "/eval/run/x",
                "/agent-eval/runs/x",
                "/agents",
                "/personas/x",
                "/cases",
                "/suites/x",
                "/suite-runs",
            ):
                async with anonymous.get(path, headers=headers) as response:
                    assert response.status == 401, (path, headers)
                    assert response.headers["WWW-Authenticate"] == "Bearer"
            # The agent-facing routes take a run's own token instead: no run, no inbox.
            for path in ("/runs/x/agent-events", "/runs/x/tools/token/book"):
                async with anonymous.post(path, json=[], headers=headers) as response:
                    assert response.status == 404, (path, headers)
    async with controller.client() as http, http.get("/runs") as response:
        assert response.status == 200
    listing = await _loopcall("keys", "list", "--db", db)
    await _loopcall("keys", "revoke", listing.split()[0], "--db", db)
    async with controller.client() as http, http.get("/runs") as response:
        assert response.status == 401


async def test_keys_are_stored_hashed(start_controller, tmp_path: Path) -> None:
    import sqlite3

    db = tmp_path / "db.sqlite"
    controller = start_controller(f"sqlite:///{db}", "--no-calibrate")
    # `loopcall keys create` prints a key once; the database keeps its hash only.
    made = (await _loopcall("keys", "create", "from-the-cli", "--db", f"sqlite:///{db}")).strip()
    stored = sqlite3.connect(db).execute("select prefix, key_hash from api_keys").fetchall()
    assert len(stored) == 2
    for key in (controller.key, made):
        [(prefix, key_hash)] = [row for row in stored if key.startswith(row[0])]
        assert key not in key_hash and len(key_hash) == 64
    headers = {"Authorization": f"Bearer {made}"}
    async with (
        aiohttp.ClientSession(controller.url, headers=headers) as http,
        http.get("/runs") as response,
    ):
        assert response.status == 200


async def test_unknown_ids_get_404(start_controller, tmp_path: Path) -> None:
    controller = start_controller(f"sqlite:///{tmp_path / 'db.sqlite'}", "--no-calibrate")
    async with controller.client() as http:
        for method, path in [
            ("GET", "/runs/nope"),
            ("POST", "/runs/nope/cancel"),
            ("DELETE", "/runs/nope"),
            ("GET", "/runs/nope/recording"),
            ("GET", "/eval/run/nope"),
            ("GET", "/agent-eval/runs/nope"),
            ("GET", "/agent-eval/runs/nope/turns"),
            ("GET", "/suite-runs/nope"),
            ("GET", "/test_framework/v1/results/nope/"),
        ]:
            async with http.request(method, path) as response:
                assert response.status == 404, (method, path)


async def test_unreachable_target_is_a_stored_failed_run(start_controller, tmp_path: Path) -> None:
    controller = start_controller(f"sqlite:///{tmp_path / 'db.sqlite'}", "--no-calibrate")
    async with controller.client() as http:
        body = {"case": booking_case(), "target": "webrtc://127.0.0.1:9/api/offer"}
        async with http.post("/runs", json=body) as response:
            assert response.status == 202
            [run_id] = (await _json(response))["run_ids"]
        async with http.get(f"/runs/{run_id}", params={"wait_s": "60"}) as response:
            run = await _json(response)
        assert (run["status"], run["termination_reason"]) == ("failed", "error")
        assert "could not reach agent" in run["error"]
        async with http.get(f"/eval/run/{run_id}") as response:
            vapi = await _json(response)
        assert (vapi["status"], vapi["endedReason"]) == ("ended", "error")


def _max_overlap(runs: list[dict[str, Any]]) -> int:
    """The most runs that were in their call at the same moment."""

    def at(stamp: str) -> datetime:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00"))

    edges = sorted(  # at the same instant, an end sorts before a start
        [(at(r["started_at"]), 1) for r in runs] + [(at(r["ended_at"]), -1) for r in runs]
    )
    current = peak = 0
    for _, step in edges:
        current += step
        peak = max(peak, current)
    return peak


@pytest.mark.e2e
# The real-call controller tests run on one database each (this one PostgreSQL, the
# cancel below SQLite): what differs between the two is storage, which test_db.py and
# test_dispatcher.py check on both, and test_run_state.py's read paths on both with a call.
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_runs_over_http_with_real_calls(shared_agent, start_controller, db_url) -> None:
    agent = shared_agent
    controller = start_controller(db_url, "--concurrency", "3")
    async with controller.client() as http:
        # The catalogue way: a stored agent (with a credential it does not need) and a
        # stored suite; the suite runs 3 times, at most 2 calls at once.
        async with http.post(
            "/agents",
            json={
                "name": "reference agent",
                "address": agent.target,
                "credentials": {"secret_headers": {"Authorization": "Bearer unused-token"}},
            },
        ) as response:
            assert response.status == 201
            stored_agent = await _json(response)
        # One persona line and a goodbye (what is checked is the path through the
        # controller; test_e2e_webrtc.py judges the whole booking), with the booking's
        # first criterion.
        case = booking_case()
        short = {**case, "script": ["Hi, this is Alex Morgan."]}
        short["success_criteria"] = case["success_criteria"][:1]
        suite_body = {"name": "dental", "agent_id": stored_agent["id"], "cases": [short]}
        async with http.post("/suites", json=suite_body) as response:
            assert response.status == 201
            suite = await _json(response)
        body = {"suite_id": suite["id"], "frequency": 3, "concurrency_limit": 2}
        async with http.post("/runs", json=body) as response:
            assert response.status == 202
            created = await _json(response)
        assert len(created["run_ids"]) == 3 and created["suite_run_id"]

        runs = []
        for run_id in created["run_ids"]:
            async with http.get(f"/runs/{run_id}", params={"wait_s": "120"}) as response:
                runs.append(await _json(response))
        for run in runs:
            assert run["status"] == "completed", run["error"]
            assert run["termination_reason"] == "persona_goodbye"
            assert run["evaluation"]["results"][0]["passed"], run["evaluation"]
            assert run["evaluation"]["pass_fail"] is True
            assert run["metrics"]["transport_rtt_ms"] is not None
            assert (run["suite_id"], run["agent_id"]) == (suite["id"], stored_agent["id"])
            assert (run["suite_name"], run["case_id"]) == ("dental", suite["case_ids"][0])
        assert _max_overlap(runs) == 2, "the limit held, and the 3 free workers used 2"

        async with http.get("/runs", params={"suite_run_id": created["suite_run_id"]}) as r:
            listing = await _json(r)
        assert listing["total"] == 3
        assert {item["id"] for item in listing["items"]} == set(created["run_ids"])
        async with http.get(f"/suite-runs/{created['suite_run_id']}") as response:
            suite_run = await _json(response)
        assert (suite_run["passed"], suite_run["finished"], suite_run["success_rate"]) == (
            3,
            3,
            1.0,
        )
        assert (suite_run["concurrency_limit"], suite_run["suite_id"]) == (2, suite["id"])
        async with http.get("/suite-runs", params={"suite_id": suite["id"]}) as response:
            assert [s["id"] for s in (await _json(response))["items"]] == [created["suite_run_id"]]
        async with http.get(f"/test_framework/v1/results/{created['suite_run_id']}/") as r:
            cekura = await _json(r)
        assert (cekura["success_rate"], cekura["total_runs_count"]) == (1.0, 3)
        assert set(cekura["success_run_ids"]) == set(created["run_ids"])
        assert cekura["overall_evaluation"]["metric_summary"]["latency"]["p50"] > 0

        run_id = created["run_ids"][0]
        async with http.get(f"/eval/run/{run_id}") as response:
            vapi = await _json(response)
        schema = json.loads(VAPI_SCHEMA.read_text())
        assert set(schema["required"]) <= set(vapi)  # the full schema check is in test_views
        assert vapi["status"] in schema["properties"]["status"]["enum"]
        assert vapi["endedReason"] == "mockConversation.done"
        async with http.get(f"/agent-eval/runs/{run_id}") as response:
            yappr = await _json(response)
        assert (yappr["id"], yappr["status"], yappr["pass_fail"]) == (run_id, "completed", True)
        assert yappr["termination_reason"] == "persona_goodbye"

        # The recording plays and seeks in a browser: WAV, byte ranges.
        async with http.get(
            f"/runs/{run_id}/recording", headers={"Range": "bytes=0-43"}
        ) as response:
            assert response.status == 206
            assert response.headers["Content-Type"] == "audio/wav"
            header = await response.read()
        assert header[:4] == b"RIFF" and header[8:12] == b"WAVE" and len(header) == 44


async def _events_until(
    http: aiohttp.ClientSession, run_id: str, message_prefix: str
) -> list[dict]:
    """Read the run's server-sent events until a progress message starts with the prefix."""
    seen: list[dict] = []
    async with http.get(f"/runs/{run_id}/events") as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        kind = ""
        async for raw in response.content:
            line = raw.decode().strip()
            if line.startswith("event: "):
                kind = line[len("event: ") :]
            elif line.startswith("data: "):
                data = json.loads(line[len("data: ") :])
                seen.append({"kind": kind, **data})
                if kind == "end" or data.get("message", "").startswith(message_prefix):
                    return seen
    return seen


async def _until_event(http: aiohttp.ClientSession, run_id: str, kind: str) -> None:
    """Return once the run has had an event of ``kind`` (already, or live)."""
    async with http.get(f"/runs/{run_id}/events") as stream:  # subscribed first...
        async with http.get(f"/runs/{run_id}") as response:  # ...so nothing falls between
            if any(e["kind"] == kind for e in (await _json(response))["events"]):
                return
        async for raw in stream.content:
            line = raw.decode().strip()
            if line.startswith("data: ") and json.loads(line[6:]).get("message") == kind:
                return
    async with http.get(f"/runs/{run_id}") as response:
        run = await _json(response)
    raise AssertionError(f"run {run_id} ended without a {kind!r} event: {run}")


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.e2e
async def test_cancel_mid_call_hangs_up_and_stores_cancelled(
    shared_agent, start_controller, db_url
) -> None:
    agent = shared_agent
    controller = start_controller(db_url, "--no-calibrate")
    async with controller.client() as http:
        async with http.post("/runs", json={"case": booking_case(), "target": agent.target}) as r:
            [run_id] = (await _json(r))["run_ids"]
        seen = await _events_until(http, run_id, "persona_says")
        assert seen[0]["kind"] == "status"
        assert any(e.get("message") == "connected" for e in seen)
        async with http.get(f"/runs/{run_id}") as response:
            live = await _json(response)  # mid-call: the record as it is now
        assert live["status"] == "running"
        assert {"connected", "persona_says"} <= {e["kind"] for e in live["events"]}
        async with http.post(f"/runs/{run_id}/cancel") as response:
            assert response.status == 200
            run = await _json(response)
        assert (run["status"], run["termination_reason"]) == ("cancelled", "cancelled")
        assert run["turns"], "what was said before the cancel is kept"
        async with http.post(f"/runs/{run_id}/cancel") as response:
            assert response.status == 409


@pytest.mark.e2e
async def test_sigkill_mid_suite_loses_no_run(
    shared_agent, start_controller, tmp_path: Path
) -> None:
    agent = shared_agent
    db = f"sqlite:///{tmp_path / 'db.sqlite'}"
    first = start_controller(db, "--no-calibrate", "--concurrency", "2")
    # One persona line: what is checked is where each run ends up, not the talk
    # (the whole booking conversation made this test 100 s).
    short = {**booking_case(), "script": ["Hi, this is Alex Morgan."], "success_criteria": []}
    async with first.client() as http:
        once = {"case": short, "target": agent.target}
        async with http.post("/runs", json=once) as response:
            plain = await _json(response)
        # Two runs of a request limited to one at a time: the first is interrupted and
        # retried, the second waits; on a controller with 3 free workers they must still
        # run one after the other (the limit outlives the controller).
        retried = {
            "case": {**short, "retries": 1},
            "target": agent.target,
            "frequency": 2,
            "concurrency_limit": 1,
        }
        async with http.post("/runs", json=retried) as response:
            suite = await _json(response)
        await asyncio.gather(
            _until_event(http, plain["run_ids"][0], "connected"),
            _until_event(http, suite["run_ids"][0], "connected"),
        )
    first.process.kill()  # SIGKILL mid-call, twice over: no shutdown, no cleanup
    first.process.wait()

    second = start_controller(db, "--no-calibrate", "--concurrency", "3")
    async with second.client() as http:
        runs = {}
        for run_id in plain["run_ids"] + suite["run_ids"]:
            async with http.get(f"/runs/{run_id}", params={"wait_s": "120"}) as response:
                runs[run_id] = await _json(response)
        async with http.get("/runs") as response:
            assert (await _json(response))["total"] == 3, "every run accounted for"

    interrupted = runs[plain["run_ids"][0]]
    assert (interrupted["status"], interrupted["termination_reason"]) == ("failed", "error")
    assert "controller stopped" in interrupted["error"]
    again = runs[suite["run_ids"][0]]  # its case allows a retry: re-queued, then completed
    assert (again["status"], again["attempt"]) == ("completed", 2), again["error"]
    assert again["events"][0]["kind"] == "requeued"
    suite_runs = [runs[run_id] for run_id in suite["run_ids"]]
    for run in suite_runs[1:]:  # queued when the controller died: resumed
        assert (run["status"], run["attempt"]) == ("completed", 1), run["error"]
    assert _max_overlap(suite_runs) == 1, "the request's limit outlived the controller"


async def test_completion_webhook_is_signed_and_retried(
    start_controller, http_stub, tmp_path: Path
) -> None:
    from aiohttp import web

    from harness.api.webhooks import SIGNATURE_HEADER, verify

    deliveries: list[tuple[bytes, dict[str, str]]] = []
    third = asyncio.Event()

    async def receive(request: web.Request) -> web.Response:
        deliveries.append((await request.read(), dict(request.headers)))
        if len(deliveries) < 3:
            return web.Response(status=503)  # the receiver is down twice
        third.set()
        return web.Response(status=204)

    host = await http_stub("POST", "/hooks/loopcall", receive)
    controller = start_controller(
        f"sqlite:///{tmp_path / 'db.sqlite'}",
        "--no-calibrate",
        env={"LOOPCALL_WEBHOOK_SECRET": "s3cret", "LOOPCALL_WEBHOOK_BACKOFF_S": "0.05"},
    )
    async with controller.client() as http:
        body = {
            "case": booking_case(),
            "target": "webrtc://127.0.0.1:9/api/offer",
            "webhook_url": f"http://{host}/hooks/loopcall",
        }
        async with http.post("/runs", json=body) as response:
            [run_id] = (await _json(response))["run_ids"]
        await asyncio.wait_for(third.wait(), 60)

    assert [h["X-Loopcall-Delivery-Attempt"] for _, h in deliveries] == ["1", "2", "3"]
    for payload, headers in deliveries:
        assert verify("s3cret", payload, headers[SIGNATURE_HEADER])
        assert not verify("wrong", payload, headers[SIGNATURE_HEADER])
        assert not verify("s3cret", payload + b" ", headers[SIGNATURE_HEADER])
    event = json.loads(deliveries[-1][0])
    assert event["event"] == "run.ended"
    assert (event["run"]["id"], event["run"]["status"]) == (run_id, "failed")


def test_webhook_signatures_expire() -> None:
    import time

    from harness.api.webhooks import sign, verify

    body = b'{"event": "run.ended"}'
    assert verify("k", body, sign("k", body, int(time.time())))
    assert not verify("k", body, sign("k", body, int(time.time()) - 3600))
    assert not verify("k", body, "v1=deadbeef")


async def test_allowed_hosts_keep_the_controller_off_other_hosts(
    start_controller, tmp_path: Path
) -> None:
    controller = start_controller(
        f"sqlite:///{tmp_path / 'db.sqlite'}",
        "--no-calibrate",
        env={"LOOPCALL_ALLOWED_HOSTS": "127.0.0.1, ::1"},
    )
    async with controller.client() as http:
        for body, field in [
            ({"target": "webrtc://agent.example.com:7860/api/offer"}, "target"),
            (
                {
                    "target": "webrtc://127.0.0.1:9/api/offer",
                    "webhook_url": "http://hooks.example.org/x",
                },
                "webhook_url",
            ),
        ]:
            async with http.post("/runs", json={"case": booking_case(), **body}) as response:
                assert response.status == 422
                [error] = (await _json(response))["detail"]
                assert error["loc"] == ["body", field]
                assert "LOOPCALL_ALLOWED_HOSTS" in error["msg"]
        body = {"case": booking_case(), "target": "webrtc://[::1]:9/api/offer"}
        async with http.post("/runs", json=body) as response:
            assert response.status == 202


@pytest.mark.e2e
async def test_cli_run_through_a_controller(shared_agent, start_controller, tmp_path: Path) -> None:
    import yaml

    agent = shared_agent
    controller = start_controller(f"sqlite:///{tmp_path / 'db.sqlite'}", "--no-calibrate")
    agent_body = {"name": "ref", "address": agent.target}
    async with controller.client() as http, http.post("/agents", json=agent_body) as r:
        stored = await _json(r)
    early = load_cases(EXAMPLES / "dental_suite.yaml").cases[1]
    cases = [early.model_dump(mode="json", exclude_none=True) for _ in range(2)]
    cases[1]["name"] = "Ask early, again"
    suite_file = tmp_path / "early.yaml"
    suite_file.write_text(yaml.safe_dump({"name": "cli suite", "cases": cases}))
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "harness.cli",
        "run",
        str(suite_file),
        "--agent",
        stored["id"],
        "--server",
        controller.url,
        env={**os.environ, "LOOPCALL_API_KEY": controller.key},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    output = out.decode()
    assert proc.returncode == 0, output + err.decode()
    assert "submitted 2 run(s)" in output and "persona_says" in output
    assert "2/2 = 100.0 % (95 % CI 34.2–100.0 %) passed" in output  # the suite report
    async with controller.client() as http, http.get("/runs") as response:
        listing = await _json(response)
    assert listing["total"] == 2
    assert all(item["status"] == "completed" for item in listing["items"])
    assert {item["case"]["name"] for item in listing["items"]} == {early.name, "Ask early, again"}
    # One file, one request: one suite run, named after the suite, calling the stored agent.
    assert len({item["suite_run_id"] for item in listing["items"]}) == 1
    assert {(i["suite_name"], i["agent_id"]) for i in listing["items"]} == {
        ("cli suite", stored["id"])
    }


async def test_cli_run_with_a_wrong_key_says_so(start_controller, tmp_path: Path) -> None:
    controller = start_controller(f"sqlite:///{tmp_path / 'db.sqlite'}", "--no-calibrate")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "harness.cli",
        "run",
        str(EXAMPLES / "dental_suite.yaml"),
        "--target",
        "webrtc://127.0.0.1:9/api/offer",
        "--server",
        controller.url,
        env={**os.environ, "LOOPCALL_API_KEY": "lc_wrong"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _out, err = await proc.communicate()
    assert proc.returncode == 1
    assert "HTTP 401" in err.decode()


async def test_persona_override_applies_to_the_runs(start_controller, tmp_path: Path) -> None:
    controller = start_controller(f"sqlite:///{tmp_path / 'db.sqlite'}", "--paused")
    async with controller.client() as http:
        body = {
            "case": booking_case(),
            "target": "webrtc://127.0.0.1:9/api/offer",
            "persona": {"name": "Sam Diaz", "voice": "flite:awb"},
        }
        async with http.post("/runs", json=body) as response:
            assert response.status == 202
            [run_id] = (await _json(response))["run_ids"]
        async with http.get(f"/runs/{run_id}") as response:
            persona = (await _json(response))["case"]["persona"]
        assert (persona["name"], persona["voice"]) == ("Sam Diaz", "flite:awb")
        assert persona["identity_prompt"] == booking_case()["persona"]["identity_prompt"]
        for override, field in [({"voice": "no-engine"}, "voice"), ({"mood": "grumpy"}, "mood")]:
            async with http.post("/runs", json={**body, "persona": override}) as response:
                assert response.status == 422
                detail = (await _json(response))["detail"]
                assert any(
                    d["loc"][:2] == ["body", "persona"] and field in d["loc"] for d in detail
                ), detail
