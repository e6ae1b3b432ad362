"""Agents' credentials at rest: encrypted with a key that never enters the database.

Stage: beside the resource store.  Credentials (SIP passwords, Twilio tokens,
secret headers) go in as a mapping and are kept as one Fernet token
(AES-128-CBC + HMAC-SHA256) in the ``agent_credentials`` table, apart from the
agent's public record.  The key is ``LOOPCALL_SECRET_KEY`` or a random key kept in
the data dir; any string works, it is stretched to a Fernet key with SHA-256.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from cryptography.fernet import Fernet, InvalidToken

from harness.errors import LoopcallError

__all__ = ["CredentialsError", "SecretBox"]


class CredentialsError(LoopcallError):
    """Stored credentials cannot be read back (the key is not the one they were sealed with)."""


class SecretBox:
    """Seal and open credential mappings with one key."""

    def __init__(self, key: str) -> None:
        digest = hashlib.sha256(key.encode()).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(digest))

    def seal(self, values: dict[str, Any]) -> str:
        return self._fernet.encrypt(json.dumps(values, sort_keys=True).encode()).decode()

    def open(self, token: str) -> dict[str, Any]:
        try:
            plain = self._fernet.decrypt(token.encode())
        except InvalidToken as exc:
            raise CredentialsError(
                "stored credentials cannot be decrypted: LOOPCALL_SECRET_KEY is not the key "
                "they were saved with; set it back, or save the agent's credentials again"
            ) from exc
        values: dict[str, Any] = json.loads(plain)
        return values
