"""Real SIP peers for the tests: SIPp scenarios and an auto-answering baresip.

Stage: test infrastructure for the SIP channel (``telephony/sip``).  A test
starts a peer as a child process on free 127.0.0.1 ports, points loopcall at
it (or lets it call loopcall), then asserts on the peer's exit code and logs.
Nothing here leaves loopback: SIPp gets ``-i/-mi/-ci 127.0.0.1``, baresip
``net_interface 127.0.0.1``.

* ``start_sipp_uas(scenario, ...)`` runs ``sipp -sf tests/sip_peers/<scenario>``
  (``None`` = SIPp's built-in ``uas``; add ``rtp_echo=True`` for an echoing
  agent).  ``start_sipp_uac(..., target_port=...)`` runs SIPp as the caller
  (``uac_dtmf.xml``).  Each returns a ``SippProcess``: ``.port``,
  ``.media_port``, ``.wait(timeout)`` -> exit code (0 every call passed,
  1 at least one failed, 255 fatal error or the ``-timeout`` safety net),
  ``.stop()``, and the logs SIPp wrote into ``.workdir``.
* ``start_baresip(wav, ...)`` runs ``baresip -f DIR`` as a phone that answers
  every call and talks from ``wav``; it hangs up (BYE) when the file ends.
* ``tts_wav``, ``read_wav_8k``, ``write_wav`` and ``write_ulaw_raw`` make the
  audio at test time (flite, 8 kHz; SIPp's ``rtp_stream`` wants headerless
  mu-law).

Readiness is a real condition, polled with a deadline: the child owns a socket
bound to each of its ports (``/proc/net/{udp,tcp}`` inodes matched against
``/proc/<pid>/fd``), and baresip has printed "baresip is ready.".  When the
ports were picked here and the child dies on start-up (another process took a
port in between), it is started again on new ports.  See
``tests/sip_peers/README.md`` for what each scenario does.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import string
import subprocess
import tempfile
import time
import wave
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Literal

from audio.g711 import ulaw_encode
from audio.resample import Downsampler

__all__ = [
    "BARESIP_DIR",
    "DTMF_DIGITS",
    "LOCALHOST",
    "SIP_PEERS",
    "BaresipProcess",
    "SipPeerError",
    "SippProcess",
    "free_media_port",
    "free_port",
    "free_udp_port",
    "read_wav_8k",
    "silence",
    "start_baresip",
    "start_sipp_uac",
    "start_sipp_uas",
    "tts_wav",
    "write_ulaw_raw",
    "write_wav",
]

LOCALHOST = "127.0.0.1"
SIP_PEERS = Path(__file__).resolve().parent / "sip_peers"
BARESIP_DIR = SIP_PEERS / "baresip"
# What uac_dtmf.xml sends as RFC 2833 events, in order ("#" is event 11).
DTMF_DIGITS = "123#"
# The file uas_play.xml streams, relative to SIPp's working directory.
PLAY_FILE = "play.ulaw"

Transport = Literal["udp", "tcp"]
_SIPP_TRANSPORT = {"udp": "u1", "tcp": "t1"}
# Attempts when a port picked here was taken before the child bound it; the
# exit codes that say so: SIPp's -2, baresip's errno EADDRINUSE.
_STARTUP_ATTEMPTS = 3
_SIPP_BIND_FAILED = 254
_BARESIP_BIND_FAILED = 98
_POLL = 0.01


class SipPeerError(RuntimeError):
    """A SIP peer did not start, or did not end as asked."""


# --- ports -------------------------------------------------------------------


def _bindable(kind: int, port: int) -> bool:
    with socket.socket(socket.AF_INET, kind) as sock:
        try:
            sock.bind((LOCALHOST, port))
        except OSError:
            return False
    return True


def free_udp_port() -> int:
    """A UDP port on 127.0.0.1 that nothing is bound to right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((LOCALHOST, 0))
        return int(sock.getsockname()[1])


def free_port(*, also_next: bool = False) -> int:
    """A port on 127.0.0.1 free for both UDP and TCP (and ``port + 1`` too if asked)."""
    for _ in range(200):
        port = free_udp_port()
        wanted = [port, port + 1] if also_next else [port]
        if port + 1 < 65536 and all(
            _bindable(kind, p) for p in wanted for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM)
        ):
            return port
    raise SipPeerError("no free UDP+TCP port on 127.0.0.1")


