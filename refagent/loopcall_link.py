"""The reference agent's line back to loopcall: its mock tools and its event webhook.

Stage: beside the agent's turns, never in the audio path.  A call may carry a
handover (``Handover``): the run's tools URL, events URL and token, in the WebRTC
offer's ``request_data``, a media stream's ``customParameters``
(``loopcall_tools_url``, ``loopcall_events_url``, ``loopcall_token``,
``loopcall_run_id``) or a SIP INVITE's ``X-Loopcall-*`` headers.
``LoopcallLink`` calls a tool (``POST {tools_url}/{name}``, JSON in and out) and
reports events (``POST {events_url}`` with ``X-Loopcall-Token``) from background
tasks with a short timeout; a failure is logged and the agent carries on with
what it knows.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from loguru import logger

from runtime.tasks import spawn

__all__ = ["Handover", "LoopcallLink"]

TOOL_TIMEOUT_S = 3.0
REPORT_TIMEOUT_S = 3.0
CLOSE_WAIT_S = 2.0  # what close() gives the last reports to leave


@dataclass(frozen=True)
class Handover:
    """What a call told the agent about its run."""

    run_id: str | None = None
    tools_url: str | None = None
    events_url: str | None = None
    token: str | None = None

    @classmethod
    def from_params(cls, params: Any) -> Handover:
        """From ``request_data`` or ``customParameters`` (``loopcall_*`` keys)."""
        if not isinstance(params, Mapping):
            return cls()
        return cls._of(lambda key: params.get(f"loopcall_{key}"))

    @classmethod
    def from_headers(cls, get: Callable[[str], str | None]) -> Handover:
        """From a SIP INVITE's headers: ``X-Loopcall-Run-Id``, ``-Tools-Url``, ``-Events-Url``
        and ``-Token``."""
        names = {"run_id": "Run-Id", "tools_url": "Tools-Url", "events_url": "Events-Url"}
        names["token"] = "Token"
        return cls._of(lambda key: get(f"X-Loopcall-{names[key]}"))

    @classmethod
    def _of(cls, get: Callable[[str], Any]) -> Handover:
        def text(key: str) -> str | None:
            value = get(key)
            return str(value) if value else None

        return cls(text("run_id"), text("tools_url"), text("events_url"), text("token"))


class LoopcallLink:
    """One call's tool calls and event reports (one HTTP session, opened on first use)."""

    def __init__(self, handover: Handover) -> None:
        self.handover = handover
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def has_tools(self) -> bool:
        return self.handover.tools_url is not None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session

    async def call_tool(self, name: str, args: dict[str, Any]) -> Any | None:
        """The tool's JSON answer, or None when there is no tools URL or the call failed."""
        if self.handover.tools_url is None:
            return None
        url = f"{self.handover.tools_url}/{name}"
        try:
            async with self._client().post(
                url, json=args, timeout=aiohttp.ClientTimeout(total=TOOL_TIMEOUT_S)
            ) as response:
                answer = await response.json(content_type=None)
                if response.status != 200:
                    logger.warning(f"reference agent: tool {name} answered {response.status}")
                    return None
                return answer
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            logger.warning(f"reference agent: tool {name} failed: {type(exc).__name__}: {exc}")
            return None

    def report(self, kind: str, name: str, args: dict[str, Any] | None = None) -> None:
        """Report an event (``node``, ``log``, ...) now, in the background."""
        if self.handover.events_url is None or self.handover.token is None:
            return
        event = {"type": kind, "name": name, "args": args or {}, "at": time.time()}
        spawn(self._post([event]), owner=self._tasks)

    async def _post(self, events: list[dict[str, Any]]) -> None:
        assert self.handover.events_url is not None and self.handover.token is not None
        try:
            async with self._client().post(
                self.handover.events_url,
                json=events,
                headers={"X-Loopcall-Token": self.handover.token},
                timeout=aiohttp.ClientTimeout(total=REPORT_TIMEOUT_S),
            ) as response:
                if response.status >= 300:
                    logger.warning(f"reference agent: events answered {response.status}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            logger.warning(f"reference agent: reporting events failed: {exc}")

    async def close(self) -> None:
        """Let the last reports leave (briefly), then close the session."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=CLOSE_WAIT_S)
        for task in list(self._tasks):
            task.cancel()
        if self._session is not None:
            with contextlib.suppress(Exception):
                await self._session.close()
