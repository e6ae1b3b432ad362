"""Tokens and costs of one run, by who spent them: the agent, the persona, the judge, the line.

Part of the contract (``harness.models``); imports nothing of ours.  Tokens come
from the LLM calls loopcall makes (the persona's brain, the rubric judge) and
from the agent's spans; ``harness.pricing`` turns them into costs with the
user's price table, and takes the carrier's own price for the call where the
carrier reports one (Twilio does, after the call).  A cost loopcall cannot know
(tokens of a model the table does not price) is ``None`` with a note, never a
guessed figure; a party that spent nothing costs ``0``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

__all__ = ["CostItem", "ModelTokens", "Party", "Usage"]

Party = Literal["agent", "persona", "judge"]


class ModelTokens(BaseModel):
    """One party's tokens on one model (``model`` None: its spans named none)."""

    party: Party
    model: str | None = None
    input_tokens: int = Field(default=0, ge=0)
    output_tokens: int = Field(default=0, ge=0)


class CostItem(BaseModel):
    """One line of the bill: a model's tokens, or the call itself."""

    type: Literal["model", "telephony"]
    party: Party | Literal["telephony"]
    model: str | None = Field(
        default=None, description="The model; for telephony, the carrier or channel."
    )
    input_tokens: int | None = None
    output_tokens: int | None = None
    minutes: float | None = None
    cost_cents: float | None = Field(
        default=None, description="US cents; None: no price known for it (see note)."
    )
    source: Literal["price_table", "carrier"] | None = None
    note: str | None = None


class Usage(BaseModel):
    """Tokens and cost of one run, by who spent them."""

    agent_input_tokens: int = 0
    agent_output_tokens: int = 0
    persona_input_tokens: int = 0
    persona_output_tokens: int = 0
    judge_input_tokens: int = 0
    judge_output_tokens: int = 0
    agent_model: str | None = Field(
        default=None, description="The model that wrote most of the agent's output (its spans)."
    )
    persona_model: str | None = None
    judge_model: str | None = None
    tokens: list[ModelTokens] = Field(
        default_factory=list, description="Every party's tokens, model by model."
    )
    telephony_cost_cents: float | None = Field(
        default=None, description="The carrier's price for the call, when it reports one."
    )
    agent_cost_cents: float | None = None
    persona_cost_cents: float | None = None
    judge_cost_cents: float | None = None
    total_cost_cents: float | None = Field(
        default=None,
        description="What loopcall knows the run cost: the sum of the priced lines "
        "(``unpriced`` names what it leaves out); None until priced.",
    )
    unpriced: list[str] = Field(
        default_factory=list, description="What the total leaves out, and why."
    )
    costs: list[CostItem] = Field(default_factory=list, description="The bill, line by line.")

    def forget(self, party: Party) -> None:
        """Drop ``party``'s tokens (before it is counted again)."""
        setattr(self, f"{party}_input_tokens", 0)
        setattr(self, f"{party}_output_tokens", 0)
        self.tokens = [line for line in self.tokens if line.party != party]

    def add_tokens(
        self, party: Party, model: str | None, input_tokens: int, output_tokens: int
    ) -> None:
        """Count tokens to ``party`` (its totals and its per-model line)."""
        if input_tokens == 0 and output_tokens == 0:
            return
        setattr(
            self, f"{party}_input_tokens", getattr(self, f"{party}_input_tokens") + input_tokens
        )
        setattr(
            self, f"{party}_output_tokens", getattr(self, f"{party}_output_tokens") + output_tokens
        )
        for line in self.tokens:
            if line.party == party and line.model == model:
                line.input_tokens += input_tokens
                line.output_tokens += output_tokens
                return
        self.tokens.append(
            ModelTokens(
                party=party, model=model, input_tokens=input_tokens, output_tokens=output_tokens
            )
        )
