"""A dict that forgets: what a long-lived SIP phone keeps about past transactions.

Stage: inside the phone (``phone.py``).  An inbound listener or the reference
agent's phone runs for hours; the ACKs it may have to resend, the INVITEs it may
still see answers for and the server transactions it has answered are needed
for a transaction's lifetime only.  ``Recent`` keeps each entry for ``ttl``
seconds (twice a transaction's timeout by default), checked as it grows.
"""

from __future__ import annotations

import time
from typing import TypeVar

from telephony.sip.transaction import TIMEOUT

__all__ = ["Recent"]

K = TypeVar("K")
V = TypeVar("V")


class Recent(dict[K, V]):
    """A dict that forgets entries older than ``ttl`` seconds, checked as it grows."""

    def __init__(self, ttl: float = 2 * TIMEOUT, check_every: int = 64) -> None:
        super().__init__()
        self._ttl = ttl
        self._check_every = check_every
        self._born: dict[K, float] = {}

    def __setitem__(self, key: K, value: V) -> None:
        super().__setitem__(key, value)
        self._born[key] = time.monotonic()
        if len(self._born) % self._check_every == 0:
            self.prune()

    def prune(self, now: float | None = None) -> None:
        cutoff = (time.monotonic() if now is None else now) - self._ttl
        for key, born in list(self._born.items()):
            if born < cutoff or key not in self:
                del self._born[key]
                self.pop(key, None)
