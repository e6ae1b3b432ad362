"""Keeping secrets out of what is stored and shown.

Stage: between the orchestrator and the store in server mode.  An agent's
credentials reach the call (a header, a password) but must never come back in
a run: an agent that echoes a header into an error page, or a SIP peer quoting
a request, would otherwise put the secret into ``run.error`` or an event.
``scrub`` replaces every occurrence of each secret in a run's text fields, and
``ScrubbingSink`` does it to every run on its way to the store.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.models import Run
from harness.store import RunSink

__all__ = ["MASK", "ScrubbingSink", "scrub", "scrub_text"]

MASK = "[redacted]"
MIN_SECRET_CHARS = 4  # shorter values would mask ordinary words; credentials are longer


def scrub_text(text: str, secrets: Sequence[str]) -> str:
    for secret in sorted(secrets, key=len, reverse=True):  # longest first: no partial masks
        if len(secret) >= MIN_SECRET_CHARS:
            text = text.replace(secret, MASK)
    return text


def _scrub(value: Any, secrets: Sequence[str]) -> Any:
    if isinstance(value, str):
        return scrub_text(value, secrets)
    if isinstance(value, list):
        return [_scrub(item, secrets) for item in value]
    if isinstance(value, dict):
        return {key: _scrub(item, secrets) for key, item in value.items()}
    return value


def scrub(run: Run, secrets: Sequence[str]) -> Run:
    """A copy of ``run`` with every secret masked (``run`` itself if there are none)."""
    if not secrets:
        return run
    return Run.model_validate(_scrub(run.model_dump(mode="json"), secrets))


class ScrubbingSink:
    """A ``RunSink`` that masks ``secrets`` in every run before passing it on."""

    def __init__(self, sink: RunSink, secrets: Sequence[str]) -> None:
        self._sink = sink
        self._secrets = list(secrets)

    async def put(self, run: Run) -> None:
        await self._sink.put(scrub(run, self._secrets))

    def recording_path(self, run_id: str) -> Path:
        return self._sink.recording_path(run_id)
