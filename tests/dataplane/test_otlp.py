"""OTLP traces: a real serve exporting to an OTLP/HTTP receiver on loopback, decoded with
opentelemetry-proto; and the span queue's bounds."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from shadowmesh.observe import otlp, spans
from tests.support.serve import Served, mesh_yaml, raw_request
from tests.support.upstreams import RecordingUpstream

MIRROR_V2 = "    mirror: {host: app, subset: v2}\n"


class Receiver:
    """An OTLP/HTTP trace receiver: POST /v1/traces, protobuf in, spans kept."""

    def __init__(self) -> None:
        self.requests: list[ExportTraceServiceRequest] = []
        self.content_types: list[str] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                receiver.requests.append(request)
                receiver.content_types.append(self.headers["Content-Type"])
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200 if self.path == "/v1/traces" else 404)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def spans(self) -> list[Span]:
        return [
            span
            for request in list(self.requests)
            for resource in request.resource_spans
            for scope in resource.scope_spans
            for span in scope.spans
        ]

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Span]:
        end = time.monotonic() + timeout
        while len(self.spans()) < count and time.monotonic() < end:
            time.sleep(0.05)
        return self.spans()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def attributes(span: Span) -> dict[str, object]:
    out: dict[str, object] = {}
    for kv in span.attributes:
        kind = kv.value.WhichOneof("value")
        out[kv.key] = getattr(kv.value, kind) if kind else None
    return out


def get(port: int, extra: bytes = b"") -> None:
    request = b"GET /x HTTP/1.1\r\nHost: app\r\nUser-Agent: ua/1\r\n" + extra
    answer = raw_request(port, request + b"Connection: close\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200 ")


def test_a_span_per_request_and_per_shadow(
    upstreams: list[RecordingUpstream], serve: Callable[..., Served], receiver: Receiver
) -> None:
    v1, v2 = RecordingUpstream(), RecordingUpstream()
    upstreams.extend([v1, v2])
    endpoint = f"http://127.0.0.1:{receiver.port}"
    served = serve(
        mesh_yaml(v1.port, v2.port, MIRROR_V2),
        "--otlp-endpoint",
        endpoint,
        "--otlp-sampling",
        "100",
    )
    get(served.port)
    trace = "463ac35c9f6413ad48485a3953bb6124"
    get(served.port, f"x-b3-traceid: {trace}\r\nx-b3-spanid: a2fb4a1d1a96d312\r\n".encode())
    get(served.port, b"x-b3-traceid: 0af7651916cd43dd8448eb211c80319c\r\nx-b3-sampled: 0\r\n")
    assert len(v2.wait_for(3)) == 3
    spans = receiver.wait_for(4)
    time.sleep(0.3)  # nothing more comes: the client's unsampled trace is not exported
    spans = receiver.spans()
    assert len(spans) == 4, spans
    assert receiver.content_types == ["application/x-protobuf"] * len(receiver.requests)
    primaries = [s for s in spans if s.name != "mirror"]
    shadows = [s for s in spans if s.name == "mirror"]
    assert len(primaries) == 2 and len(shadows) == 2
    port = served.port
    for span in primaries:
        assert span.name == f"app.default.svc.cluster.local:{port}/*"  # Istio's decorator
        assert span.kind == Span.SpanKind.SPAN_KIND_CLIENT
        assert span.flags & 0xFF == 0x01  # sampled
        tags = attributes(span)
        assert tags["http.status_code"] == "200" and tags["http.method"] == "GET"
        assert tags["upstream_cluster"] == f"outbound|{port}|v1|app.default.svc.cluster.local"
        assert tags["user_agent"] == "ua/1" and tags["response_flags"] == "-"
        assert tags["http.url"] == "http://app/x" and tags["component"] == "proxy"
        assert "shadowmesh.shadow" not in tags
        assert span.status.code == Status.StatusCode.STATUS_CODE_UNSET
        assert span.end_time_unix_nano >= span.start_time_unix_nano > 0
    # The ids are those the upstream got in its B3 headers; a client's span is the parent.
    sent = {r.headers["x-b3-spanid"]: r.headers for r in v1.requests}
    for span in primaries:
        headers = sent[span.span_id.hex()]
        assert headers["x-b3-traceid"] == span.trace_id.hex()
        assert headers["x-b3-sampled"] == "1"
    continued = next(s for s in primaries if s.trace_id.hex() == trace)
    assert continued.parent_span_id.hex() == "a2fb4a1d1a96d312"
    fresh = next(s for s in primaries if s.trace_id.hex() != trace)
    assert fresh.parent_span_id == b""  # a new trace: its root
    # Each shadow: a child of its primary, marked, not sampled; its copy said so upstream.
    copies = {r.headers["x-b3-spanid"]: r.headers for r in v2.requests}
    for shadow in shadows:
        primary = next(s for s in primaries if s.trace_id == shadow.trace_id)
        assert shadow.parent_span_id == primary.span_id
        assert shadow.flags & 0xFF == 0
        tags = attributes(shadow)
        assert tags["shadowmesh.shadow"] is True
        assert tags["upstream_cluster"] == f"outbound|{port}|v2|app.default.svc.cluster.local"
        assert tags["http.status_code"] == "200"
        copy = copies[shadow.span_id.hex()]
        assert copy["x-b3-sampled"] == "0" and copy["x-b3-parentspanid"] == primary.span_id.hex()
    stats = served.stats()["otlp"]
    assert isinstance(stats, dict)
    assert stats["exported"] == 4 and stats["dropped"] == 0 and stats["failed"] == 0


def test_sampling_decides_new_traces_and_tells_the_upstream(
    upstreams: list[RecordingUpstream], serve: Callable[..., Served], receiver: Receiver
) -> None:
    v1, v2 = RecordingUpstream(), RecordingUpstream()
    upstreams.extend([v1, v2])
    endpoint = f"http://127.0.0.1:{receiver.port}/v1/traces"
    served = serve(
        mesh_yaml(v1.port, v2.port, MIRROR_V2),
        "--otlp-endpoint", endpoint, "--otlp-sampling", "0", "--no-otlp-shadow-spans",
    )  # fmt: skip
    get(served.port)
    get(served.port, b"x-b3-sampled: 1\r\n")  # the client's decision wins
    assert len(v2.wait_for(2)) == 2
    spans = receiver.wait_for(1)
    time.sleep(0.3)
    spans = receiver.spans()
    assert [s.name for s in spans] == [f"app.default.svc.cluster.local:{served.port}/*"]
    assert sorted(r.headers["x-b3-sampled"] for r in v1.requests) == ["0", "1"]


def test_without_otlp_nothing_changes(
    upstreams: list[RecordingUpstream], serve: Callable[..., Served]
) -> None:
    v1, v2 = RecordingUpstream(), RecordingUpstream()
    upstreams.extend([v1, v2])
    served = serve(mesh_yaml(v1.port, v2.port))
    get(served.port)
    assert v1.wait_for(1)[0].headers["x-b3-sampled"] == "1"
    assert "otlp" not in served.stats()


# --- the queue and the exporter, in memory ------------------------------------------------------


CLUSTER = "outbound|80|v1|app.default.svc.cluster.local"


def record(shadow: bool = False, status: int = 200) -> spans.SpanRecord:
    return (
        shadow, b"463ac35c9f6413ad", b"a2fb4a1d1a96d312", b"", 1.0, 1.5, b"GET", b"/x", b"app",
        "1.1", status, "UF" if status >= 500 else "", CLUSTER, "127.0.0.1:9", b"rid", b"ua", 0, 19,
        b"127.0.0.1",
    )  # fmt: skip


def test_a_full_queue_drops_and_counts() -> None:
    queue = spans.Spans()
    for _ in range(spans.QUEUE_LIMIT + 10):
        queue.add(record())
    assert queue.snapshot() == {
        "queued": spans.QUEUE_LIMIT,
        "exported": 0,
        "dropped": 10,
        "failed": 0,
    }
    assert len(queue.take()) == spans.BATCH


def test_an_unreachable_collector_is_counted_not_raised() -> None:
    queue = spans.Spans()
    exporter = otlp.Exporter(queue, "http://127.0.0.1:9/v1/traces")  # discard: nothing listens
    exporter.start()
    for _ in range(3):
        queue.add(record())
    exporter.close(timeout=10)
    assert queue.failed == 3 and queue.exported == 0


def test_encoding_of_an_error_and_a_64_bit_trace_id() -> None:
    [span] = [s for r in otlp.encode([record(status=503)], "svc").resource_spans
              for ss in r.scope_spans for s in ss.spans]  # fmt: skip
    assert span.trace_id == bytes(8) + bytes.fromhex("463ac35c9f6413ad")  # B3: padded left
    assert span.status.code == Status.StatusCode.STATUS_CODE_ERROR
    tags = attributes(span)
    assert tags["error"] == "true" and tags["response_flags"] == "UF"
    assert span.name == "app.default.svc.cluster.local:80/*"
    assert otlp.traces_url("http://c:4318") == "http://c:4318/v1/traces"
    assert otlp.traces_url("http://c:4318/custom") == "http://c:4318/custom"
    with pytest.raises(ValueError):
        otlp.traces_url("c:4318")


def test_every_worker_exports_its_own_spans_once(
    upstreams: list[RecordingUpstream], serve: Callable[..., Served], receiver: Receiver
) -> None:
    v1, v2 = RecordingUpstream(), RecordingUpstream()
    upstreams.extend([v1, v2])
    endpoint = f"http://127.0.0.1:{receiver.port}"
    served = serve(
        mesh_yaml(v1.port, v2.port),
        "--workers",
        "2",
        "--otlp-endpoint",
        endpoint,
        "--otlp-sampling",
        "100",
    )
    assert len(served.wait_processes(2)) == 2  # the worker serves
    count = 60
    for _ in range(count):  # each on a new connection: the kernel spreads them over both
        get(served.port)
    processes = served.stats()["processes"]
    assert isinstance(processes, list) and len(processes) == 2
    assert all(p["requests"] > 0 for p in processes), processes
    spans = receiver.wait_for(count)
    time.sleep(1.5)  # a second flush would bring any span sent twice
    spans = receiver.spans()
    assert len(spans) == count
    assert len({s.span_id for s in spans}) == count
    assert {s.span_id.hex() for s in spans} == {r.headers["x-b3-spanid"] for r in v1.requests}
    otlp = served.stats()["otlp"]
    assert isinstance(otlp, dict)
    assert otlp["exported"] == count and otlp["dropped"] == 0 and otlp["failed"] == 0
