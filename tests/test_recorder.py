"""Recorder: placing chunk streams on the call clock, and the stereo WAV round trip."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest

from harness.recording import Recorder, Recording, place_stream

SR = 16000
CHUNK = 320  # 20 ms at 16 kHz
T0 = 1234.5678  # a monotonic clock reading, far from zero as in real calls


def make_chunks(count: int, size: int = CHUNK) -> list[np.ndarray]:
    """Chunks with distinct, recognisable contents (a ramp over the whole stream)."""
    ramp = (np.arange(count * size) % 30000 + 1).astype(np.int16)
    return [ramp[i * size : (i + 1) * size] for i in range(count)]


def arrivals_for(chunks: list[np.ndarray], send_times: list[float]) -> list[tuple[float, bytes]]:
    return [(t, c.tobytes()) for t, c in zip(send_times, chunks, strict=True)]


def expected_timeline(chunks: list[np.ndarray], positions: list[int]) -> np.ndarray:
    total = max(p + c.size for p, c in zip(positions, chunks, strict=True))
    out = np.zeros(total, dtype=np.int16)
    for p, c in zip(positions, chunks, strict=True):
        out[p : p + c.size] = c
    return out


def test_empty_stream() -> None:
    placed = place_stream([], T0, SR)
    assert placed.size == 0 and placed.dtype == np.int16


def test_regular_arrivals_are_contiguous_from_the_right_offset() -> None:
    chunks = make_chunks(40)
    offset_s = 0.25  # the stream starts 250 ms after the call connected
    times = [T0 + offset_s + k * CHUNK / SR for k in range(40)]

    placed = place_stream(arrivals_for(chunks, times), T0, SR)

    start = int(offset_s * SR)  # 4000
    assert placed.size == start + 40 * CHUNK
    assert not placed[:start].any()
    np.testing.assert_array_equal(placed[start:], np.concatenate(chunks))


def test_positive_jitter_does_not_move_the_placement() -> None:
    rng = np.random.default_rng(42)
    count = 200
    chunks = make_chunks(count)
    send = [T0 + 0.1 + k * CHUNK / SR for k in range(count)]
    # Every chunk is late by up to 19 ms (less than a chunk, so arrivals stay in
    # order), except every 7th chunk and the last one, which arrive on time.  The
    # placement looks forward, so the last chunk must itself be on time: with only
    # arrival times, a late final chunk cannot be told from a pause before it.
    jitter = rng.uniform(0.0, 0.019, count)
    jitter[::7] = 0.0
    jitter[-1] = 0.0
    assert jitter.max() > 0.015  # the jitter is real
    times = [s + j for s, j in zip(send, jitter, strict=True)]

    placed = place_stream(arrivals_for(chunks, times), T0, SR)

    start = int(0.1 * SR)  # 1600
    expected = expected_timeline(chunks, [start + k * CHUNK for k in range(count)])
    np.testing.assert_array_equal(placed, expected)


def test_a_real_pause_is_kept_as_silence_of_its_length() -> None:
    rng = np.random.default_rng(7)
    chunks = make_chunks(60)
    pause_s = 0.2
    send = [
        T0 + 0.05 + k * CHUNK / SR + (pause_s if k >= 30 else 0.0) for k in range(60)
    ]  # the sender pauses 200 ms after chunk 29
    # As at the end of the stream, the last chunk before the pause must be on
    # time: a late one is indistinguishable from a pause that began earlier.
    jitter = rng.uniform(0.0, 0.015, 60)
    jitter[::5] = 0.0
    jitter[[29, -1]] = 0.0
    times = [s + j for s, j in zip(send, jitter, strict=True)]

    placed = place_stream(arrivals_for(chunks, times), T0, SR)

    start = int(0.05 * SR)  # 800
    pause = int(pause_s * SR)  # 3200 samples
    positions = [start + k * CHUNK + (pause if k >= 30 else 0) for k in range(60)]
    np.testing.assert_array_equal(placed, expected_timeline(chunks, positions))
    gap_start = start + 30 * CHUNK
    assert not placed[gap_start : gap_start + pause].any()
    assert placed[gap_start - 1] != 0 and placed[gap_start + pause] != 0


def test_chunks_before_t0_are_clipped() -> None:
    chunks = make_chunks(10)
    # The stream started 30 ms before t0: chunk 0 is wholly before it, chunk 1
    # straddles it (its last 10 ms fall after t0).
    times = [T0 - 0.03 + k * CHUNK / SR for k in range(10)]

    placed = place_stream(arrivals_for(chunks, times), T0, SR)

    lead = int(0.03 * SR)  # 480 samples before t0
    whole = np.concatenate(chunks)
    assert placed.size == whole.size - lead
    np.testing.assert_array_equal(placed, whole[lead:])
    np.testing.assert_array_equal(placed[:160], chunks[1][160:])


def test_stream_wholly_before_t0_is_empty() -> None:
    chunks = make_chunks(3)
    times = [T0 - 1.0 + k * CHUNK / SR for k in range(3)]
    assert place_stream(arrivals_for(chunks, times), T0, SR).size == 0


def test_recorder_places_both_directions_on_one_clock() -> None:
    recorder = Recorder(SR)
    persona, agent = make_chunks(5), make_chunks(5)
    for k in range(5):
        recorder.on_sent(T0 + k * CHUNK / SR, persona[k].tobytes())
        recorder.on_received(T0 + 0.5 + k * CHUNK / SR, (-agent[k]).tobytes())

    recording = recorder.recording(T0)

    np.testing.assert_array_equal(recording.persona, np.concatenate(persona))
    assert not recording.agent[:8000].any()
    np.testing.assert_array_equal(recording.agent[8000:], -np.concatenate(agent))
    assert recording.duration_ms == 500 + 100


# ------------------------------------------------------------------ WAV


@pytest.mark.parametrize("sample_rate", [16000, 8000])
def test_wav_round_trip_left_persona_right_agent(tmp_path: Path, sample_rate: int) -> None:
    rng = np.random.default_rng(3)
    persona = rng.integers(-32768, 32768, sample_rate // 2, dtype=np.int16)
    agent = rng.integers(-32768, 32768, sample_rate, dtype=np.int16)  # longer than persona
    path = tmp_path / "nested" / "recording.wav"

    Recording(sample_rate, persona, agent).write_wav(path)
    back = Recording.read_wav(path)

    assert back.sample_rate == sample_rate
    np.testing.assert_array_equal(back.agent, agent)
    np.testing.assert_array_equal(back.persona[: persona.size], persona)
    assert not back.persona[persona.size :].any()  # padded with silence to the agent's length
    assert back.duration_ms == 1000.0
    # Channel order on disk, read without our reader: left = persona, right = agent.
    with wave.open(str(path), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (2, 2, sample_rate)
        frames = np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16).reshape(-1, 2)
    np.testing.assert_array_equal(frames[: persona.size, 0], persona)
    np.testing.assert_array_equal(frames[:, 1], agent)


def test_read_wav_rejects_mono(tmp_path: Path) -> None:
    path = tmp_path / "mono.wav"
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(SR)
        wav.writeframes(np.zeros(100, dtype=np.int16).tobytes())
    with pytest.raises(ValueError, match="16-bit stereo"):
        Recording.read_wav(path)
