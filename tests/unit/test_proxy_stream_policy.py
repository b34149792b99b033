"""The route policy in the per-request stream, in memory (Envoy's order: fault, CORS, router):
what reaches the upstream codec's bytes and what the client's side is asked to send."""

from __future__ import annotations

import asyncio
import io
import json
import random
import textwrap

from shadowmesh.dataplane.server import DataPlane
from shadowmesh.http.request import RequestHead
from shadowmesh.http.wire import Header, Headers
from shadowmesh.mirror.dispatcher import Dispatcher, ShadowLimits
from shadowmesh.model.load import load_text
from shadowmesh.model.resources import DestinationRule, Subset, VirtualService
from shadowmesh.observe.accesslog import AccessLog
from shadowmesh.observe.stats import Stats
from shadowmesh.proxy.stream import DONE, ROUTING, SENT, ProxyStream
from shadowmesh.routing.compile_policy import answer
from shadowmesh.routing.decision import Endpoint
from shadowmesh.routing.policy import with_delay_flag
from shadowmesh.routing.table import RouteTable
from shadowmesh.routing.testing import V2_PORT, destination_rule, seed_workloads
from shadowmesh.upstream.connection import Pool, UpstreamConnection
from tests.unit.test_h1_codecs import Wire
from tests.unit.test_proxy_stream import Client, pooled


class Recorder(Client):
    """The fake client's side, with the headers of local answers and response heads."""

    def __init__(self) -> None:
        super().__init__()
        self.local_headers: tuple[Header, ...] = ()
        self.head_pairs: Headers = []

    def send_local(
        self, status: int, body: bytes, location: bytes, headers: tuple[Header, ...] = ()
    ) -> None:
        super().send_local(status, body, location, headers)
        self.local_headers = headers

    def send_head(
        self,
        status: int,
        reason: bytes,
        headers: Headers,
        length: bytes | None,
        coding: bytes | None,
    ) -> bool:
        self.head_pairs = list(headers)
        return super().send_head(status, reason, headers, length, coding)


def dataplane(
    http: str, rule: DestinationRule | None = None, access_log: AccessLog | None = None
) -> DataPlane:
    text = textwrap.dedent(
        """\
        apiVersion: networking.istio.io/v1
        kind: VirtualService
        metadata: {name: httpbin, namespace: default}
        spec:
          hosts: [httpbin]
          http:
        """
    ) + textwrap.indent(textwrap.dedent(http), "  ")
    loaded = [d.resource for d in load_text(text, "vs.yaml").documents]
    resources = [*seed_workloads(), rule or destination_rule(), *loaded]
    table = RouteTable.compile(resources, rng=random.Random(1))
    stats = Stats()
    log = access_log if access_log is not None else AccessLog(None)
    return DataPlane(table, "127.0.0.1", Pool(), Dispatcher(ShadowLimits(), stats, log), log, stats)


def request(
    path: bytes = b"/get", method: bytes = b"GET", extra: Headers | None = None
) -> RequestHead:
    headers: Headers = [(b"host", b"httpbin:8000"), *(extra or [])]
    return RequestHead(method, path, "1.1", headers, b"httpbin:8000", path)


V1 = "  route: [{destination: {host: httpbin, subset: v1}}]\n"


def test_an_abort_answers_here_and_sends_nothing_upstream() -> None:
    plane = dataplane("- fault: {abort: {httpStatus: 503, percentage: {value: 100}}}\n" + V1)
    _, wire = pooled(plane)
    client = Recorder()
    stream = ProxyStream(plane, client, request(), 8000)
    stream.start()
    assert client.calls[0] == ("local", 503, b"fault filter abort")
    assert wire.take() == b""
    assert stream.state == DONE and stream.flag == "FI"
    assert plane.stats.requests["fault_aborts_injected"] == 1
    assert plane.stats.snapshot()["faults"]["aborts_injected"] == 1


def test_a_delay_holds_the_request_then_forwards_it() -> None:
    plane = dataplane("- fault: {delay: {fixedDelay: 1ms, percentage: {value: 100}}}\n" + V1)
    _, wire = pooled(plane)
    stream = ProxyStream(plane, Recorder(), request(b"/post", b"POST"), 8000)

    async def run() -> None:
        stream.start()
        stream.request_data(b"early")  # the body is held with the request
        assert stream.state == ROUTING and wire.take() == b""
        assert plane.stats.requests["fault_active"] == 1
        while stream.state == ROUTING:
            await asyncio.sleep(0.001)

    asyncio.run(run())
    assert stream.state == SENT and wire.take().endswith(b"early")
    assert plane.stats.requests["fault_active"] == 0
    assert plane.stats.requests["fault_delays_injected"] == 1


