"""Metrics: speech edges on synthetic audio with known boundaries, turns, latency, endpointing.

Every signal here is built sample by sample, so the truth is known exactly: the
first and last sample whose magnitude exceeds the threshold.  ``detect_speech``
is defined to return exactly those samples, so edges are compared with zero
tolerance against that truth, and with a small stated tolerance against the
index where the burst was placed (a sine starts at zero and needs a few samples
to climb over the threshold).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from audio.edges import DEFAULT_THRESHOLD_DBFS, Segment, detect_speech, threshold_amplitude
from audio.endpointer import StreamingEndpointer
from harness.analysis.turns import build_turns, latency_summary
from harness.models import LatencySummary

RATES = [16000, 8000]
THR = threshold_amplitude(DEFAULT_THRESHOLD_DBFS)  # -40 dBFS, about 327.7


# ------------------------------------------------------------------ signal builders


def ms(sample_rate: int, milliseconds: float) -> int:
    return int(round(milliseconds * sample_rate / 1000))


def tone(sample_rate: int, n: int, *, freq: float = 440.0, amplitude: float = 8000.0) -> np.ndarray:
    t = np.arange(n) / sample_rate
    return amplitude * np.sin(2 * np.pi * freq * t)


def noise_speech(n: int, sample_rate: int, seed: int) -> np.ndarray:
    """Noise under a 4 Hz syllable envelope that never drops to silence (like voiced speech)."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / sample_rate
    envelope = 0.35 + 0.65 * np.abs(np.sin(2 * np.pi * 4.0 * t))
    return rng.normal(0.0, 4000.0, n) * envelope


def noise_floor(n: int, seed: int, dbfs: float = -60.0) -> np.ndarray:
    """White noise whose RMS is ``dbfs``; at -60 dBFS its peaks stay far under -40 dBFS."""
    rng = np.random.default_rng(seed)
    return rng.normal(0.0, 32768.0 * 10 ** (dbfs / 20.0), n)


def mix(
    n: int, bursts: list[tuple[int, np.ndarray]], floor: np.ndarray | None = None
) -> np.ndarray:
    out = np.zeros(n, dtype=float) if floor is None else floor.astype(float).copy()
    for start, burst in bursts:
        out[start : start + burst.size] += burst
    return np.clip(np.round(out), -32768, 32767).astype(np.int16)


def true_edges(x: np.ndarray, lo: int = 0, hi: int | None = None) -> Segment:
    """First and one-past-last sample in x[lo:hi] whose magnitude exceeds the threshold."""
    above = np.flatnonzero(np.abs(x[lo:hi].astype(np.int32)) > THR)
    return Segment(lo + int(above[0]), lo + int(above[-1]) + 1)


# ------------------------------------------------------------------ detect_speech: edges


@pytest.mark.parametrize("sample_rate", RATES)
@pytest.mark.parametrize("with_floor", [False, True], ids=["digital-silence", "floor-60dBFS"])
def test_tone_burst_edges_are_sample_exact(sample_rate: int, with_floor: bool) -> None:
    n = sample_rate * 2
    start, length = 7919, ms(sample_rate, 500) + 13  # deliberately not window-aligned
    floor = noise_floor(n, seed=1) if with_floor else None
    if floor is not None:
        assert np.abs(floor).max() < THR / 2  # the floor alone never looks like speech
    x = mix(n, [(start, tone(sample_rate, length))], floor)

    (segment,) = detect_speech(x, sample_rate)

    assert segment == true_edges(x)
    # Against the placed boundaries: |8000 sin| is under the threshold only within
    # asin(THR / 8000) / (2 pi 440) s = 15 us of a zero crossing (0.24 samples at
    # 16 kHz; 0.33 with the floor added), so at most one sample at each end of the
    # burst can be missed.  Tolerance: 2 samples.
    tolerance = 2
    assert 0 <= segment.start - start <= tolerance
    assert 0 <= (start + length) - segment.end <= tolerance


