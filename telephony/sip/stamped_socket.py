"""A UDP socket read by the event loop whose datagrams carry the kernel's arrival time.

Stage: under the RTP session (``rtp.py``).  Datagrams come in from the agent's
RTP peer; out they go to ``on_datagram(data, addr, arrival)`` with the time the
kernel received each one, moved onto the monotonic clock.  Sending is
non-blocking: a full socket buffer drops the packet (``on_send_dropped``).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import sys
import time
from collections.abc import Callable

from loguru import logger

__all__ = ["StampedSocket"]

_SO_TIMESTAMPNS = 35  # Linux: receive timestamps as a struct timespec


class StampedSocket:
    """A non-blocking UDP socket read by the event loop, with the kernel's arrival times.

    A packet's arrival is when the kernel received it (``SO_TIMESTAMPNS`` on Linux),
    not when a busy event loop got round to reading it: a second-long stall (a
    pipeline starting) would otherwise bunch a second of on-time packets into one
    instant, and the playout would drop them as stale.  Elsewhere the read time
    stands in.
    """

    def __init__(
        self,
        sock: socket.socket,
        on_datagram: Callable[[bytes, tuple[str, int], float], None],
        on_send_dropped: Callable[[], None],
    ) -> None:
        self._sock = sock
        self._on_datagram = on_datagram
        self._on_send_dropped = on_send_dropped
        self._stamped = False
        if sys.platform == "linux":
            try:
                sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
                self._stamped = True
            except OSError:
                pass
        asyncio.get_running_loop().add_reader(sock.fileno(), self._read_ready)

    @property
    def port(self) -> int:
        return int(self._sock.getsockname()[1])

    def sendto(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            self._sock.sendto(data, addr)
        except (BlockingIOError, InterruptedError):
            self._on_send_dropped()  # the socket buffer is full: a lost packet
        except OSError as exc:  # ICMP unreachable from an earlier packet, and the like
            logger.debug(f"rtp: send to {addr}: {exc!r}")

    def close(self) -> None:
        with contextlib.suppress(Exception):
            asyncio.get_running_loop().remove_reader(self._sock.fileno())
        self._sock.close()

    def _read_ready(self) -> None:
        while True:
            try:
                data, ancillary, _flags, addr = self._sock.recvmsg(4096, 64)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # ICMP port unreachable while the peer is not up yet
                logger.debug(f"rtp: {exc!r}")
                continue
            arrival = time.monotonic()
            for level, kind, value in ancillary:
                if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS and len(value) >= 16:
                    seconds, nanoseconds = struct.unpack("qq", value[:16])
                    # The kernel stamps with the wall clock: move it onto the monotonic one.
                    arrival -= time.time() - (seconds + nanoseconds / 1e9)
            try:
                self._on_datagram(data, addr, arrival)
            except Exception:  # a callback's bug: logged, and the next packet is handled
                logger.exception("rtp: error while handling a packet")