def free_media_port() -> int:
    """An even UDP port ``p`` with ``p`` and ``p + 2`` free: SIPp binds both (-mp)."""
    for _ in range(200):
        port = free_udp_port() & ~1
        if (
            1024 <= port < 65534
            and _bindable(socket.SOCK_DGRAM, port)
            and _bindable(socket.SOCK_DGRAM, port + 2)
        ):
            return port
    raise SipPeerError("no free even UDP port pair on 127.0.0.1")


def _socket_inodes(pid: int) -> set[str]:
    inodes: set[str] = set()
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
    return inodes


_TCP_LISTEN = "0A"


def _bound_ports(pid: int) -> set[tuple[str, int]]:
    """("udp"|"tcp", port) of the sockets ``pid`` has on 127.0.0.1 or 0.0.0.0 (TCP: listening)."""
    inodes = _socket_inodes(pid)
    bound: set[tuple[str, int]] = set()
    for proto in ("udp", "tcp"):
        with contextlib.suppress(OSError), open(f"/proc/net/{proto}") as table:
            next(table)
            for line in table:
                cols = line.split()
                address, port_hex = cols[1].split(":")
                if cols[9] not in inodes or address not in ("0100007F", "00000000"):
                    continue
                if proto == "tcp" and cols[3] != _TCP_LISTEN:
                    continue
                bound.add((proto, int(port_hex, 16)))
    return bound


# --- processes ---------------------------------------------------------------


def _tail(path: Path, limit: int = 3000) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return text[-limit:]


@dataclass
class _PeerProcess:
    """A child process with its working directory; ``async with`` stops it and cleans up."""

    process: asyncio.subprocess.Process
    workdir: Path
    owns_workdir: bool

    @property
    def stdout_path(self) -> Path:
        return self.workdir / "stdout.log"

    @property
    def returncode(self) -> int | None:
        return self.process.returncode

    def describe(self) -> str:
        """Exit state and the tails of the logs, for assertion messages."""
        parts = [f"pid {self.process.pid}, returncode {self.process.returncode}"]
        for path in sorted(self.workdir.glob("*.log")):
            text = _tail(path).strip()
            if text:
                parts.append(f"--- {path.name}\n{text}")
        return "\n".join(parts)

    async def wait(self, timeout: float = 30.0) -> int:
        """The exit code, once the process has ended on its own within ``timeout`` seconds."""
        try:
            return await asyncio.wait_for(self.process.wait(), timeout)
        except TimeoutError:
            raise SipPeerError(
                f"still running after {timeout} s (returncode None)\n{self.describe()}"
            ) from None

    async def _signal_and_wait(self, sig: int, grace: float) -> bool:
        if self.process.returncode is not None:
            return True
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(sig)
        try:
            await asyncio.wait_for(self.process.wait(), grace)
        except TimeoutError:
            return False
        return True

    async def stop(self, grace: float = 3.0) -> int:
        """SIGTERM, then SIGKILL after ``grace`` seconds; the exit code (meaningless if killed)."""
        if not await self._signal_and_wait(signal.SIGTERM, grace):
            await self._signal_and_wait(signal.SIGKILL, 10.0)
        return self.process.returncode if self.process.returncode is not None else -9

    async def aclose(self) -> None:
        """Stop, and remove the working directory if it was a temporary one made here."""
        await self.stop()
        if self.owns_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    async def __aenter__(self) -> _PeerProcess:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


