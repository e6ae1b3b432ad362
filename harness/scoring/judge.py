"""``rubric``: an LLM judge on an OpenAI-compatible endpoint reads the call.

Stage: before the scorer's sync checks.  ``evaluate_off_loop`` awaits
``Judge.judge`` for the case's rubrics first (HTTP, on the event loop), then
runs every check off the loop with the verdicts in ``CallFacts.rubric_verdicts``;
``check_rubric`` only reads them.  In: the rubric and the call as one
timestamped, two-sided transcript with the tool calls and agent events
(``harness.scoring.transcript``).  Out: a ``Verdict`` whose evidence is the
judge's quotes, found back in their turns, and the tokens the judge spent.

The request is a chat completion at temperature 0 asking for a JSON verdict
``{passed, reason, quotes}``, with ``response_format`` ``json_schema``; an
endpoint that refuses that parameter (HTTP 400/422) is asked again without it and
the verdict parsed from the text, and is not offered it again.  An unreachable
judge, a timeout, an HTTP error, a non-JSON or malformed answer fails *that*
criterion with the reason; nothing here raises into the run.

Verdicts are cached in memory, per ``Judge`` (one per process, held by the run
options), keyed by (model, prompt version, rubric, transcript), at most
``CACHE_SIZE`` of them, least recently used out first.  Not on disk: the key
holds the call's timestamps, so two live calls practically never share one; the
hits are re-scorings of the same call in one process, and a disk cache would be
a second place that keeps what callers said, with its own retention to manage.
Only answered verdicts are kept: a failure is asked again next time.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import openai
from loguru import logger
from openai.types.chat import ChatCompletion, ChatCompletionMessageParam
from openai.types.shared_params import ResponseFormatJSONSchema
from pydantic import BaseModel, Field, StrictBool, ValidationError

from harness.models import Criterion
from harness.scoring.facts import CallFacts, Verdict
from harness.scoring.transcript import evidence_for, render
from harness.settings import JudgeConfig

__all__ = ["CACHE_SIZE", "NOT_CONFIGURED", "Judge", "Judged", "check_rubric", "make_judge"]

CACHE_SIZE = 512
PROMPT_VERSION = "1"  # part of the cache key: a new prompt is a new verdict
MAX_QUOTES = 5
NOT_CONFIGURED = (
    "no LLM judge is configured: set LOOPCALL_JUDGE_BASE_URL (any OpenAI-compatible "
    "endpoint), LOOPCALL_JUDGE_MODEL and, if it needs one, LOOPCALL_JUDGE_API_KEY "
    "(unset, they fall back to the persona's LOOPCALL_LLM_*); see docs/criteria.md"
)
NOTHING_SAID = (
    "the agent's turns have no text (it said nothing, or its speech was not transcribed), "
    "so the judge was not asked"
)
SYSTEM_PROMPT = (
    "You judge recorded phone calls between a company's voice AI agent (AGENT) and a "
    "caller (CALLER). The transcript has one line per turn, with its time from the start "
    "of the call, and the agent's tool calls and reported events (TOOL CALL, AGENT EVENT). "
    "The text was transcribed from audio and may contain small recognition errors.\n"
    "Decide whether the call satisfies the rubric. Judge only from the transcript; when it "
    "does not show the rubric is met, it is not met.\n"
    'Answer with a JSON object only: {"passed": true or false, "reason": "one or two '
    'sentences", "quotes": ["exact words from the transcript that support the verdict"]}. '
    "Quote the transcript verbatim, without the time or the speaker."
)
VERDICT_SCHEMA: ResponseFormatJSONSchema = {
    "type": "json_schema",
    "json_schema": {
        "name": "rubric_verdict",
        "strict": True,
        "schema": {
            "type": "object",
            "properties": {
                "passed": {"type": "boolean"},
                "reason": {"type": "string"},
                "quotes": {"type": "array", "items": {"type": "string"}},
            },
            "required": ["passed", "reason", "quotes"],
            "additionalProperties": False,
        },
    },
}


class RubricVerdict(BaseModel):
    """What the judge must answer."""

    passed: StrictBool
    reason: str = Field(min_length=1)
    quotes: list[str] = Field(default_factory=list)


@dataclass(frozen=True)
class Judged:
    """The verdict on each rubric, and the tokens the judge spent on them."""

    verdicts: dict[str, Verdict] = field(default_factory=dict)
    input_tokens: int = 0
    output_tokens: int = 0


class _Failure(Exception):
    """The judge gave no usable verdict: the sentence says why; tokens spent anyway."""

    def __init__(self, reason: str, input_tokens: int = 0, output_tokens: int = 0) -> None:
        super().__init__(reason)
        self.input_tokens, self.output_tokens = input_tokens, output_tokens


class Judge:
    """Asks one OpenAI-compatible endpoint for rubric verdicts, with a bounded cache."""

    def __init__(self, config: JudgeConfig, *, cache_size: int = CACHE_SIZE) -> None:
        self.config = config
        self._cache: OrderedDict[str, RubricVerdict] = OrderedDict()
        self._cache_size = cache_size
        self._schema = True  # offer response_format until the endpoint refuses it
        self.where = f"{config.base_url or 'the OpenAI API'} (model {config.model})"

    async def judge(self, rubrics: Sequence[str], facts: CallFacts) -> Judged:
        """A verdict for each distinct rubric over the call; never raises."""
        wanted = list(dict.fromkeys(rubrics))
        if not wanted:
            return Judged()
        if not any(t.role == "agent" and t.text.strip() for t in facts.turns):  # no tokens
            silent = Verdict(False, NOTHING_SAID)
            return Judged(verdicts=dict.fromkeys(wanted, silent))
        try:
            transcript = render(facts)
            key = self.config.api_key.get_secret_value() if self.config.api_key else "unused"
            async with openai.AsyncOpenAI(
                base_url=self.config.base_url,
                api_key=key,  # local endpoints often need none
                timeout=self.config.timeout_s,
                max_retries=self.config.max_retries,
            ) as client:
                answers = await asyncio.gather(
                    *(self._one(client, rubric, transcript, facts) for rubric in wanted)
                )
        except Exception as exc:  # e.g. a base URL the client refuses: fail the rubrics only
            logger.exception(f"rubric judge at {self.where} failed")
            failed = Verdict(False, f"the judge gave no verdict: {type(exc).__name__}: {exc}")
            return Judged(verdicts=dict.fromkeys(wanted, failed))
        return Judged(
            verdicts={
                rubric: verdict for rubric, (verdict, _, _) in zip(wanted, answers, strict=True)
            },
            input_tokens=sum(a[1] for a in answers),
            output_tokens=sum(a[2] for a in answers),
        )

    async def _one(
        self, client: openai.AsyncOpenAI, rubric: str, transcript: str, facts: CallFacts
    ) -> tuple[Verdict, int, int]:
        key = hashlib.sha256(
            json.dumps([self.config.model, PROMPT_VERSION, rubric, transcript]).encode()
        ).hexdigest()
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            return self._verdict(cached, facts, cached=True), 0, 0
        try:
            answer, tokens_in, tokens_out = await self._ask(client, rubric, transcript)
        except _Failure as exc:
            reason = f"the judge gave no verdict: {exc}"
            return Verdict(False, reason), exc.input_tokens, exc.output_tokens
        except Exception as exc:  # a judge must never fail the run: this criterion fails
            logger.exception(f"rubric judge at {self.where} failed")
            return Verdict(False, f"the judge gave no verdict: {type(exc).__name__}: {exc}"), 0, 0
        self._cache[key] = answer
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return self._verdict(answer, facts), tokens_in, tokens_out

    async def _ask(
        self, client: openai.AsyncOpenAI, rubric: str, transcript: str
    ) -> tuple[RubricVerdict, int, int]:
        messages: list[ChatCompletionMessageParam] = [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": f"Rubric: {rubric}\n\nTranscript:\n{transcript}"},
        ]

        async def ask(schema: bool) -> ChatCompletion:
            return await client.chat.completions.create(
                model=self.config.model,
                messages=messages,
                temperature=0,
                max_tokens=800,
                response_format=VERDICT_SCHEMA if schema else openai.omit,
            )

        try:
            try:
                response = await ask(self._schema)
            except (openai.BadRequestError, openai.UnprocessableEntityError):
                if not self._schema:
                    raise
                self._schema = False  # this endpoint refuses json_schema: parse the text
                response = await ask(False)
        except openai.APITimeoutError as exc:
            tries = self.config.max_retries + 1
            each = f" ({tries} tries)" if tries > 1 else ""
            raise _Failure(
                f"{self.where} did not answer within {self.config.timeout_s:g} s{each}"
            ) from exc
        except openai.APIConnectionError as exc:
            raise _Failure(f"could not reach {self.where}: {exc}") from exc
        except openai.APIStatusError as exc:
            said = exc.body.get("message") if isinstance(exc.body, dict) else None
            raise _Failure(
                f"{self.where} answered HTTP {exc.status_code}: {said or exc.message}"
            ) from exc
        except openai.APIError as exc:
            raise _Failure(f"{self.where} failed: {exc}") from exc
        usage = response.usage
        tokens_in = usage.prompt_tokens if usage is not None else 0
        tokens_out = usage.completion_tokens if usage is not None else 0
        if not response.choices:
            raise _Failure(f"{self.where} returned no choices", tokens_in, tokens_out)
        text = response.choices[0].message.content or ""
        return _parse(text, self.where, tokens_in, tokens_out), tokens_in, tokens_out

    def _verdict(self, answer: RubricVerdict, facts: CallFacts, *, cached: bool = False) -> Verdict:
        quotes = [q for q in answer.quotes if q.strip()][:MAX_QUOTES]
        note = ", cached" if cached else ""
        reason = f"judge ({self.config.model}{note}): {answer.reason}"
        return Verdict(answer.passed, reason, [evidence_for(q, facts) for q in quotes])


def make_judge(config: JudgeConfig | None) -> Judge | None:
    """The process's judge, or None when none is configured (``Settings.judge_config``)."""
    return None if config is None else Judge(config)


