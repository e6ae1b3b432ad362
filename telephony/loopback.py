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
  agent bound to 127.0.0.1 answers every offer from its request handler);
- ``LoopbackIceMiddleware`` asks for it in every request of one ASGI app (an
  endpoint that only loopback callers reach, sharing a process with calls that
  go elsewhere: the calibration's in-process echo endpoint).  Without it that
  endpoint answered with the machine's other addresses only, and on a host
  whose only interface is ``lo`` with none at all, so its echo call never
  connected.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import aioice.ice

__all__ = ["LoopbackIceMiddleware", "loopback_ice", "restrict_ice_to_loopback"]

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


class LoopbackIceMiddleware:
    """ASGI middleware: the wrapped app's requests gather loopback host candidates only.

    The answer's candidates are gathered inside the request (pipecat's SmallWebRTC
    handler and the light agent answer in it), and tasks it starts inherit the
    context, so the setting reaches them and nothing else in the process.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        with loopback_ice(True):
            await self.app(scope, receive, send)