async def _spawn(argv: Sequence[str], workdir: Path) -> asyncio.subprocess.Process:
    """Start ``argv`` in ``workdir``: stdin /dev/null, output appended to stdout.log/stderr.log."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
    stdout = os.open(workdir / "stdout.log", flags, 0o644)
    stderr = os.open(workdir / "stderr.log", flags, 0o644)
    try:
        return await asyncio.create_subprocess_exec(
            *argv, cwd=workdir, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr
        )
    finally:  # the child has its own copies
        os.close(stdout)
        os.close(stderr)


async def _wait_ready(
    peer: _PeerProcess,
    ports: set[tuple[str, int]],
    deadline: float,
    *,
    log_line: str | None = None,
    exit_ok: bool = False,
) -> None:
    """Until the child owns every socket in ``ports`` (and printed ``log_line``).

    A child that exits first is an error, unless ``exit_ok`` (a caller may be
    done before it is seen ready).
    """
    pid = peer.process.pid
    while True:
        if peer.process.returncode is not None:
            if exit_ok:
                return
            raise SipPeerError(f"exited during start-up\n{peer.describe()}")
        missing = ports - _bound_ports(pid)
        printed = log_line is None or log_line in _tail(peer.stdout_path, 1_000_000)
        if not missing and printed:
            return
        if time.monotonic() > deadline:
            waiting = f"ports {sorted(missing)}" if missing else f"the line {log_line!r}"
            raise SipPeerError(f"not ready: still waiting for {waiting}\n{peer.describe()}")
        await asyncio.sleep(_POLL)


def _make_workdir(workdir: Path | None, prefix: str) -> tuple[Path, bool]:
    if workdir is not None:
        workdir.mkdir(parents=True, exist_ok=True)
        return workdir, False
    return Path(tempfile.mkdtemp(prefix=prefix)), True


# --- SIPp --------------------------------------------------------------------


@dataclass
class SippProcess(_PeerProcess):
    """A running ``sipp``: its ports and the logs it writes into ``workdir``."""

    scenario: str
    port: int
    media_port: int
    control_port: int
    transport: Transport
    argv: list[str] = field(default_factory=list)

    @property
    def address(self) -> tuple[str, int]:
        return (LOCALHOST, self.port)

    @property
    def uri(self) -> str:
        """Where to call a SIPp UAS (its scenarios accept any user part)."""
        suffix = ";transport=tcp" if self.transport == "tcp" else ""
        return f"sip:agent@{LOCALHOST}:{self.port}{suffix}"

    @property
    def error_log(self) -> Path:
        """``-trace_err``: unexpected messages, failed checks and <warning> lines."""
        return self.workdir / "errors.log"

    @property
    def message_log(self) -> Path:
        """``-trace_msg``: every SIP message sent and received."""
        return self.workdir / "messages.log"

    @property
    def action_log(self) -> Path:
        """``-trace_logs``: the scenario's <log> lines (uas_play.xml logs the run id)."""
        return self.workdir / "logs.log"

    @property
    def screen_log(self) -> Path:
        """``-trace_screen``: the final statistics screen (successful/failed calls)."""
        return self.workdir / "screen.log"

    def errors(self) -> str:
        return _tail(self.error_log, 1_000_000)

    def messages(self) -> str:
        return _tail(self.message_log, 10_000_000)

    def logs(self) -> str:
        return _tail(self.action_log, 1_000_000)

    async def __aenter__(self) -> SippProcess:
        return self


def _scenario_path(scenario: str | Path) -> Path:
    path = Path(scenario)
    if not path.is_absolute():
        path = SIP_PEERS / path
    if path.suffix != ".xml":
        path = path.with_suffix(".xml")
    if not path.is_file():
        raise SipPeerError(f"no SIPp scenario {path}")
    return path


def _sipp_argv(
    *,
    scenario: str | Path | None,
    builtin: str,
    port: int,
    media_port: int,
    control_port: int,
    transport: Transport,
    calls: int,
    timeout: float,
    keys: Mapping[str, str],
    extra_args: Sequence[str],
) -> list[str]:
    sipp = shutil.which("sipp")
    if sipp is None:
        raise SipPeerError("sipp is missing: run `make system-deps` (apt-get install sip-tester)")
    argv = [sipp]
    argv += ["-sf", str(_scenario_path(scenario))] if scenario is not None else ["-sn", builtin]
    argv += [
        "-i", LOCALHOST, "-mi", LOCALHOST, "-ci", LOCALHOST,
        "-p", str(port), "-mp", str(media_port), "-cp", str(control_port),
        "-t", _SIPP_TRANSPORT[transport],
        "-m", str(calls),
        "-nostdin",
        # The safety net: past it SIPp exits at once with 255, even mid-call.
        "-timeout", f"{max(1, round(timeout))}s", "-timeout_error",
        "-trace_err", "-error_file", "errors.log",
        "-trace_msg", "-message_file", "messages.log",
        "-trace_logs", "-log_file", "logs.log",
        "-trace_screen", "-screen_file", "screen.log",
    ]  # fmt: skip
    for name, value in keys.items():
        argv += ["-key", name, value]
    argv += list(extra_args)
    return argv


