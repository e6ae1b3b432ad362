"""OTLP/HTTP traces in: decoding, which run a span joins, and the ``/v1/traces`` route.

The bodies are built by OpenTelemetry's own classes: the SDK records real spans,
``encode_spans`` (the encoder the OTLP exporter sends with) turns them into the
protobuf request, and protobuf's ``json_format`` with the OTLP specification's
hex ids makes the JSON one.  The route is served by a real uvicorn server on
127.0.0.1 and called with aiohttp.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gzip
import json
import socket
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import uvicorn
from fastapi import FastAPI, HTTPException, Request
from google.protobuf import json_format
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from harness.ingest.otel import (
    ALL_RUNS,
    UNTRACED,
    OtlpBodyError,
    Span,
    TraceDesk,
    decode_traces,
    traces_router,
)
from harness.ingest.otel.spans import inflate

PROTOBUF = "application/x-protobuf"
JSON = "application/json"


def sdk_spans(run_id: str = "run-1") -> list[ReadableSpan]:
    """A conversation root (``conversation.id``) and a child without it, as pipecat makes."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "bot"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("pipecat")
    with tracer.start_as_current_span("conversation") as root:
        root.set_attribute("conversation.id", run_id)
        with tracer.start_as_current_span("llm") as llm:
            llm.set_attributes(
                {
                    "metrics.ttfb": 0.25,
                    "gen_ai.usage.input_tokens": 42,
                    "stream": True,
                    "tools.names": ["check_order", "book"],
                }
            )
    return list(exporter.get_finished_spans())


def otlp_json(spans: list[ReadableSpan]) -> bytes:
    """The OTLP JSON encoding: proto3 JSON with hex trace and span ids (the spec's one change)."""
    document = json_format.MessageToDict(encode_spans(spans))

    def hexify(node: Any) -> Any:
        if isinstance(node, list):
            return [hexify(item) for item in node]
        if isinstance(node, dict):
            return {
                key: base64.b64decode(value).hex()
                if key in ("traceId", "spanId", "parentSpanId")
                else hexify(value)
                for key, value in node.items()
            }
        return node

    return json.dumps(hexify(document)).encode()


def _by_name(spans: list[Span]) -> dict[str, Span]:
    return {span.name: span for span in spans}


@pytest.mark.parametrize("encoding", [PROTOBUF, JSON])
def test_both_encodings_decode_to_the_spans_the_sdk_recorded(encoding: str) -> None:
    recorded = sdk_spans()
    body = (
        encode_spans(recorded).SerializeToString() if encoding == PROTOBUF else otlp_json(recorded)
    )
    spans = _by_name(decode_traces(body, f"{encoding}; charset=utf-8"))
    sdk = {span.name: span for span in recorded}
    root, llm = spans["conversation"], spans["llm"]
    assert root.trace_id == f"{sdk['conversation'].context.trace_id:032x}"
    assert root.span_id == f"{sdk['conversation'].context.span_id:016x}"
    assert root.parent_span_id is None and llm.parent_span_id == root.span_id
    assert llm.trace_id == root.trace_id
    assert (llm.start_ns, llm.end_ns) == (sdk["llm"].start_time, sdk["llm"].end_time)
    assert root.attributes == {"conversation.id": "run-1"}
    assert llm.attributes == {
        "metrics.ttfb": 0.25,
        "gen_ai.usage.input_tokens": 42,
        "stream": True,
        "tools.names": ["check_order", "book"],
    }
    assert llm.resource["service.name"] == "bot" and llm.scope == "pipecat"


def test_json_accepts_proto_field_names_and_numbers_and_ignores_unknown_fields() -> None:
    document = json.loads(otlp_json(sdk_spans()))
    scope = document["resourceSpans"][0]["scopeSpans"][0]
    span = scope["spans"][0]
    span["start_time_unix_nano"] = int(span.pop("startTimeUnixNano"))  # proto name, a number
    span["aFieldFromTheFuture"] = {"x": 1}
    spans = decode_traces(json.dumps(document).encode(), JSON)
    assert spans[0].start_ns == span["start_time_unix_nano"]


def test_bad_bodies_say_what_is_wrong() -> None:
    with pytest.raises(
        OtlpBodyError, match="protobuf body is not an ExportTraceServiceRequest"
    ) as caught:
        decode_traces(b"\xff\xff\xff", PROTOBUF)
    assert caught.value.status == 400
    with pytest.raises(OtlpBodyError, match="does not parse"):
        decode_traces(b"{not json", JSON)
    bad_id = otlp_json(sdk_spans()).replace(b'"traceId": "', b'"traceId": "zz')
    with pytest.raises(OtlpBodyError, match="traceId 'zz"):
        decode_traces(bad_id, JSON)
    with pytest.raises(OtlpBodyError, match="not OTLP/HTTP") as caught:
        decode_traces(b"", "text/plain")
    assert caught.value.status == 415


