"""The tree shows the run's data flow: every import points down, no cycles, small modules.

The layers, bottom to top (``README.md``'s architecture picture):

    audio | runtime            primitives: speech edges, endpointer, G.711, resampling, TTS, STT |
                               owned background tasks, user regexes with a deadline
    telephony                  how audio reaches the agent: the Call interface, a module per channel
    personas | refagent        who calls | the agents loopcall ships (reference agent, oracle, echo)
    harness.models ...         the Run contract, errors, the loop monitor
    harness.recording ...      the call's two sides on one clock; case files; settings
    harness.analysis ...       recording -> turns, metrics, health; scoring; views; run files
    harness.db, redact         the controller's storage
    harness.orchestrator       one case against one target -> a Run
    harness.bench              many runs at rising concurrency
    harness.api                the controller
    harness.cli                the command line

A module may import its own group and any group of a lower layer, nothing else.
Every import counts, including those inside functions and under ``TYPE_CHECKING``:
an import cycle broken at run time is still a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("audio", "runtime", "telephony", "personas", "refagent", "harness")
MAX_LINES = 400
# Layer of each group (a group is a top-level package, or a harness sub-package or
# module); a module may import only from its own group or from a lower layer.
LAYERS = {
    "audio": 0,
    "runtime": 0,
    "telephony": 1,
    "personas": 2,
    "refagent": 2,
    "harness": 3,  # the package itself: its version
    "harness.errors": 3,
    "harness.models": 3,
    "harness.offload": 3,
    "harness.monitor": 3,
    "harness.logs": 3,
    "harness.recording": 4,
    "harness.cases": 4,
    "harness.settings": 4,
    "harness.reports": 4,  # pure functions over Runs: the views, api and cli read them
    "harness.analysis": 5,
    "harness.ingest": 5,
    "harness.scoring": 5,
    "harness.pricing": 5,
    "harness.views": 5,
    "harness.store": 5,
    "harness.db": 6,
    "harness.redact": 6,
    "harness.orchestrator": 7,
    "harness.bench": 8,
    "harness.api": 9,
    "harness.cli": 10,
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "migrations" not in path.parts:  # Alembic's scripts, loaded by path
                found[_module_name(path)] = path
    return found


MODULES = _modules()


def _resolve(name: str) -> str | None:
    parts = name.split(".")
    while parts:
        if (candidate := ".".join(parts)) in MODULES:
            return candidate
        parts.pop()
    return None


def _imports(path: Path) -> set[str]:
    """Our modules that ``path`` imports, wherever the import statement stands."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
        else:
            continue
        for name in names:
            if (target := _resolve(name)) is not None:
                found.add(target)
                break
    return found


GRAPH = {name: _imports(path) - {name} for name, path in MODULES.items()}


def _group(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "harness" and len(parts) > 1 else parts[0]


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_checker_sees_cycles_and_function_local_imports() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []
    # A function-local import and a TYPE_CHECKING import both count.
    assert "harness.orchestrator" in GRAPH["harness.cli.run"]
    assert "telephony.base" in GRAPH["telephony.dial"]


def test_no_import_cycles() -> None:
    assert _cycles(GRAPH) == []


def test_every_group_has_a_layer() -> None:
    assert sorted({_group(m) for m in MODULES} - LAYERS.keys()) == []


def test_every_import_points_down() -> None:
    upward = [
        f"{module} -> {target}"
        for module, targets in sorted(GRAPH.items())
        for target in sorted(targets)
        if _group(module) != _group(target) and LAYERS[_group(target)] >= LAYERS[_group(module)]
    ]
    assert upward == []


def test_no_module_over_400_lines() -> None:
    sizes = {name: len(path.read_text().splitlines()) for name, path in MODULES.items()}
    assert {name: n for name, n in sizes.items() if n > MAX_LINES} == {}


def test_every_module_says_its_role() -> None:
    missing = [
        name
        for name, path in MODULES.items()
        if path.stat().st_size and ast.get_docstring(ast.parse(path.read_text())) is None
    ]
    assert missing == []
