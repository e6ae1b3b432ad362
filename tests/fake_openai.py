"""A local OpenAI-compatible chat-completions endpoint for the tests (no cloud is reachable).

It answers ``POST /v1/chat/completions`` as the OpenAI API documents it: the
chat.completion object with ``usage``, the error object with its HTTP status,
bearer auth recorded.  Switches play the endpoints a judge meets in the wild: one
that refuses ``response_format`` (HTTP 400, as servers without structured output
do), one that never answers (a hung server, released when the test ends), one
that answers text that is not JSON.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class FakeOpenAI:
    """Replies with queued contents (else ``default``) and records every request."""

    replies: list[str] = field(default_factory=list)
    default: str = "Okay."
    status: int = 200
    refuse_response_format: bool = False
    hang: bool = False
    prompt_tokens: int = 10
    completion_tokens: int = 5
    requests: list[dict[str, Any]] = field(default_factory=list)
    auth: list[str | None] = field(default_factory=list)
    base_url: str = ""
    released: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append(body)
        self.auth.append(request.headers.get("Authorization"))
        if self.hang:
            await self.released.wait()
        if self.status != 200:
            return self._error(self.status, "Incorrect API key provided", "invalid_api_key")
        if self.refuse_response_format and "response_format" in body:
            return self._error(400, "Invalid parameter: 'response_format'.", "invalid_parameter")
        content = self.replies.pop(0) if self.replies else self.default
        return web.json_response(
            {
                "id": f"chatcmpl-{len(self.requests)}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": "stop",
                        "message": {"role": "assistant", "content": content},
                    }
                ],
                "usage": {
                    "prompt_tokens": self.prompt_tokens,
                    "completion_tokens": self.completion_tokens,
                    "total_tokens": self.prompt_tokens + self.completion_tokens,
                },
            }
        )

    @staticmethod
    def _error(status: int, message: str, code: str) -> web.Response:
        error = {"message": message, "type": "invalid_request_error", "param": None, "code": code}
        return web.json_response({"error": error}, status=status)
