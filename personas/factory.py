"""The brain a case asks for: scripted (offline, the default) or an LLM endpoint.

Stage: where the orchestrator equips the persona, before the call.
"""

from __future__ import annotations

from personas.brains import Brain, BrainError, EventFn, ScriptedBrain
from personas.llm_brain import LLMBrain, LLMConfig
from personas.spec import CallerCase

__all__ = ["make_brain"]


def make_brain(
    case: CallerCase, llm: LLMConfig | None, *, on_event: EventFn | None = None
) -> Brain:
    """The brain the case asks for; an LLM brain needs a configured endpoint.

    ``on_event(kind, detail)`` hears what the brain has to say for the run's timeline
    (a script line skipped because its pattern timed out).
    """
    if case.brain == "scripted":
        return ScriptedBrain.for_case(case, on_event=on_event)
    if llm is None:
        raise BrainError(
            f"case {case.name!r} uses the LLM brain, but no endpoint is configured: set "
            "LOOPCALL_LLM_BASE_URL (any OpenAI-compatible /v1 URL) and/or LOOPCALL_LLM_API_KEY"
        )
    return LLMBrain(case, llm)
