"""Headers the upstream and the shadow get: Envoy's additions, hop-by-hop removal."""

from shadowmesh.http.request import RequestHead, via_names
from shadowmesh.http.wire import content_length, serialize_request
from shadowmesh.proxy.headers import Outgoing, connection_headers, shadow_host, upstream_headers

PSEUDONYM = b"shadowmesh-0123456789ab"


def head(*headers: tuple[bytes, bytes]) -> RequestHead:
    return RequestHead(
        method=b"GET",
        target=b"/headers",
        version="1.1",
        headers=list(headers),
        authority=b"httpbin:8000",
        path=b"/headers",
    )


def parsed(lines: bytes) -> list[tuple[bytes, bytes]]:
    """Header lines as they go on the wire, back to (name, value) pairs."""
    assert lines.endswith(b"\r\n")
    pairs = []
    for line in lines[:-2].split(b"\r\n"):
        name, sep, value = line.partition(b": ")
        assert sep and name == name.lower() and b"\r" not in value and b"\n" not in value
        pairs.append((name, value))
    return pairs


def primary(out: Outgoing) -> list[tuple[bytes, bytes]]:
    return parsed(out.primary_lines())


def names(headers: list[tuple[bytes, bytes]]) -> list[bytes]:
    return [n for n, _ in headers]


def test_envoy_headers_are_added() -> None:
    out = upstream_headers(
        head((b"host", b"httpbin:8000"), (b"accept", b"*/*")), b"10.0.0.9", PSEUDONYM
    )
    got = dict(primary(out))
    assert got[b"accept"] == b"*/*"
    assert len(got[b"x-request-id"]) == 36
    assert len(got[b"x-b3-traceid"]) == 32 and len(got[b"x-b3-spanid"]) == 16
    assert len(got[b"x-b3-parentspanid"]) == 16
    assert got[b"x-b3-sampled"] == b"1"
    assert got[b"x-envoy-attempt-count"] == b"1"
    assert got[b"x-forwarded-for"] == b"10.0.0.9"
    assert got[b"x-forwarded-proto"] == b"http"
    assert b"host" not in got  # written once, by serialize_request
    assert got[b"via"] == b"1.1 " + PSEUDONYM


def test_via_is_appended_to_the_clients_in_one_line_for_primary_and_shadow() -> None:
    out = upstream_headers(
        head((b"via", b"1.0 fred"), (b"accept", b"*/*"), (b"via", b"1.1 p.example (Apache/1.1)")),
        b"127.0.0.1",
        PSEUDONYM,
    )
    want = b"1.0 fred, 1.1 p.example (Apache/1.1), 1.1 " + PSEUDONYM
    assert [v for n, v in primary(out) if n == b"via"] == [want]
    assert [v for n, v in parsed(out.shadow_lines()) if n == b"via"] == [want]
    old = RequestHead(b"GET", b"/", "1.0", [], b"a", b"/")
    assert dict(parsed(upstream_headers(old, b"127.0.0.1", PSEUDONYM).primary_lines()))[b"via"] == (
        b"1.0 " + PSEUDONYM
    )


def test_via_names_matches_a_received_by_not_a_substring() -> None:
    assert via_names(b"1.1 " + PSEUDONYM, PSEUDONYM)
    assert via_names(b"1.0 fred, 1.1  " + PSEUDONYM + b" (comment)", PSEUDONYM)
    assert not via_names(b"1.1 " + PSEUDONYM + b"cd", PSEUDONYM)
    assert not via_names(b"1.1 fred (seen " + PSEUDONYM + b")", PSEUDONYM)
    assert not via_names(b"1.1 fred", PSEUDONYM)


def test_client_request_id_and_trace_are_kept_and_a_new_span_starts() -> None:
    out = upstream_headers(
        head(
            (b"x-request-id", b"abc"),
            (b"x-b3-traceid", b"t" * 32),
            (b"x-b3-spanid", b"s" * 16),
            (b"x-forwarded-for", b"1.2.3.4"),
        ),
        b"127.0.0.1",
        PSEUDONYM,
    )
    got = dict(primary(out))
    assert got[b"x-request-id"] == b"abc" and out.request_id == b"abc"
    assert got[b"x-b3-traceid"] == b"t" * 32
    assert got[b"x-b3-parentspanid"] == b"s" * 16
    assert got[b"x-b3-spanid"] != b"s" * 16
    assert got[b"x-forwarded-for"] == b"1.2.3.4, 127.0.0.1"
    assert names(primary(out)).count(b"x-request-id") == 1


def test_connection_headers_are_what_envoys_connection_manager_sets_before_the_router() -> None:
    client = head(
        (b"x-request-id", b"first"),
        (b"x-forwarded-proto", b"https"),
        (b"accept", b"*/*"),
        (b"x-forwarded-for", b"1.2.3.4"),
        (b"x-request-id", b"second"),
    )
    got = connection_headers(client, b"10.0.0.9")
    assert got == [
        (b"x-request-id", b"first"),
        (b"accept", b"*/*"),
        (b"x-forwarded-for", b"1.2.3.4, 10.0.0.9"),
        (b"x-forwarded-proto", b"http"),  # the client's replaced, as upstream_headers does
    ]
    fresh = dict(connection_headers(head((b"accept", b"*/*")), b"10.0.0.9"))
    assert len(fresh[b"x-request-id"]) == 36 and fresh[b"x-forwarded-for"] == b"10.0.0.9"


