"""G.711: the table-driven encoders against the formula, G.711's fixed points, round trips."""

from __future__ import annotations

import numpy as np

from audio.g711 import (
    _alaw_formula,
    _ulaw_formula,
    alaw_decode,
    alaw_encode,
    ulaw_decode,
    ulaw_encode,
)

EVERY_SAMPLE = np.arange(-32768, 32768, dtype=np.int32).astype(np.int16)


def test_tables_equal_the_formula_for_every_sample() -> None:
    pcm = EVERY_SAMPLE.tobytes()
    assert ulaw_encode(pcm) == _ulaw_formula(EVERY_SAMPLE).tobytes()
    assert alaw_encode(pcm) == _alaw_formula(EVERY_SAMPLE).tobytes()


def test_g711_fixed_points() -> None:
    def one(encode, value: int) -> int:  # type: ignore[no-untyped-def]
        return encode(np.array([value], dtype=np.int16).tobytes())[0]

    # The values audioop gives (the whole tables matched it on Python 3.11; it is gone in 3.13).
    assert [one(ulaw_encode, v) for v in (0, 32767, -32768, -1)] == [0xFF, 0x80, 0x00, 0x7E]
    assert [one(alaw_encode, v) for v in (0, -1, 32767, -32768)] == [0xD5, 0x55, 0xAA, 0x2A]


def test_round_trip_error_is_within_a_segment_step() -> None:
    pcm = EVERY_SAMPLE.tobytes()
    for encode, decode in ((ulaw_encode, ulaw_decode), (alaw_encode, alaw_decode)):
        back = np.frombuffer(decode(encode(pcm)), dtype=np.int16).astype(np.int32)
        error = np.abs(back - EVERY_SAMPLE.astype(np.int32))
        # Logarithmic steps: at most half of the largest segment's step (1024 ... 2048).
        assert int(error.max()) <= 1024 + 16
        quiet = np.abs(EVERY_SAMPLE.astype(np.int32)) < 64
        assert int(error[quiet].max()) <= 8  # fine steps near silence
