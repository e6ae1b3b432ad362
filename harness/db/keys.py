"""API keys: create (shown once), verify, list, revoke.  Only SHA-256 hashes are stored.

The keys are 256 random bits, so a fast hash is enough: there is nothing to
brute-force that a slow hash would protect.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from harness.db.tables import ApiKeyRow
from harness.errors import LoopcallError
from harness.models import utcnow

__all__ = ["ApiKey", "ApiKeyError", "KeyRepository"]

PREFIX = "lc_"


class ApiKeyError(LoopcallError):
    """A key cannot be created or revoked (duplicate or unknown name)."""


@dataclass(frozen=True)
class ApiKey:
    name: str
    prefix: str
    created_at: datetime
    revoked_at: datetime | None


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class KeyRepository:
    def __init__(self, engine: AsyncEngine) -> None:
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)

    async def create(self, name: str) -> str:
        """A new key for ``name``; the returned secret is not stored anywhere."""
        key = PREFIX + secrets.token_urlsafe(32)
        row = ApiKeyRow(
            id=str(uuid.uuid4()),
            name=name,
            prefix=key[:10],
            key_hash=_hash(key),
            created_at=utcnow(),
        )
        try:
            async with self._sessions.begin() as session:
                session.add(row)
        except IntegrityError as exc:
            raise ApiKeyError(f"a key named {name!r} already exists") from exc
        return key

    async def verify(self, key: str) -> bool:
        async with self._sessions() as session:
            row = await session.scalar(select(ApiKeyRow).where(ApiKeyRow.key_hash == _hash(key)))
        return row is not None and row.revoked_at is None

    async def list(self) -> list[ApiKey]:
        async with self._sessions() as session:
            rows = await session.scalars(select(ApiKeyRow).order_by(ApiKeyRow.created_at))
            return [ApiKey(r.name, r.prefix, r.created_at, r.revoked_at) for r in rows]

    async def revoke(self, name: str) -> None:
        async with self._sessions.begin() as session:
            row = await session.scalar(select(ApiKeyRow).where(ApiKeyRow.name == name))
            if row is None:
                raise ApiKeyError(f"no key named {name!r}")
            row.revoked_at = utcnow()
