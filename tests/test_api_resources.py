"""The controller's catalogue over HTTP: agents, personas, cases, suites, and runs by id.

Against `loopcall serve` as a real process, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from harness.cases import load_cases

EXAMPLES = Path(__file__).resolve().parents[1] / "harness" / "examples"
SECRET = "tok-3f9a1c77e2b54d0e"  # an agent credential that must never come back


def dental_cases() -> list[dict[str, Any]]:
    return [
        case.model_dump(mode="json", exclude_none=True, exclude={"id"})
        for case in load_cases(EXAMPLES / "dental_suite.yaml").cases
    ]


async def _call(
    http: aiohttp.ClientSession, method: str, path: str, status: int, **kwargs: Any
) -> Any:
    async with http.request(method, path, **kwargs) as response:
        text = await response.text()
        assert response.status == status, (method, path, response.status, text)
        return json.loads(text) if text else None


def _has_loc(detail: list[dict[str, Any]], *loc: str | int) -> bool:
    return any(list(d["loc"][: len(loc) + 1]) == ["body", *loc] for d in detail)


async def test_catalogue_crud_with_pages_filters_and_references(start_controller, db_url) -> None:
    controller = start_controller(db_url, "--paused")
    async with controller.client() as http:
        # Personas.
        alex = await _call(
            http, "POST", "/personas", 201, json={"name": "Alex", "voice": "flite:awb"}
        )
        sam = await _call(http, "POST", "/personas", 201, json={"name": "Sam"})
        assert (alex["voice"], sam["voice"]) == ("flite:awb", "flite:slt")
        page = await _call(http, "GET", "/personas", 200, params={"limit": "1"})
        assert (page["total"], len(page["items"]), page["items"][0]["id"]) == (2, 1, sam["id"])
        page = await _call(http, "GET", "/personas", 200, params={"limit": "1", "offset": "1"})
        assert page["items"][0]["id"] == alex["id"]
        patched = await _call(
            http, "PATCH", f"/personas/{alex['id']}", 200, json={"speaking_rate": 1.2}
        )
        assert (patched["speaking_rate"], patched["voice"]) == (1.2, "flite:awb")
        assert patched["updated_at"] > alex["updated_at"]
        bad = await _call(http, "PATCH", f"/personas/{alex['id']}", 422, json={"voice": "x"})
        assert _has_loc(bad["detail"], "voice")

        # Agents (credentials are write-only).
        agent_body = {
            "name": "dental bot",
            "address": "webrtc://127.0.0.1:7860/api/offer",
            "options": {"headers": {"X-Tenant": "acme"}, "request_data": {"lang": "en"}},
            "credentials": {"secret_headers": {"Authorization": f"Bearer {SECRET}"}},
        }
        agent = await _call(http, "POST", "/agents", 201, json=agent_body)
        assert (agent["channel"], agent["options"]["headers"]) == ("webrtc", {"X-Tenant": "acme"})
        assert agent["credentials_set"] == ["secret_headers.Authorization"]
        assert "credentials" not in agent
        filtered = await _call(http, "GET", "/agents", 200, params={"channel": "webrtc"})
        assert [a["id"] for a in filtered["items"]] == [agent["id"]]
        none = await _call(http, "GET", "/agents", 200, params={"name": "someone else"})
        assert none == {"items": [], "total": 0, "limit": 50, "offset": 0}
        renamed = await _call(http, "PATCH", f"/agents/{agent['id']}", 200, json={"name": "v2"})
        assert renamed["credentials_set"] == ["secret_headers.Authorization"], "kept on PATCH"
        for body, field in [
            ({**agent_body, "address": "http://x/offer"}, "address"),
            ({**agent_body, "options": {"headers": {"Bad Header": "x"}}}, "options"),
            ({**agent_body, "options": {"headers": {"X-A": "a\r\nInjected: 1"}}}, "options"),
            ({**agent_body, "options": {"headers": {"Content-Type": "text/plain"}}}, "options"),
            ({**agent_body, "credentials": {"sip_pasword": "typo"}}, "credentials"),
        ]:
            bad = await _call(http, "POST", "/agents", 422, json=body)
            assert _has_loc(bad["detail"], field), (body, bad)

        # Cases: persona inline or by id; references checked.
        booking, early = dental_cases()[:2]
        stored_persona_case = {**booking, "persona_id": alex["id"], "agent_id": agent["id"]}
        del stored_persona_case["persona"]
        case = await _call(http, "POST", "/cases", 201, json=stored_persona_case)
        assert (case["persona_id"], case["persona"]["name"]) == (alex["id"], "Alex")
        criteria = [{k: v for k, v in c.items() if v is not None} for c in case["success_criteria"]]
        assert criteria == booking["success_criteria"]
        inline = await _call(http, "POST", "/cases", 201, json=early)
        assert (inline["persona_id"], inline["persona"]) == (
            None,
            early["persona"] | inline["persona"],
        )
        for body, field in [
            ({**stored_persona_case, "persona_id": "nope"}, "persona_id"),
            ({**stored_persona_case, "agent_id": "nope"}, "agent_id"),
            ({**early, "persona_id": alex["id"]}, None),  # both persona and persona_id
            ({**early, "id": "mine"}, "id"),
        ]:
            bad = await _call(http, "POST", "/cases", 422, json=body)
            assert field is None or _has_loc(bad["detail"], field), (body, bad)
        # Switching a case to a stored persona drops its inline one.
        switched = await _call(
            http, "PATCH", f"/cases/{inline['id']}", 200, json={"persona_id": sam["id"]}
        )
        assert (switched["persona_id"], switched["persona"]["name"]) == (sam["id"], "Sam")
        by_persona = await _call(http, "GET", "/cases", 200, params={"persona_id": sam["id"]})
        assert [c["id"] for c in by_persona["items"]] == [inline["id"]]
        conflict = await _call(http, "DELETE", f"/personas/{sam['id']}", 409)
        assert "used by 1 case" in conflict["detail"]

        # Suites: created with their cases in one request.
        suite = await _call(
            http,
            "POST",
            "/suites",
            201,
            json={"name": "dental", "agent_id": agent["id"], "cases": dental_cases()},
        )
        assert len(suite["case_ids"]) == len(dental_cases())
        in_suite = await _call(http, "GET", "/cases", 200, params={"suite_id": suite["id"]})
        assert in_suite["total"] == len(dental_cases())
        assert {c["suite_id"] for c in in_suite["items"]} == {suite["id"]}
        bad = await _call(
            http, "POST", "/suites", 422, json={"name": "x", "cases": [{**early, "max_turns": 0}]}
        )
        assert _has_loc(bad["detail"], "cases", 0), bad
        assert (await _call(http, "GET", "/suites", 200))["total"] == 1, "nothing half-created"
        conflict = await _call(http, "DELETE", f"/agents/{agent['id']}", 409)
        assert "default agent" in conflict["detail"]
        await _call(http, "DELETE", f"/suites/{suite['id']}", 409)
        await _call(http, "DELETE", f"/suites/{suite['id']}", 204, params={"cascade": "true"})
        assert (await _call(http, "GET", "/cases", 200, params={"suite_id": suite["id"]}))[
            "total"
        ] == 0

        # Unknown ids are 404 on every kind.
        for kind in ("agents", "personas", "cases", "suites"):
            for method in ("GET", "PATCH", "DELETE"):
                kwargs = {"json": {}} if method == "PATCH" else {}
                missing = await _call(http, method, f"/{kind}/no-such-id", 404, **kwargs)
                assert "no-such-id" in missing["detail"]

        # Runs by reference: a stored case, its default agent, a stored persona instead.
        created = await _call(
            http, "POST", "/runs", 202, json={"case_id": case["id"], "persona_id": sam["id"]}
        )
        run = await _call(http, "GET", f"/runs/{created['run_ids'][0]}", 200)
        assert (run["case_id"], run["agent_id"], run["persona_id"]) == (
            case["id"],
            agent["id"],
            sam["id"],
        )
        assert (run["target"], run["case"]["persona"]["name"]) == (agent_body["address"], "Sam")
        listed = await _call(http, "GET", "/suite-runs", 200)
        assert [(i["id"], i["status_counts"], i["agent_id"]) for i in listed["items"]] == [
            (created["suite_run_id"], {"queued": 1}, None)
        ]
        yappr = await _call(http, "GET", f"/agent-eval/runs/{run['id']}", 200)
        assert (yappr["case_id"], yappr["agent_id"], yappr["persona_id"]) == (
            case["id"],
            agent["id"],
            sam["id"],
        )
        for body, field in [
            ({"case_id": "nope"}, "case_id"),
            ({"suite_id": "nope"}, "suite_id"),
            ({"case_id": case["id"], "agent_id": "nope"}, "agent_id"),
            ({"case_id": inline["id"]}, "target"),  # no target and no default agent
            ({"case_id": case["id"], "suite_id": suite["id"]}, None),
            ({"case_id": case["id"], "target": "webrtc://h:1/x", "agent_id": agent["id"]}, None),
        ]:
            bad = await _call(http, "POST", "/runs", 422, json=body)
            assert field is None or _has_loc(bad["detail"], field), (body, bad)

        # A credential never comes back, anywhere.
        everything = [
            await _call(http, "GET", path, 200)
            for path in ("/agents", f"/agents/{agent['id']}", "/runs", "/openapi.json")
        ]
        assert SECRET not in json.dumps(everything)


async def test_agent_credentials_are_sent_sealed_and_never_stored_in_clear(
    start_controller, http_stub, tmp_path: Path
) -> None:
    seen: list[dict[str, str]] = []

    async def refuse(request: web.Request) -> web.Response:
        seen.append(dict(request.headers))
        # A careless agent that echoes the request's credentials into its error page.
        return web.Response(status=403, text=f"bad token {request.headers.get('Authorization')}")

    host = await http_stub("POST", "/api/offer", refuse)
    db = tmp_path / "db.sqlite"
    controller = start_controller(f"sqlite:///{db}", "--no-calibrate")
    async with controller.client() as http:
        agent = await _call(
            http,
            "POST",
            "/agents",
            201,
            json={
                "name": "strict",
                "address": f"webrtc://{host}/api/offer",
                "options": {"headers": {"X-Tenant": "acme"}, "request_data": {"lang": "fr"}},
                "credentials": {
                    "secret_headers": {"Authorization": f"Bearer {SECRET}"},
                    "sip_password": "sip-pass-0042",
                },
            },
        )
        case = dental_cases()[0]
        created = await _call(
            http, "POST", "/runs", 202, json={"case": case, "agent_id": agent["id"]}
        )
        run_id = created["run_ids"][0]
        run = await _call(http, "GET", f"/runs/{run_id}", 200, params={"wait_s": "60"})
        views = [
            await _call(http, "GET", path, 200)
            for path in (f"/eval/run/{run_id}", f"/agent-eval/runs/{run_id}")
        ]

        # Rotating the credentials applies to the next run; removing them stops sending them.
        await _call(http, "PATCH", f"/agents/{agent['id']}", 200, json={"credentials": None})
        cleared = await _call(http, "GET", f"/agents/{agent['id']}", 200)
        created = await _call(
            http, "POST", "/runs", 202, json={"case": case, "agent_id": agent["id"]}
        )
        await _call(http, "GET", f"/runs/{created['run_ids'][0]}", 200, params={"wait_s": "60"})

    assert seen[0]["Authorization"] == f"Bearer {SECRET}"
    assert seen[0]["X-Tenant"] == "acme"
    assert (run["status"], run["termination_reason"]) == ("failed", "error")
    # The controller records the agent's status, not its error page (docs/security.md).
    assert "HTTP 403 Forbidden" in run["error"] and "bad token" not in run["error"]
    assert SECRET not in json.dumps([run, views])
    assert cleared["credentials_set"] == []
    assert "Authorization" not in seen[1] and seen[1]["X-Tenant"] == "acme"

    with sqlite3.connect(db) as connection:  # the database holds neither secret in clear
        dump = "\n".join(connection.iterdump())
    assert SECRET not in dump and "sip-pass-0042" not in dump
    assert "agent_credentials" in dump


async def test_a_run_whose_agent_was_deleted_fails_with_the_reason(
    start_controller, tmp_path: Path
) -> None:
    db = f"sqlite:///{tmp_path / 'db.sqlite'}"
    paused = start_controller(db, "--paused")
    async with paused.client() as http:
        agent = await _call(
            http,
            "POST",
            "/agents",
            201,
            json={"name": "gone", "address": "webrtc://127.0.0.1:9/api/offer"},
        )
        created = await _call(
            http, "POST", "/runs", 202, json={"case": dental_cases()[0], "agent_id": agent["id"]}
        )
        await _call(http, "DELETE", f"/agents/{agent['id']}", 204)
    paused.process.terminate()
    paused.process.wait(15)

    controller = start_controller(db, "--no-calibrate")
    async with controller.client() as http:
        run = await _call(
            http, "GET", f"/runs/{created['run_ids'][0]}", 200, params={"wait_s": "60"}
        )
    assert (run["status"], run["termination_reason"]) == ("failed", "error")
    assert "was deleted before this run started" in run["error"]
