"""Keep WebRTC on the loopback interface when the peer is on this machine.

aioice gathers host candidates from every interface *except* 127.0.0.1 and ::1,
so two peers on one machine would talk over its LAN address, and a machine with
no other interface could not connect at all.  aioice has no setting for this:
its module-level ``get_host_addresses`` is replaced, once, by one that offers
only loopback addresses when asked to:

- ``loopback_ice(True)`` asks for it within one block (a context variable, so a
  loopback call and a remote call in the same process do not affect each other:
  aioice gathers inside the task that sets the local description);
- ``restrict_ice_to_loopback()`` makes it the process default (the reference
  agent bound to 127.0.0.1 answers every offer from its request handler).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import aioice.ice

__all__ = ["loopback_ice", "restrict_ice_to_loopback"]

_original_get_host_addresses = aioice.ice.get_host_addresses
_scoped: ContextVar[bool | None] = ContextVar("loopcall_loopback_ice", default=None)
_process_default = False


def _host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    scoped = _scoped.get()
    loopback_only = _process_default if scoped is None else scoped
    if not loopback_only:
        return _original_get_host_addresses(use_ipv4=use_ipv4, use_ipv6=use_ipv6)
    return ["127.0.0.1"] if use_ipv4 else ["::1"]


def _install() -> None:
    aioice.ice.get_host_addresses = _host_addresses  # type: ignore[assignment]


def restrict_ice_to_loopback(enabled: bool = True) -> None:
    """Make loopback-only host candidates this process's default (or undo it)."""
    global _process_default
    _process_default = enabled
    _install()


@contextmanager
def loopback_ice(enabled: bool) -> Iterator[None]:
    """Within this block (and the tasks it starts), offer loopback candidates only if enabled."""
    _install()
    token = _scoped.set(enabled)
    try:
        yield
    finally:
        _scoped.reset(token)
