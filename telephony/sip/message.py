"""SIP messages (RFC 3261 section 7): parse what arrives, build what leaves.

Stage: the bottom of loopcall's SIP stack, under ``transport`` and ``agent``.  A
``SipMessage`` is a request or a response with its headers in wire order and its
body.  ``parse_message`` is strict where a wrong guess would mislead (the start
line, header syntax, Content-Length) and raises ``SipParseError`` with what was
wrong, so the call that received it can fail with that cause.  Compact header
names are expanded on parse; ``bytes(message)`` writes canonical names and a
correct Content-Length.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field

__all__ = [
    "SipMessage",
    "SipParseError",
    "NameAddr",
    "header_params",
    "new_branch",
    "new_tag",
    "parse_message",
    "parse_name_addr",
    "split_stream",
]

SIP_VERSION = "SIP/2.0"
MAGIC_COOKIE = "z9hG4bK"
COMPACT = {
    "i": "Call-ID",
    "m": "Contact",
    "e": "Content-Encoding",
    "l": "Content-Length",
    "c": "Content-Type",
    "f": "From",
    "t": "To",
    "v": "Via",
    "k": "Supported",
    "s": "Subject",
}
CANONICAL = {
    name.lower(): name
    for name in (
        "Via",
        "From",
        "To",
        "Call-ID",
        "CSeq",
        "Contact",
        "Max-Forwards",
        "Content-Type",
        "Content-Length",
        "User-Agent",
        "Allow",
        "Supported",
        "WWW-Authenticate",
        "Authorization",
        "Proxy-Authenticate",
        "Proxy-Authorization",
        "Record-Route",
        "Route",
        "Reason",
        "Server",
    )
} | {"cseq": "CSeq", "call-id": "Call-ID", "www-authenticate": "WWW-Authenticate"}
# Headers whose values may be comma-joined lists (section 7.3.1); others keep commas.
LIST_HEADERS = {"via", "contact", "route", "record-route", "allow", "supported"}
_TOKEN = re.compile(r"^[A-Za-z0-9.!%*_+`'~-]+$")
_STATUS = re.compile(r"^SIP/2\.0 ([1-6][0-9]{2}) ?(.*)$", re.IGNORECASE)
MAX_MESSAGE = 65_535


class SipParseError(ValueError):
    """Bytes that are not a well-formed SIP message; the text says what is wrong."""


def new_branch() -> str:
    """A Via branch: RFC 3261's magic cookie and 64 random bits."""
    return MAGIC_COOKIE + secrets.token_hex(8)


def new_tag() -> str:
    return secrets.token_hex(6)


def _canonical(name: str) -> str:
    lower = name.lower()
    if lower in COMPACT:
        return COMPACT[lower]
    return CANONICAL.get(lower, "-".join(part.capitalize() for part in name.split("-")))


def _split_list(value: str) -> list[str]:
    """Split a comma-joined header value, leaving commas inside quotes and <...> alone."""
    parts: list[str] = []
    depth = 0
    quoted = False
    start = 0
    for i, ch in enumerate(value):
        if ch == '"' and (i == 0 or value[i - 1] != "\\"):
            quoted = not quoted
        elif not quoted and ch == "<":
            depth += 1
        elif not quoted and ch == ">":
            depth = max(0, depth - 1)
        elif ch == "," and not quoted and depth == 0:
            parts.append(value[start:i].strip())
            start = i + 1
    parts.append(value[start:].strip())
    return [p for p in parts if p]


def header_params(value: str) -> dict[str, str]:
    """The ``;name=value`` parameters after a header's main value (outside ``<...>``)."""
    tail = value.rsplit(">", 1)[1] if ">" in value else value.partition(";")[2]
    params: dict[str, str] = {}
    for item in tail.split(";"):
        item = item.strip()
        if not item:
            continue
        name, _, val = item.partition("=")
        params[name.strip().lower()] = val.strip().strip('"')
    return params


