"""RunStore: save/load round trip, prefix lookup, newest-first listing, atomic writes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from harness.models import (
    CallEvent,
    Case,
    Criterion,
    CriterionResult,
    Evaluation,
    LatencySummary,
    Metrics,
    Persona,
    Run,
    Turn,
)
from harness.store import RunNotFound, RunStore

BASE = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def make_run(run_id: str, *, minutes: int = 0, **fields: object) -> Run:
    case = Case(
        name="Book a cleaning",
        persona=Persona(name="Busy professional", voice="flite:slt"),
        success_criteria=[Criterion(pattern="booked")],
        script=["Hi there."],  # type: ignore[list-item]  # the validator turns strings into lines
    )
    return Run.model_validate(
        {
            "id": run_id,
            "channel": "webrtc",
            "target": "webrtc://localhost:7860",
            "case": case,
            "created_at": BASE + timedelta(minutes=minutes),
            **fields,
        }
    )


def full_run(run_id: str) -> Run:
    criterion = Criterion(pattern="booked", weight=2)
    return make_run(
        run_id,
        status="completed",
        termination_reason="persona_goodbye",
        started_at=BASE,
        ended_at=BASE + timedelta(seconds=42, microseconds=123000),
        duration_ms=42123.0,
        suite_name="Dental office demo",
        turns=[
            Turn(role="agent", text="Bright Smile, hello.", start_ms=310.5, end_ms=1800.0),
            Turn(role="persona", text="Hi.", start_ms=2400.0, end_ms=2900.0),
            Turn(role="agent", text="Booked.", start_ms=3612.25, end_ms=4500, latency_ms=712.25),
        ],
        metrics=Metrics(
            latency_ms=LatencySummary(n=1, min=712.2, p50=712.2, max=712.2, mean=712.2),
            time_to_first_audio_ms=310.5,
            agent_turns=2,
            persona_turns=1,
        ),
        evaluation=Evaluation(
            score=100,
            pass_fail=True,
            results=[CriterionResult(assertion=criterion, passed=True, weight=2, reason="said it")],
        ),
        recording="runs/x/recording.wav",
        events=[CallEvent(t_ms=0, kind="connected"), CallEvent(t_ms=4600, kind="hangup")],
    )


def test_save_then_load_round_trips_every_field(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs")
    run = full_run("3f2b9c1e-0000-4000-8000-000000000001")

    path = store.save(run)

    assert path == tmp_path / "runs" / run.id / "run.json"
    assert path.is_file()
    loaded = store.load(run.id)
    assert loaded == run
    assert loaded.created_at.tzinfo is not None
    assert loaded.passed


def test_save_again_replaces_the_record(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    run = make_run("aaaa-1", status="running")
    store.save(run)
    store.save(run.model_copy(update={"status": "failed", "error": "boom"}))
    loaded = store.load("aaaa-1")
    assert (loaded.status, loaded.error) == ("failed", "boom")
    assert len(store.list()) == 1


def test_load_by_unique_prefix(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    store.save(make_run("3f2b9c1e-aaaa"))
    store.save(make_run("7c01d2e4-bbbb"))
    assert store.load("3f2").id == "3f2b9c1e-aaaa"
    assert store.load("7c01d2e4-b").id == "7c01d2e4-bbbb"


def test_ambiguous_prefix_raises(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    store.save(make_run("abc123-one"))
    store.save(make_run("abc456-two"))
    with pytest.raises(RunNotFound, match="2 runs matching 'abc'"):
        store.load("abc")
    assert store.load("abc4").id == "abc456-two"


def test_missing_id_or_prefix_raises(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    store.save(make_run("abc123-one"))
    with pytest.raises(RunNotFound, match="no run matching 'zzz'"):
        store.load("zzz")
    assert issubclass(RunNotFound, LookupError)


def test_missing_root_is_empty(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "does-not-exist")
    assert store.list() == []
    with pytest.raises(RunNotFound):
        store.load("anything")


def test_list_is_newest_first(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    # Saved in an order that is neither creation order nor id order.
    for run_id, minutes in [("b-middle", 5), ("c-oldest", -10), ("a-newest", 30)]:
        store.save(make_run(run_id, minutes=minutes))
    assert [r.id for r in store.list()] == ["a-newest", "b-middle", "c-oldest"]


def test_no_temporary_files_left_behind(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    for i in range(3):
        run = make_run(f"run-{i}")
        store.save(run)
        store.save(run.model_copy(update={"status": "completed"}))
    files = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert files == [f"run-{i}/run.json" for i in range(3)]


def test_paths(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    assert store.run_dir("abc") == tmp_path / "abc"
    assert store.recording_path("abc") == tmp_path / "abc" / "recording.wav"


def test_suite_run_collects_the_runs_of_one_invocation(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    first = [make_run(f"run-a{i}", minutes=i, suite_run_id="aaaa1111-0000") for i in range(2)]
    other = make_run("run-b", suite_run_id="bbbb2222-0000")
    for run in [*first, other, make_run("run-c")]:
        store.save(run)
    assert [r.id for r in store.suite_run("aaaa")] == ["run-a0", "run-a1"]  # oldest first
    assert [r.id for r in store.suite_run("bbbb2222-0000")] == [other.id]
    with pytest.raises(RunNotFound):
        store.suite_run("cccc")
