"""The suite report and the comparison (``harness.reports``) on hand-made runs."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from suite_runs import BOOKED, FAST, make_run, noisy_suite

from harness.models import Criterion, Dynamics, Interruption
from harness.reports import build_report, compare_runs, criterion_id, normalise_reason, wilson
from harness.reports.stats import holm

# Newcombe (1998), "Two-sided confidence intervals for the single proportion",
# Statistics in Medicine 17:857-872, table I, method 3 (Wilson's score interval).
NEWCOMBE = [
    ((81, 263), (0.2553, 0.3662)),
    ((15, 148), (0.0624, 0.1605)),
    ((0, 20), (0.0, 0.1611)),
    ((1, 29), (0.0061, 0.1718)),
]


@pytest.mark.parametrize(("counts", "expected"), NEWCOMBE)
def test_wilson_interval_matches_the_published_values(
    counts: tuple[int, int], expected: tuple[float, float]
) -> None:
    interval = wilson(*counts)
    assert interval is not None
    assert interval == pytest.approx(expected, abs=5e-5)


def test_wilson_interval_of_a_perfect_and_an_empty_suite() -> None:
    # 10 of 10: the interval is not [1, 1]; its lower end solves the score equation.
    low, high = wilson(10, 10) or (0.0, 0.0)
    z = 1.959964
    assert high == pytest.approx(1.0)
    assert low == pytest.approx(10 / (10 + z**2), abs=1e-6)
    assert wilson(0, 0) is None


def test_wilson_closed_form_agrees_with_scipy_binomtest() -> None:
    for total in (1, 2, 7, 30, 263):
        for passed in sorted({0, 1, total // 3, total // 2, total - 1, total}):
            ci = stats.binomtest(passed, total).proportion_ci(0.95, method="wilson")
            assert wilson(passed, total) == pytest.approx((ci.low, ci.high), abs=1e-12)


def test_criteria_are_one_across_cases_by_kind_check_and_description() -> None:
    heavy = BOOKED.model_copy(update={"weight": 3.0})  # weight does not make it another one
    other = Criterion(node_id="confirm_booking", description="another description")
    runs = [
        make_run("Book", verdicts=[(BOOKED, True, "ok"), (FAST, True, "ok")]),
        make_run("Reschedule", verdicts=[(heavy, False, "never reached"), (other, True, "ok")]),
        make_run("Book", verdicts=[(BOOKED, False, "never reached"), (FAST, False, "slow")]),
        # A call that failed is no verdict on the criteria; a queued run is not finished.
        make_run("Book", verdicts=[(BOOKED, False, "x")], status="failed", error="boom"),
        make_run("Book", status="queued"),
    ]
    report = build_report(runs)
    by_label = {c.label: c for c in report.criteria}
    booked = by_label["reached the confirmation"]
    assert (booked.result.passed, booked.result.total) == (1, 3)
    assert booked.cases == ["Book", "Reschedule"]
    assert booked.kind == "node_id" and booked.check == '{"node_id":"confirm_booking"}'
    assert by_label["another description"].result.total == 1
    fast = by_label['latency_ms {"latency_ms":{"max_ms":1200.0,"stat":"p90"}}']
    assert criterion_id(Criterion(pattern="bye", must_match=False)).check == (
        '{"must_match":false,"pattern":"bye","role":"agent"}'
    )
    assert (fast.result.passed, fast.result.total) == (1, 2)
    # Worst first: 1/3 before 1/2; a criterion that never failed is not among them.
    assert [c.label for c in report.worst_criteria] == [booked.label, fast.label]
    # Success: 1 passed of the 4 finished runs (the queued one counts only in status_counts).
    assert (report.success.passed, report.success.total) == (1, 4)
    assert report.success.ci95 == wilson(1, 4)
    assert report.status_counts == {"completed": 3, "failed": 1, "queued": 1}


def test_figures_pool_vouched_turns_and_read_dynamics_when_present() -> None:
    runs = [
        make_run(latencies=[100, 200, 300], degraded=[5000]),
        make_run(latencies=[400, 500], minute=1),
    ]
    report = build_report(runs)
    metrics = {m.name: m for m in report.metrics}
    turns = metrics["turn_latency_ms"]
    # The degraded 5000 ms turn is not counted: pooled 100..500, linear percentiles.
    assert (turns.over, turns.n, turns.p50, turns.p90, turns.max) == ("turn", 5, 300, 460, 500)
    # Per run: the runs' own p50s (200 and 500 as suite_runs.make_run takes them).
    assert (metrics["latency_p50_ms"].n, metrics["latency_p50_ms"].p50) == (2, 350.0)
    assert not any(name.startswith("dynamics.") for name in metrics)  # none measured yet

    talked_over = Dynamics(
        agent_interruptions=[Interruption(by="agent", at_ms=1000, overlap_ms=400)],
        longest_silence_ms=2500,
        talk_ratio=0.6,
    )
    runs.append(make_run(latencies=[300], dynamics=talked_over, minute=2))
    runs.append(make_run(latencies=[300], dynamics=Dynamics(longest_silence_ms=500), minute=3))
    metrics = {m.name: m for m in build_report(runs).metrics}
    assert metrics["dynamics.agent_interruptions"].n == 2  # only the runs with dynamics
    assert metrics["dynamics.agent_interruptions"].max == 1
    assert metrics["dynamics.longest_silence_ms"].p50 == 1500
    assert metrics["dynamics.talk_ratio"].n == 1  # None where it was not measured


def test_flaky_cases_passed_and_failed_across_repeats() -> None:
    ok, bad = (BOOKED, True, "ok"), (BOOKED, False, "never reached")
    runs = [
        make_run("Book", verdicts=[ok], minute=0),
        make_run("Book", verdicts=[bad], minute=1),
        make_run("Book", verdicts=[ok], minute=2),
        make_run("Always", verdicts=[ok], minute=3),
        make_run("Always", verdicts=[ok], minute=4),
        make_run("Never", verdicts=[bad], minute=5),
        make_run("Never", verdicts=[bad], minute=6),
        make_run("Never", status="running", minute=7),
        make_run("Dropped", verdicts=[ok], minute=8),
        make_run("Dropped", status="failed", error="agent sent no audio for 10 s", minute=9),
    ]
    flaky = build_report(runs).flaky
    assert [(f.case, f.passed, f.failed) for f in flaky] == [("Book", 2, 1), ("Dropped", 1, 1)]
    assert flaky[0].run_ids == [runs[0].id, runs[1].id, runs[2].id]


def test_normalised_reasons_blank_the_particulars_only() -> None:
    assert normalise_reason("p90 latency 1432.5 ms is over 800 ms") == (
        "p90 latency N ms is over N ms"
    )
    assert normalise_reason('agent said /bye/ ("Bye now"), which it must not') == (
        "agent said /bye/ ('…'), which it must not"
    )
    assert normalise_reason(
        "cannot reach webrtc://10.0.0.7:7860/api/offer for run 3f2a9c1e-0000-4000-8000-00000000abcd"
    ) == ("cannot reach <url> for run <id>")
    # An apostrophe is not a quote.
    assert normalise_reason("the agent's reply didn't come") == "the agent's reply didn't come"


def test_failures_group_by_cause_most_runs_first() -> None:
    slow = [
        make_run(f"Case {i}", verdicts=[(FAST, False, f"p90 latency {1300 + i} ms is over 1200")])
        for i in range(3)
    ]
    silent = [
        make_run(status="failed", error=f"agent sent no audio for {s} s", minute=i)
        for i, s in enumerate((10, 12))
    ]
    missed = make_run(
        "Book", verdicts=[(BOOKED, False, "never reached"), (FAST, False, "p90 latency 2000 ms")]
    )
    groups = build_report(
        [*slow, *silent, missed, make_run(verdicts=[(BOOKED, True, "")])]
    ).failures
    assert [(g.kind, g.cause, g.runs) for g in groups] == [
        ("latency_ms", "latency_ms: p90 latency N ms is over N", 3),
        ("run", "run failed: agent sent no audio for N s", 2),
        ("latency_ms", "latency_ms: p90 latency N ms", 1),
        ("node_id", "node_id: never reached", 1),
    ]
    assert groups[0].cases == ["Case 0", "Case 1", "Case 2"]
    assert groups[0].example == "p90 latency 1300 ms is over 1200"
    assert groups[1].run_ids == [r.id for r in silent]


def test_a_real_regression_is_called_one() -> None:
    rng = np.random.default_rng(7)
    before = noisy_suite(rng, "before", runs=40, pass_p=0.95, median_ms=800)
    after = noisy_suite(rng, "after", runs=40, pass_p=0.55, median_ms=1100)
    comparison = compare_runs(before, after)
    assert comparison.success.test == "fisher_exact"
    assert comparison.success.label == "regressed", comparison.success
    assert comparison.success.p_value is not None and comparison.success.p_value < 0.01
    assert comparison.success.difference is not None and comparison.success.difference < -0.2
    [booked] = comparison.criteria
    assert booked.label == "regressed"
    turns = next(c for c in comparison.metrics if c.name == "turn_latency_ms")
    assert (turns.test, turns.label) == ("mann_whitney_u", "regressed")
    assert turns.difference is not None and 200 < turns.difference < 400
    assert turns.ci95 is not None and turns.ci95[0] > 0  # the bootstrap agrees
    assert turns.effect_size is not None and turns.effect_size > 0.3
    # And the other way round it is an improvement.
    assert compare_runs(after, before).success.label == "improved"


def test_noise_is_not_called_a_regression() -> None:
    """Pairs of suites drawn from one distribution (20 runs each), 100 seeds: a change may
    be called only as often as alpha allows.  Measured with this test's seeds: success
    rate called changed 5/100, the criterion family 5/100, the figures family 3/100, any
    regression 4/100 (seeds 5000.. and 9000..: at most 5).  The bound is alpha's 5 of 100
    plus the binomial spread: more than 12 has a chance under 0.15 % (Bin(100, 0.05))."""
    called = {"success": 0, "criteria": 0, "figures": 0}
    regressed = 0
    for seed in range(100):
        rng = np.random.default_rng(1000 + seed)
        comparison = compare_runs(
            noisy_suite(rng, "a", runs=20), noisy_suite(rng, "b", runs=20), resamples=0
        )
        called["success"] += comparison.success.label != "no significant change"
        called["criteria"] += any(c.label != "no significant change" for c in comparison.criteria)
        called["figures"] += any(c.label != "no significant change" for c in comparison.metrics)
        regressed += comparison.regressed > 0
    assert all(n <= 12 for n in called.values()), called
    assert regressed <= 12, regressed
    # Not vacuous: the same suites with a real shift in them are told apart.
    rng = np.random.default_rng(1000)
    shifted = compare_runs(
        noisy_suite(rng, "a", runs=20), noisy_suite(rng, "b", runs=20, median_ms=1000)
    )
    assert {c.name: c.label for c in shifted.metrics}["turn_latency_ms"] == "regressed"


def test_holm_adjusts_a_family_step_down() -> None:
    # Holm (1979): sorted p x (m - rank), kept monotone, capped at 1.
    assert holm([0.01, 0.04, 0.03, 0.5]) == pytest.approx([0.04, 0.09, 0.09, 0.5])
    assert holm([]) == []


def test_a_criterion_on_one_side_only_is_not_comparable() -> None:
    before = [make_run(verdicts=[(BOOKED, True, "ok")])]
    after = [make_run(verdicts=[(FAST, True, "ok")], suite_run_id="suite-b")]
    comparison = compare_runs(before, after)
    assert {c.label for c in comparison.criteria} == {"not comparable"}
    assert comparison.success.label == "no significant change"
    with pytest.raises(ValueError, match="alpha"):
        compare_runs(before, after, alpha=1.5)