async def _start_sipp(
    *,
    scenario: str | Path | None,
    builtin: str,
    role_args: Sequence[str],
    port: int | None,
    media_port: int | None,
    transport: Transport,
    calls: int,
    timeout: float,
    keys: Mapping[str, str],
    extra_args: Sequence[str],
    workdir: Path | None,
    prepare: Path | None,
    ready_timeout: float,
    exit_ok: bool,
) -> SippProcess:
    directory, owns = _make_workdir(workdir, "sipp-")
    if prepare is not None and prepare.suffix.lower() == ".wav":
        write_ulaw_raw(directory / PLAY_FILE, read_wav_8k(prepare))
    elif prepare is not None:
        shutil.copyfile(prepare, directory / PLAY_FILE)
    pinned = port is not None or media_port is not None
    name = Path(scenario).name if scenario is not None else f"built-in {builtin}"
    last_error: SipPeerError | None = None
    for _ in range(1 if pinned else _STARTUP_ATTEMPTS):
        sip_port = port if port is not None else free_port()
        rtp_port = media_port if media_port is not None else free_media_port()
        control_port = free_udp_port()
        argv = _sipp_argv(
            scenario=scenario,
            builtin=builtin,
            port=sip_port,
            media_port=rtp_port,
            control_port=control_port,
            transport=transport,
            calls=calls,
            timeout=timeout,
            keys=keys,
            extra_args=[*role_args, *extra_args],
        )
        process = await _spawn(argv, directory)
        peer = SippProcess(
            process=process,
            workdir=directory,
            owns_workdir=owns,
            scenario=name,
            port=sip_port,
            media_port=rtp_port,
            control_port=control_port,
            transport=transport,
            argv=argv,
        )
        wanted = {
            ("tcp" if transport == "tcp" else "udp", sip_port),
            ("udp", rtp_port),
            ("udp", rtp_port + 2),
        }
        try:
            await _wait_ready(peer, wanted, time.monotonic() + ready_timeout, exit_ok=exit_ok)
        except SipPeerError as exc:
            await peer.stop(grace=1.0)
            last_error = SipPeerError(f"sipp ({name}) did not start: {exc}\n{' '.join(argv)}")
        else:
            if peer.returncode != _SIPP_BIND_FAILED:
                return peer  # ready, or a caller that is already done
            last_error = SipPeerError(f"sipp ({name}) could not bind its ports\n{peer.describe()}")
        if peer.returncode != _SIPP_BIND_FAILED:
            break
    if owns:
        shutil.rmtree(directory, ignore_errors=True)
    assert last_error is not None
    raise last_error


async def start_sipp_uas(
    scenario: str | Path | None,
    *,
    port: int | None = None,
    media_port: int | None = None,
    rtp_echo: bool = False,
    keys: Mapping[str, str] | None = None,
    play: Path | None = None,
    calls: int = 1,
    timeout: float = 120.0,
    transport: Transport = "udp",
    extra_args: Sequence[str] = (),
    workdir: Path | None = None,
    ready_timeout: float = 10.0,
) -> SippProcess:
    """SIPp as the agent under test, listening on 127.0.0.1; returns once its ports are bound.

    ``scenario`` is a file in ``tests/sip_peers`` ("uas_play.xml" or "uas_play"),
    an absolute path, or None for SIPp's built-in ``uas`` (180, 200 with PCMU,
    waits for BYE).  ``rtp_echo`` sends every RTP packet arriving on
    ``media_port`` back to its source.  ``play`` is the audio uas_play.xml
    streams, written into the working directory as ``play.ulaw``: a WAV (8 or
    16 kHz mono 16-bit, converted) or headerless 8 kHz mu-law (copied).
    SIPp exits after ``calls`` calls, or with 255 after ``timeout`` seconds
    whatever happens.
    """
    if scenario is not None and Path(scenario).stem == "uas_play" and play is None:
        raise SipPeerError("uas_play.xml streams a file: pass play=<WAV or mu-law file>")
    return await _start_sipp(
        scenario=scenario,
        builtin="uas",
        # -aa: OPTIONS/INFO/NOTIFY/UPDATE get 200 instead of failing the call.
        role_args=["-aa", *(["-rtp_echo"] if rtp_echo else [])],
        port=port,
        media_port=media_port,
        transport=transport,
        calls=calls,
        timeout=timeout,
        keys=keys or {},
        extra_args=extra_args,
        workdir=workdir,
        prepare=play,
        ready_timeout=ready_timeout,
        exit_ok=False,
    )


