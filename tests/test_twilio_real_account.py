"""A real call through a real Twilio account: runs only when one is configured.

The one test allowed to skip for missing credentials. Set:

- ``TWILIO_ACCOUNT_SID`` and ``TWILIO_AUTH_TOKEN`` (the token also checks the
  webhooks; add ``TWILIO_API_KEY_SID``/``TWILIO_API_KEY_SECRET`` to place calls
  with a key),
- ``TWILIO_FROM_NUMBER`` (a number of the account or a verified caller id) and
  ``TWILIO_TO_NUMBER`` (a phone agent that answers and talks),
- ``LOOPCALL_PUBLIC_BASE_URL``: a tunnel (cloudflared, ngrok) to 127.0.0.1 on
  ``LOOPCALL_GATEWAY_PORT`` (default 8088), where this test serves the gateway.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from fastapi import FastAPI

from harness.models import Case, Persona
from harness.orchestrator import RunOptions, run_case
from harness.store import RunStore
from telephony.embedded import serve_embedded
from telephony.twilio_phone import TwilioAccount, TwilioGateway

NEEDED = (
    "TWILIO_ACCOUNT_SID",
    "TWILIO_AUTH_TOKEN",
    "TWILIO_FROM_NUMBER",
    "TWILIO_TO_NUMBER",
    "LOOPCALL_PUBLIC_BASE_URL",
)
missing = [name for name in NEEDED if not os.environ.get(name)]
pytestmark = pytest.mark.skipif(
    bool(missing), reason=f"no real Twilio account configured (missing {', '.join(missing)})"
)


async def test_a_real_phone_call_through_twilio(tmp_path: Path) -> None:
    env = os.environ
    account = TwilioAccount(
        account_sid=env["TWILIO_ACCOUNT_SID"],
        auth_token=env["TWILIO_AUTH_TOKEN"],
        api_key_sid=env.get("TWILIO_API_KEY_SID") or None,
        api_key_secret=env.get("TWILIO_API_KEY_SECRET") or None,
        from_number=env["TWILIO_FROM_NUMBER"],
        public_base_url=env["LOOPCALL_PUBLIC_BASE_URL"],
    )
    gateway = TwilioGateway()
    app = FastAPI()
    app.include_router(gateway.router())
    case = Case(
        name="Real phone smoke test",
        persona=Persona(name="Caller", voice="flite:slt"),
        script=["Hello, I am calling to test this line."],  # type: ignore[list-item]
        goodbye="Thanks, goodbye.",
        max_duration_s=60,
        wait_for_greeting_s=15,
    )
    port = int(env.get("LOOPCALL_GATEWAY_PORT", "8088"))
    async with serve_embedded(app, "127.0.0.1", port):
        run = await run_case(
            case,
            f"tel:{env['TWILIO_TO_NUMBER']}",
            RunStore(tmp_path),
            options=RunOptions(twilio=account, gateway=gateway),
        )

    assert run.status == "completed", run.error
    sids = [e.detail.split()[0] for e in run.events if e.kind == "twilio_call"]
    assert sids and sids[0].startswith("CA")
    statuses = [e.detail.split()[0] for e in run.events if e.kind == "twilio_status"]
    assert "in-progress" in statuses and statuses[-1] == "completed", statuses
    assert any(t.role == "agent" for t in run.turns), "the far end said something"