@pytest.mark.parametrize("sample_rate", RATES)
@pytest.mark.parametrize("with_floor", [False, True], ids=["digital-silence", "floor-60dBFS"])
def test_noise_speech_edges_are_sample_exact(sample_rate: int, with_floor: bool) -> None:
    n = sample_rate * 3
    start, length = ms(sample_rate, 700) + 3, ms(sample_rate, 1200) + 29
    floor = noise_floor(n, seed=2) if with_floor else None
    x = mix(n, [(start, noise_speech(length, sample_rate, seed=3))], floor)

    (segment,) = detect_speech(x, sample_rate)

    assert segment == true_edges(x)
    # Noise with sigma >= 1400 at the edges is under the threshold with p < 0.2 per
    # sample, so the first/last sample over it is within a handful of the placed
    # edge (the seed is fixed; 8 samples is 0.5 ms at 16 kHz, 1 ms at 8 kHz).
    assert 0 <= segment.start - start <= 8
    assert 0 <= (start + length) - segment.end <= 8


@pytest.mark.parametrize("sample_rate", RATES)
def test_silence_and_empty_input_give_no_segments(sample_rate: int) -> None:
    assert detect_speech(np.zeros(0, dtype=np.int16), sample_rate) == []
    assert detect_speech(np.zeros(sample_rate, dtype=np.int16), sample_rate) == []
    floor = mix(sample_rate * 2, [], noise_floor(sample_rate * 2, seed=4))
    assert np.abs(floor).max() > 0
    assert detect_speech(floor, sample_rate) == []


@pytest.mark.parametrize("sample_rate", RATES)
def test_threshold_is_strict(sample_rate: int) -> None:
    level = math.floor(THR)  # 327: just under the threshold
    x = np.zeros(sample_rate, dtype=np.int16)
    x[1000:3000] = level
    assert detect_speech(x, sample_rate) == []
    x[1000:3000] = level + 1
    assert detect_speech(x, sample_rate) == [Segment(1000, 3000)]


# ------------------------------------------------------------------ hangover and min length


@pytest.mark.parametrize("sample_rate", RATES)
@pytest.mark.parametrize(
    ("hangover_ms", "gap_ms", "merged"),
    [(300, 200, True), (300, 280, True), (300, 400, False), (100, 60, True), (100, 150, False)],
)
def test_gap_shorter_than_hangover_merges_longer_splits(
    sample_rate: int, hangover_ms: float, gap_ms: float, merged: bool
) -> None:
    n = sample_rate * 3
    a_start, a_len = ms(sample_rate, 300) + 7, ms(sample_rate, 400)
    b_start = a_start + a_len + ms(sample_rate, gap_ms)
    b_len = ms(sample_rate, 500)
    x = mix(
        n,
        [(a_start, noise_speech(a_len, sample_rate, 5)), (b_start, tone(sample_rate, b_len))],
        noise_floor(n, seed=6),
    )
    first = true_edges(x, 0, a_start + a_len)
    second = true_edges(x, b_start)

    segments = detect_speech(x, sample_rate, hangover_ms=hangover_ms)

    if merged:
        assert segments == [Segment(first.start, second.end)]
    else:
        assert segments == [first, second]


@pytest.mark.parametrize("sample_rate", RATES)
def test_blip_shorter_than_min_speech_is_dropped(sample_rate: int) -> None:
    n = sample_rate * 3
    blip = (ms(sample_rate, 100) + 1, tone(sample_rate, ms(sample_rate, 20)))  # 20 ms < 40 ms
    speech_start = ms(sample_rate, 1000) + 5
    speech = (speech_start, noise_speech(ms(sample_rate, 600), sample_rate, 7))
    long_blip = (ms(sample_rate, 2200) + 3, tone(sample_rate, ms(sample_rate, 60)))  # kept
    x = mix(n, [blip, speech, long_blip], noise_floor(n, seed=8))

    segments = detect_speech(x, sample_rate, min_speech_ms=40)

    assert segments == [
        true_edges(x, speech_start, speech_start + speech[1].size),
        true_edges(x, long_blip[0]),
    ]
    # With a lower minimum the short blip counts too.
    assert len(detect_speech(x, sample_rate, min_speech_ms=10)) == 3


# ------------------------------------------------------------------ build_turns

SR = 16000


def seg(start_ms: float, end_ms: float) -> Segment:
    return Segment(ms(SR, start_ms), ms(SR, end_ms))


def test_turns_merge_same_side_within_gap_and_time_the_reply() -> None:
    persona = [seg(1000, 2000), seg(2500, 3000)]  # 500 ms apart: one turn
    agent = [seg(3700, 5000)]
    turns = build_turns(persona, agent, SR, merge_gap_ms=1500)
    assert [(t.role, t.start, t.end) for t in turns] == [
        ("persona", ms(SR, 1000), ms(SR, 3000)),
        ("agent", ms(SR, 3700), ms(SR, 5000)),
    ]
    assert turns[0].latency_ms is None
    assert turns[1].latency_ms == 700.0


