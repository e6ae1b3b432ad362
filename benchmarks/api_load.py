"""Requests per second of the controller's API, measured with wrk on loopback.

Starts `loopcall serve --paused` (runs are stored as queued and not executed, so
this measures the API and the database, not calls), creates a key, one run, an
agent and a stored case, then drives `GET /runs/{id}` and `POST /runs` (inline
case, and by `case_id` with the case's default agent) with wrk, and prints a table.

    apt-get install wrk        # Debian's package
    .venv/bin/python benchmarks/api_load.py --db sqlite --duration 10 --connections 32
    .venv/bin/python benchmarks/api_load.py --db postgresql
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.request
import uuid
from pathlib import Path

import asyncpg

from harness.cases import load_cases
from harness.cli.processes import start_controller_process

EXAMPLES = Path(__file__).resolve().parents[1] / "harness" / "examples"
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
TARGET = "webrtc://127.0.0.1:9/api/offer"  # never called: the controller is paused

POST_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {key}"
wrk.body = [[{body}]]
"""


def _loopcall(*args: str) -> str:
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True, check=True
    ).stdout.strip()


def _post(url: str, key: str, path: str, body: str) -> dict:
    request = urllib.request.Request(
        f"{url}{path}",
        data=body.encode(),
        method="POST",
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request) as response:
        return dict(json.loads(response.read()))


def _wrk(url: str, key: str, duration: int, connections: int, script: Path | None) -> dict:
    cmd = [
        "wrk",
        "-t",
        "2",
        "-c",
        str(connections),
        "-d",
        f"{duration}s",
        "--latency",
        "-H",
        f"Authorization: Bearer {key}",
    ]
    if script is not None:
        cmd += ["-s", str(script)]
    out = subprocess.run([*cmd, url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = re.search(r"50%\s+([\d.]+\w+)", out)
    p99 = re.search(r"99%\s+([\d.]+\w+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return {
        "rps": rps,
        "p50": p50.group(1) if p50 else "-",
        "p99": p99.group(1) if p99 else "-",
        "errors": int(non2xx.group(1)) if non2xx else 0,
    }


async def _pg_database() -> tuple[str, str]:
    name = f"loopcall_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(PG_ADMIN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    return name, f"postgresql://postgres@127.0.0.1:5432/{name}"


async def _drop(name: str) -> None:
    admin = await asyncpg.connect(PG_ADMIN)
    await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    await admin.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is missing: apt-get install wrk", file=sys.stderr)
        return 1
    work = Path(tempfile.mkdtemp(prefix="loopcall-api-load-"))
    pg_name = None
    if args.db == "sqlite":
        db_url = f"sqlite:///{work / 'loopcall.db'}"
    else:
        pg_name, db_url = asyncio.run(_pg_database())
    key = _loopcall("keys", "create", "bench", "--db", db_url)
    server, url = start_controller_process(
        db_url, "--paused", "--no-calibrate", data_dir=work, log_path=work / "controller.log"
    )
    try:
        case = load_cases(EXAMPLES / "dental_suite.yaml").cases[0]
        body = json.dumps(
            {
                "case": case.model_dump(mode="json", exclude_none=True),
                "target": TARGET,
            }
        )
        run_id = _post(url, key, "/runs", body)["run_ids"][0]
        stored_case = json.dumps(
            {
                **case.model_dump(mode="json", exclude_none=True, exclude={"id"}),
                "agent_id": _post(
                    url, key, "/agents", json.dumps({"name": "bench", "address": TARGET})
                )["id"],
            }
        )
        by_id = json.dumps({"case_id": _post(url, key, "/cases", stored_case)["id"]})
        inline_script, by_id_script = work / "post.lua", work / "post_by_id.lua"
        inline_script.write_text(POST_SCRIPT.format(key=key, body=body))
        by_id_script.write_text(POST_SCRIPT.format(key=key, body=by_id))
        rows = [
            (
                "GET /runs/{id}",
                _wrk(f"{url}/runs/{run_id}", key, args.duration, args.connections, None),
            ),
            (
                "POST /runs, inline case (queued only)",
                _wrk(f"{url}/runs", key, args.duration, args.connections, inline_script),
            ),
            (
                "POST /runs, case_id + its agent (queued only)",
                _wrk(f"{url}/runs", key, args.duration, args.connections, by_id_script),
            ),
        ]
    finally:
        server.terminate()
        server.wait(15)
        if pg_name:
            asyncio.run(_drop(pg_name))
    print(
        f"\ncontroller API on 127.0.0.1, {args.db}, wrk -t2 -c{args.connections} "
        f"-d{args.duration}s, one uvicorn worker"
    )
    print("| endpoint | requests/s | p50 | p99 | non-2xx |\n|---|---|---|---|---|")
    for name, r in rows:
        print(f"| {name} | {r['rps']:.0f} | {r['p50']} | {r['p99']} | {r['errors']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
