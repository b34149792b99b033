"""Route policy compiled into the route table: Forward.policy per route and destination, and
redirect / directResponse answered by routing (routing.compile_policy, routing.answers)."""

from __future__ import annotations

import json
import random
import textwrap
from typing import Any

from shadowmesh.model.load import load_text
from shadowmesh.model.resources import Resource
from shadowmesh.routing.compiler import RouteCompiler
from shadowmesh.routing.decision import Failure, Forward
from shadowmesh.routing.policy import DEFAULT_RETRY, NO_POLICY, RoutePolicy
from shadowmesh.routing.table import RouteTable
from shadowmesh.routing.testing import SimpleRequest, destination_rule, seed_workloads

V1 = "outbound|8000|v1|httpbin.default.svc.cluster.local"
V2 = "outbound|8000|v2|httpbin.default.svc.cluster.local"


def resources(http: str) -> list[Resource]:
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
    return [*seed_workloads(), destination_rule(), *loaded]


def table(http: str) -> RouteTable:
    return RouteTable.compile(resources(http), rng=random.Random(3))


def decide(t: RouteTable, port: int | None = 8000, **request: Any) -> Forward | Failure:
    return t.route(port, SimpleRequest(**request))


def policy(t: RouteTable, **request: Any) -> RoutePolicy:
    decision = decide(t, **request)
    assert isinstance(decision, Forward), decision
    return decision.policy


def test_a_route_without_policy_carries_no_policy() -> None:
    t = table("- route: [{destination: {host: httpbin, subset: v1}}]\n")
    assert policy(t) is NO_POLICY
    assert NO_POLICY.retry is DEFAULT_RETRY


def test_timeout_and_retries() -> None:
    t = table(
        """\
        - timeout: 3s
          retries: {attempts: 4, perTryTimeout: 500ms, retryOn: "gateway-error,503,reset"}
          route: [{destination: {host: httpbin, subset: v1}}]
        """
    )
    p = policy(t)
    assert p.timeout == 3.0
    assert p.retry is not None
    assert (p.retry.attempts, p.retry.per_try_timeout) == (4, 0.5)
    assert p.retry.retry_on == {"gateway-error", "reset", "retriable-status-codes"}
    assert p.retry.statuses == {503}


def test_attempts_zero_turns_retries_off() -> None:
    t = table("- retries: {attempts: 0}\n  route: [{destination: {host: httpbin, subset: v1}}]\n")
    assert policy(t).retry is None


def test_bookinfo_delay_applies_to_its_match_only() -> None:
    t = table(
        """\
        - match: [{headers: {end-user: {exact: jason}}}]
          fault: {delay: {percentage: {value: 100.0}, fixedDelay: 7s}}
          route: [{destination: {host: httpbin, subset: v1}}]
        - route: [{destination: {host: httpbin, subset: v1}}]
        """
    )
    fault = policy(t, headers={"end-user": "jason"}).fault
    assert fault is not None and fault.delay(random.Random()) == 7.0
    assert policy(t).fault is None


def test_single_destination_headers_are_appended_to_the_route_s() -> None:
    t = table(
        """\
        - headers:
            request: {set: {x-who: route, x-r: "1"}, add: {x-a: r}}
          route:
          - destination: {host: httpbin, subset: v1}
            headers:
              request: {set: {x-who: dest}, remove: [x-drop]}
              response: {add: {x-served-by: v1}}
        """
    )
    p = policy(t)
    assert p.request_ops is not None and p.response_ops is not None
    out = p.request_ops.apply([(b"x-drop", b"1"), (b"x-keep", b"k")])
    # One parser: removes, then sets (the route's, then the destination's: it wins), then adds.
    assert out == [(b"x-keep", b"k"), (b"x-r", b"1"), (b"x-who", b"dest"), (b"x-a", b"r")]
    assert p.response_ops.apply([]) == [(b"x-served-by", b"v1")]


def test_weighted_destination_headers_run_first_and_the_route_s_win() -> None:
    t = table(
        """\
        - headers: {request: {set: {x-who: route}}}
          route:
          - destination: {host: httpbin, subset: v1}
            weight: 50
            headers: {request: {set: {x-who: v1, x-v: "1"}}}
          - destination: {host: httpbin, subset: v2}
            weight: 50
            headers: {request: {set: {x-v: "2"}}}
        """
    )
    seen = {}
    for _ in range(50):
        decision = decide(t)
        assert isinstance(decision, Forward)
        ops = decision.policy.request_ops
        assert ops is not None
        seen[decision.primary.cluster] = ops.apply([])
    assert seen == {
        V1: [(b"x-v", b"1"), (b"x-who", b"route")],
        V2: [(b"x-v", b"2"), (b"x-who", b"route")],
    }