def test_a_client_gone_during_a_delay_ends_it() -> None:
    plane = dataplane("- fault: {delay: {fixedDelay: 10s, percentage: {value: 100}}}\n" + V1)
    stream = ProxyStream(plane, Recorder(), request(), 8000)

    async def run() -> None:
        stream.start()
        stream.downstream_failed(0, "DC")

    asyncio.run(run())
    assert stream.delay is None and plane.stats.requests["fault_active"] == 0
    assert with_delay_flag(stream.flag) == "DI,DC"


def test_delay_flags_in_envoys_order() -> None:
    assert [with_delay_flag(f) for f in ("", "FI", "UF", "UF,URX", "UT")] == [
        "DI",
        "DI,FI",
        "UF,DI",
        "UF,DI,URX",
        "UT,DI",
    ]


def test_request_ops_and_rewrite_reach_the_upstream() -> None:
    plane = dataplane(
        """\
        - match: [{uri: {prefix: /api/}}]
          rewrite: {uri: /v2/, authority: httpbin.internal}
          headers: {request: {set: {x-env: canary}, remove: [cookie]}}
          route: [{destination: {host: httpbin, subset: v1}}]
        """
    )
    _, wire = pooled(plane)
    stream = ProxyStream(plane, Recorder(), request(b"/api/a?b=1", extra=[(b"cookie", b"c")]), 8000)
    stream.start()
    stream.request_end()
    sent = wire.take()
    assert sent.startswith(b"GET /v2/a?b=1 HTTP/1.1\r\nhost: httpbin.internal\r\n")
    assert b"x-env: canary\r\n" in sent and b"cookie" not in sent
    assert b"x-envoy-original-path: /api/a?b=1\r\n" in sent
    assert b"x-envoy-original-host: httpbin:8000\r\n" in sent
    assert stream.original_path == b"/api/a?b=1"