async def start_sipp_uac(
    scenario: str | Path | None = "uac_dtmf.xml",
    *,
    target_port: int,
    target_host: str = LOCALHOST,
    service: str = "agent",
    run_id: str = "sipp-uac",
    port: int | None = None,
    media_port: int | None = None,
    keys: Mapping[str, str] | None = None,
    calls: int = 1,
    timeout: float = 120.0,
    transport: Transport = "udp",
    extra_args: Sequence[str] = (),
    workdir: Path | None = None,
    ready_timeout: float = 10.0,
) -> SippProcess:
    """SIPp as the caller: calls ``sip:<service>@<target_host>:<target_port>`` ``calls`` times.

    The default scenario, uac_dtmf.xml, offers PCMA + telephone-event, sends
    the digits ``DTMF_DIGITS`` and 7 s of A-law speech, then hangs up; its
    INVITE carries ``X-Loopcall-Run-Id: <run_id>``.  None = SIPp's built-in
    ``uac``.  The caller starts at once: ``wait()`` for its exit code.
    """
    return await _start_sipp(
        scenario=scenario,
        builtin="uac",
        role_args=[f"{target_host}:{target_port}", "-s", service],
        port=port,
        media_port=media_port,
        transport=transport,
        calls=calls,
        timeout=timeout,
        keys={"run_id": run_id, **(keys or {})},
        extra_args=extra_args,
        workdir=workdir,
        prepare=None,
        ready_timeout=ready_timeout,
        exit_ok=True,
    )


# --- baresip -----------------------------------------------------------------


@dataclass
class BaresipProcess(_PeerProcess):
    """A running ``baresip -f workdir``: auto-answers on ``port`` and talks from ``wav``."""

    port: int
    user: str
    wav: Path
    argv: list[str] = field(default_factory=list)

    @property
    def uri(self) -> str:
        """The account's URI: baresip answers 404 to any other user part."""
        return f"sip:{self.user}@{LOCALHOST}:{self.port}"

    @property
    def record_dir(self) -> Path:
        return self.workdir / "recordings"

    def recordings(self, kind: Literal["dec", "enc"] = "dec") -> list[Path]:
        """sndfile's dumps, oldest first: "dec" what baresip heard, "enc" what it sent."""
        return sorted(self.record_dir.glob(f"dump-*-{kind}.wav"))

    def heard(self) -> bytes:
        """16-bit 8 kHz PCM baresip received in its latest call (empty if none)."""
        dumps = self.recordings("dec")
        return read_wav_8k(dumps[-1]) if dumps else b""

    def log(self) -> str:
        return _tail(self.stdout_path, 10_000_000)

    async def stop(self, grace: float = 3.0) -> int:
        # The first SIGTERM waits for open SIP transactions (up to 32 s); a
        # second one makes baresip exit at once.
        if not await self._signal_and_wait(signal.SIGTERM, grace) and not (
            await self._signal_and_wait(signal.SIGTERM, grace)
        ):
            await self._signal_and_wait(signal.SIGKILL, 10.0)
        return self.process.returncode if self.process.returncode is not None else -9

    async def __aenter__(self) -> BaresipProcess:
        return self


def _render(template: Path, target: Path, values: Mapping[str, object]) -> None:
    text = string.Template(template.read_text()).substitute({k: str(v) for k, v in values.items()})
    target.write_text(text)


