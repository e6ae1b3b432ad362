"""How runs are executed: the options the CLI and the controller fill in.

Stage: the orchestrator's input, beside the case and the target.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from harness.analysis.health import DEFAULT_LAG_BOUND_MS
from harness.ingest import Inboxes
from harness.ingest.otel import GRACE_S, TraceDesk
from harness.models import Run
from harness.orchestrator.calibration import Calibration
from harness.pricing import PriceTable
from harness.scoring import Judge
from personas.llm_brain import LLMConfig
from telephony.credentials import SipCredentials
from telephony.egress import EgressPolicy
from telephony.twilio_phone import TwilioAccount, TwilioGateway

__all__ = ["CALL_OVER", "ProgressFn", "RunOptions"]

# The progress message once a run's call is over (hung up), before its analysis.
CALL_OVER = "call over"

ProgressFn = Callable[[Run, str], None]


@dataclass(frozen=True)
class RunOptions:
    """How runs are executed; the CLI and the controller fill this in."""

    connect_timeout_s: float = 15.0
    media_timeout_s: float | None = 10.0
    llm: LLMConfig | None = None
    # The rubric criterion's LLM judge (one per process: its verdict cache is shared).
    judge: Judge | None = None
    calibrate: bool = True
    # A calibration measured beforehand (a bench measures once per level, at rest):
    # used instead of an echo call before this run.
    calibration: Calibration | None = None
    transcribe: bool = True
    # When set, a run's wrap-up waits for it between hanging up and analysing (a bench
    # opens it once a level's calls have all hung up: no analysis beside live calls).
    analysis_gate: asyncio.Event | None = None
    # Who calls: "pipecat" (the persona pipeline: Silero VAD, Whisper, TTS) or "lean"
    # (personas/lean.py: energy endpointing, cached lines, no live STT unless needed).
    caller: Literal["pipecat", "lean"] = "pipecat"
    # Phone calls (tel: targets): the Twilio account and the gateway that serves
    # Twilio's webhooks and media streams in this process.
    twilio: TwilioAccount | None = None
    gateway: TwilioGateway | None = None
    # SIP calls: default digest credentials and caller user (a stored agent's win).
    sip: SipCredentials = field(default_factory=SipCredentials)
    # A turn measured while the event loop ran later than this is marked degraded.
    lag_bound_ms: float = DEFAULT_LAG_BOUND_MS
    # Where calls may connect and what of an agent's answer a run may quote: the
    # CLI's by default (the user's machine), a controller's policy in server mode.
    egress: EgressPolicy = field(default_factory=EgressPolicy.local)
    # What the agent may report into during its run (tools URL, event webhook): the
    # registry the serving routes read, and the base URL agents reach them at.  Either
    # unset: nothing is served or handed over.
    inboxes: Inboxes | None = None
    agent_base_url: str | None = None
    # OpenTelemetry: the desk this process's /v1/traces route feeds.  A run takes the
    # spans naming it, waiting up to ``otel_grace_s`` after the hang-up for late ones
    # when its agent traces (a span came during the call, or ``expect_traces``).
    traces: TraceDesk | None = None
    expect_traces: bool = False
    otel_grace_s: float = GRACE_S
    # What tokens and minutes cost (LOOPCALL_PRICES); unset, only what is known to
    # cost nothing and the carrier's own price are figured.
    prices: PriceTable | None = None

    def secrets(self) -> list[str]:
        """Every secret these options hold (configured credentials), to keep out of runs."""
        found = self.sip.secrets()
        if self.twilio is not None:
            found.append(self.twilio.auth_token.get_secret_value())
            if self.twilio.api_key_secret is not None:
                found.append(self.twilio.api_key_secret.get_secret_value())
        if self.llm is not None and self.llm.api_key:
            found.append(self.llm.api_key)
        if self.judge is not None and self.judge.config.api_key is not None:
            found.append(self.judge.config.api_key.get_secret_value())
        return found
