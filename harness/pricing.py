"""What a run cost: its tokens priced by the user's table, and the carrier's own price.

Stage: the orchestrator's wrap-up, once the run is judged (the judge's tokens are
in).  In: ``run.usage`` (tokens by party and model), the run's events (the
carrier's price, where it reports one: Twilio's ``price`` after the call) and a
``PriceTable`` from ``LOOPCALL_PRICES`` (a YAML file, docs/costs.md).  Out: the
bill in ``run.usage.costs`` and the per-party sums.

loopcall ships no prices: providers change them and a stale figure is worse
than none.  A model the table does not price leaves its line's cost ``None``
with a note, and the party's sum ``None``; a party that spent nothing costs 0;
the agent, which loopcall knows only through its spans, has a cost only when
they reported tokens.  ``total_cost_cents`` adds the known lines, and
``usage.unpriced`` names what it leaves out.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator

from harness.cases import CaseFileError, describe_errors, read_yaml
from harness.errors import LoopcallError
from harness.models import CostItem, Run
from harness.models.common import Strict

__all__ = [
    "LinePrice",
    "ModelPrice",
    "PriceFileError",
    "PriceTable",
    "load_prices",
    "price_run",
    "prices_at",
]

# The event the Twilio channel records with the call's price ("-0.01300 USD").
CARRIER_PRICE_EVENTS = {"twilio_price": "twilio"}
CHANNELS = ("webrtc", "twilio-ws", "tel", "sip")


class PriceFileError(LoopcallError, ValueError):
    """The price table cannot be read; the message names the file and field."""


class ModelPrice(Strict):
    """A model's price per million tokens, in US dollars."""

    input_per_million_usd: float = Field(ge=0)
    output_per_million_usd: float = Field(ge=0)


class LinePrice(Strict):
    """A channel's price per minute of connected call, in US dollars (a SIP trunk's,
    say), for carriers that report none."""

    per_minute_usd: float = Field(ge=0)
    billed_per: Literal["second", "started_minute"] = "second"


class PriceTable(Strict):
    """``models``: name or glob (``gpt-4o-mini*``) -> price; ``telephony``: channel -> price."""

    currency: Literal["USD"] = "USD"
    models: dict[str, ModelPrice] = Field(default_factory=dict)
    telephony: dict[str, LinePrice] = Field(default_factory=dict)

    @field_validator("telephony")
    @classmethod
    def _channels(cls, value: dict[str, LinePrice]) -> dict[str, LinePrice]:
        unknown = sorted(set(value) - set(CHANNELS))
        if unknown:
            raise ValueError(f"unknown channel(s) {unknown}: use {', '.join(CHANNELS)}")
        return value

    def model_price(self, model: str | None) -> ModelPrice | None:
        """The exact name's price, else the longest matching glob's."""
        if model is None:
            return None
        if model in self.models:
            return self.models[model]
        globs = [key for key in self.models if fnmatchcase(model, key)]
        return self.models[max(globs, key=len)] if globs else None


def prices_at(path: Path | None) -> PriceTable | None:
    """The table ``LOOPCALL_PRICES`` names, or None when it names none."""
    return None if path is None else load_prices(path)


def load_prices(path: Path) -> PriceTable:
    """Read a price table (YAML or JSON)."""
    try:
        data = read_yaml(path)
    except CaseFileError as exc:
        raise PriceFileError(str(exc)) from exc
    if not isinstance(data, dict):
        raise PriceFileError(f"{path}: expected a mapping with models and/or telephony")
    try:
        return PriceTable.model_validate(data)
    except ValidationError as exc:
        raise PriceFileError(describe_errors(path, exc)) from exc


def price_run(run: Run, table: PriceTable | None) -> None:
    """Fill ``run.usage``'s bill (replacing any earlier one: a re-scored run)."""
    table = table or PriceTable()
    usage = run.usage
    usage.costs = []
    sums: dict[str, float | None] = {}
    for party in ("agent", "persona", "judge"):
        lines = [line for line in usage.tokens if line.party == party]
        total: float | None = 0.0 if lines or party != "agent" else None
        for line in lines:
            price = table.model_price(line.model)
            cents = None
            note = None
            if price is not None:
                cents = (
                    line.input_tokens * price.input_per_million_usd
                    + line.output_tokens * price.output_per_million_usd
                ) / 10_000.0  # per million tokens, in dollars -> cents
            else:
                note = (
                    f"no price for model {line.model!r} in the price table (LOOPCALL_PRICES)"
                    if line.model
                    else "the spans named no model to price"
                )
            usage.costs.append(
                CostItem(
                    type="model",
                    party=party,
                    model=line.model,
                    input_tokens=line.input_tokens,
                    output_tokens=line.output_tokens,
                    cost_cents=_round(cents),
                    source="price_table" if cents is not None else None,
                    note=note,
                )
            )
            total = None if total is None or cents is None else total + cents
        sums[party] = _round(total)
    usage.agent_cost_cents = sums["agent"]
    usage.persona_cost_cents = sums["persona"]
    usage.judge_cost_cents = sums["judge"]
    line_item = _telephony(run, table)
    usage.telephony_cost_cents = line_item.cost_cents if line_item else None
    if line_item is not None:
        usage.costs.append(line_item)
    known = [item.cost_cents for item in usage.costs if item.cost_cents is not None]
    usage.unpriced = [_what(item) for item in usage.costs if item.cost_cents is None]
    if usage.agent_cost_cents is None and not any(i.party == "agent" for i in usage.costs):
        usage.unpriced.append("agent: its spans reported no tokens (see docs/tracing.md)")
    usage.total_cost_cents = _round(sum(known, 0.0))


def _telephony(run: Run, table: PriceTable) -> CostItem | None:
    """The carrier's price where it reported one, else the table's for the channel."""
    minutes = _connected_minutes(run)
    for event in reversed(run.events):
        carrier = CARRIER_PRICE_EVENTS.get(event.kind)
        if carrier is None:
            continue
        amount, _, unit = event.detail.partition(" ")
        try:
            dollars = abs(float(amount))
        except ValueError:
            dollars = None
        ok = dollars is not None and unit.strip().upper() == "USD"
        return CostItem(
            type="telephony",
            party="telephony",
            model=carrier,
            minutes=minutes,
            cost_cents=_round(dollars * 100.0) if ok and dollars is not None else None,
            source="carrier" if ok else None,
            note=None if ok else f"the carrier's price {event.detail!r} is not in US dollars",
        )
    rate = table.telephony.get(run.channel)
    if rate is None:
        if run.channel == "tel":
            return CostItem(
                type="telephony",
                party="telephony",
                model="twilio",
                minutes=minutes,
                note="the carrier reported no price for the call (yet)",
            )
        return None  # a loopback channel with no price: there is no carrier
    if minutes is None:
        return CostItem(
            type="telephony", party="telephony", model=run.channel, note="never connected"
        )
    billed = float(-(-minutes // 1)) if rate.billed_per == "started_minute" else minutes
    return CostItem(
        type="telephony",
        party="telephony",
        model=run.channel,
        minutes=minutes,
        cost_cents=_round(billed * rate.per_minute_usd * 100.0),
        source="price_table",
    )


def _connected_minutes(run: Run) -> float | None:
    if run.recording_epoch_s is None or run.ended_at is None:
        return None
    seconds = run.ended_at.timestamp() - run.recording_epoch_s
    return round(max(seconds, 0.0) / 60.0, 4)


def _what(item: CostItem) -> str:
    return f"{item.party}: {item.note}" if item.note else item.party


def _round(cents: float | None) -> float | None:
    return None if cents is None else round(cents, 4)
