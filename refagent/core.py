"""The reference agent's state: its options, voice and ears, and a turn taker per call.

Stage: the far end of a call.  Every way of reaching the agent (pipecat's
SmallWebRTC in ``webrtc.py``, the Twilio media stream in ``media_stream.py``, the
light variants in ``light.py``/``light_ws.py``, the SIP phone in ``sip_line.py``)
asks an ``Agent`` for a fresh ``TurnTaker`` (a pipecat processor) or ``TurnLogic``
(no pipeline) for each call.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from audio.speech import Transcriber, Voice, default_agent_voice, get_voice
from refagent.script import DENTAL_SCRIPT, AgentScript
from refagent.turn_taker import TimingLog, TurnLogic, TurnTaker, TurnTakerConfig

__all__ = ["Agent", "AgentOptions"]


@dataclass(frozen=True)
class AgentOptions:
    """How the reference agent behaves; the CLI's flags map onto these."""

    reply_delay_ms: float | None = None
    interrupt_after_ms: float | None = None
    hangover_ms: float = 600.0
    timing_log: Path | None = None
    voice: str | None = None  # None: piper "joe" if installed, else flite "rms"
    stt: bool = True
    echo: bool = False
    # No pipeline and no STT; phone lines at 8 kHz (``light.py``): for load tests.
    light: bool = False
    script: AgentScript = DENTAL_SCRIPT
    # OTLP/HTTP endpoint for pipecat's spans (refagent/tracing.py); None: no tracing.
    otlp_endpoint: str | None = None


class Agent:
    """One reference agent process: its options, voice, ears, timing log and live calls."""

    def __init__(self, options: AgentOptions) -> None:
        self.options = options
        self.voice: Voice = get_voice(options.voice or default_agent_voice())
        self.transcriber: Transcriber | None = None
        self.timing_log = TimingLog(options.timing_log) if options.timing_log else None
        self.calls: set[asyncio.Task[None]] = set()

    def warm_up(self) -> None:
        """Load the voice and the STT model and synthesize every line before the first call."""
        if self.options.echo:
            return
        for line in self.options.script.lines:
            self.voice.synthesize(line)
            if self.options.light:
                self.voice.synthesize(line, 8000)
        if self.options.stt and not self.options.light:
            # One thread: the agent's STT only feeds its log, and must leave a core to
            # the event loop that times the replies (two threads cost the oracle ms).
            self.transcriber = Transcriber(cpu_threads=1)

    def _turn_args(self, sample_rate: int, phone_line: bool) -> dict[str, Any]:
        return {
            "script": self.options.script,
            "voice": self.voice,
            "config": TurnTakerConfig(
                sample_rate=sample_rate,
                reply_delay_ms=self.options.reply_delay_ms,
                interrupt_after_ms=self.options.interrupt_after_ms,
                hangover_ms=self.options.hangover_ms,
                echo=self.options.echo,
                phone_line=phone_line,
            ),
            "transcriber": self.transcriber,
            "timing_log": self.timing_log,
        }

    def turn_taker(self, *, phone_line: bool = False) -> TurnTaker:
        """A fresh turn taker for one call (``phone_line``: the caller is on 8 kHz mu-law)."""
        return TurnTaker(**self._turn_args(16_000, phone_line))

    def turn_logic(self, *, sample_rate: int, phone_line: bool = False) -> TurnLogic:
        """The turns of one call without a pipeline (the light agent)."""
        return TurnLogic(**self._turn_args(sample_rate, phone_line))
