"""What every command shares: the consoles, settings and case files read or explained.

Stage: under each command module of the CLI.  A command that cannot go on prints
one line saying why (``error: ...``) and returns 2; nothing here raises at the user.
"""

from __future__ import annotations

import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

from harness.cases import CaseFileError, LoadedCases, load_cases
from runtime.sockets import tcp_listener

if TYPE_CHECKING:
    from harness.settings import Settings
    from telephony.twilio_phone import TwilioAccount

__all__ = [
    "EXAMPLES",
    "console",
    "err",
    "listen_or_say",
    "load_or_say",
    "settings_or_say",
    "twilio_account_or_say",
]

console = Console(highlight=False, width=None if sys.stdout.isatty() else 150)
err = Console(stderr=True, highlight=False)
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def load_or_say(path: Path) -> LoadedCases | None:
    try:
        return load_cases(path)
    except CaseFileError as exc:
        err.print(f"[red]error:[/red] {exc}", markup=True)
        return None


def settings_or_say() -> Settings | None:
    """``LOOPCALL_*`` settings, or None after printing what is wrong with them."""
    from pydantic import ValidationError

    from harness.logs import SECRETS
    from harness.pricing import PriceFileError, prices_at
    from harness.settings import Settings

    try:
        settings = Settings()
    except ValidationError as exc:
        for error in exc.errors():
            name = "LOOPCALL_" + "_".join(str(p) for p in error["loc"]).upper()
            err.print(f"[red]error:[/red] {name}: {error['msg']}")
        return None
    SECRETS.hold("settings", settings.secret_values())  # never in a log line
    try:
        prices_at(settings.prices)
    except PriceFileError as exc:
        err.print(f"[red]error:[/red] LOOPCALL_PRICES: {exc}")
        return None
    return settings


def twilio_account_or_say(settings: Settings) -> TwilioAccount | None:
    """The Twilio account for tel: targets, or None after saying what to set."""
    account = settings.twilio_account()
    if account is None:
        err.print(
            "[red]error:[/red] tel: targets place calls through Twilio: set "
            "LOOPCALL_TWILIO_ACCOUNT_SID, LOOPCALL_TWILIO_AUTH_TOKEN, "
            "LOOPCALL_TWILIO_FROM_NUMBER and LOOPCALL_PUBLIC_BASE_URL (see docs/channels.md)"
        )
    return account


def listen_or_say(host: str, port: int) -> socket.socket | None:
    """A listening socket, or None after saying why it could not be had."""
    try:
        return tcp_listener(host, port)
    except OSError as exc:
        err.print(f"[red]error:[/red] cannot listen on {host}:{port}: {exc.strerror}")
        return None
