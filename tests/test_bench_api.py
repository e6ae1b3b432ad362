"""``/benches``: the bench through the controller, a real `loopcall serve` process."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from dental import short_case

pytestmark = pytest.mark.e2e


async def _json(response: Any) -> Any:
    return json.loads(await response.text())


async def test_a_bench_runs_on_the_controller(
    start_controller, start_agent, tmp_path: Path
) -> None:
    agent = start_agent("--light", "--no-stt", "--reply-delay-ms", "400", channel="sip")
    controller = start_controller(f"sqlite:///{tmp_path / 'db.sqlite'}", "--no-calibrate")
    case = short_case().model_dump(mode="json", exclude_none=True)
    async with controller.client() as http:
        for body, field in (
            (
                {"case": case, "target": agent.target, "agent_id": "a1", "concurrency": [1]},
                "agent_id",
            ),
            ({"target": agent.target, "concurrency": [1]}, "case"),
            ({"case": case, "target": agent.target, "concurrency": []}, "concurrency"),
            # Over the controller's ceiling (LOOPCALL_BENCH_MAX_CONCURRENCY, 200).
            ({"case": case, "target": agent.target, "concurrency": [1, 201]}, "concurrency"),
        ):  # fmt: skip
            async with http.post("/benches", json=body) as response:
                assert response.status == 422, body
                detail = (await _json(response))["detail"]
                assert any(field in [str(p) for p in d["loc"]] for d in detail), detail

        body = {
            "case": case, "target": agent.target, "concurrency": [2], "oracle_delay_ms": 400,
            "transcribe": False,
        }  # fmt: skip
        async with http.post("/benches", json=body) as response:
            assert response.status == 202
            started = await _json(response)
        assert started["status"] == "running" and started["concurrency"] == [2]
        bench_id = started["id"]
        async with http.get(f"/benches/{bench_id}", params={"wait_s": "120"}) as response:
            report = await _json(response)
        assert report["status"] == "completed", report["error"]
        (level,) = report["levels"]
        # The same light SIP oracle as tests/test_bench.py, whose levels measured within
        # 2.0 ms (3.7 ms at worst in earlier runs); its 8 ms bound holds here too.
        assert level["completed"] == 2 and level["oracle_error_ms"]["max"] < 8, level
        async with http.get(f"/benches/{bench_id}/report.html") as response:
            assert response.status == 200 and "<svg" in await response.text()
        async with http.get("/benches") as response:
            listed = await _json(response)
        assert listed["total"] == 1 and listed["items"][0]["id"] == bench_id
        # Every call is a stored run of the controller's, tagged with the bench.
        async with http.get("/runs", params={"suite_run_id": bench_id}) as response:
            runs = (await _json(response))["items"]
        assert sorted(r["id"] for r in runs) == sorted(c["run_id"] for c in report["calls"])
        assert all(r["metrics"]["harness"]["degraded"] is False for r in runs), [
            r["metrics"]["harness"] for r in runs
        ]

        # A bench cancelled while it runs ends as cancelled, and so do its calls.
        async with http.post("/benches", json={**body, "concurrency": [1]}) as response:
            second = (await _json(response))["id"]
        # One bench at a time: two would each measure the other's load.
        async with http.post("/benches", json=body) as response:
            assert response.status == 409 and second in (await _json(response))["detail"]
        async with http.post(f"/benches/{second}/cancel") as response:
            assert response.status == 200
            assert (await _json(response))["status"] == "cancelled"
        async with http.post(f"/benches/{second}/cancel") as response:
            assert response.status == 409
        async with http.get("/runs", params={"suite_run_id": second}) as response:
            assert all(r["status"] == "cancelled" for r in (await _json(response))["items"])
        async with http.get("/benches/nope") as response:
            assert response.status == 404
