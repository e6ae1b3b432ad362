"""The LLM brain: the persona's next line from any OpenAI-compatible chat endpoint.

Stage: inside the persona bot, where ``ScriptedBrain`` sits by default.  The
persona's identity, traits, scenario and script become the system prompt; what
the agent said arrives as the "user" side of the chat and the model's answer is
what the persona says.  The model ends the call by appending ``[END_CALL]``.
Any endpoint that speaks the OpenAI chat-completions API works (OpenAI, a vLLM or
llama.cpp server, Ollama's ``/v1``, ...): it is configuration, not code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import openai
from openai.types.chat import ChatCompletionMessageParam

from personas.brains import BrainError, Reply
from personas.spec import CallerCase

__all__ = ["END_CALL", "LLMBrain", "LLMConfig", "system_prompt"]

END_CALL = "[END_CALL]"
OPENING = "(The call has just connected and the agent has not spoken yet. You speak first.)"


@dataclass(frozen=True)
class LLMConfig:
    """Where the persona's LLM answers."""

    base_url: str | None
    api_key: str | None
    model: str
    temperature: float = 0.6
    timeout_s: float = 15.0


def system_prompt(case: CallerCase) -> str:
    """The persona's instructions, built from the case."""
    persona = case.persona
    parts = [
        "You are role-playing a CALLER on a phone call with a company's voice agent. "
        "Stay in character for the whole call.",
        f"Who you are: {persona.name}. {persona.identity_prompt}".strip(),
    ]
    if persona.description:
        parts.append(f"About you: {persona.description}")
    if case.scenario:
        parts.append(f"Scenario: {case.scenario}")
    traits = {k: v for k, v in persona.behavior_traits.items() if k != "goal"}
    if traits:
        parts.append("Your manner: " + ", ".join(f"{k}: {v}" for k, v in traits.items()) + ".")
    if goal := persona.behavior_traits.get("goal"):
        parts.append(f"Your goal: {goal}")
    if case.script:
        lines = [
            f'- when the agent talks about "{line.when}": {line.say}'
            if line.when
            else f"- {line.say}"
            for line in case.script
            if line.say  # the LLM brain speaks; key presses are for scripted personas
        ]
        parts.append("Things you want to say, roughly in this order:\n" + "\n".join(lines))
    parts.append(
        f"Speak in {persona.language}, like a person on the phone: one or two short sentences, "
        "no lists, no stage directions, no emojis. Never say you are an AI or that this is a "
        f"test. When your goal is met or the agent ends the conversation, say a short goodbye "
        f"and append {END_CALL}."
    )
    return "\n\n".join(parts)


class LLMBrain:
    """Keeps the conversation and asks the model for each persona turn."""

    def __init__(self, case: CallerCase, config: LLMConfig, *, client: Any = None) -> None:
        self._config = config
        self._client = client or openai.AsyncOpenAI(
            base_url=config.base_url,
            api_key=config.api_key or "unused",  # local endpoints often need none
            timeout=config.timeout_s,
            max_retries=1,
        )
        self._messages: list[ChatCompletionMessageParam] = [
            {"role": "system", "content": system_prompt(case)}
        ]
        self._goodbye_line = case.goodbye
        self.max_turns = case.max_turns
        self.turns_taken = 0
        self.input_tokens = 0  # as the endpoint reports them (its ``usage``), summed
        self.output_tokens = 0

    @property
    def model(self) -> str:
        return self._config.model

    @property
    def messages(self) -> list[ChatCompletionMessageParam]:
        return list(self._messages)

    async def next_reply(self, agent_said: str) -> Reply:
        if self.turns_taken >= self.max_turns - 1:
            return self.goodbye("max_turns")
        self.turns_taken += 1
        self._messages.append({"role": "user", "content": agent_said.strip() or OPENING})
        where = f"{self._config.base_url or 'the OpenAI API'} (model {self._config.model})"
        try:
            response = await self._client.chat.completions.create(
                model=self._config.model,
                messages=self._messages,
                temperature=self._config.temperature,
                max_tokens=160,
            )
        except openai.APIStatusError as exc:
            raise BrainError(
                f"LLM brain: {where} answered HTTP {exc.status_code}: {exc.message}"
            ) from exc
        except openai.APIError as exc:
            raise BrainError(f"LLM brain: {where} failed: {exc}") from exc
        usage = getattr(response, "usage", None)
        if usage is not None:
            self.input_tokens += int(getattr(usage, "prompt_tokens", 0) or 0)
            self.output_tokens += int(getattr(usage, "completion_tokens", 0) or 0)
        if not response.choices:
            raise BrainError(f"LLM brain: {where} returned no choices")
        text = (response.choices[0].message.content or "").strip()
        hang_up = END_CALL in text
        text = " ".join(text.replace(END_CALL, " ").split())
        if not text:
            text = self._goodbye_line if hang_up else "Sorry, could you say that again?"
        self._messages.append({"role": "assistant", "content": text})
        return Reply(text, hang_up=hang_up, reason="persona_goodbye" if hang_up else None)

    def goodbye(self, reason: Literal["persona_goodbye", "max_turns"]) -> Reply:
        self.turns_taken += 1
        self._messages.append({"role": "assistant", "content": self._goodbye_line})
        return Reply(self._goodbye_line, hang_up=True, reason=reason)
