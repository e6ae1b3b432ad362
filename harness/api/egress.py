"""The URLs a request gives, against the controller's egress policy: a 422 naming the field.

Stage: the API's edge.  Targets (an agent's address, a run's or a bench's target)
and webhook URLs are checked when they are given, so a refused host is a clear
422 at once rather than a failed run later; the dial and the webhook delivery
check again where they connect (a name may resolve elsewhere by then).  The
policy is ``telephony.egress`` and ``docs/security.md``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from fastapi.exceptions import RequestValidationError

from telephony import parse_target
from telephony.egress import EgressPolicy

__all__ = ["check_urls"]


def _host(url: str) -> str | None:
    """The host a URL makes the controller connect to (None: a phone number)."""
    if url.lower().startswith(("http://", "https://")):
        return urlsplit(url).hostname or ""
    target = parse_target(url)
    return None if target.channel == "tel" else target.host


async def check_urls(policy: EgressPolicy, urls: Sequence[tuple[str, str]]) -> None:
    """422 for every ``(field, url)`` whose host ``policy`` refuses."""
    if not policy.checks:
        return
    errors: list[dict[str, Any]] = []
    reasons: dict[str, str | None] = {}
    for field, url in dict.fromkeys(urls):
        host = _host(url)
        if host is None:
            continue
        if host not in reasons:
            reasons[host] = await policy.check(host)
        if reasons[host] is not None:
            errors.append(
                {"loc": ("body", field), "type": "value_error", "input": url, "msg": reasons[host]}
            )
    if errors:
        raise RequestValidationError(errors)
