"""Retries, as Envoy's router makes them under Istio (traffic-policy.md 1.2, 1.3), against
raw-socket upstreams that fail on purpose: a dead endpoint, 500 and 503 answers, a connection
closed before any answer, a stall; a real client (http.client) and the access log."""

from __future__ import annotations

import http.client
import json
import time
import urllib.request
from collections.abc import Callable

from tests.support.serve import TWO_ENDPOINTS, Served, free_port, mesh_yaml, scrape
from tests.support.upstreams import RecordingUpstream

OK = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
UNAVAILABLE = b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 4\r\n\r\nbusy"
ERROR = b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 4\r\n\r\noops"


def request(s: Served, method: str = "GET", body: bytes | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=10)
    try:
        conn.request(method, "/get", body=body, headers={"Host": "app"})
        answer = conn.getresponse()
        return answer.status, answer.read()
    finally:
        conn.close()


def log_line(s: Served) -> str:
    for _ in range(50):
        text = s.log.read_text()
        if text:
            return text.splitlines()[-1]
        time.sleep(0.05)
    raise AssertionError("no access log line")


def stats(s: Served) -> dict[str, int]:
    with urllib.request.urlopen(f"http://127.0.0.1:{s.admin}/stats", timeout=5) as answer:
        retries: dict[str, int] = json.load(answer).get("retries", {})
        return retries


def attempts(upstream: RecordingUpstream) -> list[str]:
    return [r.headers.get("x-envoy-attempt-count", "") for r in upstream.requests]


def retries(text: str) -> str:
    return f"    retries: {text}\n"


def test_one_of_two_endpoints_dead_gives_no_503_with_istios_default_policy(
    upstreams: list[RecordingUpstream], serve: Callable[..., Served]
) -> None:
    live = RecordingUpstream()
    upstreams.append(live)
    s = serve(TWO_ENDPOINTS.format(a=live.port, b=free_port()))  # no VirtualService at all
    statuses = [request(s)[0] for _ in range(30)]
    assert statuses == [200] * 30
    counted = stats(s)
    # Both endpoints are picked (least request, two choices): the dead one's picks were retried
    # on the live one, the attempt count saying so.
    assert counted.get("upstream_rq_retry", 0) > 0
    assert "2" in attempts(live)
    assert counted.get("upstream_rq_retry_success", 0) >= 1
    assert counted.get("upstream_rq_retry_limit_exceeded", 0) == 0


def test_attempts_0_turns_the_default_policy_off(
    upstreams: list[RecordingUpstream], serve: Callable[..., Served]
) -> None:
    v2 = RecordingUpstream()
    upstreams.append(v2)
    s = serve(mesh_yaml(free_port(), v2.port, retries("{attempts: 0}")))
    assert request(s)[0] == 503
    assert " 503 UF " in log_line(s)  # failed once, not retried: no URX
    assert stats(s).get("upstream_rq_retry", 0) == 0


def test_a_dead_endpoint_alone_is_retried_twice_then_503_uf_urx(
    upstreams: list[RecordingUpstream], serve: Callable[..., Served]
) -> None:
    v2 = RecordingUpstream()
    upstreams.append(v2)
    s = serve(mesh_yaml(free_port(), v2.port))
    status, body = request(s)
    assert status == 503
    assert body.endswith(b"retried and the latest reset reason: connection failure")
    assert " 503 UF,URX " in log_line(s)
    counted = stats(s)
    assert counted["upstream_rq_retry"] == 2 and counted["upstream_rq_retry_limit_exceeded"] == 1


def test_a_plain_status_code_in_retry_on_retries_503s_until_a_200(
    upstreams: list[RecordingUpstream], serve: Callable[..., Served]
) -> None:
    v1 = RecordingUpstream(responses=[UNAVAILABLE, UNAVAILABLE, OK])
    v2 = RecordingUpstream()
    upstreams.extend((v1, v2))
    s = serve(mesh_yaml(v1.port, v2.port, retries("{attempts: 2, retryOn: '503'}")))
    assert request(s) == (200, b"ok")
    assert attempts(v1) == ["1", "2", "3"]
    assert " 200 - " in log_line(s)


def test_exhausted_retries_pass_the_last_answer_through_with_urx(
    upstreams: list[RecordingUpstream], serve: Callable[..., Served]
) -> None:
    v1 = RecordingUpstream(responses=[ERROR])
    v2 = RecordingUpstream()
    upstreams.extend((v1, v2))
    s = serve(mesh_yaml(v1.port, v2.port, retries("{attempts: 2, retryOn: 5xx}")))
    assert request(s) == (500, b"oops")  # the upstream's own answer, as it came
    assert attempts(v1) == ["1", "2", "3"]
    assert " 500 URX " in log_line(s)


