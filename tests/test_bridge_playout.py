"""The emulator's bridge adds no delay of its own: an adaptive playout, audio forwarded as it plays.

Before these rules a ``tel:`` call through the emulator read 33-88 ms above the
oracle's delay: each late frame from a real-time sender shifted its leg's line for
the rest of the call (the frames after it queued behind), and each leg regrouped
what it forwarded into whole frames, so audio after a pause left up to 20 ms late.
"""

from __future__ import annotations

import numpy as np
import pytest

from telephony.media_stream import MediaStreamLeg, StreamIds
from telephony.playout import Playout

RATE = 16_000
LOUD = np.full(320, 8000, dtype=np.int16).tobytes()  # 20 ms of speech
QUIET = bytes(640)  # 20 ms of silence


def _line(adaptive: bool) -> tuple[Playout, list[tuple[float, bytes]]]:
    played: list[tuple[float, bytes]] = []
    playout = Playout(RATE, lambda pcm, t: played.append((t, pcm)), adaptive=adaptive)
    playout.begin(0.0)
    return playout, played


def _send_with_a_hiccup(playout: Playout, frames: list[bytes]) -> None:
    """A real-time sender: frame 3 is 15 ms late and frame 4 follows it at once."""
    for k, pcm in enumerate(frames):
        now = 1.0 + 0.02 * k + (0.015 if k == 3 else 0.0)
        if k == 4:
            now = 1.0 + 0.02 * 3 + 0.015
        playout.step(now)
        playout.push(pcm, now)
    playout.step(1.0 + 0.02 * len(frames) + 0.5)


def _onset_of_last_word(played: list[tuple[float, bytes]]) -> float:
    return max(t for t, pcm in played if pcm == LOUD)


def test_without_adaptation_one_hiccup_delays_the_rest_of_the_call() -> None:
    """The defect, kept as the default for loopcall's own receive path (its recorder
    places audio by the sender's sample count): the line stays 15 ms behind."""
    frames = [LOUD] * 3 + [LOUD, LOUD] + [QUIET] * 5 + [LOUD]
    playout, played = _line(adaptive=False)
    _send_with_a_hiccup(playout, frames)
    sent_at = 1.0 + 0.02 * 10
    assert _onset_of_last_word(played) == pytest.approx(sent_at + 0.015)


def test_an_adaptive_line_cuts_the_backlog_from_the_next_silence() -> None:
    frames = [LOUD] * 3 + [LOUD, LOUD] + [QUIET] * 5 + [LOUD]
    playout, played = _line(adaptive=True)
    _send_with_a_hiccup(playout, frames)
    sent_at = 1.0 + 0.02 * 10
    # The word after the pause plays as it arrives; 15 ms of silence went.
    assert _onset_of_last_word(played) == pytest.approx(sent_at)
    assert playout.shrunk_s == pytest.approx(0.015)
    assert playout.dropped_s == 0
    # Every frame of speech played, whole and in order.
    assert sum(1 for _, pcm in played if pcm == LOUD) == 6


def test_an_adaptive_line_never_cuts_speech() -> None:
    frames = [LOUD] * 11
    playout, played = _line(adaptive=True)
    _send_with_a_hiccup(playout, frames)
    assert playout.shrunk_s == 0
    assert b"".join(pcm for _, pcm in played if any(pcm)) == LOUD * 11


def test_an_adaptive_line_plays_a_burst_as_sent() -> None:
    """A Twilio agent may send a reply faster than real time: its pauses are its own."""
    reply = LOUD + QUIET * 4 + LOUD
    playout, played = _line(adaptive=True)
    playout.push(reply, 1.0)
    playout.step(1.5)
    assert playout.shrunk_s == 0
    onsets = [t for t, pcm in played if pcm == LOUD]
    assert onsets == pytest.approx([1.0, 1.1])


def test_a_bridge_leg_sends_what_plays_as_it_was_delivered() -> None:
    """The far leg's line resumes: 10 ms of silence that stood in for the pause, then a
    frame.  Each leaves at once as delivered, so the frame's first sample is its own
    message's first (regrouped, it sat 10 ms into a message with the silence)."""
    leg = MediaStreamLeg(
        "ws://127.0.0.1:9/ws",
        ids=StreamIds(),
        next_frame=None,
        on_audio=lambda pcm, t: None,
        on_end=lambda detail, abnormal: None,
    )
    sent: list[bytes] = []

    def send_frame(pcm16: bytes) -> bool:
        sent.append(pcm16)
        return True

    leg._send_frame = send_frame  # type: ignore[method-assign]
    leg.feed(bytes(2 * 160))
    leg.feed(LOUD + LOUD[:200])
    assert [len(pcm) // 2 for pcm in sent] == [160, 320, 100]
    assert sent[1] == LOUD
