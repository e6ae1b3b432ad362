"""Both directions of a call, captured at the harness's side of the wire, on one clock.

Stage: a tap on the ``Call`` (``telephony.base.CallTap``).  In: every chunk the
call sends (persona) or receives (agent), with the monotonic time it crossed the
wire.  Out: two sample-aligned int16 channels and a stereo WAV (left persona,
right agent) whose sample 0 is the moment the call connected.

Placing chunks by their arrival times alone would smear them by network and
scheduling jitter.  A stream is continuous, so within it each chunk follows the
previous one; its position on the clock is fixed by the *least* delayed chunk
nearby: for chunk k, offset_k = arrival_k - samples_before_k / rate, and the
stream's offset at k is the minimum of offset_j over the next ``window`` chunks.
A real gap (the sender paused, packets were lost) raises every later offset, and
the forward-looking minimum follows it at the gap.
"""

from __future__ import annotations

import wave
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["Recorder", "Recording", "place_stream"]

WINDOW_CHUNKS = 50


def place_stream(
    arrivals: list[tuple[float, bytes]], t0: float, sample_rate: int, *, window: int = WINDOW_CHUNKS
) -> np.ndarray:
    """Lay a stream of (arrival time, int16 bytes) chunks on a timeline starting at ``t0``."""
    if not arrivals:
        return np.zeros(0, dtype=np.int16)
    chunks = [np.frombuffer(pcm, dtype=np.int16) for _, pcm in arrivals]
    sizes = np.array([c.size for c in chunks])
    before = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    times = np.array([t for t, _ in arrivals])
    offsets = (times - t0) * sample_rate - before  # in samples
    # Forward-looking running minimum over `window` chunks.
    n = offsets.size
    padded = np.concatenate((offsets, np.full(window - 1, np.inf)))
    strided = np.lib.stride_tricks.sliding_window_view(padded, window)
    anchor = strided.min(axis=1)[:n]
    starts = np.round(anchor + before).astype(np.int64)
    total = int(max(0, (starts + sizes).max()))
    out = np.zeros(total, dtype=np.int16)
    for start, chunk in zip(starts.tolist(), chunks, strict=True):
        if start + chunk.size <= 0:
            continue  # entirely before t0
        lo = max(0, start)
        out[lo : start + chunk.size] = chunk[lo - start :]
    return out


@dataclass
class Recording:
    """The two channels of a call, sample 0 = call connected."""

    sample_rate: int
    persona: np.ndarray
    agent: np.ndarray

    @property
    def duration_ms(self) -> float:
        return max(self.persona.size, self.agent.size) * 1000.0 / self.sample_rate

    def stereo(self) -> np.ndarray:
        n = max(self.persona.size, self.agent.size)
        out = np.zeros((n, 2), dtype=np.int16)
        out[: self.persona.size, 0] = self.persona
        out[: self.agent.size, 1] = self.agent
        return out

    def write_wav(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with wave.open(str(path), "wb") as wav:
            wav.setnchannels(2)
            wav.setsampwidth(2)
            wav.setframerate(self.sample_rate)
            wav.writeframes(self.stereo().tobytes())

    @classmethod
    def read_wav(cls, path: Path) -> Recording:
        with wave.open(str(path), "rb") as wav:
            if wav.getnchannels() != 2 or wav.getsampwidth() != 2:
                raise ValueError(f"{path} is not a 16-bit stereo recording")
            data = np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16).reshape(-1, 2)
            return cls(wav.getframerate(), data[:, 0].copy(), data[:, 1].copy())


@dataclass
class Recorder:
    """A call tap that keeps every chunk and builds the ``Recording`` at the end."""

    sample_rate: int
    sent: list[tuple[float, bytes]] = field(default_factory=list)
    received: list[tuple[float, bytes]] = field(default_factory=list)

    def on_sent(self, t: float, pcm: bytes) -> None:
        self.sent.append((t, pcm))

    def on_received(self, t: float, pcm: bytes) -> None:
        self.received.append((t, pcm))

    def recording(self, t0: float) -> Recording:
        """Both channels placed on the clock that starts at ``t0`` (call connected)."""
        return Recording(
            self.sample_rate,
            place_stream(self.sent, t0, self.sample_rate),
            place_stream(self.received, t0, self.sample_rate),
        )