@dataclass(frozen=True)
class NameAddr:
    """A From/To/Contact value: display name, URI, parameters (the ``tag``)."""

    uri: str
    display: str = ""
    params: tuple[tuple[str, str], ...] = ()

    @property
    def tag(self) -> str | None:
        return dict(self.params).get("tag")

    def with_tag(self, tag: str) -> NameAddr:
        params = tuple((k, v) for k, v in self.params if k != "tag") + (("tag", tag),)
        return NameAddr(self.uri, self.display, params)

    def __str__(self) -> str:
        display = f'"{self.display}" ' if self.display else ""
        params = "".join(f";{k}={v}" if v else f";{k}" for k, v in self.params)
        return f"{display}<{self.uri}>{params}"


def parse_name_addr(value: str) -> NameAddr:
    """Parse ``"Name" <sip:u@h>;tag=x`` or ``sip:u@h;tag=x`` (section 20.10)."""
    text = value.strip()
    if "<" in text:
        display, _, rest = text.partition("<")
        uri, sep, params_text = rest.partition(">")
        if not sep:
            raise SipParseError(f"unclosed '<' in {value!r}")
    else:
        uri, _, params_text = text.partition(";")
        params_text = ";" + params_text if params_text else ""
        display = ""
    if not uri.strip():
        raise SipParseError(f"no URI in {value!r}")
    params: list[tuple[str, str]] = []
    for item in params_text.split(";"):
        item = item.strip()
        if item:
            name, _, val = item.partition("=")
            params.append((name.strip().lower(), val.strip()))
    return NameAddr(uri.strip(), display.strip().strip('"'), tuple(params))


