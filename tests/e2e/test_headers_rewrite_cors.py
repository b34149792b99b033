"""A route's ``headers``, ``rewrite`` and ``corsPolicy`` acted on as Envoy does
(traffic-policy.md 1.5, 1.6, 1.9): real httpbin echoes what it got, curl shows what came back,
and the shadow gets the primary's final request."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest

from tests.support.upstreams import RecordingUpstream

if TYPE_CHECKING:
    from conftest import Mesh

pytestmark = pytest.mark.e2e

SUBSETS = """\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: httpbin
spec:
  host: httpbin
  subsets:
  - name: v1
    labels:
      version: v1
  - name: v2
    labels:
      version: v2
"""


def vs(http: str) -> str:
    return f"""\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: httpbin
spec:
  hosts:
  - httpbin
  http:
{http}"""


def setup(mesh: Mesh, http: str) -> None:
    mesh.apply_examples("00-workloads.yaml", "01-service.yaml")
    mesh.apply(mesh.write("dr.yaml", SUBSETS))
    run = mesh.apply(mesh.write("vs.yaml", vs(http)))
    assert "is not acted on" not in run.stderr, run.stderr


def response(mesh: Mesh, path: str, *args: str) -> tuple[int, dict[str, list[str]], str]:
    out = mesh.curl_body(path, args=["-i", *args]).replace("\r\n", "\n")
    head, _, body = out.partition("\n\n")
    lines = head.splitlines()
    headers: dict[str, list[str]] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.setdefault(name.strip().lower(), []).append(value.strip())
    return int(lines[0].split()[1]), headers, body


def echoed(body: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(body)
    return data


# --- headers -------------------------------------------------------------------------------------


HEADERS = """\
  - headers:
      request:
        set:
          x-env: canary
        add:
          x-added: "1"
        remove:
        - x-secret
      response:
        set:
          cache-control: no-store
        remove:
        - server
    route:
    - destination:
        host: httpbin
        subset: v1
      headers:
        response:
          add:
            x-served-by: v1
    mirror:
      host: httpbin
      subset: v2
"""


def test_request_and_response_header_ops(mesh: Mesh) -> None:
    setup(mesh, HEADERS)
    status, headers, body = response(
        mesh, "/headers", "-H", "x-secret: hunter2", "-H", "x-env: prod"
    )
    assert status == 200
    got = echoed(body)["headers"]
    assert got["X-Env"] == "canary" and got["X-Added"] == "1" and "X-Secret" not in got
    assert headers["cache-control"] == ["no-store"]
    assert headers["x-served-by"] == ["v1"]


def test_the_shadow_gets_the_primary_s_final_request(mesh: Mesh) -> None:
    # v2 (the mirror) is a recording upstream here: it shows exactly what the copy carried.
    shadow = RecordingUpstream()
    try:
        mesh.ports[18082] = shadow.port
        http = HEADERS.replace(
            "    route:\n", "    rewrite:\n      uri: /anything/\n    route:\n", 1
        )
        setup(mesh, http)
        assert mesh.curl_body("/x?y=1", args=["-H", "x-secret: s", "-o", "/dev/null"]) == ""
        (copy,) = shadow.wait_for(1)
        assert copy.request_line == "GET /anything/x?y=1 HTTP/1.1"
        got = copy.headers
        assert got["x-env"] == "canary" and got["x-added"] == "1" and "x-secret" not in got
        assert got["x-envoy-original-path"] == "/x?y=1"
        assert got["x-envoy-attempt-count"] == "1"
    finally:
        shadow.close()


FORWARDING = """\
  - headers:
      request:
        set:
          x-forwarded-proto: https
        remove:
        - x-request-id
        - x-forwarded-for
    route:
    - destination:
        host: httpbin
        subset: v1
    mirror:
      host: httpbin
      subset: v2
"""


def test_request_ops_see_the_forwarding_headers_the_proxy_sets(mesh: Mesh) -> None:
    # Envoy's connection manager sets x-request-id, x-forwarded-for and x-forwarded-proto
    # before the router's header ops: a route may replace or remove them, for the copy too.
    shadow = RecordingUpstream()
    try:
        mesh.ports[18082] = shadow.port
        setup(mesh, FORWARDING)
        status, _, body = response(mesh, "/headers?show_env=1", "-H", "x-request-id: mine")
        assert status == 200
        got = echoed(body)["headers"]
        assert got["X-Forwarded-Proto"] == "https"
        assert "X-Request-Id" not in got and "X-Forwarded-For" not in got
        assert got["X-Envoy-Attempt-Count"] == "1" and "X-B3-Spanid" in got
        (copy,) = shadow.wait_for(1)
        assert copy.headers["x-forwarded-proto"] == "https"
        assert "x-request-id" not in copy.headers and "x-forwarded-for" not in copy.headers
        assert copy.headers["x-envoy-attempt-count"] == "1"
    finally:
        shadow.close()


def test_header_ops_apply_to_local_replies(mesh: Mesh) -> None:
    http = """\
  - headers:
      response:
        set:
          x-why: maintenance
    fault:
      abort:
        httpStatus: 503
        percentage:
          value: 100
    route:
    - destination:
        host: httpbin
        subset: v1