def test_host_header_becomes_the_authority_rewrite() -> None:
    t = table(
        """\
        - headers: {request: {set: {Host: a.example, X-Up: "1"}}}
          route: [{destination: {host: httpbin, subset: v1}}]
        """
    )
    p = policy(t)
    assert p.rewrite is not None and p.rewrite.authority == b"a.example"
    assert p.request_ops is not None and p.request_ops.apply([]) == [(b"x-up", b"1")]


def test_prefix_rewrite_per_match_block() -> None:
    t = table(
        """\
        - match: [{uri: {prefix: /ratings}}, {uri: {exact: /r}}, {uri: {regex: "/x/.*"}}]
          rewrite: {uri: /v1}
          route: [{destination: {host: httpbin, subset: v1}}]
        """
    )

    def path(p: str) -> bytes:
        rewrite = policy(t, path=p).rewrite
        assert rewrite is not None
        return rewrite.path(p.encode())

    assert path("/ratings/1?q") == b"/v1/1?q"
    assert path("/r?q=1") == b"/v1?q=1"
    assert path("/x/y/z?q") == b"/v1?q"


def test_a_catch_all_prefix_rewrite_replaces_the_leading_slash() -> None:
    t = table("- rewrite: {uri: /v1/}\n  route: [{destination: {host: httpbin, subset: v1}}]\n")
    rewrite = policy(t).rewrite
    assert rewrite is not None and rewrite.path(b"/get") == b"/v1/get"


def test_regex_rewrite_uses_re2_groups() -> None:
    t = table(
        """\
        - rewrite: {uriRegexRewrite: {match: "^/service/([^/]+)(/.*)$", rewrite: "\\\\2/\\\\1"}}
          route: [{destination: {host: httpbin, subset: v1}}]
        """
    )
    rewrite = policy(t).rewrite
    assert rewrite is not None and rewrite.path(b"/service/foo/v1/api?x") == b"/v1/api/foo?x"


def test_cors_policy_compiles() -> None:
    t = table(
        """\
        - corsPolicy:
            allowOrigins: [{exact: "https://a.example"}, {prefix: "https://dev."}]
            allowMethods: [GET, POST]
            maxAge: 24h
          route: [{destination: {host: httpbin, subset: v1}}]
        """
    )
    cors = policy(t).cors
    assert cors is not None
    assert cors.allows(b"https://a.example") and cors.allows(b"https://dev.b.example")
    assert not cors.allows(b"https://b.example")
    assert cors.methods == b"GET,POST" and cors.max_age == b"86400"


# --- redirect and directResponse ---------------------------------------------------------------


def answer(t: RouteTable, port: int | None = 8000, **request: Any) -> Failure:
    decision = decide(t, port, **request)
    assert isinstance(decision, Failure), decision
    return decision


def location(failure: Failure) -> bytes:
    return dict(failure.headers)[b"location"]


def test_redirect_uri_keeps_the_query() -> None:
    t = table("- redirect: {uri: /v2/ratings}\n")
    found = answer(t, path="/ratings?x=1")
    assert (found.status, found.flag, found.body) == (301, "-", b"")
    assert location(found) == b"http://httpbin:8000/v2/ratings?x=1"


def test_redirect_authority_scheme_code() -> None:
    t = table("- redirect: {authority: new.example, scheme: https, redirectCode: 308}\n")
    found = answer(t, path="/a")
    assert found.status == 308 and location(found) == b"https://new.example/a"


def test_redirect_scheme_change_drops_the_default_port() -> None:
    t = table("- redirect: {scheme: https}\n")
    assert location(answer(t, authority="httpbin:80", path="/")) == b"https://httpbin/"
    assert location(answer(t, authority="httpbin:8000", path="/")) == b"https://httpbin:8000/"


def test_redirect_ports() -> None:
    t = table("- redirect: {port: 9090}\n")
    assert location(answer(t, path="/p")) == b"http://httpbin:9090/p"
    t = table("- redirect: {derivePort: FROM_REQUEST_PORT}\n")
    assert location(answer(t, path="/p")) == b"http://httpbin:8000/p"
    t = table("- redirect: {port: 80, uri: /q}\n")  # :80 on http is dropped by istiod
    assert location(answer(t, path="/p")) == b"http://httpbin:8000/q"


