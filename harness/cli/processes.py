"""Starting loopcall's own servers as child processes: the reference agent, a controller.

Stage: used by ``loopcall demo`` and ``loopcall bench`` (and by the tests and
benchmarks) to get a peer on a free port.  Each waits for the child's ``READY``
line, so the peer accepts calls when the function returns.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

__all__ = ["free_port", "start_agent_process", "start_controller_process", "stop_process"]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` now, for a server whose address a child must know
    before it starts (another process may take it meanwhile: the caller says so)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def start_agent_process(
    *extra: str, log_path: Path, host: str = "127.0.0.1", channel: str = "webrtc"
) -> tuple[subprocess.Popen[bytes], str]:
    """Start `loopcall agent` on a free port; return it and its target once it accepts calls."""
    cmd = [
        sys.executable,
        "-m",
        "harness.cli",
        "agent",
        "--channel",
        channel,
        "--host",
        host,
        "--port",
        "0",
        *extra,
    ]
    log = log_path.open("wb")
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=log, env={**os.environ, "PYTHONUNBUFFERED": "1"}
    )
    log.close()
    assert proc.stdout is not None
    for raw in proc.stdout:
        line = raw.decode(errors="replace").strip()
        if line.startswith("READY "):
            url = line.split()[1]
            if url.startswith("sip:"):
                return proc, url
            return proc, f"{channel}://" + url.split("://", 1)[1]
    proc.wait()
    raise RuntimeError(f"the reference agent exited with status {proc.returncode}")


def start_controller_process(
    db_url: str,
    *extra: str,
    data_dir: Path,
    log_path: Path,
    env: dict[str, str] | None = None,
) -> tuple[subprocess.Popen[bytes], str]:
    """Start `loopcall serve` on a free port; return it and its URL once it serves."""
    cmd = [
        sys.executable,
        "-m",
        "harness.cli",
        "serve",
        "--port",
        "0",
        "--db",
        db_url,
        "--data-dir",
        str(data_dir),
        *extra,
    ]
    log = log_path.open("wb")
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=log,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
    )
    log.close()
    assert proc.stdout is not None
    line = proc.stdout.readline().decode(errors="replace").strip()
    if not line.startswith("READY "):
        proc.kill()
        proc.wait()
        raise RuntimeError(f"the controller did not start (see {log_path}): {line!r}")
    return proc, line.split()[1]


def stop_process(proc: subprocess.Popen[bytes], timeout_s: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if the child is still there after ``timeout_s``."""
    proc.terminate()
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
