"""SDP offer and answer for one G.711 audio stream (RFC 4566, RFC 3264).

Stage: inside SIP call set-up.  loopcall offers PCMU, PCMA and telephone-event
(RFC 4733) with 20 ms packets; ``parse_sdp`` reads the peer's audio line,
connection address and payload map; ``negotiate`` picks the codec both sides
have (the offerer's order wins, as RFC 3264 asks) and says plainly when there
is none.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

__all__ = ["AUDIO_CODECS", "MediaOffer", "SdpError", "build_sdp", "negotiate", "parse_sdp"]

# Static payload types we speak, and their rtpmap names.
AUDIO_CODECS = {0: "PCMU", 8: "PCMA"}
DTMF_PT = 101


class SdpError(ValueError):
    """An SDP body loopcall cannot use."""


@dataclass(frozen=True)
class MediaOffer:
    """The audio part of a session description."""

    host: str
    port: int
    payload_types: tuple[int, ...]
    rtpmap: dict[int, str] = field(default_factory=dict)  # pt -> "PCMU/8000"
    direction: str = "sendrecv"
    ptime: int | None = None

    @property
    def dtmf_pt(self) -> int | None:
        for pt in self.payload_types:
            if self.rtpmap.get(pt, "").lower().startswith("telephone-event/8000"):
                return pt
        return None

    def codec_name(self, pt: int) -> str:
        name = self.rtpmap.get(pt, "").split("/")[0]
        return name.upper() if name else AUDIO_CODECS.get(pt, str(pt))


def build_sdp(
    host: str,
    port: int,
    *,
    codecs: tuple[int, ...] = (0, 8),
    dtmf_pt: int | None = DTMF_PT,
    session_id: int | None = None,
    version: int = 1,
) -> bytes:
    """An offer (or an answer, with the chosen codec only) for one audio stream."""
    session = session_id if session_id is not None else secrets.randbelow(2**31)
    family = "IP6" if ":" in host else "IP4"
    pts = [*codecs, *([dtmf_pt] if dtmf_pt is not None else [])]
    lines = [
        "v=0",
        f"o=loopcall {session} {version} IN {family} {host}",
        "s=loopcall",
        f"c=IN {family} {host}",
        "t=0 0",
        f"m=audio {port} RTP/AVP {' '.join(str(pt) for pt in pts)}",
    ]
    lines += [f"a=rtpmap:{pt} {AUDIO_CODECS[pt]}/8000" for pt in codecs]
    if dtmf_pt is not None:
        lines += [f"a=rtpmap:{dtmf_pt} telephone-event/8000", f"a=fmtp:{dtmf_pt} 0-16"]
    lines += ["a=ptime:20", "a=sendrecv"]
    return ("\r\n".join(lines) + "\r\n").encode("ascii")


def parse_sdp(body: bytes) -> MediaOffer:
    """The first audio stream of an SDP body; ``SdpError`` when there is none."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SdpError("SDP body is not text") from exc
    session_host = ""
    media_host = ""
    port: int | None = None
    pts: tuple[int, ...] = ()
    rtpmap: dict[int, str] = {}
    direction = "sendrecv"
    ptime: int | None = None
    in_audio = False
    seen_audio = False
    for raw in text.splitlines():
        line = raw.strip()
        if len(line) < 2 or line[1] != "=":
            continue
        kind, value = line[0], line[2:]
        if kind == "m":
            if seen_audio:
                in_audio = False
                continue
            fields = value.split()
            in_audio = bool(fields) and fields[0] == "audio"
            if in_audio:
                seen_audio = True
                if len(fields) < 4 or not fields[1].isdigit():
                    raise SdpError(f"bad media line m={value}")
                port = int(fields[1])
                if not fields[2].startswith("RTP/AVP"):
                    raise SdpError(f"audio is offered over {fields[2]}, not RTP/AVP")
                pts = tuple(int(f) for f in fields[3:] if f.isdigit())
        elif kind == "c":
            fields = value.split()
            if len(fields) >= 3:
                if in_audio:
                    media_host = fields[2].split("/")[0]
                elif not seen_audio:
                    session_host = fields[2].split("/")[0]
        elif kind == "a" and (in_audio or not seen_audio):
            name, _, arg = value.partition(":")
            if name == "rtpmap" and in_audio:
                pt_text, _, encoding = arg.partition(" ")
                if pt_text.isdigit():
                    rtpmap[int(pt_text)] = encoding.strip()
            elif name == "ptime" and arg.strip().isdigit():
                ptime = int(arg.strip())
            elif name in ("sendrecv", "sendonly", "recvonly", "inactive"):
                direction = name
    if port is None:
        raise SdpError("SDP has no audio stream (m=audio)")
    host = media_host or session_host
    if not host:
        raise SdpError("SDP has no connection address (c=)")
    return MediaOffer(host, port, pts, rtpmap, direction, ptime)


def negotiate(offer: MediaOffer, *, prefer: tuple[int, ...] = (0, 8)) -> tuple[int, int | None]:
    """The audio codec and telephone-event payload types to use with ``offer``."""
    for pt in offer.payload_types:
        name = offer.codec_name(pt)
        for ours in prefer:
            if name == AUDIO_CODECS[ours]:
                return ours, offer.dtmf_pt
    names = ", ".join(offer.codec_name(pt) for pt in offer.payload_types) or "none"
    raise SdpError(f"no common codec: the peer offers {names}; loopcall speaks PCMU and PCMA")
