"""Keep WebRTC on the loopback interface.

aioice gathers host candidates from every interface *except* 127.0.0.1 and ::1,
so two peers on one machine would talk over its LAN address, and a machine with
no other interface could not connect at all.  For loopback targets (and for the
reference agent bound to 127.0.0.1) both sides restrict host candidates to
127.0.0.1.  aioice has no setting for this: its module-level
``get_host_addresses`` is replaced, process-wide, which is why this lives in one
place and is switched on explicitly.
"""

from __future__ import annotations

import aioice.ice

__all__ = ["restrict_ice_to_loopback"]

_original_get_host_addresses = aioice.ice.get_host_addresses


def _loopback_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    return ["127.0.0.1"] if use_ipv4 else ["::1"]


def restrict_ice_to_loopback(enabled: bool = True) -> None:
    """Make aioice offer only loopback host candidates (or restore its default)."""
    aioice.ice.get_host_addresses = (  # type: ignore[assignment]
        _loopback_addresses if enabled else _original_get_host_addresses
    )
