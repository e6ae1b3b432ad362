"""Reading case and suite files: YAML in, validated ``Case``s out, clear errors otherwise.

Stage: the start of the flow (CLI and controller).  A file holds one case, or a
suite (``name`` + ``cases``).  A case's ``persona`` may be a persona from the
library by name (``persona: busy_professional``), optionally with overrides
(``persona: {use: busy_professional, voice: "flite:awb"}``).  Every problem is
reported as ``CaseFileError`` naming the file, the field and what is wrong,
including a regex (a criterion's ``pattern`` or ``args_match``, a script line's
``when``, a mock tool's ``match`` arguments) that does not compile or backtracks
catastrophically on a short probe (``pattern_problems``).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import regex
import yaml
from pydantic import ValidationError

from harness.errors import CaseFileError
from harness.models import Case, Persona, Suite
from runtime.arguments import regexes_in
from runtime.patterns import FLAGS, probe

__all__ = [
    "CaseFileError",
    "LoadedCases",
    "describe_errors",
    "library_personas",
    "load_cases",
    "load_persona",
    "pattern_problems",
    "read_yaml",
    "resolve_persona",
]

FieldPath = tuple[str | int, ...]


@dataclass(frozen=True)
class LoadedCases:
    suite_name: str | None
    cases: list[Case]


def library_personas() -> dict[str, Path]:
    """Persona files shipped in ``personas/library``, by name."""
    root = resources.files("personas") / "library"
    return {
        Path(str(entry)).stem: Path(str(entry))
        for entry in root.iterdir()
        if str(entry).endswith(".yaml")
    }


def load_persona(name: str) -> Persona:
    files = library_personas()
    if name not in files:
        known = ", ".join(sorted(files)) or "none"
        raise CaseFileError(f"unknown persona {name!r}; the library has: {known}")
    data = read_yaml(files[name])
    try:
        return Persona.model_validate(data)
    except ValidationError as exc:
        raise CaseFileError(describe_errors(files[name], exc)) from exc


def resolve_persona(raw: Any) -> Any:
    """A case's ``persona`` with a library persona by name (or ``{use: name, ...overrides}``)
    made a plain mapping; anything else as it is.  An unknown name is a ``CaseFileError``."""
    name = raw if isinstance(raw, str) else raw.get("use") if isinstance(raw, dict) else None
    if name is None:
        return raw
    base = load_persona(str(name)).model_dump()
    if isinstance(raw, dict):
        base.update({k: v for k, v in raw.items() if k != "use"})
    return base


def _resolve_persona(raw: Any, path: Path, field: str) -> Any:
    try:
        return resolve_persona(raw)
    except CaseFileError as exc:
        raise CaseFileError(f"{path}: field '{field}': {exc}") from exc


def read_yaml(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CaseFileError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise CaseFileError(f"{path}: invalid YAML{where}: {problem}") from exc


def describe_errors(path: Path, exc: ValidationError) -> str:
    lines = [f"{path}: {exc.error_count()} problem(s)"]
    for error in exc.errors():
        field = ".".join(str(part) for part in error["loc"]) or "(top level)"
        message = error["msg"]
        if error["type"] == "extra_forbidden":
            message = "unknown field (check the spelling)"
        lines.append(f"  - field '{field}': {message}")
    return "\n".join(lines)


def pattern_problems(case: Case) -> list[tuple[FieldPath, str]]:
    """The case's regexes that would run into their deadline, by field (a probe each).

    It blocks for up to ``runtime.patterns.PROBE_TIMEOUT_S`` per bad pattern: where
    calls may be live, run it off the event loop.
    """
    found: list[tuple[FieldPath, str]] = []
    for i, criterion in enumerate(case.success_criteria):
        if criterion.pattern is not None and (problem := probe(criterion.pattern)):
            found.append((("success_criteria", i, "pattern"), problem))
    for i, line in enumerate(case.script):
        if line.when is not None and (problem := probe(line.when)):
            found.append((("script", i, "when"), problem))
    for i, criterion in enumerate(case.success_criteria):
        if criterion.args_match:
            found += _args_problems(("success_criteria", i, "args_match"), criterion.args_match)
    for i, tool in enumerate(case.tools):
        for j, match in enumerate(tool.match):
            found += _args_problems(("tools", i, "match", j, "args"), match.args)
    return found


def _args_problems(where: FieldPath, expected: dict[str, Any]) -> list[tuple[FieldPath, str]]:
    """The regexes among expected arguments that do not compile or would time out."""
    found: list[tuple[FieldPath, str]] = []
    for keys, pattern in regexes_in(expected):
        try:
            regex.compile(pattern, FLAGS)
        except regex.error as exc:
            found.append(((*where, *keys), f"invalid regex /{pattern}/: {exc}"))
            continue
        if problem := probe(pattern):
            found.append(((*where, *keys), problem))
    return found


def _check_patterns(path: Path, loaded: LoadedCases, prefix: bool) -> LoadedCases:
    problems = [
        (".".join(str(p) for p in (("cases", i) if prefix else ()) + where), problem)
        for i, case in enumerate(loaded.cases)
        for where, problem in pattern_problems(case)
    ]
    if problems:
        lines = [f"{path}: {len(problems)} problem(s)"]
        lines += [f"  - field '{field}': {problem}" for field, problem in problems]
        raise CaseFileError("\n".join(lines))
    return loaded


def load_cases(path: Path) -> LoadedCases:
    """Read a case file or a suite file."""
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise CaseFileError(
            f"{path}: expected a mapping (a case or a suite), got {type(data).__name__}"
        )
    try:
        if "cases" in data:
            raw_cases = data.get("cases")
            if isinstance(raw_cases, list):
                for i, raw in enumerate(raw_cases):
                    if isinstance(raw, dict) and "persona" in raw:
                        where = f"cases.{i}.persona"
                        raw["persona"] = _resolve_persona(raw["persona"], path, where)
            suite = Suite.model_validate(data)
            return _check_patterns(path, LoadedCases(suite.name, suite.cases), prefix=True)
        if "persona" in data:
            data["persona"] = _resolve_persona(data["persona"], path, "persona")
        case = Case.model_validate(data)
    except ValidationError as exc:
        raise CaseFileError(describe_errors(path, exc)) from exc
    return _check_patterns(path, LoadedCases(None, [case]), prefix=False)
