"""``loopcall`` with test doubles inside its process: a DNS table, and a fault.

Stage: test infrastructure for the controller's security tests.  Run as
``python tests/controller_launch.py serve ...`` (the arguments ``loopcall`` takes);
two environment variables add what a test cannot arrange from outside:

* ``LOOPCALL_TEST_DNS``: a JSON file ``{name: address}``, read at every lookup,
  so a test rewrites it to make a name resolve elsewhere later (DNS rebinding).
  Other names resolve as usual.  Every resolver in the process goes through
  ``socket.getaddrinfo`` (asyncio's ``loop.getaddrinfo`` runs it in a thread).
* ``LOOPCALL_TEST_DIGEST_FAULT``: a SIP user name; computing its digest answer
  raises an unexpected error while the password is in a local variable and in
  the exception's message (what a library bug deep in a call could do).

``start_launched_controller`` starts one and returns its URL once it serves.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _install_dns(table_path: Path) -> None:
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        table = json.loads(table_path.read_text()) if table_path.exists() else {}
        name = host.decode() if isinstance(host, bytes) else host
        if isinstance(name, str) and name.rstrip(".").lower() in table:
            return real(table[name.rstrip(".").lower()], port, *args, **kwargs)
        return real(host, port, *args, **kwargs)

    socket.getaddrinfo = getaddrinfo


def _install_digest_fault(user: str) -> None:
    from telephony.sip import dialing

    real = dialing.authorization

    def authorization(challenge: dict[str, str], **kwargs: Any) -> str:
        value = real(challenge, **kwargs)
        if kwargs.get("username") == user:
            password = kwargs.get("password")
            plain = (
                password.get_secret_value() if hasattr(password, "get_secret_value") else password
            )
            secret_in_a_local = f"{plain}/{value}"
            raise RuntimeError(f"digest bookkeeping failed for {secret_in_a_local}")
        return value

    dialing.authorization = authorization  # type: ignore[assignment]


def start_launched_controller(
    db_url: str, *extra: str, data_dir: Path, log_path: Path, env: dict[str, str]
) -> tuple[subprocess.Popen[bytes], str]:
    """``loopcall serve`` through this launcher; returns it and its URL once it serves."""
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "serve",
        "--port",
        "0",
        "--db",
        db_url,
        "--data-dir",
        str(data_dir),
        *extra,
    ]
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=log,
            cwd=ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
        )
    assert proc.stdout is not None
    line = proc.stdout.readline().decode(errors="replace").strip()
    if not line.startswith("READY "):
        proc.kill()
        proc.wait()
        raise RuntimeError(f"the controller did not start (see {log_path}): {line!r}")
    return proc, line.split()[1]


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    if table := os.environ.get("LOOPCALL_TEST_DNS"):
        _install_dns(Path(table))
    if fault := os.environ.get("LOOPCALL_TEST_DIGEST_FAULT"):
        _install_digest_fault(fault)
    from harness.cli.main import main

    sys.exit(main(sys.argv[1:]))