def check_rubric(criterion: Criterion, facts: CallFacts) -> Verdict:
    """``rubric``: the judge's verdict, awaited beforehand into ``facts.rubric_verdicts``."""
    assert criterion.rubric is not None
    return facts.rubric_verdicts.get(criterion.rubric) or Verdict(False, NOT_CONFIGURED)


def _parse(text: str, where: str, tokens_in: int, tokens_out: int) -> RubricVerdict:
    """The verdict in the judge's text: the JSON itself, fenced, or the outermost {...}."""
    shown = text.strip()[:200]
    data: Any = None
    for candidate in (text, *re.findall(r"```(?:json)?\s*(.*?)```", text, re.S), _braces(text)):
        try:
            data = json.loads(candidate)
            break
        except (TypeError, ValueError):
            continue
    if not isinstance(data, dict):
        raise _Failure(f"{where} answered without a JSON verdict: {shown!r}", tokens_in, tokens_out)
    try:
        return RubricVerdict.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'verdict'}: {e['msg']}" for e in exc.errors()
        )
        raise _Failure(
            f"{where} gave a malformed verdict ({problems}): {shown!r}", tokens_in, tokens_out
        ) from exc


def _braces(text: str) -> str:
    start, end = text.find("{"), text.rfind("}")
    return text[start : end + 1] if 0 <= start < end else ""
