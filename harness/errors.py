"""The harness's exceptions, and where the other packages' errors stop.

::

    LoopcallError
    +-- CaseFileError      a case or suite file cannot be used (names file and field)
    +-- RunNotFound        no stored run matches an id or prefix
    +-- ResourceNotFound   no stored agent, persona, case or suite has that id
    +-- CredentialsError   an agent's stored credentials cannot be decrypted (wrong key)

    telephony.TelephonyError            raised by telephony/, never past the orchestrator:
    +-- TargetError                     a malformed target URL (the CLI exits 2)
    +-- ConnectError                    unreachable, refused, no answer -> Run failed/error
    +-- ConnectionLost                  no media and no hang-up (agent crashed) -> failed/error
    +-- CallStateError                  an operation the call's state does not allow
    audio.speech.SpeechError            a voice or the STT cannot be used (says how to fix)

aiortc, aiohttp, pipecat and faster-whisper exceptions are translated at the
edge (``raise ... from exc``); anything else that escapes a call is caught once
by the orchestrator and stored as a failed run.
"""

from __future__ import annotations

__all__ = ["CaseFileError", "LoopcallError", "ResourceNotFound", "RunNotFound"]


class LoopcallError(Exception):
    """Base of the harness's own errors."""


class CaseFileError(LoopcallError, ValueError):
    """A case or suite file cannot be used; the message says where and why."""


class RunNotFound(LoopcallError, LookupError):
    """No stored run matches the id (or the prefix is ambiguous)."""


class ResourceNotFound(LoopcallError, LookupError):
    """No stored agent, persona, case or suite has the id."""

    def __init__(self, kind: str, resource_id: str) -> None:
        super().__init__(f"no {kind} {resource_id!r}")
        self.kind = kind
        self.resource_id = resource_id
