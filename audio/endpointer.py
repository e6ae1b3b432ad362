"""The speech-edge rule applied live: an utterance ends once its hangover has passed.

A primitive below every layer: the lean caller takes its turns with it, the
reference agent decides when the caller stopped with it.  It agrees with
``audio.edges.detect_speech`` window for window, so an endpoint decided live is
the edge the harness later finds on the recording.
"""

from __future__ import annotations

import numpy as np

from audio.edges import DEFAULT_THRESHOLD_DBFS, WINDOW_MS, Segment, threshold_amplitude

__all__ = ["StreamingEndpointer"]


class StreamingEndpointer:
    """``detect_speech``'s rule applied as audio streams in, for a live agent or caller.

    Feed int16 chunks with ``push``; once an utterance has ended (no voiced window
    for ``hangover_ms``) it returns the utterance as a ``Segment`` in absolute
    samples, else None.  ``speaking`` tells whether an utterance is open.  It runs
    on every 20 ms frame of every call, so a frame costs a few vectorised numpy
    operations; the exact first and last voiced samples are looked up only at an
    utterance's edges.
    """

    def __init__(
        self,
        sample_rate: int,
        *,
        threshold_dbfs: float = DEFAULT_THRESHOLD_DBFS,
        hangover_ms: float = 300.0,
        min_speech_ms: float = 40.0,
    ) -> None:
        thr = threshold_amplitude(threshold_dbfs)
        # |x| > thr for int16 x, without widening: x >= hi or x <= -hi.
        self._hi = int(np.floor(thr)) + 1
        self._win = max(1, sample_rate * WINDOW_MS // 1000)
        # Counted in whole windows, exactly as ``detect_speech`` counts them.
        self._hang_windows = max(1, int(round(hangover_ms / WINDOW_MS)))
        self._min_windows = max(1, int(round(min_speech_ms / WINDOW_MS)))
        self._pending = np.zeros(0, dtype=np.int16)
        self.position = 0  # samples consumed into whole windows
        self.speaking = False
        self.onset: int | None = None
        self._voiced_windows = 0
        # The latest voiced window (its samples and first sample position): the
        # utterance's last voiced sample is in it, looked up once the utterance ends.
        self._last_window: np.ndarray | None = None
        self._last_base = 0
        self._window_index = 0
        self._last_voiced_window = 0

    def _voiced(self, window: np.ndarray) -> np.ndarray:
        return np.flatnonzero((window >= self._hi) | (window <= -self._hi))

    def push(self, chunk: np.ndarray) -> Segment | None:
        data = chunk.astype(np.int16, copy=False)
        if self._pending.size:
            data = np.concatenate((self._pending, data))
        win = self._win
        n_full = data.size // win
        self._pending = data[n_full * win :].copy()
        if n_full == 0:
            return None
        block = data[: n_full * win]
        if block.max() < self._hi and block.min() > -self._hi:
            return self._silent(n_full)
        windows = block.reshape(n_full, win)
        loud = (windows.max(axis=1) >= self._hi) | (windows.min(axis=1) <= -self._hi)
        ended: Segment | None = None
        for w, voiced in enumerate(loud.tolist()):
            base = self.position
            self.position += win
            index = self._window_index
            self._window_index += 1
            if voiced:
                self._last_voiced_window = index
                if self._voiced_windows == 0:
                    self.onset = base + int(self._voiced(windows[w])[0])
                self._voiced_windows += 1
                self._last_window = windows[w]
                self._last_base = base
                if self._voiced_windows >= self._min_windows:
                    self.speaking = True
            elif (
                self._last_window is not None
                and index - self._last_voiced_window >= self._hang_windows
            ):
                ended = self._close() or ended
        return ended

    def _silent(self, n_windows: int) -> Segment | None:
        """``n_windows`` quiet windows at once (the common case, between utterances)."""
        self.position += n_windows * self._win
        self._window_index += n_windows
        # The loop closes at the first quiet window ``hang`` windows past the last voiced
        # one; it has not come before this chunk (it would have closed then).
        if (
            self._last_window is not None
            and self._last_voiced_window + self._hang_windows < self._window_index
        ):
            return self._close()
        return None

    def _close(self) -> Segment | None:
        """The hangover ran out: the open utterance (if it was long enough) ends."""
        ended: Segment | None = None
        if self.speaking and self.onset is not None and self._last_window is not None:
            end = self._last_base + int(self._voiced(self._last_window)[-1]) + 1
            ended = Segment(self.onset, end)
        self.speaking = False
        self._voiced_windows = 0
        self._last_window = None
        self.onset = None
        return ended