"""
    setup(mesh, http)
    status, headers, body = response(mesh, "/get")
    assert (status, body) == (503, "fault filter abort")
    assert headers["x-why"] == ["maintenance"]


# --- rewrite -------------------------------------------------------------------------------------


def test_prefix_rewrite_with_the_original_path(mesh: Mesh) -> None:
    http = """\
  - match:
    - uri:
        prefix: /api/v1/
    rewrite:
      uri: /anything/
    route:
    - destination:
        host: httpbin
        subset: v1
"""
    setup(mesh, http)
    status, _, body = response(mesh, "/api/v1/items?page=2")
    assert status == 200
    got = echoed(body)
    assert got["url"].endswith("/anything/items?page=2")
    assert got["headers"]["X-Envoy-Original-Path"] == "/api/v1/items?page=2"
    assert [e.target for e in mesh.v1.settled()] == ["/anything/items?page=2"]
    # The access log keeps the client's path, as Istio's does.
    (record,) = mesh.proxy.records_settled(1)
    assert record.path == "/api/v1/items?page=2"


def test_regex_rewrite_and_authority(mesh: Mesh) -> None:
    http = """\
  - match:
    - uri:
        prefix: /service/
    rewrite:
      uriRegexRewrite:
        match: ^/service/([^/]+)(/.*)$
        rewrite: /anything\\2/\\1
      authority: httpbin.internal
    route:
    - destination:
        host: httpbin
        subset: v1
"""
    setup(mesh, http)
    status, _, body = response(mesh, "/service/foo/bar?x=1")
    assert status == 200
    got = echoed(body)
    assert got["url"].endswith("/anything/bar/foo?x=1")
    assert got["headers"]["Host"] == "httpbin.internal"
    assert got["headers"]["X-Envoy-Original-Host"] == mesh.authority


# --- corsPolicy ----------------------------------------------------------------------------------

CORS = """\
  - corsPolicy:
      allowOrigins:
      - exact: https://app.example.com
      - prefix: https://dev.
      allowMethods:
      - GET
      - POST
      allowHeaders:
      - content-type
      exposeHeaders:
      - x-total
      maxAge: 24h
      allowCredentials: true
    headers:
      response:
        set:
          x-route: "1"
    route:
    - destination:
        host: httpbin
        subset: v1
"""


def preflight(mesh: Mesh, origin: str) -> tuple[int, dict[str, list[str]], str]:
    return response(
        mesh,
        "/post",
        "-X",
        "OPTIONS",
        "-H",
        f"Origin: {origin}",
        "-H",
        "Access-Control-Request-Method: POST",
        "-H",
        "Access-Control-Request-Headers: content-type",
    )


def test_a_preflight_from_an_allowed_origin_is_answered_by_the_proxy(mesh: Mesh) -> None:
    setup(mesh, CORS)
    status, headers, body = preflight(mesh, "https://app.example.com")
    assert (status, body) == (200, "")
    assert headers["access-control-allow-origin"] == ["https://app.example.com"]
    assert headers["access-control-allow-methods"] == ["GET,POST"]
    assert headers["access-control-allow-headers"] == ["content-type"]
    assert headers["access-control-max-age"] == ["86400"]
    assert headers["access-control-allow-credentials"] == ["true"]
    assert "access-control-expose-headers" not in headers
    assert "x-route" not in headers  # the CORS filter's answer skips the route's response ops
    assert mesh.v1.settled() == []


def test_a_preflight_from_another_origin_goes_upstream(mesh: Mesh) -> None:
    setup(mesh, CORS)
    status, headers, _ = preflight(mesh, "https://evil.example")
    assert len(mesh.v1.settled(at_least=1)) == 1
    # httpbin answers OPTIONS itself, with its own CORS headers, which pass untouched.
    assert status == 200
    assert headers["access-control-allow-methods"] == ["GET, POST, PUT, DELETE, PATCH, OPTIONS"]
    assert headers["access-control-max-age"] == ["3600"]


def test_unmatched_preflights_ignored_are_answered_without_an_origin(mesh: Mesh) -> None:
    setup(
        mesh, CORS.replace("      allowCredentials: true\n", "      unmatchedPreflights: IGNORE\n")
    )
    status, headers, _ = preflight(mesh, "https://evil.example")
    assert status == 200
    assert "access-control-allow-origin" not in headers
    assert headers["access-control-allow-methods"] == ["GET,POST"]
    assert mesh.v1.settled() == []


def test_a_simple_request_from_an_allowed_origin_is_decorated(mesh: Mesh) -> None:
    setup(mesh, CORS)
    status, headers, _ = response(mesh, "/get", "-H", "Origin: https://dev.example.com")
    assert status == 200
    assert headers["access-control-allow-origin"] == ["https://dev.example.com"]
    assert headers["access-control-expose-headers"] == ["x-total"]
    assert headers["access-control-allow-credentials"] == ["true"]
    # httpbin sets its own allow-origin and credentials: ours replace them, not add to them.
    _, plain, _ = response(mesh, "/get", "-H", "Origin: https://evil.example")
    assert "access-control-expose-headers" not in plain
