"""``loopcall keys create|list|revoke``: the controller's API keys.

Stage: beside the controller; a key is printed once, at creation, and stored hashed.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from harness.cli.common import console, err, settings_or_say

__all__ = ["add_parser", "execute"]


def add_parser(sub: Any) -> None:
    keys = sub.add_parser("keys", help="API keys for the controller")
    keys.add_argument("action", choices=["create", "list", "revoke"])
    keys.add_argument("name", nargs="?", help="the key's name (create, revoke)")
    keys.add_argument("--db", default=None, help="the controller's database URL")
    keys.set_defaults(handler=execute)


def execute(args: argparse.Namespace) -> int:
    from harness.db import create_engine, migrate
    from harness.db.keys import ApiKeyError, KeyRepository

    settings = settings_or_say()
    if settings is None:
        return 2
    if args.action in ("create", "revoke") and not args.name:
        err.print(f"[red]error:[/red] `loopcall keys {args.action}` needs a NAME")
        return 2

    async def act() -> int:
        engine = create_engine(args.db or settings.db_url)
        try:
            await migrate(engine)
            keys = KeyRepository(engine)
            if args.action == "create":
                print(await keys.create(args.name))
            elif args.action == "revoke":
                await keys.revoke(args.name)
                console.print(f"revoked {args.name}")
            else:
                for key in await keys.list():
                    state = f"revoked {key.revoked_at:%Y-%m-%d}" if key.revoked_at else "active"
                    console.print(
                        f"{key.name}\t{key.prefix}...\t{key.created_at:%Y-%m-%d}\t{state}"
                    )
            return 0
        except ApiKeyError as exc:
            err.print(f"[red]error:[/red] {exc}")
            return 2
        finally:
            await engine.dispose()

    return asyncio.run(act())
