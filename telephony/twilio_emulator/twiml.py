"""The TwiML the emulator runs: ``<Response><Connect><Stream>``, read into a
``StreamSpec`` (where a call's media stream goes, with its ``<Parameter>``s)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass, field

from telephony.twilio_emulator.config import is_url

__all__ = ["StreamSpec", "TwimlError", "parse_stream_twiml"]


class TwimlError(ValueError):
    """TwiML the emulator cannot run (malformed, or verbs it does not implement)."""


@dataclass(frozen=True)
class StreamSpec:
    """A ``<Connect><Stream>``: where the media stream goes and its ``<Parameter>``s."""

    url: str
    parameters: Mapping[str, str] = field(default_factory=dict)


def parse_stream_twiml(twiml: str | bytes) -> StreamSpec:
    """Read ``<Response><Connect><Stream url="..."><Parameter .../></Stream></Connect></Response>``.

    That is the only TwiML the emulator runs; anything else raises ``TwimlError``.
    """
    data = twiml.encode("utf-8") if isinstance(twiml, str) else twiml
    try:
        root = ET.fromstring(data.strip())
    except ET.ParseError as exc:
        raise TwimlError(f"the TwiML is not well-formed XML: {exc}") from exc
    if root.tag != "Response":
        raise TwimlError(f"the TwiML's root is <{root.tag}>, expected <Response>")
    verbs = [child.tag for child in root]
    if verbs != ["Connect"]:
        found = "".join(f"<{v}>" for v in verbs) or "nothing"
        raise TwimlError(
            f"the emulator runs only <Response><Connect><Stream>; the TwiML has {found}"
        )
    nouns = [child.tag for child in root[0]]
    if nouns != ["Stream"]:
        found = "".join(f"<{n}>" for n in nouns) or "nothing"
        raise TwimlError(f"the emulator runs only <Connect><Stream>; <Connect> holds {found}")
    stream = root[0][0]
    url = (stream.get("url") or "").strip()
    if not is_url(url, ("ws", "wss")):
        raise TwimlError(f"<Stream url={url!r}> is not an absolute ws:// or wss:// URL")
    parameters: dict[str, str] = {}
    for child in stream:
        if child.tag != "Parameter":
            raise TwimlError(f"<Stream> may hold only <Parameter>, found <{child.tag}>")
        name = child.get("name")
        if not name:
            raise TwimlError("a <Parameter> has no name")
        parameters[name] = child.get("value", "")
    return StreamSpec(url, parameters)
