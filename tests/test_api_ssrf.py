"""The controller is not a proxy: where a shared controller may connect, and what comes back.

Against `loopcall serve` as a real process (through ``tests/controller_launch.py``
where a test needs its own DNS names), with real aiohttp servers on loopback as
the agents and webhook receivers.  The policy is ``docs/security.md``.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from harness.cases import load_cases

EXAMPLES = Path(__file__).resolve().parents[1] / "harness" / "examples"
SECRETISH = "db_password=hunter2-internal-8c1f"  # what an internal service might answer


def booking_case() -> dict[str, Any]:
    case = load_cases(EXAMPLES / "dental_suite.yaml").cases[0]
    return case.model_dump(mode="json", exclude_none=True)


async def _call(
    http: aiohttp.ClientSession, method: str, path: str, status: int, **kwargs: Any
) -> Any:
    async with http.request(method, path, **kwargs) as response:
        text = await response.text()
        assert response.status == status, (method, path, response.status, text)
        return json.loads(text) if text else None


# Targets a shared controller must not call, in the spellings an attacker would try.
REFUSED_ADDRESSES = [
    ("webrtc://169.254.169.254:80/latest/meta-data", "metadata"),
    ("webrtc://[fe80::1]:7860/api/offer", "link-local"),
    ("twilio-ws://[::ffff:169.254.169.254]:80/ws", "metadata"),
    ("webrtcs://[fd00:ec2::254]/api/offer", "metadata"),
    ("sip:agent@169.254.169.254", "metadata"),
    ("sip:agent@[fe80::1]:5060", "link-local"),
    ("webrtc://2852039166:80/api/offer", "metadata"),  # 169.254.169.254 as one number
    ("webrtc://0xa9fea9fe:80/api/offer", "metadata"),  # ... in hex
    ("webrtc://169.254.43518:80/api/offer", "metadata"),  # ... with the last two joined
    ("webrtc://0.0.0.0:7860/api/offer", "unspecified"),
    ("twilio-wss://[::]:443/ws", "unspecified"),
    ("webrtc://metadata.google.internal:80/computeMetadata/v1/", "metadata"),
    ("webrtc://100.100.100.200:80/latest/meta-data", "metadata"),
    ("webrtc://169.254.10.20:7860/api/offer", "link-local"),
]


@pytest.mark.e2e
async def test_link_local_and_metadata_hosts_are_refused_at_creation(
    start_controller, tmp_path: Path
) -> None:
    controller = start_controller(f"sqlite:///{tmp_path / 'db.sqlite'}", "--paused")
    async with controller.client() as http:
        for address, why in REFUSED_ADDRESSES:
            detail = await _call(
                http, "POST", "/agents", 422, json={"name": "x", "address": address}
            )
            [error] = detail["detail"]
            assert error["loc"] == ["body", "address"], address
            assert why in error["msg"] and "LOOPCALL_ALLOWED_NETWORKS" in error["msg"], error
            detail = await _call(
                http, "POST", "/runs", 422, json={"case": booking_case(), "target": address}
            )
            assert [e["loc"] for e in detail["detail"]] == [["body", "target"]], address
            detail = await _call(
                http,
                "POST",
                "/benches",
                422,
                json={"case": booking_case(), "target": address, "concurrency": [1]},
            )
            assert [e["loc"] for e in detail["detail"]] == [["body", "target"]], address

        for hook, why in [
            ("http://169.254.169.254/latest/meta-data", "metadata"),
            ("http://[fe80::1]:8080/hook", "link-local"),
            ("http://[::ffff:a9fe:a9fe]/hook", "metadata"),
            ("http://metadata.google.internal/hook", "metadata"),
        ]:
            body = {
                "case": booking_case(),
                "target": "webrtc://127.0.0.1:9/api/offer",
                "webhook_url": hook,
            }
            detail = await _call(http, "POST", "/runs", 422, json=body)
            [error] = detail["detail"]
            assert error["loc"] == ["body", "webhook_url"] and why in error["msg"], (hook, error)

        # Loopback (loopcall's own agents) and private networks stay reachable by default.
        ok = []
        for address in (
            "webrtc://127.0.0.1:7860/api/offer",
            "webrtc://[::1]:7860/api/offer",
            "webrtc://localhost:7860/api/offer",
            "webrtc://10.1.2.3:7860/api/offer",
            "sip:agent@192.168.1.20",
        ):
            ok.append(
                await _call(http, "POST", "/agents", 201, json={"name": "ok", "address": address})
            )
        # Moving a stored agent onto a refused host is refused too.
        detail = await _call(
            http,
            "PATCH",
            f"/agents/{ok[0]['id']}",
            422,
            json={"address": "webrtc://169.254.169.254:80/"},
        )
        assert detail["detail"][0]["loc"] == ["body", "address"]


@pytest.mark.e2e
async def test_allow_listed_networks_and_hosts_are_reachable(
    start_controller, tmp_path: Path
) -> None:
    db = f"sqlite:///{tmp_path / 'db.sqlite'}"
    controller = start_controller(
        db,
        "--paused",
        env={
            "LOOPCALL_ALLOWED_NETWORKS": "fe80::/10, 169.254.10.0/24",
            "LOOPCALL_REFUSED_NETWORKS": "10.0.0.0/8",
        },
    )
    async with controller.client() as http:
        for address in ("webrtc://[fe80::1]:7860/api/offer", "webrtc://169.254.10.20:7860/x"):
            await _call(http, "POST", "/agents", 201, json={"name": "lan", "address": address})
        for address, why in [
            ("webrtc://169.254.169.254:80/", "metadata"),  # outside the allowed network
            ("webrtc://10.1.2.3:7860/api/offer", "LOOPCALL_REFUSED_NETWORKS"),
        ]:
            detail = await _call(
                http, "POST", "/agents", 422, json={"name": "x", "address": address}
            )
            assert why in detail["detail"][0]["msg"], detail

    # Naming a host in LOOPCALL_ALLOWED_HOSTS allows it, even in a refused range.
    named = start_controller(
        db, "--paused", env={"LOOPCALL_ALLOWED_HOSTS": "169.254.169.254,127.0.0.1"}
    )
    async with named.client() as http:
        await _call(
            http,
            "POST",
            "/agents",
            201,
            json={"name": "m", "address": "webrtc://169.254.169.254:80/"},
        )
        detail = await _call(
            http, "POST", "/agents", 422, json={"name": "x", "address": "webrtc://10.0.0.1:80/"}
        )
        assert "LOOPCALL_ALLOWED_HOSTS" in detail["detail"][0]["msg"]


@pytest.mark.e2e
async def test_redirects_are_never_followed(start_controller, http_stub, tmp_path: Path) -> None:
    reached: list[str] = []
    hook_hits: list[int] = []
    done = asyncio.Event()

    async def internal(request: web.Request) -> web.Response:
        reached.append(f"{request.method} {request.path}")
        done.set()
        return web.Response(status=500, text=SECRETISH)

    inner = await http_stub("*", "/internal", internal)

    async def offer(request: web.Request) -> web.Response:
        raise web.HTTPTemporaryRedirect(f"http://{inner}/internal")  # 307: POST again

    async def hook(request: web.Request) -> web.Response:
        hook_hits.append(1)
        if len(hook_hits) == 2:
            done.set()
        raise web.HTTPFound(f"http://{inner}/internal")

    agent = await http_stub("POST", "/api/offer", offer)
    hooks = await http_stub("POST", "/hook", hook)
    controller = start_controller(
        f"sqlite:///{tmp_path / 'db.sqlite'}",
        "--no-calibrate",
        env={"LOOPCALL_WEBHOOK_ATTEMPTS": "2", "LOOPCALL_WEBHOOK_BACKOFF_S": "0.05"},
    )
    async with controller.client() as http:
        body = {
            "case": booking_case(),
            "target": f"webrtc://{agent}/api/offer",
            "webhook_url": f"http://{hooks}/hook",
        }
        [run_id] = (await _call(http, "POST", "/runs", 202, json=body))["run_ids"]
        run = await _call(http, "GET", f"/runs/{run_id}", 200, params={"wait_s": "60"})
        # The second delivery starts only once the first is over, redirect and all; a
        # followed redirect would have reached the internal server before it.
        await asyncio.wait_for(done.wait(), 60)

    assert reached == [], "a redirect was followed"
    assert len(hook_hits) == 2
    assert (run["status"], run["termination_reason"]) == ("failed", "error")
    assert "redirect" in run["error"] and "HTTP 307" in run["error"], run["error"]


@pytest.mark.e2e
async def test_the_run_records_the_agents_status_not_its_body(
    start_controller, http_stub, tmp_path: Path
) -> None:
    async def error_page(request: web.Request) -> web.Response:
        return web.Response(status=500, text=f"Traceback ... {SECRETISH}")

    async def not_an_answer(request: web.Request) -> web.Response:
        return web.json_response({"instance": {"token": SECRETISH}})

    async def not_http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(f"-ERR {SECRETISH}\r\n".encode())  # another protocol's reply
        await writer.drain()
        writer.close()

    raw = await asyncio.start_server(not_http, "127.0.0.1", 0)
    raw_port = raw.sockets[0].getsockname()[1]
    targets = {
        "500": f"webrtc://{await http_stub('POST', '/api/offer', error_page)}/api/offer",
        "json": f"webrtc://{await http_stub('POST', '/api/offer', not_an_answer)}/api/offer",
        "raw": f"webrtc://127.0.0.1:{raw_port}/api/offer",
    }
    controller = start_controller(f"sqlite:///{tmp_path / 'db.sqlite'}", "--no-calibrate")
    try:
        async with controller.client() as http:
            runs = {}
            for name, target in targets.items():
                body = {"case": booking_case(), "target": target}
                [run_id] = (await _call(http, "POST", "/runs", 202, json=body))["run_ids"]
                runs[name] = await _call(
                    http, "GET", f"/runs/{run_id}", 200, params={"wait_s": "60"}
                )
    finally:
        raw.close()

    for name, run in runs.items():
        assert (run["status"], run["termination_reason"]) == ("failed", "error"), name
        assert "hunter2" not in json.dumps(run), (name, run["error"])
    assert "HTTP 500 Internal Server Error" in runs["500"]["error"], runs["500"]["error"]
    assert "no SDP answer" in runs["json"]["error"], runs["json"]["error"]
    assert runs["raw"]["error"].startswith("offer to "), runs["raw"]["error"]


@pytest.mark.e2e
async def test_the_cli_keeps_the_agents_body_for_its_user(http_stub, tmp_path: Path) -> None:
    # A local run is the user's own machine calling the user's own agent: the body helps.
    async def error_page(request: web.Request) -> web.Response:
        return web.Response(status=500, text=f"Traceback ... {SECRETISH}")

    host = await http_stub("POST", "/api/offer", error_page)
    case = tmp_path / "case.yaml"
    case.write_text(json.dumps(booking_case()))
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "harness.cli",
        "run",
        str(case),
        "--target",
        f"webrtc://{host}/api/offer",
        "--no-calibrate",
        "--out",
        str(tmp_path / "runs"),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    assert await proc.wait() == 1
    [stored] = list((tmp_path / "runs").glob("*/run.json"))
    run = json.loads(stored.read_text())
    assert "HTTP 500" in run["error"] and SECRETISH in run["error"], run["error"]


@pytest.mark.e2e
async def test_a_name_that_resolves_to_link_local_is_refused_at_creation(
    launch_controller, tmp_path: Path
) -> None:
    dns = tmp_path / "dns.json"
    dns.write_text(
        json.dumps({"imds.example.test": "169.254.169.254", "lan6.example.test": "fe80::1"})
    )
    controller = launch_controller(
        f"sqlite:///{tmp_path / 'db.sqlite'}", "--paused", env={"LOOPCALL_TEST_DNS": str(dns)}
    )
    async with controller.client() as http:
        for name, address, why in [
            ("imds", "169.254.169.254", "metadata"),
            ("lan6", "fe80::1", "link-local"),
        ]:
            detail = await _call(
                http,
                "POST",
                "/agents",
                422,
                json={"name": name, "address": f"webrtc://{name}.example.test:80/api/offer"},
            )
            [error] = detail["detail"]
            assert f"{name}.example.test resolves to {address}" in error["msg"], error
            assert why in error["msg"], error
        body = {
            "case": booking_case(),
            "target": "webrtc://127.0.0.1:9/api/offer",
            "webhook_url": "https://imds.example.test/hook",
        }
        detail = await _call(http, "POST", "/runs", 422, json=body)
        assert detail["detail"][0]["loc"] == ["body", "webhook_url"], detail


@pytest.mark.e2e
async def test_a_name_that_resolves_to_link_local_later_is_refused_at_dial_time(
    launch_controller, http_stub, tmp_path: Path
) -> None:
    dns = tmp_path / "dns.json"
    dns.write_text(json.dumps({"agent.example.test": "127.0.0.1"}))
    hits: list[str] = []

    async def offer(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.Response(status=500)

    port = (await http_stub("POST", "/api/offer", offer)).rsplit(":", 1)[1]
    db = f"sqlite:///{tmp_path / 'db.sqlite'}"
    env = {"LOOPCALL_TEST_DNS": str(dns)}
    paused = launch_controller(db, "--paused", env=env)
    async with paused.client() as http:
        run_ids = []
        for address in (
            f"webrtc://agent.example.test:{port}/api/offer",
            f"twilio-ws://agent.example.test:{port}/ws",
            f"sip:bot@agent.example.test:{port}",
        ):
            agent = await _call(
                http, "POST", "/agents", 201, json={"name": "a", "address": address}
            )
            body = {"case": booking_case(), "agent_id": agent["id"]}
            run_ids += (await _call(http, "POST", "/runs", 202, json=body))["run_ids"]
    paused.stop()

    # The name now points at the metadata service; the queued runs dial now (rebinding).
    dns.write_text(json.dumps({"agent.example.test": "169.254.169.254"}))
    controller = launch_controller(db, "--no-calibrate", env=env)
    async with controller.client() as http:
        runs = [
            await _call(http, "GET", f"/runs/{run_id}", 200, params={"wait_s": "60"})
            for run_id in run_ids
        ]
    for run in runs:
        assert (run["status"], run["termination_reason"]) == ("failed", "error"), run["target"]
        assert "agent.example.test resolves to 169.254.169.254" in run["error"], run["error"]
        assert "metadata" in run["error"], run["error"]
    assert hits == []
