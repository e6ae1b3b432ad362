"""Keeping secrets out of what is stored and shown.

Stage: between the orchestrator and the store in server mode.  An agent's
credentials reach the call (a header, a password) but must never come back in
a run: an agent that echoes a header into an error page, or a SIP peer quoting
a request, would otherwise put the secret into ``run.error`` or an event.
``scrub`` replaces every occurrence of each secret (and of the forms it takes on
the way: a header's bare token, an escaped copy; ``telephony.credentials``) in a
run's text fields, or in any record (a bench's report); ``ScrubbingSink`` does it
to every run on its way to the store.  Logs have their own: ``harness.logs``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel

from harness.models import Run
from harness.store import RunSink
from telephony.credentials import MASK, MIN_SECRET_CHARS, masking

__all__ = ["MASK", "MIN_SECRET_CHARS", "ScrubbingSink", "scrub", "scrub_model", "scrub_text"]

M = TypeVar("M", bound=BaseModel)


def scrub_text(text: str, secrets: Sequence[str]) -> str:
    return masking(secrets)(text)


def _scrub(value: Any, hide: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return hide(value)
    if isinstance(value, list):
        return [_scrub(item, hide) for item in value]
    if isinstance(value, dict):
        return {key: _scrub(item, hide) for key, item in value.items()}
    return value


def scrub_model(record: M, secrets: Sequence[str]) -> M:
    """A copy of ``record`` with every secret masked (``record`` itself if there are none)."""
    if not secrets:
        return record
    hide = masking(secrets)
    return type(record).model_validate(_scrub(record.model_dump(mode="json"), hide))


def scrub(run: Run, secrets: Sequence[str]) -> Run:
    """A copy of ``run`` with every secret masked (``run`` itself if there are none)."""
    return scrub_model(run, secrets)


class ScrubbingSink:
    """A ``RunSink`` that masks ``secrets`` in every run before passing it on."""

    def __init__(self, sink: RunSink, secrets: Sequence[str]) -> None:
        self._sink = sink
        self._secrets = list(secrets)

    async def put(self, run: Run) -> None:
        await self._sink.put(scrub(run, self._secrets))

    def recording_path(self, run_id: str) -> Path:
        return self._sink.recording_path(run_id)