def test_after_route_ops_the_forwarding_headers_go_as_the_ops_left_them() -> None:
    ops_left = head(
        (b"x-request-id", b"abc"),
        (b"x-forwarded-proto", b"https"),
        (b"x-forwarded-for", b"1.2.3.4, 10.0.0.9,5.6.7.8"),
    )
    out = upstream_headers(ops_left, b"10.0.0.9", PSEUDONYM, mutated=True)
    got = primary(out)
    for name, value in ops_left.headers:
        assert [v for n, v in got if n == name] == [value]
    assert out.request_id == b"abc" and out.forwarded_for == b"1.2.3.4, 10.0.0.9,5.6.7.8"
    assert names(parsed(out.shadow_lines())) == names(got)
    # Removed by the ops: not sent, not invented.
    out = upstream_headers(head((b"accept", b"*/*")), b"10.0.0.9", PSEUDONYM, mutated=True)
    sent = names(primary(out))
    assert not {b"x-request-id", b"x-forwarded-for", b"x-forwarded-proto"} & set(sent)
    assert out.request_id == b"" and out.forwarded_for == b""
    for kept in (b"x-b3-traceid", b"x-b3-spanid", b"x-b3-parentspanid", b"x-b3-sampled"):
        assert kept in sent
    assert dict(primary(out))[b"x-envoy-attempt-count"] == b"1" and b"via" in sent


def test_connection_headers_with_no_ops_send_what_upstream_headers_alone_sends() -> None:
    client = head(
        (b"accept", b"*/*"),
        (b"x-request-id", b"abc"),
        (b"x-forwarded-for", b"1.2.3.4"),
        (b"x-forwarded-proto", b"https"),
        (b"via", b"1.0 fred"),
        (b"connection", b"x-secret, x-forwarded-for, x-request-id"),
        (b"x-secret", b"1"),
    )
    alone = primary(upstream_headers(client, b"10.0.0.9", PSEUDONYM))
    routed = head(*connection_headers(client, b"10.0.0.9"))
    after = primary(upstream_headers(routed, b"10.0.0.9", PSEUDONYM, mutated=True))
    fresh = {b"x-b3-traceid", b"x-b3-spanid", b"x-b3-parentspanid"}
    assert sorted(h for h in after if h[0] not in fresh) == sorted(
        h for h in alone if h[0] not in fresh
    )


def test_hop_by_hop_and_connection_named_headers_are_removed() -> None:
    out = upstream_headers(
        head(
            (b"connection", b"keep-alive, x-secret"),
            (b"x-secret", b"1"),
            (b"keep-alive", b"timeout=5"),
            (b"te", b"trailers"),
            (b"upgrade", b"websocket"),
            (b"proxy-authorization", b"Basic x"),
            (b"x-envoy-attempt-count", b"7"),
            (b"x-kept", b"yes"),
        ),
        b"127.0.0.1",
        PSEUDONYM,
    )
    got = names(primary(out))
    for gone in (
        b"connection",
        b"x-secret",
        b"keep-alive",
        b"te",
        b"upgrade",
        b"proxy-authorization",
    ):
        assert gone not in got
    assert b"x-kept" in got
    assert dict(primary(out))[b"x-envoy-attempt-count"] == b"1"


def test_shadow_keeps_request_and_trace_ids_with_its_own_unsampled_span() -> None:
    out = upstream_headers(head((b"user-agent", b"curl")), b"127.0.0.1", PSEUDONYM)
    live = dict(primary(out))
    shadow = dict(parsed(out.shadow_lines()))
    assert names(parsed(out.shadow_lines())) == names(primary(out))  # same headers, same order
    assert shadow[b"x-request-id"] == live[b"x-request-id"]
    assert shadow[b"x-b3-traceid"] == live[b"x-b3-traceid"]
    assert shadow[b"x-b3-parentspanid"] == live[b"x-b3-spanid"]
    assert shadow[b"x-b3-spanid"] != live[b"x-b3-spanid"]
    assert shadow[b"x-b3-sampled"] == b"0"
    assert shadow[b"user-agent"] == b"curl"
    assert shadow_host(b"httpbin:8000", True) == b"httpbin-shadow:8000"
    assert shadow_host(b"httpbin:8000", False) == b"httpbin:8000"


def test_serialized_head_has_one_host_and_the_framing() -> None:
    raw = serialize_request(
        b"POST", b"/post", b"httpbin:8000", b"accept: */*\r\n", content_length(3)
    )
    assert raw == (
        b"POST /post HTTP/1.1\r\nhost: httpbin:8000\r\naccept: */*\r\ncontent-length: 3\r\n\r\n"
    )


def test_generated_ids_have_envoys_shapes() -> None:
    import uuid

    from shadowmesh.observe.trace import new_request_id, new_span_id, new_trace_id

    ids = {new_request_id() for _ in range(1000)}
    assert len(ids) == 1000
    for rid in ids:
        parsed = uuid.UUID(rid.decode())
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122
        assert str(parsed).encode() == rid
    assert all(len(new_trace_id()) == 32 and len(new_span_id()) == 16 for _ in range(100))


def test_a_forked_child_does_not_repeat_its_parents_ids() -> None:
    import os

    from shadowmesh.observe.trace import new_request_id, new_span_id

    new_span_id()  # the parent holds a batch of digits it has not used yet
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next ids, to the parent, then out without cleanup
        os.write(write_end, new_request_id() + b" " + new_span_id())
        os._exit(0)
    os.close(write_end)
    child = os.read(read_end, 100).split(b" ")
    os.close(read_end)
    os.waitpid(pid, 0)
    assert child[0] != new_request_id()
    assert child[1] != new_span_id()


def test_connection_tokens_name_the_headers_to_remove() -> None:
    from shadowmesh.http.request import tokens

    assert tokens(b"keep-alive") == frozenset() and tokens(b"Close") == frozenset()
    assert tokens(b"close, X-Secret , ,keep-alive") == {b"close", b"x-secret", b"keep-alive"}