def test_gzip_is_inflated_within_the_limit() -> None:
    body = encode_spans(sdk_spans()).SerializeToString()
    assert inflate(gzip.compress(body), "gzip", len(body)) == body
    bomb = gzip.compress(b"\0" * 1_000_000)
    with pytest.raises(OtlpBodyError) as caught:
        inflate(bomb, "gzip", 100_000)
    assert caught.value.status == 413
    with pytest.raises(OtlpBodyError, match="not supported"):
        inflate(body, "br", 10**6)


def _span(name: str, span_id: str, parent: str | None = None, **attributes: Any) -> Span:
    return Span(name, "ab" * 16, span_id, parent, 1, 2, attributes)


def test_children_wait_for_the_span_that_names_their_run() -> None:
    clock = [0.0]
    desk = TraceDesk(hold_s=60.0, clock=lambda: clock[0])
    inbox = desk.open("run-1")
    # An exporter sends a turn's children first (they end before it).
    first = desk.accept([_span("llm", "01" * 8, "02" * 8)])
    assert (first.joined, first.held, first.dropped) == (0, 1, 0) and inbox.spans == []
    second = desk.accept([_span("turn", "02" * 8, "03" * 8, **{"conversation.id": "run-1"})])
    assert second.joined == 1 and [s.name for s in inbox.spans] == ["llm", "turn"]
    # Later spans of the same trace join without naming the run.
    assert desk.accept([_span("tts", "04" * 8, "02" * 8)]).joined == 1
    # A span naming a run that is not live is dropped and counted; so is a held span
    # that no span of its trace claims in time.
    assert desk.accept([_span("turn", "05" * 8, **{"loopcall.run_id": "gone"})]).dropped == 1
    other = Span("llm", "cd" * 16, "06" * 8, "07" * 8, 1, 2, {})
    assert desk.accept([other]).held == 1
    clock[0] = 61.0
    desk.accept([])
    assert desk.dropped == 2 and desk.stats()["held"] == 0


def test_a_per_run_token_lets_spans_join_its_own_run_only() -> None:
    desk = TraceDesk()
    mine = desk.open("run-1", token="t1")
    desk.open("run-2", token="t2")
    assert desk.run_for_token("t1") == "run-1" and desk.run_for_token("nope") is None
    spans = [
        _span("turn", "01" * 8, **{"conversation.id": "run-1"}),
        Span("turn", "ef" * 16, "02" * 8, None, 1, 2, {"conversation.id": "run-2"}),
    ]
    accepted = desk.accept(spans, only_run="run-1")
    assert (accepted.joined, accepted.dropped) == (1, 1) and len(mine.spans) == 1


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self):  # type: ignore[no-untyped-def]
        yield


@contextlib.asynccontextmanager
async def serve_traces(desk: TraceDesk, max_bytes: int = 1 << 20) -> AsyncIterator[str]:
    async def key_or_token(request: Request) -> str:
        auth = request.headers.get("authorization", "")
        if auth == "Bearer api-key":
            return ALL_RUNS
        run_id = desk.run_for_token(auth.removeprefix("Bearer "))
        if run_id is None:
            raise HTTPException(401, "a key or a run token is required")
        return run_id

    app = FastAPI(telemetry=UNTRACED)
    app.include_router(traces_router(desk.accept, key_or_token, max_bytes=max_bytes))
    sock = socket.create_server(("127.0.0.1", 0))
    server = _Server(uvicorn.Config(app, log_level="error"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/v1/traces"
    finally:
        server.should_exit = True
        await task


async def _post(url: str, body: bytes, kind: str = PROTOBUF, **headers: str) -> tuple[int, bytes]:
    headers = {"Content-Type": kind, "Authorization": "Bearer api-key", **headers}
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=body, headers=headers) as r,
    ):
        return r.status, await r.read()


async def test_the_route_joins_counts_refuses_and_answers_in_kind() -> None:
    desk = TraceDesk()
    desk.open("run-1", token="run-token")
    spans = sdk_spans("run-1")
    async with serve_traces(desk, max_bytes=20_000) as url:
        status, raw = await _post(
            url, gzip.compress(otlp_json(spans)), JSON, **{"Content-Encoding": "gzip"}
        )
        assert status == 200 and json.loads(raw) == {}
        # Spans for a run that is not live: 200 with partial success, dropped and counted.
        status, raw = await _post(url, encode_spans(sdk_spans("unknown")).SerializeToString())
        reply = ExportTraceServiceResponse.FromString(raw)
        assert (
            status == 200 and reply.partial_success.rejected_spans == 1
        )  # the root; its child waits
        assert desk.dropped == 1
        # A per-run token works for its run; no key at all is 401.
        status, _ = await _post(url, otlp_json(spans), JSON, Authorization="Bearer run-token")
        assert status == 200
        status, _ = await _post(url, otlp_json(spans), JSON, Authorization="Bearer wrong")
        assert status == 401
        # Over the size limit, declared or inflated: 413.  Not OTLP: 415.  Garbage: 400.
        assert (await _post(url, b"\0" * 30_000))[0] == 413
        bomb = gzip.compress(b"\0" * 100_000)
        assert (await _post(url, bomb, **{"Content-Encoding": "gzip"}))[0] == 413
        assert (await _post(url, b"{}", "text/plain"))[0] == 415
        assert (await _post(url, b"\xff\xff"))[0] == 400
    assert len(await desk.collect("run-1", grace_s=0.0)) == 4