def test_a_status_not_in_retry_on_is_not_retried(
    upstreams: list[RecordingUpstream], serve: Callable[..., Served]
) -> None:
    v1 = RecordingUpstream(responses=[ERROR, OK])
    v2 = RecordingUpstream()
    upstreams.extend((v1, v2))
    # Istio's default: retriable-status-codes with no codes, so a 500 goes back at once.
    s = serve(mesh_yaml(v1.port, v2.port))
    assert request(s) == (500, b"oops")
    assert attempts(v1) == ["1"]


def test_a_connection_closed_before_any_answer_is_retried_with_reset(
    upstreams: list[RecordingUpstream], serve: Callable[..., Served]
) -> None:
    for policy, expected in (("", 503), (retries("{attempts: 1, retryOn: reset}"), 200)):
        v1 = RecordingUpstream(responses=[b"", OK], close_after=True)  # the first: no answer
        v2 = RecordingUpstream()
        upstreams.extend((v1, v2))
        s = serve(mesh_yaml(v1.port, v2.port, policy))
        assert request(s)[0] == expected, policy
        assert len(v1.requests) == (1 if expected == 503 else 2)


def test_a_body_is_replayed_on_the_retry_and_shadows_get_one_copy(
    upstreams: list[RecordingUpstream], serve: Callable[..., Served]
) -> None:
    v1 = RecordingUpstream(responses=[UNAVAILABLE, OK])
    v2 = RecordingUpstream()
    upstreams.extend((v1, v2))
    extra = "    mirror: {host: app, subset: v2}\n" + retries("{attempts: 2, retryOn: '503'}")
    s = serve(mesh_yaml(v1.port, v2.port, extra))
    body = b"x" * 5000
    assert request(s, "POST", body) == (200, b"ok")
    assert [r.body for r in v1.requests] == [body, body]
    copies = v2.wait_for(1)
    time.sleep(0.3)  # a second copy would have come by now
    assert len(v2.requests) == 1 and copies[0].body == body
    assert copies[0].headers["x-envoy-attempt-count"] == "1"


def test_a_body_past_the_buffer_is_never_retried_and_is_counted(
    upstreams: list[RecordingUpstream], serve: Callable[..., Served]
) -> None:
    v1 = RecordingUpstream(responses=[UNAVAILABLE, OK])
    v2 = RecordingUpstream()
    upstreams.extend((v1, v2))
    s = serve(mesh_yaml(v1.port, v2.port, retries("{attempts: 2, retryOn: '503'}")))
    assert request(s, "POST", b"y" * (1024 * 1024 + 1))[0] == 503  # 1 MiB is Envoy's buffer
    assert len(v1.requests) == 1
    counted = stats(s)
    assert counted["retry_or_shadow_abandoned"] == 1
    samples = scrape(s)["shadowmesh_upstream_rq_retries_total"]
    assert samples[(("reason", "retry_or_shadow_abandoned"),)] == 1


def test_a_stalled_attempt_ends_at_its_per_try_timeout_and_is_retried_with_5xx(
    upstreams: list[RecordingUpstream], serve: Callable[..., Served]
) -> None:
    v1 = RecordingUpstream(mode="slow", delay=3.0)
    v2 = RecordingUpstream()
    upstreams.extend((v1, v2))
    policy = retries("{attempts: 1, perTryTimeout: 0.2s, retryOn: 5xx}")
    s = serve(mesh_yaml(v1.port, v2.port, policy))
    status, body = request(s)
    assert (status, body) == (504, b"upstream request timeout")
    v1.wait_for(2)
    assert attempts(v1) == ["1", "2"]
    assert " 504 UT,URX " in log_line(s)
    assert stats(s)["upstream_rq_per_try_timeout"] == 2


def test_the_route_timeout_spans_every_attempt(
    upstreams: list[RecordingUpstream], serve: Callable[..., Served]
) -> None:
    v1 = RecordingUpstream(mode="slow", delay=3.0)
    v2 = RecordingUpstream()
    upstreams.extend((v1, v2))
    policy = "    timeout: 0.5s\n" + retries("{attempts: 10, perTryTimeout: 0.2s, retryOn: 5xx}")
    s = serve(mesh_yaml(v1.port, v2.port, policy))
    assert request(s)[0] == 504
    line = log_line(s)
    assert " 504 UT " in line  # the route's own timeout: not retried, no URX
    assert 2 <= len(v1.requests) <= 3  # attempts of 0.2 s and their back-off fit in 0.5 s


def test_per_try_timeout_is_not_retried_by_istios_default_policy(
    upstreams: list[RecordingUpstream], serve: Callable[..., Served]
) -> None:
    v1 = RecordingUpstream(mode="slow", delay=3.0)
    v2 = RecordingUpstream()
    upstreams.extend((v1, v2))
    s = serve(mesh_yaml(v1.port, v2.port, retries("{attempts: 2, perTryTimeout: 0.2s}")))
    assert request(s)[0] == 504
    assert " 504 UT " in log_line(s)
    assert len(v1.requests) == 1
