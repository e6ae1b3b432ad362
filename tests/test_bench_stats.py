"""The bench's figures from hand-made runs: percentiles, the oracle error, the degraded rule."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
from dental import booking_case

from harness.bench.models import BenchConfig, BenchReport
from harness.bench.report import render_html
from harness.bench.stats import (
    CallSpan,
    LevelSamples,
    agent_account,
    bench_call,
    failure_reason,
    oracle_errors,
    peak_overlap,
    summarize_level,
)
from harness.cli.bench import parse_levels
from harness.models import CallEvent, HarnessHealth, Metrics, Run, Turn


def _run(latencies: list[float], *, degraded: set[int] = frozenset(), **kw: object) -> Run:
    turns = [Turn(role="agent", text="hello", start_ms=300, end_ms=2000)]
    t = 2500.0
    for i, latency in enumerate(latencies):
        turns.append(Turn(role="persona", text="x", start_ms=t, end_ms=t + 1000))
        t += 1000 + latency
        turns.append(
            Turn(
                role="agent",
                text="y",
                start_ms=t,
                end_ms=t + 1500,
                latency_ms=latency,
                degraded=i in degraded,
            )
        )
        t += 2000
    run = Run(
        case=booking_case(),
        channel="sip",
        target="sip:agent@127.0.0.1:5060",
        status="completed",
        turns=turns,
        metrics=Metrics(
            transport_rtt_ms=2.0,
            time_to_first_audio_ms=300.0,
            harness=HarnessHealth(audio_dropped_ms=10.0),
        ),
        events=[CallEvent(t_ms=50.0, kind="connected")],
    )
    return run.model_copy(update=kw)


def test_oracle_error_leaves_degraded_turns_out_but_reports_them_apart() -> None:
    runs = [_run([403.0, 401.0, 460.0], degraded={2}), _run([399.0, 404.0])]
    error = oracle_errors(runs, 400.0)
    # latency - 400 - 2 ms of transport: 1, -1, (58 degraded), -3, 2
    assert error.n == 4
    assert error.max == 3.0
    assert error.mean == pytest.approx(-0.25)
    assert error.p95 == pytest.approx(float(np.percentile([1, 1, 3, 2], 95)), abs=0.01)
    assert error.all_max == 58.0


def test_peak_overlap_counts_calls_connected_at_once() -> None:
    assert peak_overlap([(0, 10), (1, 2), (1.5, 3), (2.5, 4)]) == 3
    assert peak_overlap([(0, 1), (1, 2)]) == 1  # one ends as the next starts
    assert peak_overlap([]) == 0


def test_failure_reasons_group_like_failures() -> None:
    a = _run([], status="failed", error="the agent's SIP peer answered 486 Busy Here")
    b = _run(
        [], status="failed", error="run 1b2c3d4e-aaaa-bbbb-cccc-1234567890ab: agent unreachable"
    )
    assert failure_reason(a) == "the agent's SIP peer answered 486 Busy Here"
    assert failure_reason(b) == "run <id>: agent unreachable"


def _samples(lags: list[float], cpu_s: float = 3.0) -> LevelSamples:
    return LevelSamples(
        started=100.0,
        ended=120.0,
        cpu_s=cpu_s,
        lag_ms=np.asarray(lags, dtype=float),
        rss_mb_start=100.0,
        rss_mb_peak=110.0,
        agent_cpu_s=2.0,
        ramp_s=1.0,
    )


def test_a_level_summary_from_its_calls() -> None:
    spans = [
        CallSpan(_run([400.0, 402.0]), 0, 100.0, 115.0),
        CallSpan(_run([401.0, 410.0], degraded={1}), 1, 101.0, 116.0),
        CallSpan(_run([], status="failed", error="no answer within 15 s"), 2, 102.0, 117.0),
    ]
    level = summarize_level(
        3, spans, _samples([1.0] * 99 + [3.0]), oracle_delay_ms=400.0, lag_bound_ms=20.0,
        transport_rtt_ms=2.0,
    )  # fmt: skip
    assert (level.calls, level.completed, level.failed) == (3, 2, 1)
    assert level.failures == {"no answer within 15 s": 1}
    assert level.turns == 4 and level.degraded_turns == 1
    assert level.latency_ms.n == 3 and level.latency_ms.max == 402.0  # 410 is degraded
    # One degraded turn in four is more than 1 %: the level is degraded.
    assert level.degraded and "1 of 4 turns" in (level.degraded_reason or "")
    assert level.peak_concurrency == 3
    # 3 CPU s over 20 s of wall; 3 calls connected 15 s each (from 50 ms in).
    assert level.cpu_percent == 15.0
    assert level.cpu_ms_per_call_s == pytest.approx(3000 / (3 * 14.95), abs=0.01)
    assert level.agent_cpu_percent == 10.0
    assert level.rss_mb_per_call == pytest.approx(10 / 3, abs=0.01)
    assert level.audio_dropped_ms == 30.0
    assert level.oracle_error_ms is not None and level.oracle_error_ms.n == 3


def test_a_late_loop_degrades_the_level_even_with_clean_turns() -> None:
    spans = [CallSpan(_run([400.0] * 50), 0, 100.0, 115.0)]
    quiet = summarize_level(
        1, spans, _samples([1.0] * 100), oracle_delay_ms=None, lag_bound_ms=20.0,
        transport_rtt_ms=None,
    )  # fmt: skip
    assert not quiet.degraded and quiet.oracle_error_ms is None
    late = summarize_level(
        1, spans, _samples([1.0] * 90 + [30.0] * 10), oracle_delay_ms=None, lag_bound_ms=20.0,
        transport_rtt_ms=None,
    )  # fmt: skip
    assert late.degraded and late.loop_lag_ms_p99 == 30.0
    assert "p99" in (late.degraded_reason or "")
    # On SIP the kernel stamps arrivals, but the persona's audio leaves on the loop's
    # clock: the same late loop makes that level untrustworthy too.
    sip_run = _run([400.0] * 50)
    assert sip_run.metrics.harness is not None
    sip_run.metrics.harness.kernel_stamped = True
    sip = summarize_level(
        1, [CallSpan(sip_run, 0, 100.0, 115.0)], _samples([1.0] * 90 + [30.0] * 10),
        oracle_delay_ms=None, lag_bound_ms=20.0, transport_rtt_ms=None,
    )  # fmt: skip
    assert sip.degraded and sip.loop_lag_ms_p99 == 30.0


def test_bench_calls_sit_on_the_level_clock() -> None:
    call = bench_call(CallSpan(_run([400.0]), 4, 103.0, 110.0), 10, 100.0)
    assert call.index == 4 and call.level == 10
    assert call.started_s == 3.0 and call.ended_s == 10.0 and call.connected_s == 3.05
    assert call.turns[0].start_s == pytest.approx(3.05 + 0.3)


def test_config_defaults_follow_the_level() -> None:
    config = BenchConfig(target="sip:a@127.0.0.1", case=booking_case(), concurrency=[1, 100])
    assert config.calls_at(100) == 100 and config.ramp_at(100) == pytest.approx(4.95)
    assert config.ramp_at(1) == 0.0
    fixed = config.model_copy(update={"calls": 7, "ramp_s": 2.0})
    assert fixed.calls_at(100) == 7 and fixed.ramp_at(100) == 2.0
    with pytest.raises(ValueError, match="between 1 and 5000"):
        BenchConfig(target="sip:a@127.0.0.1", case=booking_case(), concurrency=[0])


def test_levels_parse_from_the_command_line() -> None:
    assert parse_levels("1,10, 50") == [1, 10, 50]
    for bad in ("", "1,x", "0,5"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_levels(bad)


def test_the_html_report_is_self_contained_and_escaped() -> None:
    spans = [CallSpan(_run([400.0, 401.0]), 0, 100.0, 115.0)]
    level = summarize_level(
        1, spans, _samples([1.0] * 10), oracle_delay_ms=400.0, lag_bound_ms=20.0,
        transport_rtt_ms=2.0,
    )  # fmt: skip
    report = BenchReport(
        id="b1",
        target="sip:<script>@127.0.0.1",
        channel="sip",
        case_name="Book & pay",
        oracle_delay_ms=400.0,
        lag_bound_ms=20.0,
        caller="lean",
        levels=[level],
        calls=[bench_call(spans[0], 1, 100.0)],
    )
    page = render_html(report)
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "Book &amp; pay" in page
    assert page.count("<svg") == 4  # latency, oracle error, health, one timeline
    assert "http" not in page.replace("http://www.w3.org/2000/svg", "")  # nothing fetched


def test_the_agents_own_account_separates_its_lateness_from_the_harness_error() -> None:
    run = _run([400.0, 430.0], degraded={1})
    assert run.started_at is None
    from datetime import UTC, datetime

    run.started_at = datetime.fromtimestamp(1000.0, UTC)
    zero = 1000.0 * 1000.0 + 50.0  # the connected event, 50 ms in
    agent_turns = [t for t in run.turns if t.latency_ms is not None]
    entries: list[dict[str, object]] = [
        # The greeting: no caller offset, never matched.
        {"run_id": run.id, "caller_offset_epoch_ms": None, "reply_onset_epoch_ms": zero + 300},
        # Reply 1 left 399 ms after the caller stopped (1 ms before the turn the
        # harness heard, still matched): error = 400 - 399 - 2 (transport) = -1.
        {"run_id": run.id, "caller_offset_epoch_ms": zero + agent_turns[0].start_ms - 400.0,
         "reply_onset_epoch_ms": zero + agent_turns[0].start_ms - 1.0},
        # Reply 2 left 30 ms late (the oracle was loaded): the harness saw 430 -> its
        # own error is 430 - 430 - 2 = -2, not 28.
        {"run_id": run.id, "caller_offset_epoch_ms": zero + agent_turns[1].start_ms - 430.0,
         "reply_onset_epoch_ms": zero + agent_turns[1].start_ms},
        # Another run's entry is ignored.
        {"run_id": "other", "caller_offset_epoch_ms": 0.0, "reply_onset_epoch_ms": zero},
    ]  # fmt: skip
    account = agent_account([run], entries, 400.0)
    assert account.n == 2
    assert account.late_ms_max == 30.0
    assert account.harness_error_ms_max == 2.0 and account.harness_error_ms_mean == -1.5
    assert account.trusted_error_ms_max == 1.0  # the degraded second turn is left out
    assert agent_account([run], [], 400.0).n == 0