def sent_headers(
    route_headers: str, extra: Headers | None = None, access_log: AccessLog | None = None
) -> tuple[ProxyStream, list[Header]]:
    """The header lines the upstream got for a request to a route with these request ops."""
    plane = dataplane(f"- headers: {{request: {route_headers}}}\n" + V1, access_log=access_log)
    conn, wire = pooled(plane)
    stream = ProxyStream(plane, Recorder(), request(extra=extra), 8000)

    async def run() -> None:  # a loop, for the access log's flush
        stream.start()
        stream.request_end()
        conn.data_received(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
        await asyncio.sleep(0)

    asyncio.run(run())
    assert stream.state == DONE
    return stream, lines_of(wire.take())


def lines_of(sent: bytes) -> list[Header]:
    head = sent.partition(b"\r\n\r\n")[0]
    pairs = [line.partition(b": ") for line in head.split(b"\r\n")[1:]]
    return [(name, value) for name, _, value in pairs]


def values(headers: list[Header], name: bytes) -> list[bytes]:
    return [v for n, v in headers if n == name]


CLIENT_XFF = [(b"x-forwarded-for", b"192.0.2.1")]


def test_a_route_s_set_x_forwarded_proto_reaches_the_upstream() -> None:
    # Envoy's connection manager sets it before the router's header ops, which then win.
    _, headers = sent_headers("{set: {x-forwarded-proto: https}}")
    assert values(headers, b"x-forwarded-proto") == [b"https"]
    _, headers = sent_headers("{set: {x-env: a}}", [(b"x-forwarded-proto", b"https")])
    assert values(headers, b"x-forwarded-proto") == [b"http"]  # the client's is replaced


def test_a_route_s_remove_x_forwarded_for_sends_none() -> None:
    stream, headers = sent_headers("{remove: [x-forwarded-for]}", CLIENT_XFF)
    assert values(headers, b"x-forwarded-for") == []
    assert stream.xff == b""  # the access log prints what the upstream got
    stream, headers = sent_headers("{remove: [x-forwarded-proto]}")
    assert values(headers, b"x-forwarded-proto") == []
    assert values(headers, b"x-forwarded-for") == [b"10.0.0.7"]


def test_a_route_s_add_x_forwarded_for_comes_after_the_client_address() -> None:
    # x-forwarded-for is one of Envoy's inline headers: an add appends to its value with ",".
    stream, headers = sent_headers("{add: {x-forwarded-for: 198.51.100.9}}", CLIENT_XFF)
    assert values(headers, b"x-forwarded-for") == [b"192.0.2.1, 10.0.0.7,198.51.100.9"]
    assert stream.xff == b"192.0.2.1, 10.0.0.7,198.51.100.9"


def test_a_route_s_set_x_request_id_is_the_one_sent_and_logged() -> None:
    for extra in ([], [(b"x-request-id", b"from-client")]):
        out = io.StringIO()
        stream, headers = sent_headers("{set: {x-request-id: abc}}", extra, AccessLog(out, "json"))
        assert values(headers, b"x-request-id") == [b"abc"]
        assert stream.request_id == b"abc"
        assert json.loads(out.getvalue())["request_id"] == "abc"


def test_a_route_s_remove_x_request_id_sends_and_logs_none() -> None:
    for extra in ([], [(b"x-request-id", b"from-client")]):
        out = io.StringIO()
        stream, headers = sent_headers("{remove: [x-request-id]}", extra, AccessLog(out, "json"))
        assert values(headers, b"x-request-id") == []
        assert stream.request_id == b""
        assert json.loads(out.getvalue())["request_id"] in ("", None)
    # An add on a missing id: Envoy's connection manager generated one first (inline: ",").
    _, headers = sent_headers("{add: {x-request-id: abc}}")
    (added,) = values(headers, b"x-request-id")
    assert len(added) == 36 + 4 and added.endswith(b",abc")


def test_the_span_attempt_count_and_via_are_set_after_the_route_s_ops() -> None:
    ops = (
        "{remove: [x-b3-spanid, x-b3-parentspanid, x-b3-sampled, x-envoy-attempt-count, via],"
        " set: {x-forwarded-proto: https}}"
    )
    _, headers = sent_headers(ops)
    for name in (b"x-b3-traceid", b"x-b3-spanid", b"x-b3-parentspanid", b"via"):
        assert len(values(headers, name)) == 1, name
    assert values(headers, b"x-b3-sampled") == [b"1"]
    assert values(headers, b"x-envoy-attempt-count") == [b"1"]
    assert values(headers, b"x-forwarded-proto") == [b"https"]


def test_a_route_without_forwarding_ops_sends_what_one_without_ops_does() -> None:
    _, with_ops = sent_headers("{set: {x-env: a}}", CLIENT_XFF)
    plane = dataplane(V1.replace("  route", "- route", 1))
    _, wire = pooled(plane)
    stream = ProxyStream(plane, Recorder(), request(extra=CLIENT_XFF), 8000)
    stream.start()
    stream.request_end()
    without = lines_of(wire.take())
    ids = {b"x-request-id", b"x-b3-traceid", b"x-b3-spanid", b"x-b3-parentspanid", b"via"}
    # The same lines (the forwarding ones among the client's, not after the span's).
    assert sorted(n for n, _ in with_ops if n != b"x-env") == sorted(n for n, _ in without)
    same = sorted((n, v) for n, v in without if n not in ids)
    assert sorted((n, v) for n, v in with_ops if n not in ids and n != b"x-env") == same


def test_the_shadow_gets_the_primary_s_forwarding_headers_after_the_ops() -> None:
    plane = dataplane(
        """\
        - headers: {request: {remove: [x-request-id, x-forwarded-for],
                              set: {x-forwarded-proto: https}}}
          route: [{destination: {host: httpbin, subset: v1}}]
          mirror: {host: httpbin, subset: v2}
          mirrorPercentage: {value: 100}
        """
    )
    _, primary_wire = pooled(plane)
    shadow_conn = UpstreamConnection(Endpoint("127.0.0.1", V2_PORT))
    shadow_wire = Wire()
    shadow_conn.connection_made(shadow_wire)
    plane.dispatcher.pool.put(shadow_conn)
    stream = ProxyStream(plane, Recorder(), request(extra=CLIENT_XFF), 8000)

    async def run() -> None:  # a loop, for the dispatcher's sweeper
        stream.start()
        stream.request_end()

    asyncio.run(run())
    primary, shadow = lines_of(primary_wire.take()), lines_of(shadow_wire.take())
    span = {b"host", b"x-b3-spanid", b"x-b3-parentspanid", b"x-b3-sampled"}
    assert [h for h in shadow if h[0] not in span] == [h for h in primary if h[0] not in span]
    assert values(primary, b"x-forwarded-proto") == [b"https"]
    assert not values(primary, b"x-request-id") and not values(primary, b"x-forwarded-for")
    assert plane.stats.shadows["sent"] == 1


def test_response_ops_reach_the_client_s_head_and_local_answers() -> None:
    plane = dataplane("- headers: {response: {set: {x-r: '1'}, remove: [server]}}\n" + V1)
    conn, _ = pooled(plane)
    client = Recorder()
    stream = ProxyStream(plane, client, request(), 8000)
    stream.start()
    stream.request_end()
    conn.data_received(b"HTTP/1.1 200 OK\r\nserver: gunicorn\r\ncontent-length: 0\r\n\r\n")
    names = [n for n, _ in client.head_pairs]
    assert b"x-r" in names and b"server" not in names

    conn2, _ = pooled(plane)
    late = Recorder()
    stream = ProxyStream(plane, late, request(), 8000)
    stream.start()
    conn2.connection_lost(None)  # closed before any answer: a local 503
    assert late.calls[-2][:2] == ("local", 503) and late.local_headers == ((b"x-r", b"1"),)


CORS = """\
- corsPolicy: {allowOrigins: [{exact: "https://ok.example"}], allowMethods: [GET], maxAge: 1m}
  headers: {response: {set: {x-r: "1"}}}
  route: [{destination: {host: httpbin, subset: v1}}]
"""


def test_a_preflight_is_answered_without_the_route_s_response_ops() -> None:
    plane = dataplane(CORS)
    _, wire = pooled(plane)
    client = Recorder()
    preflight = [(b"origin", b"https://ok.example"), (b"access-control-request-method", b"GET")]
    stream = ProxyStream(plane, client, request(method=b"OPTIONS", extra=preflight), 8000)
    stream.start()
    assert client.calls[0] == ("local", 200, b"")
    assert client.local_headers == (
        (b"access-control-allow-origin", b"https://ok.example"),
        (b"access-control-allow-methods", b"GET"),
        (b"access-control-max-age", b"60"),
    )
    assert wire.take() == b""


def test_an_allowed_origin_s_response_is_decorated() -> None:
    plane = dataplane(CORS)
    conn, _ = pooled(plane)
    client = Recorder()
    stream = ProxyStream(plane, client, request(extra=[(b"origin", b"https://ok.example")]), 8000)
    stream.start()
    stream.request_end()
    conn.data_received(
        b"HTTP/1.1 200 OK\r\naccess-control-allow-origin: *\r\ncontent-length: 0\r\n\r\n"
    )
    allowed = [v for n, v in client.head_pairs if n == b"access-control-allow-origin"]
    assert allowed == [b"https://ok.example"]


def test_a_retried_503_replays_the_body_with_the_next_attempt_count() -> None:
    """Envoy's router: a retriable answer is never shown to the client; the next attempt gets
    the whole body again from the stream's buffer and ``x-envoy-attempt-count: 2``; the first
    connection is reset (the rest of its answer is never read)."""
    plane = dataplane("- retries: {attempts: 2, retryOn: '503'}\n" + V1)
    first, first_wire = pooled(plane)
    second, second_wire = pooled(plane)
    client = Recorder()
    stream = ProxyStream(
        plane, client, request(b"/post", b"POST", [(b"content-length", b"5")]), 8000
    )
    stream.head.content_length = 5

    async def run() -> None:
        stream.start()
        stream.request_data(b"hello")
        stream.request_end()
        sent = [w for w in (first_wire, second_wire) if w.data]
        assert len(sent) == 1 and sent[0].data.endswith(b"hello")
        used = first if sent[0] is first_wire else second
        other, other_wire = (second, second_wire) if used is first else (first, first_wire)
        assert b"x-envoy-attempt-count: 1\r\n" in sent[0].take()
        used.data_received(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n")
        assert client.calls == [] and sent[0].closed  # nothing of the 503 went to the client
        while not other_wire.data:  # the jittered back-off, then the second attempt
            await asyncio.sleep(0.001)
        retried = other_wire.take()
        assert b"x-envoy-attempt-count: 2\r\n" in retried and retried.endswith(b"\r\n\r\nhello")
        other.data_received(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")

    asyncio.run(run())
    assert [c[:2] for c in client.calls if c[0] == "head"] == [("head", 200)]
    assert stream.state == DONE and stream.flag == "" and stream.tries == 2
    assert plane.stats.retries["upstream_rq_retry"] == 1
    assert plane.stats.retries["upstream_rq_retry_success"] == 1


# The fault and CORS filters run before the router: its own answers (no cluster, no healthy
# host, a direct response or redirect) go through them as a forward does. (Istio refuses a fault
# beside a redirect or direct response; CORS beside them is accepted.)
ABORT_ALL = "  fault: {abort: {httpStatus: 418, percentage: {value: 100}}}\n"
DIRECT = "- directResponse: {status: 200, body: {string: hi}}\n"
# A subset no workload has: no healthy upstream (UH); "nosuch" is no subset at all (NC).
WITH_V3 = destination_rule(
    subsets=(Subset("v1", {"version": "v1"}), Subset("v3", {"version": "v3"}))
)


def test_a_fault_abort_comes_before_no_healthy_upstream_and_no_cluster() -> None:
    for subset, flag in (("v3", "UH"), ("nosuch", "NC")):
        route = f"- route: [{{destination: {{host: httpbin, subset: {subset}}}}}]\n"
        plane = dataplane(route + ABORT_ALL, WITH_V3)
        client = Recorder()
        stream = ProxyStream(plane, client, request(), 8000)
        stream.start()
        assert client.calls[0] == ("local", 418, b"fault filter abort"), subset
        assert stream.flag == "FI"
        plane = dataplane(route, WITH_V3)
        stream = ProxyStream(plane, Recorder(), request(), 8000)
        stream.start()
        assert stream.flag == flag  # without a fault, the router's own answer


def test_a_delay_holds_a_request_to_no_healthy_upstream_too() -> None:
    route = "- route: [{destination: {host: httpbin, subset: v3}}]\n"
    delay = "  fault: {delay: {fixedDelay: 1ms, percentage: {value: 100}}}\n"
    plane = dataplane(route + delay, WITH_V3)
    client = Recorder()
    stream = ProxyStream(plane, client, request(), 8000)

    async def run() -> None:
        stream.start()
        assert client.calls == []  # held
        while stream.state != DONE:
            await asyncio.sleep(0.001)

    asyncio.run(run())
    assert client.calls[0][:2] == ("local", 503)
    assert with_delay_flag(stream.flag) == "UH,DI"


def test_cors_answers_a_preflight_and_decorates_a_direct_response() -> None:
    cors = "  corsPolicy: {allowOrigins: [{exact: 'https://ok.example'}], allowMethods: [GET]}\n"
    plane = dataplane(DIRECT + cors)
    client = Recorder()
    preflight = [(b"origin", b"https://ok.example"), (b"access-control-request-method", b"GET")]
    ProxyStream(plane, client, request(method=b"OPTIONS", extra=preflight), 8000).start()
    assert client.calls[0] == ("local", 200, b"")
    assert (b"access-control-allow-methods", b"GET") in client.local_headers
    client = Recorder()
    ProxyStream(plane, client, request(extra=[(b"origin", b"https://ok.example")]), 8000).start()
    assert client.calls[0] == ("local", 200, b"hi")
    assert (b"access-control-allow-origin", b"https://ok.example") in client.local_headers
    client = Recorder()
    other = [(b"origin", b"https://other.example")]
    ProxyStream(plane, client, request(extra=other), 8000).start()
    assert client.calls[0] == ("local", 200, b"hi")
    assert all(n != b"access-control-allow-origin" for n, _ in client.local_headers)


def test_an_allowed_origin_s_local_503_is_decorated() -> None:
    """A local reply passes the CORS filter's encoder: a browser can read the 503."""
    plane = dataplane(CORS.replace("subset: v1", "subset: v3"), WITH_V3)
    client = Recorder()
    ProxyStream(plane, client, request(extra=[(b"origin", b"https://ok.example")]), 8000).start()
    assert client.calls[0][:2] == ("local", 503)
    assert (b"access-control-allow-origin", b"https://ok.example") in client.local_headers
    assert (b"x-r", b"1") in client.local_headers  # the route's response ops as well


def test_config_dump_shows_a_direct_response_route_s_cors_policy() -> None:
    text = (
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\n"
        "metadata: {name: httpbin, namespace: default}\nspec:\n  hosts: [httpbin]\n  http:\n"
        "  - directResponse: {status: 200}\n"
        "    corsPolicy: {allowOrigins: [{exact: 'https://ok.example'}]}\n"
    )
    (document,) = load_text(text, "vs.yaml").documents
    assert isinstance(document.resource, VirtualService)
    shown = answer(document.resource.http[0], 1).describe()
    assert shown["directResponse"] == {"status": 200, "bodyBytes": 0}
    assert "corsPolicy" in shown