def test_same_side_gap_beyond_merge_gap_is_two_turns() -> None:
    turns = build_turns([seg(0, 1000), seg(2600, 3000)], [], SR, merge_gap_ms=1500)
    assert [(t.start, t.end) for t in turns] == [(0, ms(SR, 1000)), (ms(SR, 2600), ms(SR, 3000))]


def test_latency_is_exact_in_samples() -> None:
    persona = [Segment(16000, 32001)]
    agent = [Segment(32001 + 11213, 60000)]
    (_, reply) = build_turns(persona, agent, SR)
    assert reply.latency_ms == 11213 * 1000.0 / SR  # 700.8125 ms, not rounded


def test_greeting_has_no_latency() -> None:
    turns = build_turns([seg(3000, 4000)], [seg(200, 2000), seg(4600, 6000)], SR)
    assert [t.role for t in turns] == ["agent", "persona", "agent"]
    assert turns[0].latency_ms is None
    assert turns[1].latency_ms is None
    assert turns[2].latency_ms == 600.0


def test_agent_after_agent_has_no_latency() -> None:
    # The agent speaks twice with a gap longer than merge_gap: two agent turns in a row.
    turns = build_turns([seg(0, 1000)], [seg(1400, 2000), seg(5000, 6000)], SR, merge_gap_ms=1500)
    assert [(t.role, t.latency_ms) for t in turns] == [
        ("persona", None),
        ("agent", 400.0),
        ("agent", None),
    ]


def test_overlap_gives_no_latency() -> None:
    # A reply that starts before the caller has finished is an interruption
    # (tests/test_dynamics.py), never a negative latency.
    turns = build_turns([seg(1000, 3000)], [seg(2750, 4000)], SR)
    assert [t.role for t in turns] == ["persona", "agent"]
    assert turns[1].latency_ms is None


def test_no_segments_no_turns() -> None:
    assert build_turns([], [], SR) == []


# ------------------------------------------------------------------ latency_summary


def test_latency_summary_matches_numpy_percentiles() -> None:
    values = [812.25, 640.0, 1333.3, 700.05, 455.5, 980.0, 2210.75]
    summary = latency_summary(values)
    arr = np.asarray(values)
    assert summary.n == 7
    assert summary.min == 455.5
    assert summary.max == 2210.8
    assert summary.mean == round(float(arr.mean()), 1)
    for name, q in [("p50", 50), ("p90", 90), ("p95", 95), ("p99", 99)]:
        assert getattr(summary, name) == round(float(np.percentile(arr, q)), 1), name
    assert summary.p50 == 812.2  # the median itself, rounded to 0.1 ms
    # Linear interpolation, worked by hand: p90 lies 0.4 of the way from 1333.3 to 2210.75.
    assert summary.p90 == round(1333.3 + 0.4 * (2210.75 - 1333.3), 1)


def test_latency_summary_single_value() -> None:
    assert latency_summary([512.0]) == LatencySummary(
        n=1, min=512.0, p50=512.0, p90=512.0, p95=512.0, p99=512.0, max=512.0, mean=512.0
    )


def test_latency_summary_empty() -> None:
    summary = latency_summary([])
    assert summary == LatencySummary()
    assert summary.n == 0 and summary.p50 is None and summary.mean is None


# ------------------------------------------------------------------ StreamingEndpointer


def feed(
    endpointer: StreamingEndpointer, x: np.ndarray, sizes: list[int]
) -> list[tuple[int, int, Segment]]:
    """Push x in chunks of the given sizes; (chunk index, samples pushed so far, segment)."""
    fired = []
    pos = 0
    for i, size in enumerate(sizes):
        segment = endpointer.push(x[pos : pos + size])
        pos += size
        if segment is not None:
            fired.append((i, pos, segment))
    assert pos == x.size
    return fired


def chunk_sizes(total: int, pattern: list[int]) -> list[int]:
    sizes: list[int] = []
    i = 0
    while sum(sizes) < total:
        sizes.append(min(pattern[i % len(pattern)], total - sum(sizes)))
        i += 1
    return sizes


def single_utterance(sample_rate: int) -> np.ndarray:
    n = sample_rate * 3
    start, length = ms(sample_rate, 400) + 11, ms(sample_rate, 900) + 17
    return mix(n, [(start, noise_speech(length, sample_rate, 9))], noise_floor(n, seed=10))


