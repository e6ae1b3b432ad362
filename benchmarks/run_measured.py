"""Run a command and report its wall time and the peak memory of its whole process tree.

GNU time's "maximum resident set size" is one process's peak; `make demo` is a
tree (make, pip, the harness, the reference agent), so this samples the summed
RSS of the command and all its descendants every 200 ms.

    python3 benchmarks/run_measured.py -- make demo
"""

from __future__ import annotations

import os
import subprocess
import sys
import time


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        tree.setdefault(ppid, []).append(int(entry))
    return tree


def _rss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_rss_kib(root: int) -> int:
    tree = _children()
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        total += _rss_kib(pid)
        stack.extend(tree.get(pid, []))
    return total


def main() -> int:
    argv = sys.argv[1:]
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if not argv:
        print(__doc__)
        return 2
    start = time.monotonic()
    proc = subprocess.Popen(argv)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, tree_rss_kib(proc.pid))
        time.sleep(0.2)  # sampling interval, not synchronisation
    wall = time.monotonic() - start
    print("\n| command | exit | wall time | peak RSS of the process tree |", file=sys.stderr)
    print("|---|---|---|---|", file=sys.stderr)
    print(
        f"| `{' '.join(argv)}` | {proc.returncode} | {wall:.1f} s | {peak / 1024:.0f} MiB |",
        file=sys.stderr,
    )
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
