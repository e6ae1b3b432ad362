"""Resampling: streaming 16 kHz <-> 8 kHz for phone lines, and soxr for everything else.

A primitive below every layer.  ``Downsampler`` and ``Upsampler`` are streaming
half-band FIR filters that keep their state between 20 ms chunks, so consecutive
chunks join without clicks; their delay is a constant 15 input samples, which the
harness's echo calibration counts as part of the transport.  ``resample`` converts
whole int16 buffers between any two rates (soxr, high quality): TTS output, STT
input.
"""

from __future__ import annotations

import numpy as np
import soxr

__all__ = ["DELAY_SAMPLES_16K", "Downsampler", "Upsampler", "resample"]


def resample(samples: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Resample int16 mono audio (soxr, high quality)."""
    if rate_in == rate_out:
        return samples.astype(np.int16, copy=False)
    out = soxr.resample(samples.astype(np.float32) / 32768.0, rate_in, rate_out, quality="HQ")
    return np.clip(np.round(out * 32768.0), -32768, 32767).astype(np.int16)


def _halfband(taps: int = 31) -> np.ndarray:
    """Windowed-sinc low-pass at a quarter of the input rate (the 8 kHz Nyquist at 16 kHz)."""
    n = np.arange(taps) - (taps - 1) / 2
    h = 0.5 * np.sinc(n / 2) * np.blackman(taps)
    return h / h.sum()


_FILTER = _halfband()
DELAY_SAMPLES_16K = (_FILTER.size - 1) // 2


class Downsampler:
    """Streaming 16 kHz -> 8 kHz (low-pass, keep every other sample)."""

    def __init__(self) -> None:
        self._history = np.zeros(_FILTER.size - 1, dtype=np.float64)
        self._phase = 0

    def process(self, pcm: bytes) -> bytes:
        x = np.frombuffer(pcm, dtype=np.int16).astype(np.float64)
        buf = np.concatenate((self._history, x))
        filtered = np.convolve(buf, _FILTER, mode="valid")  # one per input sample
        self._history = buf[-(_FILTER.size - 1) :]
        out = filtered[self._phase :: 2]
        self._phase = (self._phase + x.size) % 2
        return np.clip(np.round(out), -32768, 32767).astype(np.int16).tobytes()


class Upsampler:
    """Streaming 8 kHz -> 16 kHz (zero-stuff, low-pass with gain 2)."""

    def __init__(self) -> None:
        self._history = np.zeros(_FILTER.size - 1, dtype=np.float64)

    def process(self, pcm: bytes) -> bytes:
        x = np.frombuffer(pcm, dtype=np.int16).astype(np.float64)
        stuffed = np.zeros(x.size * 2, dtype=np.float64)
        stuffed[::2] = x * 2.0
        buf = np.concatenate((self._history, stuffed))
        out = np.convolve(buf, _FILTER, mode="valid")
        self._history = buf[-(_FILTER.size - 1) :]
        return np.clip(np.round(out), -32768, 32767).astype(np.int16).tobytes()
