"""Logs without secrets: the sink every loopcall process writes its log through.

Stage: the entry points (the CLI's commands, the controller).  Loguru's default
handler prints the values of a traceback's variables (``diagnose``), and an
exception's message may quote what a peer echoed; either may hold a credential.
So loopcall logs only through ``redacting_sink``: no variable values, and every
secret ``SECRETS`` holds (the settings' ones, each stored agent's once a run or a
bench opens them) masked in the whole formatted record, traceback included.  A
patcher masks the message for any other sink too.  ``configure`` sets this up
for a command; ``protect`` for a controller built by ``create_app`` in someone
else's process (it replaces loguru's default handler, if it is still there).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TextIO

from loguru import logger

from telephony.credentials import masking

if TYPE_CHECKING:
    from loguru import Message, Record

__all__ = ["SECRETS", "SecretRegistry", "configure", "protect", "redacting_sink"]

LOG_FORMAT = (
    "<green>{time:YYYY-MM-DD HH:mm:ss.SSS}</green> | <level>{level: <8}</level> | "
    "<cyan>{name}</cyan>:<cyan>{function}</cyan>:<cyan>{line}</cyan> - <level>{message}</level>"
)


class SecretRegistry:
    """The secrets this process must keep out of its logs, by owner (replaced, not piled up)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # loguru formats records in the logging thread
        self._held: dict[str, tuple[str, ...]] = {}
        self._hide: Callable[[str], str] = masking(())

    def hold(self, owner: str, values: Iterable[str]) -> None:
        """Mask ``values`` from now on (an owner's earlier values are replaced)."""
        with self._lock:
            self._held[owner] = tuple(v for v in values if v)
            self._hide = masking(v for held in self._held.values() for v in held)

    def release(self, owner: str) -> None:
        """Stop masking ``owner``'s values (a run's token once the run is over)."""
        with self._lock:
            if self._held.pop(owner, None) is not None:
                self._hide = masking(v for held in self._held.values() for v in held)

    def values(self) -> list[str]:
        with self._lock:
            return [v for held in self._held.values() for v in held]

    def scrub(self, text: str) -> str:
        return self._hide(text)


SECRETS = SecretRegistry()


def redacting_sink(stream: TextIO) -> Callable[[Message], None]:
    """A loguru sink that writes each formatted record to ``stream`` with secrets masked."""

    def write(message: Message) -> None:
        stream.write(SECRETS.scrub(str(message)))
        stream.flush()

    return write


def _mask_message(record: Record) -> None:
    record["message"] = SECRETS.scrub(record["message"])


def configure(
    level: int | str,
    *,
    filter: Callable[[Record], bool] | None = None,
    stream: TextIO | None = None,
) -> None:
    """Log to ``stream`` (stderr) from ``level`` up, secrets masked, no variable values."""
    out = stream or sys.stderr
    logger.remove()
    logger.configure(patcher=_mask_message)
    options: dict[str, Any] = {"filter": filter} if filter is not None else {}
    logger.add(
        redacting_sink(out),
        level=level,
        format=LOG_FORMAT,
        colorize=out.isatty(),
        diagnose=False,
        **options,
    )


def protect() -> None:
    """In a process that did not ``configure``: mask secrets in every sink's message, and
    replace loguru's default handler (variable values in tracebacks) with ours."""
    logger.configure(patcher=_mask_message)
    try:
        logger.remove(0)  # loguru's default handler; gone if the application set its own
    except ValueError:
        return
    logger.add(
        redacting_sink(sys.stderr),
        level="DEBUG",
        format=LOG_FORMAT,
        colorize=sys.stderr.isatty(),
        diagnose=False,
    )
