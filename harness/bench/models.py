"""The bench's records: what was asked (``BenchConfig``) and what was found (``BenchReport``).

Stage: the two ends of ``loopcall bench`` and of ``POST /benches``.  A report holds
one ``BenchLevel`` per concurrency level (``report.json``'s ``levels``) and one
``BenchCall`` per call, the per-call timelines the HTML report draws.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from harness.models import Case, LatencySummary, utcnow

__all__ = [
    "AgentAccount",
    "BenchCall",
    "BenchConfig",
    "BenchLevel",
    "BenchReport",
    "BenchTurn",
    "Percentiles",
]


class BenchConfig(BaseModel):
    """One bench: whom to call, with what, how many, how many at once."""

    model_config = ConfigDict(extra="forbid")

    target: str = Field(description="The agent's target URL (webrtc://, twilio-ws://, sip:, tel:)")
    case: Case = Field(description="The conversation every call has")
    calls: int | None = Field(
        default=None,
        ge=1,
        le=10_000,
        description="Calls per concurrency level (default: as many as the level's concurrency)",
    )
    concurrency: list[int] = Field(
        min_length=1, max_length=20, description="Concurrency levels, run in this order"
    )
    ramp_s: float | None = Field(
        default=None,
        ge=0,
        le=600,
        description="Seconds over which a level's first calls start (default 0.05 s per call)",
    )
    oracle_delay_ms: float | None = Field(
        default=None,
        ge=0,
        description="The target is a latency oracle replying D ms after the caller stops "
        "(loopcall agent --reply-delay-ms D): report the oracle error",
    )
    lag_bound_ms: float = Field(
        default=20.0, gt=0, le=1000, description="Loop delay beyond which a turn is degraded"
    )
    transcribe: bool = Field(
        default=True,
        description="Transcribe the agent's turns after each level (never during the calls)",
    )
    caller: Literal["lean", "pipecat"] = Field(
        default="lean",
        description="lean: the cheap caller for load; pipecat: the full persona pipeline",
    )
    connect_timeout_s: float = Field(default=15.0, gt=0, le=300)
    media_timeout_s: float = Field(default=10.0, ge=0, le=300)

    @field_validator("concurrency")
    @classmethod
    def _positive(cls, levels: list[int]) -> list[int]:
        if any(level < 1 or level > 5000 for level in levels):
            raise ValueError("every concurrency level must be between 1 and 5000")
        return levels

    def calls_at(self, concurrency: int) -> int:
        return self.calls if self.calls is not None else concurrency

    def ramp_at(self, concurrency: int) -> float:
        return self.ramp_s if self.ramp_s is not None else 0.05 * (concurrency - 1)


# A distribution in ms: the run record's own summary (n, min, p50 ... p99, max, mean).
Percentiles = LatencySummary


class OracleError(BaseModel):
    """|measured latency - D - transport round trip| over the trustworthy agent turns."""

    n: int = 0
    p95: float | None = None
    max: float | None = None
    mean: float | None = Field(default=None, description="Signed mean: the bias")
    all_p95: float | None = Field(
        default=None, description="p95 over every turn, the degraded ones included"
    )
    all_max: float | None = None


class AgentAccount(BaseModel):
    """The oracle agent's own account of its replies (its timing log), matched to the turns.

    ``late_ms``: how much later than D the agent really sent each reply (a loaded
    oracle stops being one); ``harness_error_ms``: the harness's error against
    what the agent really did, |latency - agent's gap - transport round trip|, over
    every matched turn (degraded ones included) and over the trusted ones.
    """

    n: int = 0
    late_ms_p95: float | None = None
    late_ms_max: float | None = None
    harness_error_ms_p95: float | None = None
    harness_error_ms_max: float | None = None
    harness_error_ms_mean: float | None = Field(default=None, description="Signed: the bias")
    trusted_error_ms_p95: float | None = None
    trusted_error_ms_max: float | None = None


class BenchTurn(BaseModel):
    role: Literal["persona", "agent"]
    start_s: float
    end_s: float
    latency_ms: float | None = None
    degraded: bool = False


class BenchCall(BaseModel):
    """One call of a level, on the level's clock (seconds since the level started)."""

    run_id: str
    level: int
    index: int
    status: str
    error: str | None = None
    started_s: float
    ended_s: float
    connected_s: float | None = None
    turns: list[BenchTurn] = Field(default_factory=list)
    degraded: bool = False


class BenchLevel(BaseModel):
    """What one concurrency level measured."""

    concurrency: int
    calls: int
    completed: int = 0
    failed: int = 0
    cancelled: int = 0
    failures: dict[str, int] = Field(
        default_factory=dict, description="Failed calls by reason (the run's error)"
    )
    peak_concurrency: int = Field(default=0, description="Most calls connected at once")
    ramp_s: float = 0
    wall_s: float = 0
    turns: int = Field(default=0, description="Agent turns with a latency")
    degraded_turns: int = 0
    latency_ms: Percentiles = Field(
        default_factory=Percentiles, description="Agent latency over turns not degraded"
    )
    time_to_first_audio_ms: Percentiles = Field(default_factory=Percentiles)
    oracle_error_ms: OracleError | None = None
    agent_account: AgentAccount | None = Field(
        default=None, description="When the bench started the oracle agent: its own timing"
    )
    transport_rtt_ms: float | None = None
    degraded: bool = False
    degraded_reason: str | None = None
    cpu_percent: float | None = Field(
        default=None, description="The harness process's CPU over the level (% of one core)"
    )
    cpu_ms_per_call_s: float | None = Field(
        default=None, description="Harness CPU ms per second of connected call"
    )
    loop_lag_ms_p50: float | None = None
    loop_lag_ms_p99: float | None = None
    loop_lag_ms_max: float | None = None
    rss_mb_start: float | None = None
    rss_mb_peak: float | None = None
    rss_mb_per_call: float | None = None
    audio_dropped_ms: float = Field(default=0, description="Agent audio dropped as stale")
    agent_cpu_percent: float | None = Field(
        default=None, description="The agent process's CPU (when the bench started it)"
    )


class BenchReport(BaseModel):
    """``report.json``."""

    id: str
    status: Literal["running", "completed", "failed", "cancelled"] = "running"
    error: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    ended_at: datetime | None = None
    target: str
    channel: str
    case_name: str
    concurrency: list[int] = Field(default_factory=list, description="The levels asked for")
    oracle_delay_ms: float | None = None
    lag_bound_ms: float
    caller: str
    machine: dict[str, str] = Field(default_factory=dict)
    levels: list[BenchLevel] = Field(default_factory=list)
    calls: list[BenchCall] = Field(default_factory=list)
