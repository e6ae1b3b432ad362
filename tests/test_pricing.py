"""What a run cost: tokens priced by the user's table, the carrier's own price, and the
peers' views and ``loopcall show`` carrying the bill (issue 14, section 6)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from harness.models import (
    AgentEvent,
    CallEvent,
    Case,
    Criterion,
    CriterionResult,
    Evaluation,
    Persona,
    Run,
    ToolCall,
    Turn,
)
from harness.pricing import PriceFileError, PriceTable, load_prices, price_run
from harness.views import to_cekura_result, to_vapi_eval_run, to_yappr_run
from harness.views.text import to_text

T0 = datetime(2026, 12, 2, 9, 0, 0, tzinfo=UTC)
TABLE = PriceTable.model_validate(
    {
        "models": {
            "gpt-4o-mini*": {"input_per_million_usd": 0.15, "output_per_million_usd": 0.60},
            "gpt-4o": {"input_per_million_usd": 2.50, "output_per_million_usd": 10.0},
        },
        "telephony": {"sip": {"per_minute_usd": 0.01, "billed_per": "started_minute"}},
    }
)


def _run(channel: str = "webrtc", events: list[CallEvent] | None = None) -> Run:
    return Run(
        status="completed",
        channel=channel,
        target=f"{channel}://127.0.0.1:1/x",
        case=Case(name="c", persona=Persona(name="p"), script=["hi"]),  # type: ignore[list-item]
        created_at=T0,
        started_at=T0,
        # Connected at T0 + 5 s, ended 95 s later: 1.58 minutes on the line.
        recording_epoch_s=(T0 + timedelta(seconds=5)).timestamp(),
        ended_at=T0 + timedelta(seconds=100),
        events=events or [],
    )


def test_tokens_are_priced_model_by_model_and_globs_match_dated_names() -> None:
    run = _run()
    run.usage.add_tokens("agent", "gpt-4o", 10_000, 1_000)
    run.usage.add_tokens("agent", "gpt-4o-mini-2024-07-18", 100_000, 0)
    run.usage.add_tokens("agent", "gpt-4o", 10_000, 1_000)  # the same line again
    run.usage.add_tokens("persona", "gpt-4o-mini", 2_000, 500)
    run.usage.add_tokens("judge", "gpt-4o", 0, 0)  # spent nothing: no line
    price_run(run, TABLE)
    usage = run.usage
    assert (usage.agent_input_tokens, usage.agent_output_tokens) == (120_000, 2_000)
    # 20k in and 2k out of gpt-4o: 5 + 2 = 7 cents; 100k in of mini: 1.5 cents.
    assert usage.agent_cost_cents == pytest.approx(8.5)
    # 2k in, 500 out of mini: 0.03 + 0.03 cents.
    assert usage.persona_cost_cents == pytest.approx(0.06)
    assert usage.judge_cost_cents == 0.0
    assert usage.total_cost_cents == pytest.approx(8.56)
    assert usage.unpriced == []
    assert [(c.party, c.model, c.source) for c in usage.costs] == [
        ("agent", "gpt-4o", "price_table"),
        ("agent", "gpt-4o-mini-2024-07-18", "price_table"),
        ("persona", "gpt-4o-mini", "price_table"),
    ]


def test_what_cannot_be_priced_is_unknown_and_named_not_guessed() -> None:
    run = _run()
    run.usage.add_tokens("persona", "some-local-model", 1_000, 100)
    run.usage.add_tokens("agent", None, 50, 5)  # spans that named no model
    price_run(run, TABLE)
    usage = run.usage
    assert usage.persona_cost_cents is None and usage.agent_cost_cents is None
    assert usage.judge_cost_cents == 0.0  # no rubric: the judge spent nothing
    assert usage.total_cost_cents == 0.0  # nothing priced, and it says what it left out
    assert any("some-local-model" in gap and gap.startswith("persona:") for gap in usage.unpriced)
    assert any("named no model" in gap for gap in usage.unpriced)


def test_an_agent_without_spans_has_no_cost_rather_than_zero() -> None:
    run = _run()
    price_run(run, None)
    assert run.usage.agent_cost_cents is None
    assert run.usage.persona_cost_cents == 0.0  # a scripted caller spends no tokens
    assert run.usage.telephony_cost_cents is None  # loopback: no carrier, no line
    assert [gap.split(":")[0] for gap in run.usage.unpriced] == ["agent"]


def test_the_carriers_own_price_wins_and_is_in_cents() -> None:
    # Twilio's Call resource: price "-0.01300", price_unit "USD" (a debit).
    run = _run("tel", [CallEvent(t_ms=99_000, kind="twilio_price", detail="-0.01300 USD")])
    price_run(run, TABLE)
    assert run.usage.telephony_cost_cents == pytest.approx(1.3)
    line = run.usage.costs[-1]
    assert (line.type, line.model, line.source, line.minutes) == (
        "telephony",
        "twilio",
        "carrier",
        pytest.approx(1.5833, abs=1e-3),
    )
    # A price in another currency is not converted by guesswork.
    euro = _run("tel", [CallEvent(t_ms=99_000, kind="twilio_price", detail="-0.012 EUR")])
    price_run(euro, TABLE)
    assert euro.usage.telephony_cost_cents is None
    assert "EUR" in (euro.usage.costs[-1].note or "")
    # Twilio had not priced the call (it can lag the hang-up): unknown, and said.
    unpriced = _run("tel")
    price_run(unpriced, TABLE)
    assert unpriced.usage.telephony_cost_cents is None
    assert any(gap.startswith("telephony:") for gap in unpriced.usage.unpriced)


def test_a_line_priced_by_the_table_bills_started_minutes() -> None:
    run = _run("sip")
    price_run(run, TABLE)
    # 1.58 minutes billed as 2 started minutes at 1 cent each.
    assert run.usage.telephony_cost_cents == pytest.approx(2.0)
    assert run.usage.costs[-1].source == "price_table"
    price_run(run, TABLE)  # priced again (a bench re-scores): the same bill, not twice
    assert [c.type for c in run.usage.costs] == ["telephony"]
    assert run.usage.total_cost_cents == pytest.approx(2.0)


def test_a_price_file_is_read_and_its_mistakes_are_named(tmp_path: Path) -> None:
    good = tmp_path / "prices.yaml"
    good.write_text(
        "models:\n  gpt-4o-mini*: {input_per_million_usd: 0.15, output_per_million_usd: 0.6}\n"
        "telephony:\n  tel: {per_minute_usd: 0.014}\n"
    )
    table = load_prices(good)
    price = table.model_price("gpt-4o-mini-2024-07-18")
    assert price is not None and price.output_per_million_usd == 0.6
    assert table.model_price("gpt-4o") is None
    bad = tmp_path / "bad.yaml"
    bad.write_text("models:\n  m: {input_per_milion_usd: 1, output_per_million_usd: 1}\n")
    with pytest.raises(
        PriceFileError, match=r"(?s)bad\.yaml.*models\.m\.input_per_milion_usd.*check the spelling"
    ):
        load_prices(bad)
    channel = tmp_path / "channel.yaml"
    channel.write_text("telephony:\n  pstn: {per_minute_usd: 1}\n")
    with pytest.raises(PriceFileError, match="unknown channel.*pstn"):
        load_prices(channel)
    with pytest.raises(PriceFileError, match="cannot read"):
        load_prices(tmp_path / "missing.yaml")


def _judged_run() -> Run:
    """A run whose criteria have no descriptions (tool, node, semantic), priced."""
    tool = Criterion(tool_name="book_appointment", args_match={"day": "(?i)tue"})
    node = Criterion(node_id="confirm_booking")
    means = Criterion(semantic="the agent offers a Tuesday slot")
    run = _run("tel", [CallEvent(t_ms=99_000, kind="twilio_price", detail="-0.02600 USD")])
    run.case = run.case.model_copy(update={"success_criteria": [tool, node, means]})
    run.turns = [
        Turn(role="agent", text="Tuesday at ten is free.", start_ms=1000, end_ms=2500),
        Turn(role="persona", text="Book it.", start_ms=3000, end_ms=3600, latency_ms=None),
    ]
    run.tool_calls = [ToolCall(name="book_appointment", args={"day": "Tuesday"}, at_ms=2800)]
    run.agent_events = [AgentEvent(type="node", name="confirm_booking", at_ms=2900)]
    run.evaluation = Evaluation(
        score=66.67,
        pass_fail=False,
        results=[
            CriterionResult(assertion=tool, passed=True, weight=1, reason="called once"),
            CriterionResult(assertion=node, passed=True, weight=1, reason="reached"),
            CriterionResult(assertion=means, passed=False, weight=1, reason="best 0.2"),
        ],
    )
    run.usage.add_tokens("agent", "gpt-4o", 20_000, 2_000)
    run.usage.agent_model = "gpt-4o"
    run.usage.add_tokens("persona", "gpt-4o-mini", 3_000, 300)
    run.usage.persona_model = "gpt-4o-mini"
    price_run(run, TABLE)
    return run


def test_the_peers_views_carry_the_real_tokens_and_costs() -> None:
    run = _judged_run()
    yappr = to_yappr_run(run)
    assert (yappr["agent_input_tokens"], yappr["agent_output_tokens"]) == (20_000, 2_000)
    assert (yappr["persona_input_tokens"], yappr["persona_output_tokens"]) == (3_000, 300)
    assert (yappr["agent_model"], yappr["persona_model"]) == ("gpt-4o", "gpt-4o-mini")
    # 7 cents of agent, 0.063 of persona, 2.6 of Twilio: whole cents, as Yappr has them.
    assert (yappr["agent_cost_cents"], yappr["persona_cost_cents"]) == (7, 0)
    assert yappr["total_cost_cents"] == 10  # 9.663 rounded
    assert yappr["loopcall"]["usage"]["total_cost_cents"] == pytest.approx(9.663)
    assertion = yappr["evaluation"]["results"][0]["assertion"]
    assert (assertion["tool_name"], assertion["args_match"]) == (
        "book_appointment",
        {"day": "(?i)tue"},
    )
    assert yappr["evaluation"]["results"][1]["assertion"]["node_id"] == "confirm_booking"

    vapi = to_vapi_eval_run(run)
    assert vapi["cost"] == pytest.approx(0.09663)  # US dollars
    assert [(c["type"], c.get("model") or c.get("provider")) for c in vapi["costs"]] == [
        ("model", "gpt-4o"),
        ("model", "gpt-4o-mini"),
        ("transport", "twilio"),
    ]
    assert vapi["costs"][0]["cost"] == pytest.approx(0.07)
    assert vapi["costs"][0]["promptTokens"] == 20_000

    cekura = to_cekura_result([run])
    extras = {m["name"]: m for m in cekura["overall_evaluation"]["extra_metrics"]}
    assert extras["Average Cost"]["value"] == pytest.approx(9.663)
    assert extras["Average Tokens"]["value"] == 25_300
    assert extras["Average Tool Calls"]["value"] == 1
    # Criteria without descriptions get names (this used to fail an assertion).
    names = {m["name"] for m in cekura["overall_evaluation"]["metric_summary"].values()}
    assert {
        'calls book_appointment with {"day": "(?i)tue"}',
        "reaches node confirm_booking",
        "means: the agent offers a Tuesday slot",
    } <= names
    assert cekura["overall_evaluation"]["worst_performing_metrics"]["binary_adherence"] == [
        next(
            key
            for key, m in cekura["overall_evaluation"]["metric_summary"].items()
            if m["name"].startswith("means:")
        )
    ]


def test_show_tells_the_flow_what_the_agent_did_and_the_bill() -> None:
    text = to_text(_judged_run())
    lines = text.splitlines()
    tool = next(i for i, line in enumerate(lines) if "tool: book_appointment" in line)
    node = next(i for i, line in enumerate(lines) if "node: confirm_booking" in line)
    said = next(i for i, line in enumerate(lines) if "Book it." in line)
    assert tool < node < said  # in the order they happened on the call's clock
    assert "FAIL [1] means: the agent offers a Tuesday slot: best 0.2" in text
    assert "cost 9.663¢" in text
    assert "telephony twilio: 1.58 min, 2.6¢" in text


def test_a_bad_price_table_stops_the_cli_before_any_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    from harness.cli.main import main

    prices = tmp_path / "prices.yaml"
    prices.write_text("models:\n  gpt-4o: {input_per_million_usd: -1, output_per_million_usd: 1}\n")
    monkeypatch.setenv("LOOPCALL_PRICES", str(prices))
    case = tmp_path / "case.yaml"
    case.write_text("name: c\npersona: {name: p}\nscript: [hi]\n")
    # Port 9 (discard): were a call placed, it would fail differently and later.
    code = main(["run", str(case), "--target", "webrtc://127.0.0.1:9/x", "--out", str(tmp_path)])
    err = capfd.readouterr().err
    assert code == 2
    assert "LOOPCALL_PRICES" in err and "models.gpt-4o.input_per_million_usd" in err, err
    assert not list(tmp_path.glob("*/run.json"))