async def test_spans_after_the_hang_up_still_join_within_the_grace() -> None:
    desk = TraceDesk()
    desk.open("run-1", expect=True)
    recorded = sdk_spans("run-1")
    child = [s for s in recorded if s.name == "llm"]
    root = [s for s in recorded if s.name == "conversation"]
    async with serve_traces(desk) as url:
        # The call is over: the run waits (grace 30 s) while the exporter's last batches arrive.
        collecting = asyncio.create_task(desk.collect("run-1", grace_s=30.0))
        assert (await _post(url, encode_spans(child).SerializeToString()))[0] == 200
        assert not collecting.done()
        assert (await _post(url, encode_spans(root).SerializeToString()))[0] == 200
        # The root span (pipecat's conversation ends last) ends the wait at once.
        spans = await asyncio.wait_for(collecting, 10.0)
    assert sorted(s.name for s in spans) == ["conversation", "llm"]
    # Closed: later spans for the run are dropped and counted.
    assert desk.accept(decode_traces(encode_spans(root).SerializeToString(), PROTOBUF)).dropped == 1


async def test_the_grace_is_bounded_and_skipped_when_nothing_traces() -> None:
    desk = TraceDesk()
    desk.open("quiet")
    assert await asyncio.wait_for(desk.collect("quiet", grace_s=3600.0), 1.0) == []
    inbox = desk.open("partial")
    desk.accept([_span("llm", "01" * 8, "02" * 8, **{"loopcall.run_id": "partial"})])
    loop = asyncio.get_running_loop()
    started = loop.time()
    spans = await desk.collect("partial", grace_s=0.3)
    assert [s.name for s in spans] == ["llm"] and not inbox.closed_seen
    assert loop.time() - started >= 0.3


async def test_loopcall_serve_takes_traces_with_its_api_key(start_controller, tmp_path) -> None:  # type: ignore[no-untyped-def]
    controller = start_controller(f"sqlite:///{tmp_path / 'db.sqlite'}", "--no-calibrate")
    url = f"{controller.url}/v1/traces"
    body = encode_spans(sdk_spans("no-such-run")).SerializeToString()
    assert (await _post(url, body, Authorization="Bearer lc_not-a-key"))[0] == 401
    status, raw = await _post(url, body, Authorization=f"Bearer {controller.key}")
    assert (
        status == 200
        and ExportTraceServiceResponse.FromString(raw).partial_success.rejected_spans == 1
    )
    async with aiohttp.ClientSession() as session, session.get(f"{controller.url}/health") as r:
        assert (await r.json())["traces_dropped"] == 1


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 100_000,
        b'{"resourceSpans": "x"}',
        b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "00"}]}]}]}',
    ],
)
def test_odd_json_is_a_400_not_a_crash(body: bytes) -> None:
    with pytest.raises(OtlpBodyError) as caught:
        decode_traces(body, JSON)
    assert caught.value.status == 400


async def test_loopcall_run_serves_traces_on_its_port_and_goes_on_without_when_taken() -> None:
    from harness.cli.run import _serve_traces

    desk = TraceDesk()
    desk.open("run-1")
    taken = socket.create_server(("127.0.0.1", 0))
    port = taken.getsockname()[1]
    async with _serve_traces(desk, port):  # the port is someone else's: no traces, no crash
        pass
    taken.close()
    async with _serve_traces(desk, port):
        body = encode_spans(sdk_spans("run-1")).SerializeToString()
        status, _ = await _post(f"http://127.0.0.1:{port}/v1/traces", body, Authorization="")
        assert status == 200
    assert len(await desk.collect("run-1", grace_s=0.0)) == 2


async def test_a_request_span_above_the_conversation_does_not_end_the_wait() -> None:
    # A stock bot starts its pipeline inside its /api/offer handler: FastAPI's request
    # span is the trace's root, exported first, long before the call ends.
    desk = TraceDesk()
    inbox = desk.open("run-1", expect=True)
    request = _span("POST /api/offer", "0a" * 8)
    turn = _span("turn", "0c" * 8, "0b" * 8, **{"conversation.id": "run-1"})
    assert desk.accept([request, turn]).joined == 2
    assert not inbox.closed_seen  # the request span joined through its trace, naming no run
    collecting = asyncio.create_task(desk.collect("run-1", grace_s=30.0))
    conversation = _span("conversation", "0b" * 8, "0a" * 8, **{"conversation.id": "run-1"})
    desk.accept([conversation])
    spans = await asyncio.wait_for(collecting, 10.0)
    assert sorted(s.name for s in spans) == ["POST /api/offer", "conversation", "turn"]
