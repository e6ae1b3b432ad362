"""Completion webhooks: when a run ends, POST it to the URL its creator gave, signed.

Signature (as Stripe does it): ``X-Loopcall-Signature: t=<unix seconds>,v1=<hex>``
where ``v1 = HMAC-SHA256(secret, f"{t}.{body}")``; a receiver recomputes it and
rejects old timestamps.  Deliveries that fail (network error or a non-2xx answer)
are retried with exponential backoff, then logged and given up.  A redirect is
a failure, never followed; the URL's host must pass the egress policy where the
delivery connects (docs/security.md), and a refused one is not retried.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from loguru import logger

from harness.models import Run
from runtime.tasks import spawn
from telephony import AddressRefused, ConnectError, EgressPolicy

__all__ = ["SIGNATURE_HEADER", "WebhookSender", "sign", "verify"]

SIGNATURE_HEADER = "X-Loopcall-Signature"


def sign(secret: str, body: bytes, timestamp: int) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


def verify(secret: str, body: bytes, header: str, *, tolerance_s: int = 300) -> bool:
    """What a receiver does: check the HMAC and that the timestamp is recent."""
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    expected = sign(secret, body, timestamp)
    return abs(time.time() - timestamp) <= tolerance_s and hmac.compare_digest(expected, header)


class WebhookSender:
    """Delivers run-ended notifications in owned background tasks."""

    def __init__(
        self,
        secret: str,
        *,
        attempts: int = 5,
        backoff_s: float = 1.0,
        egress: EgressPolicy | None = None,
    ) -> None:
        self._secret = secret
        self._attempts = attempts
        self._backoff_s = backoff_s
        self._egress = egress or EgressPolicy.of()
        self._tasks: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None

    def send(self, url: str, run: Run) -> None:
        spawn(self._deliver(url, run), name=f"webhook-{run.id[:8]}", owner=self._tasks)

    async def _deliver(self, url: str, run: Run) -> None:
        problem = await self.deliver(url, run)
        if problem is not None:
            logger.warning(f"webhook for run {run.id} to {_shown(url)} gave up: {problem}")

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    async def deliver(self, url: str, run: Run) -> str | None:
        """POST the run-ended event to ``url``, retrying; None once delivered, else why not."""
        payload: dict[str, Any] = {"event": "run.ended", "run": run.model_dump(mode="json")}
        body = json.dumps(payload).encode()
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=10), connector=self._egress.connector()
            )
        problem = ""
        for attempt in range(self._attempts):
            if attempt:
                await asyncio.sleep(self._backoff_s * 2 ** (attempt - 1))
            headers = {
                "Content-Type": "application/json",
                SIGNATURE_HEADER: sign(self._secret, body, int(time.time())),
                "X-Loopcall-Delivery-Attempt": str(attempt + 1),
            }
            try:
                self._egress.check_host(urlsplit(url).hostname or "")  # aiohttp: names only
                async with self._session.post(
                    url, data=body, headers=headers, allow_redirects=False
                ) as response:
                    if 200 <= response.status < 300:
                        return None
                    problem = f"HTTP {response.status}"
                    if 300 <= response.status < 400:
                        problem += " (a redirect: not followed)"
            except AddressRefused as exc:
                return f"refused: {exc}"  # the policy will not change on a retry
            except (aiohttp.ClientError, ConnectError, TimeoutError) as exc:
                problem = str(exc) or type(exc).__name__
        return f"{problem} ({self._attempts} attempts)"


def _shown(url: str) -> str:
    """``url`` for a log line: a webhook's query or user part often carries a token."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"