@dataclass
class SipMessage:
    """A SIP request (``method`` and ``uri``) or response (``status`` and ``reason``)."""

    method: str = ""
    uri: str = ""
    status: int = 0
    reason: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    @property
    def is_request(self) -> bool:
        return bool(self.method)

    # ------------------------------------------------------------------ headers

    def get(self, name: str, default: str | None = None) -> str | None:
        wanted = _canonical(name)
        for key, value in self.headers:
            if key == wanted:
                return value
        return default

    def get_all(self, name: str) -> list[str]:
        """Every value of ``name``, comma-joined lists split (Via, Contact, Route...)."""
        wanted = _canonical(name)
        values: list[str] = []
        for key, value in self.headers:
            if key == wanted:
                values.extend(_split_list(value) if key.lower() in LIST_HEADERS else [value])
        return values

    def require(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            kind = self.method or f"{self.status} response"
            raise SipParseError(f"{kind} has no {_canonical(name)} header")
        return value

    def add(self, name: str, value: str) -> None:
        self.headers.append((_canonical(name), value))

    def set(self, name: str, value: str) -> None:
        """Replace every ``name`` header with one ``value`` (in the first one's place)."""
        wanted = _canonical(name)
        for i, (key, _) in enumerate(self.headers):
            if key == wanted:
                self.headers[i] = (wanted, value)
                self.headers = [h for j, h in enumerate(self.headers) if j <= i or h[0] != wanted]
                return
        self.headers.append((wanted, value))

    def remove(self, name: str) -> None:
        wanted = _canonical(name)
        self.headers = [h for h in self.headers if h[0] != wanted]

    # ------------------------------------------------------------- typed views

    @property
    def call_id(self) -> str:
        return self.require("Call-ID")

    @property
    def cseq(self) -> tuple[int, str]:
        value = self.require("CSeq")
        number, _, method = value.strip().partition(" ")
        if not number.isdigit() or not method.strip():
            raise SipParseError(f"bad CSeq {value!r}")
        return int(number), method.strip().upper()

    @property
    def from_(self) -> NameAddr:
        return parse_name_addr(self.require("From"))

    @property
    def to(self) -> NameAddr:
        return parse_name_addr(self.require("To"))

    @property
    def top_via(self) -> str:
        vias = self.get_all("Via")
        if not vias:
            raise SipParseError("message has no Via header")
        return vias[0]

    @property
    def branch(self) -> str:
        return header_params(self.top_via).get("branch", "")

    # ------------------------------------------------------------------- wire

    def __bytes__(self) -> bytes:
        if self.is_request:
            lines = [f"{self.method} {self.uri} {SIP_VERSION}"]
        else:
            lines = [f"{SIP_VERSION} {self.status} {self.reason}"]
        lines += [f"{k}: {v}" for k, v in self.headers if k != "Content-Length"]
        lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + self.body

    def summary(self) -> str:
        """``INVITE sip:a@b`` or ``486 Busy Here``: for logs and run events."""
        return f"{self.method} {self.uri}" if self.is_request else f"{self.status} {self.reason}"


def parse_message(data: bytes) -> SipMessage:
    """Parse one whole SIP message; raise ``SipParseError`` saying what is wrong."""
    if len(data) > MAX_MESSAGE:
        raise SipParseError(f"message of {len(data)} bytes is larger than {MAX_MESSAGE}")
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        head, sep, body = data.partition(b"\n\n")
        if not sep:
            raise SipParseError("no blank line ends the headers")
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SipParseError(f"headers are not UTF-8: {exc}") from exc
    lines = text.replace("\r\n", "\n").split("\n")
    start = lines[0].strip()
    message = _start_line(start)
    for line in lines[1:]:
        if not line:
            continue
        if line[0] in " \t":  # folded continuation (section 7.3.1)
            if not message.headers:
                raise SipParseError("continuation line before any header")
            key, value = message.headers[-1]
            message.headers[-1] = (key, f"{value} {line.strip()}")
            continue
        name, colon, value = line.partition(":")
        if not colon or not _TOKEN.match(name.strip()):
            raise SipParseError(f"bad header line {line[:60]!r}")
        message.headers.append((_canonical(name.strip()), value.strip()))
    length_text = message.get("Content-Length")
    if length_text is not None:
        if not length_text.isdigit():
            raise SipParseError(f"bad Content-Length {length_text!r}")
        length = int(length_text)
        if length > len(body):
            raise SipParseError(f"Content-Length {length} but only {len(body)} body bytes")
        body = body[:length]
    message.body = body
    for required in ("Via", "From", "To", "Call-ID", "CSeq"):
        message.require(required)
    _, method = message.cseq
    if message.is_request and method != message.method:
        raise SipParseError(f"CSeq method {method} does not match {message.method}")
    return message


def _start_line(line: str) -> SipMessage:
    if line[:4].upper() == "SIP/":
        match = _STATUS.match(line)
        if match is None:
            raise SipParseError(f"bad status line {line[:60]!r}")
        return SipMessage(status=int(match.group(1)), reason=match.group(2).strip())
    parts = line.split(" ")
    if len(parts) != 3 or parts[2].upper() != SIP_VERSION or not _TOKEN.match(parts[0]):
        raise SipParseError(f"bad request line {line[:60]!r}")
    if ":" not in parts[1]:
        raise SipParseError(f"bad Request-URI {parts[1][:60]!r}")
    return SipMessage(method=parts[0].upper(), uri=parts[1])


def split_stream(buffer: bytearray) -> bytes | None:
    """Take one whole message off the front of a TCP stream buffer (None: need more).

    Stream transports frame messages by Content-Length (section 18.3); keep-alive
    CRLFs between messages are skipped.  Raises ``SipParseError`` when the framing
    itself is broken (no usable Content-Length), since the stream cannot resync.
    """
    while buffer[:2] == b"\r\n":
        del buffer[:2]
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        if len(buffer) > MAX_MESSAGE:
            raise SipParseError("headers longer than 64 KiB on a stream")
        return None
    head = bytes(buffer[:end]).decode("utf-8", "replace")
    length = None
    for line in head.split("\r\n")[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() in ("content-length", "l"):
            if not value.strip().isdigit():
                raise SipParseError(f"bad Content-Length {value.strip()!r} on a stream")
            length = int(value.strip())
    if length is None:
        raise SipParseError("a message on a stream transport has no Content-Length")
    total = end + 4 + length
    if len(buffer) < total:
        return None
    data = bytes(buffer[:total])
    del buffer[:total]
    return data
