"""Fuzz the controller's REST API from its own OpenAPI document, at length.

Starts ``loopcall serve`` (SQLite, no calibration, calls allowed to loopback
only) in its own process and runs schemathesis against ``/openapi.json`` with
the ``not_a_server_error`` check.  Prints, per operation, the requests sent, the
responses by status class and the failures by kind, then the time of each
phase.  Exit status 0 only when every operation was tested and no request got a
5xx or any other failure.

    .venv/bin/python benchmarks/api_fuzz.py                       # 25 examples, every phase
    .venv/bin/python benchmarks/api_fuzz.py --max-examples 60 --seed 2
    .venv/bin/python benchmarks/api_fuzz.py --max-examples 5   # the CI test's size

``tests/test_api_fuzz.py`` runs a short configuration of the same in CI; this
is the long exploration (the configuration CI ran until it took 260 s of it).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from urllib.request import Request, urlopen

from harness.cli.processes import start_controller_process

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
ALL_PHASES = "examples,coverage,fuzzing,stateful"
# Whatever the fuzzer invents, the controller only ever calls loopback, and small.
CONTROLLER_ENV = {
    "LOOPCALL_ALLOWED_HOSTS": "127.0.0.1,::1,localhost",
    "LOOPCALL_WEBHOOK_ATTEMPTS": "1",
    "LOOPCALL_BENCH_MAX_CONCURRENCY": "5",
}


_EXT = {"json": "json", "ndjson": "ndjson", "junit": "xml", "har": "har"}


def start_controller(workdir: Path) -> tuple[subprocess.Popen[bytes], str, str]:
    """A fresh controller on SQLite; returns it, its URL and an API key."""
    db_url = f"sqlite:///{workdir / 'db.sqlite'}"
    key = subprocess.run(
        [sys.executable, "-m", "harness.cli", "keys", "create", f"fuzz-{uuid.uuid4().hex[:6]}"]
        + ["--db", db_url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    proc, url = start_controller_process(
        db_url,
        "--no-calibrate",
        data_dir=workdir / "data",
        log_path=workdir / "controller.log",
        env=CONTROLLER_ENV,
    )
    return proc, url, key


def schemathesis_command(
    url: str,
    key: str,
    report_dir: Path,
    *,
    phases: str,
    max_examples: int,
    seed: int,
    formats: str = "json,har",
    coverage_mode: str | None = None,
) -> list[str]:
    """The schemathesis run (one worker, the ``not_a_server_error`` check), reports in a dir.

    ``coverage_mode`` ("positive" or "negative") limits the coverage phase's
    deterministic cases to that kind (through a config file in ``report_dir``).
    """
    config: list[str] = []
    if coverage_mode is not None:
        report_dir.mkdir(parents=True, exist_ok=True)
        toml = report_dir / "schemathesis.toml"
        toml.write_text(f'[phases.coverage.generation]\nmode = "{coverage_mode}"\n')
        config = ["--config-file", str(toml)]
    return [
        str(SCHEMATHESIS),
        *config,
        "run",
        f"{url}/openapi.json",
        "-H",
        f"Authorization: Bearer {key}",
        "--checks",
        "not_a_server_error",
        "--phases",
        phases,
        "--max-examples",
        str(max_examples),
        "--seed",
        str(seed),
        "--workers",
        "1",
        "--report",
        formats,
        *(
            arg
            for kind in formats.split(",")
            for arg in (f"--report-{kind}-path", str(report_dir / f"report.{_EXT[kind]}"))
        ),
    ]


def _operation(method: str, path: str, templates: list[tuple[str, re.Pattern[str]]]) -> str:
    for template, pattern in templates:
        if pattern.fullmatch(path):
            return f"{method} {template}"
    return f"{method} (not in the document)"


def read_har(har: Path, document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per operation (method and path template): requests, status classes, server times."""
    templates = sorted(
        (
            (path, re.compile(re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(path))))
            for path in document["paths"]
        ),
        key=lambda tp: tp[0].count("{"),  # literal paths first
    )
    ops: dict[str, dict[str, Any]] = defaultdict(
        lambda: {"requests": 0, "status": Counter(), "ms": []}
    )
    for entry in json.loads(har.read_text())["log"]["entries"]:
        request, response = entry["request"], entry["response"]
        op = ops[_operation(request["method"], urlsplit(request["url"]).path, templates)]
        op["requests"] += 1
        status = response.get("status") or 0
        op["status"][f"{status // 100}xx" if status else "none"] += 1
        op["ms"].append(entry.get("time") or 0.0)
    return dict(ops)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phases", default=ALL_PHASES)
    parser.add_argument("--max-examples", type=int, default=25)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--coverage-mode",
        choices=["positive", "negative"],
        default=None,
        help="the coverage phase's cases of this kind only (default: both)",
    )
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="loopcall-fuzz-"))
    out.mkdir(parents=True, exist_ok=True)
    proc, url, key = start_controller(out)
    try:
        request = Request(f"{url}/openapi.json", headers={"Authorization": f"Bearer {key}"})
        with urlopen(request, timeout=30) as response:
            document = json.loads(response.read())
        started = time.monotonic()
        fuzz = subprocess.run(
            schemathesis_command(
                url,
                key,
                out / "report",
                phases=args.phases,
                max_examples=args.max_examples,
                seed=args.seed,
                coverage_mode=args.coverage_mode,
            ),
            capture_output=True,
            text=True,
            cwd=out,
            env={**os.environ, "NO_COLOR": "1"},
        )
        elapsed = time.monotonic() - started
    finally:
        proc.terminate()
        proc.wait(15)
    (out / "schemathesis.txt").write_text(fuzz.stdout + fuzz.stderr)
    report = json.loads((out / "report" / "report.json").read_text())
    ops = read_har(out / "report" / "report.har", document)

    print(
        f"schemathesis {report['schemathesis_version']}: phases {args.phases}, "
        f"--max-examples {args.max_examples}, --seed {args.seed}, 1 worker"
        f"{', coverage ' + args.coverage_mode + ' only' if args.coverage_mode else ''}; "
        f"{elapsed:.0f} s ({report['running_time']:.0f} s in the engine)"
    )
    header = f"{'operation':<54} {'requests':>8} {'2xx':>5} {'4xx':>5} {'5xx':>4} {'ms p50':>7}"
    print("\n  " + header)
    for label in sorted(ops, key=lambda k: (k.split(" ", 1)[1], k)):
        op, st = ops[label], ops[label]["status"]
        p50 = statistics.median(op["ms"]) if op["ms"] else 0.0
        print(
            f"  {label:<54} {op['requests']:>8} {st['2xx']:>5} {st['4xx']:>5} {st['5xx']:>4} "
            f"{p50:>7.1f}"
        )
    requests = sum(op["requests"] for op in ops.values())
    fivexx = sum(op["status"]["5xx"] for op in ops.values())
    operations = report["operations"] or {}
    phases = ", ".join(f"{k} {v['status']}" for k, v in (report["phases"] or {}).items())
    print(
        f"\n  operations: {operations.get('tested')} tested of {operations.get('selected')} "
        f"({operations.get('total')} in the document); requests {requests}; 5xx {fivexx}; "
        f"test cases {report['test_cases']['generated']}; phases: {phases}"
    )
    kinds = Counter()
    for failure in report["failures"]:
        kinds[failure["title"]] += failure["count"]
        print(f"  FAILURE {failure['title']} x{failure['count']}: {failure['operations']}")
    for error in report["errors"]:
        print(f"  ERROR {error['title']} x{error['count']}")
    print("  failures by kind: " + (", ".join(f"{k} {n}" for k, n in kinds.items()) or "none"))
    print(f"\n  reports and the controller's log under {out}")
    ok = (
        fuzz.returncode == 0
        and not report["failures"]
        and not report["errors"]
        and fivexx == 0
        and operations.get("tested") == operations.get("selected")
    )
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