def test_redirect_prefix_rewrite_per_match() -> None:
    t = table(
        """\
        - match: [{uri: {prefix: /old}}, {uri: {prefix: /o}}]
          redirect: {prefixRewrite: /new}
        """
    )
    assert location(answer(t, path="/old/a?b")) == b"http://httpbin:8000/new/a?b"
    assert location(answer(t, path="/ox")) == b"http://httpbin:8000/newx"


def test_redirect_gets_the_route_s_response_ops() -> None:
    t = table("- redirect: {uri: /b}\n  headers: {response: {set: {x-why: moved}}}\n")
    assert answer(t).headers == ((b"location", b"http://httpbin:8000/b"), (b"x-why", b"moved"))


def test_unsupported_redirect_code_answers_404() -> None:
    t = table("- redirect: {uri: /b, redirectCode: 300}\n")
    found = answer(t)
    assert (found.status, found.flag) == (404, "NR")


def test_direct_response() -> None:
    t = table(
        """\
        - match: [{uri: {prefix: /down}}]
          directResponse: {status: 503, body: {string: "maintenance"}}
        - match: [{uri: {prefix: /json}}]
          directResponse: {status: 200, body: {bytes: "eyJvayI6IHRydWV9"}}
          headers: {response: {set: {content-type: application/json}}}
        - name: created
          directResponse: {status: 201}
        """
    )
    down = answer(t, path="/down")
    assert (down.status, down.flag, down.body, down.headers) == (503, "-", b"maintenance", ())
    js = answer(t, path="/json")
    assert js.body == b'{"ok": true}'
    assert js.headers == ((b"content-type", b"application/json"),)
    created = answer(t, path="/made?x")
    assert created.status == 201 and location(created) == b"http://httpbin:8000/made?x"
    assert created.route_name == "created"


# --- delegates, incremental compiles, the config dump -------------------------------------------


def test_a_delegate_inherits_the_root_s_policy() -> None:
    text = textwrap.dedent(
        """\
        apiVersion: networking.istio.io/v1
        kind: VirtualService
        metadata: {name: root, namespace: default}
        spec:
          hosts: [httpbin]
          http:
          - match: [{uri: {prefix: /api}}]
            delegate: {name: leaf}
            retries: {attempts: 0}
            headers: {request: {set: {x-root: "1"}}}
        ---
        apiVersion: networking.istio.io/v1
        kind: VirtualService
        metadata: {name: leaf, namespace: default}
        spec:
          http:
          - route: [{destination: {host: httpbin, subset: v1}}]
        """
    )
    loaded = [d.resource for d in load_text(text, "vs.yaml").documents]
    t = RouteTable.compile([*seed_workloads(), destination_rule(), *loaded])
    p = policy(t, path="/api/x")
    assert p.retry is None
    assert p.request_ops is not None and p.request_ops.apply([]) == [(b"x-root", b"1")]


def test_the_incremental_compiler_follows_a_policy_change() -> None:
    compiler = RouteCompiler(random.Random(1))
    first = resources("- timeout: 1s\n  route: [{destination: {host: httpbin, subset: v1}}]\n")
    assert policy(compiler.compile(first)).timeout == 1.0
    second = resources("- timeout: 2s\n  route: [{destination: {host: httpbin, subset: v1}}]\n")
    assert policy(compiler.compile(second)).timeout == 2.0
    again = compiler.compile(second)
    assert compiler.reused == 1 and policy(again).timeout == 2.0


def test_config_dump_shows_the_compiled_policy() -> None:
    t = table(
        """\
        - name: slow
          timeout: 2s
          fault: {abort: {httpStatus: 418, percentage: {value: 25}}}
          route: [{destination: {host: httpbin, subset: v1}}]
        """
    )
    dumped = json.loads(json.dumps(t.describe()))
    (route,) = [r for v in dumped["virtualHosts"] for r in v["routes"] if r["name"] == "slow"]
    assert route["policy"]["timeout"] == 2.0
    assert route["policy"]["fault"] == {"abort": {"httpStatus": 418, "percent": 25.0}}
    assert route["policy"]["retries"]["attempts"] == 2


def test_the_route_s_response_ops_reach_its_503s() -> None:
    t = table(
        """\
        - headers: {response: {set: {x-why: route}}}
          route: [{destination: {host: httpbin, subset: v9}}]
        """
    )
    found = answer(t)
    assert (found.status, found.flag, found.headers) == (503, "NC", ((b"x-why", b"route"),))
