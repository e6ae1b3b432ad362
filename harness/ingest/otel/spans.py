"""OTLP/HTTP trace bodies -> ``Span`` values: the first step of an agent's spans into a run.

Stage: the ``/v1/traces`` route hands the request body here; what comes out goes to
the ``TraceDesk`` (which run a span joins) and, at the run's end, to the mapping
(``replies``/``join``).  Decoding is opentelemetry-proto's generated classes, never
our own parser: protobuf (``application/x-protobuf``) with ``ParseFromString``;
JSON (``application/json``) with protobuf's ``json_format``, after the one change
the OTLP specification makes to the proto3 JSON mapping: ``traceId``, ``spanId``
and ``parentSpanId`` are hex strings, not base64.  Field names may be lowerCamelCase
or the proto names, enums integers, 64-bit integers strings or numbers; unknown
fields are ignored, as the specification asks of a receiver.  ``gzip`` content
encoding is inflated under the same size limit as the body (a small bomb gets 413).
"""

from __future__ import annotations

import base64
import binascii
import json
import zlib
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from harness.errors import LoopcallError

__all__ = [
    "JSON",
    "PROTOBUF",
    "OtlpBodyError",
    "OtlpTooLarge",
    "Span",
    "decode_traces",
    "inflate",
    "media_type",
]

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
_ID_FIELDS = ("traceId", "trace_id", "spanId", "span_id", "parentSpanId", "parent_span_id")


class OtlpBodyError(LoopcallError, ValueError):
    """The body is not an OTLP trace export request (HTTP 400; 415 for a media type)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class OtlpTooLarge(OtlpBodyError):
    """The body, or what it inflates to, is over the limit (HTTP 413)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the trace export is over the limit of {limit} bytes", 413)


@dataclass(frozen=True)
class Span:
    """One finished span, as the agent exported it (times in Unix epoch nanoseconds)."""

    name: str
    trace_id: str  # 32 hex digits
    span_id: str  # 16 hex digits
    parent_span_id: str | None
    start_ns: int
    end_ns: int
    attributes: dict[str, Any] = field(default_factory=dict)
    resource: dict[str, Any] = field(default_factory=dict)
    scope: str = ""

    @property
    def duration_ms(self) -> float:
        return (self.end_ns - self.start_ns) / 1e6


def media_type(content_type: str | None) -> str:
    """``application/json; charset=utf-8`` -> ``application/json``; other types -> 415."""
    kind = (content_type or "").split(";", 1)[0].strip().lower()
    if kind not in (PROTOBUF, JSON):
        raise OtlpBodyError(
            f"Content-Type {content_type!r} is not OTLP/HTTP: send {PROTOBUF} or {JSON}", 415
        )
    return kind


def inflate(body: bytes, encoding: str | None, limit: int) -> bytes:
    """The body with its ``Content-Encoding`` (identity or gzip) undone, at most ``limit`` bytes."""
    coding = (encoding or "identity").strip().lower()
    if coding == "identity":
        return body
    if coding != "gzip":
        raise OtlpBodyError(f"Content-Encoding {encoding!r} is not supported: use gzip", 415)
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise OtlpBodyError(f"the gzip body is corrupt: {exc}") from exc
    if len(out) > limit:
        raise OtlpTooLarge(limit)
    return out


def _hex_ids_to_base64(node: Any) -> Any:
    """OTLP JSON carries ids as hex; protobuf's JSON mapping wants base64 for bytes."""
    if isinstance(node, list):
        return [_hex_ids_to_base64(item) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _ID_FIELDS and isinstance(value, str):
            try:
                value = base64.b64encode(bytes.fromhex(value)).decode("ascii")
            except ValueError as exc:
                raise OtlpBodyError(f"{key} {value!r} is not a hex id") from exc
        out[key] = _hex_ids_to_base64(value)
    return out


def _parse(body: bytes, kind: str) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    if kind == PROTOBUF:
        try:
            request.ParseFromString(body)
        except DecodeError as exc:
            raise OtlpBodyError(
                f"the protobuf body is not an ExportTraceServiceRequest: {exc}"
            ) from exc
        return request
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise OtlpBodyError(f"the JSON body does not parse: {exc}") from exc
    if not isinstance(document, dict):
        raise OtlpBodyError("the JSON body must be an object with resourceSpans")
    try:
        json_format.ParseDict(_hex_ids_to_base64(document), request, ignore_unknown_fields=True)
    except (json_format.ParseError, TypeError, ValueError, RecursionError) as exc:
        raise OtlpBodyError(f"the JSON body is not an ExportTraceServiceRequest: {exc}") from exc
    return request


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [_value(item) for item in value.array_value.values]
    if kind == "kvlist_value":
        return _attributes(value.kvlist_value.values)
    if kind == "bytes_value":
        return value.bytes_value.hex()
    return getattr(value, kind)


def _attributes(pairs: Any) -> dict[str, Any]:
    found: dict[str, Any] = {}
    pair: KeyValue
    for pair in pairs:
        found[pair.key] = _value(pair.value)
    return found


def _hex(raw: bytes, size: int, what: str) -> str:
    if len(raw) != size:
        raise OtlpBodyError(f"a span's {what} has {len(raw)} bytes, not {size}")
    return binascii.hexlify(raw).decode("ascii")


def decode_traces(body: bytes, content_type: str | None) -> list[Span]:
    """Every span in an OTLP/HTTP trace export body (already inflated)."""
    request = _parse(body, media_type(content_type))
    spans: list[Span] = []
    for resource_spans in request.resource_spans:
        resource = _attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                spans.append(
                    Span(
                        name=span.name,
                        trace_id=_hex(span.trace_id, 16, "traceId"),
                        span_id=_hex(span.span_id, 8, "spanId"),
                        parent_span_id=(
                            _hex(span.parent_span_id, 8, "parentSpanId")
                            if span.parent_span_id
                            else None
                        ),
                        start_ns=span.start_time_unix_nano,
                        end_ns=span.end_time_unix_nano,
                        attributes=_attributes(span.attributes),
                        resource=resource,
                        scope=scope_spans.scope.name,
                    )
                )
    return spans