async def start_baresip(
    wav: Path,
    *,
    port: int | None = None,
    user: str = "agent",
    trailing_silence: float = 0.0,
    timeout: float = 300.0,
    workdir: Path | None = None,
    ready_timeout: float = 10.0,
) -> BaresipProcess:
    """baresip answering every call to ``sip:<user>@127.0.0.1:<port>`` (UDP or TCP).

    Calls to another user part get 404 Not Found: dial ``BaresipProcess.uri``.

    It talks from ``wav`` (8 or 16 kHz mono 16-bit; copied as 8 kHz, with
    ``trailing_silence`` seconds appended) and hangs up with a BYE when the
    file ends, so the file's length is the call's.  What it hears is recorded
    (``heard()``).  It quits by itself after ``timeout`` seconds.
    """
    binary = shutil.which("baresip")
    if binary is None:
        raise SipPeerError("baresip is missing: run `make system-deps` (apt-get install baresip)")
    directory, owns = _make_workdir(workdir, "baresip-")
    talk = directory / "talk.wav"
    write_wav(talk, read_wav_8k(wav) + silence(trailing_silence))
    (directory / "recordings").mkdir(exist_ok=True)
    last_error: SipPeerError | None = None
    for _ in range(1 if port is not None else _STARTUP_ATTEMPTS):
        # baresip also listens on TCP port + 1.
        sip_port = port if port is not None else free_port(also_next=True)
        values = {"sip_port": sip_port, "wav": talk, "record_dir": directory / "recordings"}
        _render(BARESIP_DIR / "config", directory / "config", values)
        _render(BARESIP_DIR / "accounts", directory / "accounts", {"user": user, **values})
        argv = [binary, "-f", str(directory), "-t", str(max(1, round(timeout)))]
        peer = BaresipProcess(
            process=await _spawn(argv, directory),
            workdir=directory,
            owns_workdir=owns,
            port=sip_port,
            user=user,
            wav=talk,
            argv=argv,
        )
        try:
            await _wait_ready(
                peer,
                {("udp", sip_port), ("tcp", sip_port)},
                time.monotonic() + ready_timeout,
                log_line="baresip is ready.",
            )
        except SipPeerError as exc:
            await peer.stop(grace=1.0)
            last_error = SipPeerError(f"baresip did not start: {exc}")
            if peer.returncode != _BARESIP_BIND_FAILED:
                break
            continue
        return peer
    if owns:
        shutil.rmtree(directory, ignore_errors=True)
    assert last_error is not None
    raise last_error


# --- audio -------------------------------------------------------------------


def silence(seconds: float, rate: int = 8000) -> bytes:
    """``seconds`` of 16-bit silence."""
    return bytes(2 * round(seconds * rate))


def read_wav_8k(path: Path) -> bytes:
    """A mono 16-bit WAV as 8 kHz PCM bytes (16 kHz input is low-passed and decimated)."""
    with wave.open(str(path), "rb") as wav:
        channels, width, rate = wav.getnchannels(), wav.getsampwidth(), wav.getframerate()
        frames = wav.readframes(wav.getnframes())
    if channels != 1 or width != 2 or rate not in (8000, 16000):
        raise SipPeerError(
            f"{path}: want mono 16-bit 8 or 16 kHz, got {channels=} {width=} {rate=}"
        )
    return frames if rate == 8000 else Downsampler().process(frames)


def write_wav(path: Path, pcm16: bytes, rate: int = 8000) -> Path:
    """Mono 16-bit PCM to a WAV file (what baresip's aufile reads, at 8 kHz)."""
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(pcm16)
    return path


_ULAW_SILENCE = b"\xff"
_PACKET = 160  # bytes of 8 kHz G.711 in 20 ms


def write_ulaw_raw(path: Path, pcm16_8k: bytes) -> Path:
    """8 kHz PCM as the file SIPp 3.6.1's ``rtp_stream`` plays with payload type 0.

    Headerless mu-law bytes: rtp_stream sends a file's bytes as they are, a
    WAV header included (it would go out as a 44-byte click).  Padded with
    mu-law silence to whole 20 ms packets, since SIPp pads the last packet
    itself with zero bytes, which are full-scale in mu-law.
    """
    data = ulaw_encode(pcm16_8k)
    data += _ULAW_SILENCE * (-len(data) % _PACKET)
    path.write_bytes(data)
    return path


def tts_wav(text: str, path: Path, *, voice: str = "slt") -> Path:
    """Speak ``text`` with Debian's flite into an 8 kHz mono 16-bit WAV at ``path``.

    flite's ``kal`` voice is 8 kHz already; the others (slt, rms, awb) are
    16 kHz and are brought down with ``audio.resample.Downsampler``.
    """
    flite = shutil.which("flite")
    if flite is None:
        raise SipPeerError("flite is missing: run `make system-deps` (apt-get install flite)")
    with tempfile.TemporaryDirectory(prefix="tts-") as tmp:
        raw = Path(tmp) / "tts.wav"
        subprocess.run(
            [flite, "-voice", voice, "-t", text, "-o", str(raw)],
            check=True,
            capture_output=True,
            timeout=60,
        )
        pcm = read_wav_8k(raw)
    return write_wav(path, pcm)
