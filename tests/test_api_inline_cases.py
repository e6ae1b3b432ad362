"""``POST /runs`` with a case given inline: checked as a case file is, against a real controller."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp

from harness.cases import load_cases

EXAMPLES = Path(__file__).resolve().parents[1] / "harness" / "examples"
TARGET = "webrtc://127.0.0.1:9/api/offer"


def booking_case() -> dict[str, Any]:
    case = load_cases(EXAMPLES / "dental_suite.yaml").cases[0]
    return case.model_dump(mode="json", exclude_none=True)


async def _post(http: aiohttp.ClientSession, body: dict[str, Any]) -> tuple[int, Any]:
    async with http.post("/runs", json=body) as response:
        return response.status, json.loads(await response.text())


async def test_a_catastrophic_pattern_gets_a_422_naming_its_field(
    start_controller, tmp_path: Path
) -> None:
    controller = start_controller(f"sqlite:///{tmp_path / 'db.sqlite'}", "--paused")
    case = booking_case()
    case["success_criteria"] = [*case["success_criteria"], {"pattern": "(a|a)+$"}]
    bad = len(case["success_criteria"]) - 1
    async with controller.client() as http:
        status, answer = await _post(http, {"case": case, "target": TARGET})
        assert status == 422, answer
        [error] = answer["detail"]
        assert error["loc"] == ["body", "case", "success_criteria", bad, "pattern"]
        assert "backtracks catastrophically" in error["msg"]
        suite = {"name": "s", "cases": [booking_case(), case]}
        status, answer = await _post(http, {"suite": suite, "target": TARGET})
        assert status == 422, answer
        assert [e["loc"] for e in answer["detail"]] == [
            ["body", "suite", "cases", 1, "success_criteria", bad, "pattern"]
        ]
        # The same case without the bad pattern is accepted.
        status, answer = await _post(http, {"case": booking_case(), "target": TARGET})
        assert status == 202, answer
