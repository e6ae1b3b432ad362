"""``POST /runs`` with a case given inline: checked as a case file is, against a real controller."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp

from harness.cases import library_personas, load_cases, load_persona

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


async def test_an_inline_case_may_name_a_library_persona(start_controller, tmp_path: Path) -> None:
    controller = start_controller(f"sqlite:///{tmp_path / 'db.sqlite'}", "--paused")
    library = load_persona("busy_professional").model_dump(mode="json")
    async with controller.client() as http:
        # By name, as in a case file ...
        status, answer = await _post(
            http, {"case": {**booking_case(), "persona": "busy_professional"}, "target": TARGET}
        )
        assert status == 202, answer
        [run_id] = answer["run_ids"]
        async with http.get(f"/runs/{run_id}") as response:
            assert response.status == 200
            persona = json.loads(await response.text())["case"]["persona"]
        assert persona == library  # the run keeps the persona it ran with
        # ... with overrides, and inside an inline suite.
        override = {"use": "busy_professional", "voice": "flite:awb"}
        suite = {"name": "s", "cases": [{**booking_case(), "persona": override}]}
        status, answer = await _post(http, {"suite": suite, "target": TARGET})
        assert status == 202, answer
        async with http.get(f"/runs/{answer['run_ids'][0]}") as response:
            persona = json.loads(await response.text())["case"]["persona"]
        assert persona == {**library, "voice": "flite:awb"}
        # An unknown name: a 422 naming the field and listing the library.
        status, answer = await _post(
            http, {"case": {**booking_case(), "persona": "nobody"}, "target": TARGET}
        )
        assert status == 422, answer
        [error] = answer["detail"]
        assert error["loc"] == ["body", "case", "persona"]
        assert "unknown persona 'nobody'" in error["msg"]
        assert all(name in error["msg"] for name in library_personas())
