"""Credentials in types that do not print them, and logs that mask whatever still carries one.

In process for the types and the masking; a fresh interpreter for loguru's
default handler (what a library user of ``create_app`` starts with).
"""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
import textwrap
from pathlib import Path

from loguru import logger
from pydantic import SecretStr

from harness.logs import SECRETS, redacting_sink
from harness.orchestrator import RunOptions
from harness.settings import Settings
from telephony import CallSetup, DialOptions
from telephony.credentials import SipCredentials, TwilioOverrides, mask
from telephony.sip.dialing import DialRequest
from telephony.sip.transport import Peer
from telephony.twilio_phone import TwilioAccount

PASSWORD = "sip-pw-41c9e0d7"
TOKEN = "twtok-8b2f5a9e"


def test_credentials_do_not_print() -> None:
    sip = SipCredentials.of({"username": "bob", "password": PASSWORD})
    phone = TwilioOverrides.of({"auth_token": TOKEN, "api_key_secret": TOKEN + "k"})
    account = TwilioAccount(
        account_sid="AC" + "0" * 32,
        auth_token=TOKEN,  # a plain string is wrapped when the account is built
        from_number="+15550001111",
        public_base_url="https://example.test",
    )
    settings = Settings(sip_username="bob", sip_password=PASSWORD, twilio_auth_token=TOKEN)
    records = [
        sip,
        phone,
        account,
        settings,
        settings.sip_credentials(),
        DialOptions(headers={"Authorization": f"Bearer {TOKEN}"}, phone=phone, sip=sip),
        CallSetup(sip=sip, twilio=account),
        RunOptions(sip=sip, twilio=account),
        DialRequest(uri="sip:a@b", peer=Peer("udp", "127.0.0.1", 5060), password=sip.password),
    ]
    for record in records:
        assert PASSWORD not in f"{record!r} {record}" and TOKEN not in f"{record!r} {record}"
    assert account.auth_token.get_secret_value() == TOKEN
    assert sip.over(SipCredentials(from_user="x")).from_user == "x"
    assert RunOptions(sip=sip, twilio=account).secrets() == [PASSWORD, TOKEN]


def test_a_secret_is_masked_in_the_forms_it_comes_back_in() -> None:
    header = f"Bearer {TOKEN}"
    basic = "Basic " + base64.b64encode(f"bob:{PASSWORD}".encode()).decode()
    echoed = [
        f"invalid token {TOKEN}",  # the bare token, without its scheme
        f"you sent {header!r}",
        json.dumps({"password": f'{PASSWORD}"quoted'}),
        f"GET /?key={TOKEN}",
        f"user bob:{PASSWORD}",  # a Basic credential decoded
    ]
    for text in echoed:
        masked = mask(text, [header, basic])
        assert TOKEN not in masked and PASSWORD not in masked, masked
        assert "[redacted]" in masked
    assert mask("abc and more", ["abc"]) == "abc and more"  # too short to be a secret


def test_the_log_sink_masks_messages_and_tracebacks() -> None:
    buffer = io.StringIO()
    handler = logger.add(redacting_sink(buffer), diagnose=False, format="{message}")
    try:
        SECRETS.hold("test agent", [PASSWORD])
        secret_in_a_local = PASSWORD
        logger.warning(f"agent said {secret_in_a_local}")
        try:
            raise RuntimeError(f"failed with {secret_in_a_local}")
        except RuntimeError:
            logger.exception("unexpected")
    finally:
        logger.remove(handler)
        SECRETS.hold("test agent", [])
    text = buffer.getvalue()
    assert PASSWORD not in text
    assert "agent said [redacted]" in text and "RuntimeError: failed with [redacted]" in text


def test_a_controller_in_someone_elses_process_protects_the_default_handler(
    tmp_path: Path,
) -> None:
    # What an application that builds `create_app(settings)` starts with: loguru's default
    # handler, which prints the values of a traceback's variables; the app's startup
    # (``protect``) replaces it.  Without it, the same script shows the password.
    script = tmp_path / "library_use.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import sys
            from loguru import logger
            from harness.logs import SECRETS, protect

            if sys.argv[1] == "protect":
                protect()
            SECRETS.hold("agent", [{PASSWORD!r}])

            def dial(password):
                raise ValueError("digest failed" if password else "no password")

            try:
                dial({PASSWORD!r}[::-1][::-1])
            except ValueError:
                logger.exception("run failed unexpectedly")
            """
        )
    )

    def stderr(mode: str) -> str:
        return subprocess.run(
            [sys.executable, str(script), mode],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stderr

    assert PASSWORD in stderr("unprotected")  # loguru's default: the variable's value
    protected = stderr("protect")
    assert "ValueError: digest failed" in protected
    assert PASSWORD not in protected


def test_settings_list_their_secrets() -> None:
    settings = Settings(api_key="k-1234", sip_password=SecretStr(PASSWORD), llm_api_key="llm-5678")
    assert set(settings.secret_values()) == {"k-1234", PASSWORD, "llm-5678"}
