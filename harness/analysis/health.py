"""The harness's own health during a call: which turns it can vouch for.

Stage: analysis, after the turns are timed.  A latency measured while the
harness's event loop was starved may be the harness's delay rather than the
agent's.  ``harness.monitor`` recorded the loop's scheduling delay beside the
call; ``assess`` marks every agent turn whose edges crossed
the wire while the delay exceeded the bound as *degraded*: it is kept, shown and
stored, but reported apart from the agent's latency.

SIP and WebRTC stamp arriving packets with the kernel's receive time (WebRTC:
``telephony/wire_stamps.py``, while every frame matched its packet), so there the
loop's delay does not move the agent's onset.  It still moves the persona's end: the
media pump sends a late tick's frame late and then catches up, while the
recorder lays the sent stream on its least-delayed frames (the schedule), so
the persona's last words are recorded up to the loop's delay earlier than they
left, and the latency reads that much long (measured against SIPp's RTP echo:
a 15 ms hog gave echoes up to 15 ms "late").  So there a turn is degraded when
the loop ran late around the persona's end, or when the playout dropped agent
audio (which the recording then misses).  On media streams an arrival is
stamped when the loop reads it, so the whole turn's window counts.
"""

from __future__ import annotations

from collections.abc import Sequence

from harness.models import HarnessHealth, Turn
from harness.monitor import LagWindow

__all__ = ["DEFAULT_LAG_BOUND_MS", "EDGE_MARGIN_MS", "assess"]

DEFAULT_LAG_BOUND_MS = 20.0
# A turn's latency depends on the chunks around the two edges it joins.
EDGE_MARGIN_MS = 250.0


def assess(
    turns: Sequence[Turn],
    lag: LagWindow,
    *,
    connected_at: float,
    cpu_percent: float | None,
    bound_ms: float = DEFAULT_LAG_BOUND_MS,
    margin_ms: float = EDGE_MARGIN_MS,
    kernel_stamped: bool = False,
    drops: Sequence[tuple[float, float]] = (),
) -> HarnessHealth:
    """Mark the agent turns whose measurement the harness cannot vouch for.

    An agent turn's latency joins the end of the persona turn before it to its
    own onset; its window runs from ``margin_ms`` before that end to ``margin_ms``
    after that onset.  The turn is degraded when

    - the event loop ran later than ``bound_ms`` within ``margin_ms`` of the
      persona's end (its last frames left late), or anywhere in the window when
      the channel's arrival times are stamped by the loop (not
      ``kernel_stamped``: an arrival may be stamped that much late); or
    - the playout dropped agent audio as stale within the window (``drops``:
      (when, seconds)): the recording misses audio there, so an edge may be
      misplaced.

    Sets ``turn.degraded`` and returns the run's health summary.
    """
    degraded = late_turns = dropped_turns = 0
    previous: Turn | None = None
    for turn in turns:
        if turn.role == "agent" and turn.latency_ms is not None and previous is not None:
            t0 = connected_at + (previous.end_ms - margin_ms) / 1000.0
            t1 = connected_at + (turn.start_ms + margin_ms) / 1000.0
            # With kernel-stamped arrivals only the persona's sending is on the loop's clock.
            sent_by = connected_at + (previous.end_ms + margin_ms) / 1000.0
            worst = lag.between(t0, min(t1, sent_by) if kernel_stamped else t1).max
            late = worst is not None and worst > bound_ms
            dropped = any(t0 <= when <= t1 for when, _ in drops)
            turn.degraded = late or dropped
            degraded += turn.degraded
            late_turns += late
            dropped_turns += dropped
        previous = turn
    p99 = lag.percentile(99)
    reasons = []
    if late_turns:
        what = "whose persona audio left" if kernel_stamped else "measured"
        reasons.append(
            f"{late_turns} turn(s) {what} while the harness's event loop ran more than "
            f"{bound_ms:g} ms late"
        )
    if dropped_turns:
        reasons.append(f"{dropped_turns} turn(s) with agent audio dropped as stale")
    if p99 is not None and p99 > bound_ms:
        reasons.append(f"loop delay p99 {p99:.1f} ms over the {bound_ms:g} ms bound")
    return HarnessHealth(
        cpu_percent=None if cpu_percent is None else round(cpu_percent, 1),
        loop_lag_ms_p50=_round(lag.percentile(50)),
        loop_lag_ms_p99=_round(p99),
        loop_lag_ms_max=_round(lag.max),
        lag_bound_ms=bound_ms,
        audio_dropped_ms=round(sum(seconds for _, seconds in drops) * 1000.0, 1),
        kernel_stamped=kernel_stamped,
        degraded_turns=degraded,
        degraded=bool(reasons),
        degraded_reason="; ".join(reasons) or None,
    )


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)