@pytest.mark.parametrize("sample_rate", RATES)
@pytest.mark.parametrize("hangover_ms", [300.0, 150.0])
@pytest.mark.parametrize("chunking", ["20ms", "odd"])
def test_streaming_reports_the_offline_segment_after_the_hangover(
    sample_rate: int, hangover_ms: float, chunking: str
) -> None:
    x = single_utterance(sample_rate)
    (expected,) = detect_speech(x, sample_rate, hangover_ms=hangover_ms)
    if chunking == "20ms":
        sizes = chunk_sizes(x.size, [ms(sample_rate, 20)])
    else:
        sizes = chunk_sizes(x.size, [137, 1, 509, 61, 250])
    endpointer = StreamingEndpointer(sample_rate, hangover_ms=hangover_ms)

    fired = feed(endpointer, x, sizes)

    assert len(fired) == 1
    index, pushed, segment = fired[0]
    assert segment == expected
    # It fires on the first chunk that completes the 5 ms window in which
    # `hangover` samples have passed since the last voiced sample: never earlier.
    hang = ms(sample_rate, hangover_ms)
    win = sample_rate * 5 // 1000
    due = math.ceil((expected.end + hang) / win) * win  # samples consumed when it fires
    ends = np.cumsum(sizes)
    assert index == int(np.searchsorted(ends, due))  # first chunk whose end reaches `due`
    assert pushed >= expected.end + hang
    assert not endpointer.speaking


def test_streaming_fires_on_the_expected_20ms_chunk() -> None:
    # Hand-worked at 16 kHz: a tone from sample 8000 to 24000 (one past), hangover
    # 300 ms = 4800 samples.  The end is due once 24000 + 4800 = 28800 samples are
    # in, which is exactly the end of 20 ms chunk number 89 (90 * 320 = 28800).
    x = np.zeros(SR * 2, dtype=np.int16)
    x[8000:24000] = 5000
    endpointer = StreamingEndpointer(SR, hangover_ms=300)
    fired = feed(endpointer, x, [320] * 100)
    assert fired == [(89, 28800, Segment(8000, 24000))]


def test_streaming_state_while_speaking() -> None:
    x = np.zeros(SR, dtype=np.int16)
    x[1000:9000] = 5000
    endpointer = StreamingEndpointer(SR, hangover_ms=300)
    assert endpointer.push(x[:800]) is None and not endpointer.speaking
    assert endpointer.push(x[800:2000]) is None
    assert endpointer.speaking and endpointer.onset == 1000


@pytest.mark.parametrize("sample_rate", RATES)
def test_streaming_drops_blips_like_detect_speech(sample_rate: int) -> None:
    n = sample_rate * 2
    x = mix(n, [(ms(sample_rate, 200) + 3, tone(sample_rate, ms(sample_rate, 20)))])
    assert detect_speech(x, sample_rate) == []
    endpointer = StreamingEndpointer(sample_rate)
    assert feed(endpointer, x, chunk_sizes(n, [ms(sample_rate, 20)])) == []
    assert not endpointer.speaking and endpointer.onset is None


@pytest.mark.parametrize(
    ("sample_rate", "hangover_ms"),
    [(16000, 300.0), (8000, 300.0), (16000, 232.0), (44100, 300.0)],
)
def test_streaming_splits_exactly_where_detect_speech_splits(
    sample_rate: int, hangover_ms: float
) -> None:
    # Two bursts whose silent gap is exactly detect_speech's hangover in whole
    # 5 ms windows (round(hangover / 5) windows).  The module promises that the
    # agent's endpointer applies the same rule as the offline oracle, so both must
    # agree on whether this is one utterance or two, whatever the hangover or rate.
    win = sample_rate * 5 // 1000
    gap_windows = int(round(hangover_ms / 5))
    a = (100 * win, 60 * win)
    b_start = a[0] + a[1] + gap_windows * win
    x = np.zeros(b_start + 60 * win + sample_rate, dtype=np.int16)
    x[a[0] : a[0] + a[1]] = 5000
    x[b_start : b_start + 60 * win] = 5000

    offline = detect_speech(x, sample_rate, hangover_ms=hangover_ms)
    endpointer = StreamingEndpointer(sample_rate, hangover_ms=hangover_ms)
    streamed = [s for _, _, s in feed(endpointer, x, chunk_sizes(x.size, [ms(sample_rate, 20)]))]

    assert streamed == offline
