"""Fuzz the controller from its own OpenAPI document: no input may produce a 5xx.

schemathesis runs against a real controller and writes its verdict as a JSON
report and a JUnit file; the test reads those, not the printed output: every
operation in the document was tested (a JUnit case each, none failed), the
phases ran to completion, no check failed and nothing errored.  It is the
CI-sized run; the long exploration is ``benchmarks/api_fuzz.py`` (docs/latency.md,
"Measured").
"""

from __future__ import annotations

import asyncio
import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from api_fuzz import CONTROLLER_ENV, schemathesis_command  # noqa: E402

# CI's size: the fuzzing phase (random requests, valid and invalid, 10 per
# operation) and the stateful phase (sequences through the document's links, which
# reach stored objects by their real ids), every operation: 464 requests in 28 s
# here.  The coverage phase's systematic boundary and negative values for every
# field (195 s of the 258 s the whole run took in CI before, 5,088 test cases) is
# the long exploration: benchmarks/api_fuzz.py runs it, figures in docs/latency.md.
PHASES = "examples,fuzzing,stateful"  # examples: the document's own, when it has any
MAX_EXAMPLES = 10


@pytest.mark.timeout(600)
async def test_no_generated_request_gets_a_server_error(start_controller, tmp_path: Path) -> None:
    controller = start_controller(
        f"sqlite:///{tmp_path / 'db.sqlite'}", "--no-calibrate", env=CONTROLLER_ENV
    )
    report_dir = tmp_path / "report"
    cmd = schemathesis_command(
        controller.url,
        controller.key,
        report_dir,
        phases=PHASES,
        max_examples=MAX_EXAMPLES,
        seed=1,
        formats="json,junit",
    )
    proc = await asyncio.create_subprocess_exec(
        *cmd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        cwd=tmp_path,  # its cache of past findings stays out of the checkout
    )
    out, _ = await proc.communicate()
    printed = out.decode(errors="replace")[-3000:]

    assert (report_dir / "report.json").exists(), printed
    report = json.loads((report_dir / "report.json").read_text())
    assert report["complete"] and report["stop_reason"] == "completed", printed
    assert report["failures"] == [], report["failures"]
    assert report["errors"] == [], report["errors"]
    ran = {name: phase["status"] for name, phase in report["phases"].items()}
    assert (ran["fuzzing"], ran["stateful"]) == ("success", "success"), ran
    assert ran["examples"] in ("success", "skip"), ran  # skip: the document has none
    operations = report["operations"]
    async with controller.client() as http, http.get("/openapi.json") as r:
        document = await r.json()
    documented = {
        f"{method.upper()} {path}"
        for path, item in document["paths"].items()
        for method in item
        if method in ("get", "put", "post", "delete", "patch", "head", "options")
    }
    assert operations["total"] == operations["selected"] == len(documented), operations
    assert operations["tested"] == len(documented) and operations["errored"] == 0, operations
    assert report["test_cases"]["generated"] >= len(documented) * MAX_EXAMPLES // 2, report[
        "test_cases"
    ]
    assert proc.returncode == 0, printed

    # The JUnit file: one case per operation, none failed or errored.
    cases = ET.parse(report_dir / "report.xml").getroot().iter("testcase")
    outcome = {case.get("name"): [child.tag for child in case] for case in cases}
    assert documented <= set(outcome), documented - set(outcome)
    bad = {name: tags for name, tags in outcome.items() if {"failure", "error"} & set(tags)}
    assert not bad, bad
