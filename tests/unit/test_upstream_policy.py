"""Which DestinationRule policy applies to a cluster (Istio's MergeTrafficPolicy), compiled."""

from __future__ import annotations

import random
import textwrap
from collections import Counter

from shadowmesh.model.load import load_text
from shadowmesh.model.resources import DestinationRule, Resource
from shadowmesh.routing.decision import Forward, Peer
from shadowmesh.routing.table import RouteTable
from shadowmesh.routing.testing import SimpleRequest, seed_workloads
from shadowmesh.routing.upstreampolicy import (
    DEFAULT_IDLE_TIMEOUT,
    NO_UPSTREAM_POLICY,
    UNLIMITED,
    resolve_blocks,
    upstream_policy,
)

RULE = """\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: httpbin}
spec:
  host: httpbin
  trafficPolicy:
    loadBalancer: {simple: ROUND_ROBIN}
    connectionPool: {http: {http1MaxPendingRequests: 1}}
    outlierDetection: {consecutive5xxErrors: 2}
    portLevelSettings:
    - port: {number: 9000}
      loadBalancer: {simple: RANDOM}
  subsets:
  - name: v1
    labels: {version: v1}
    trafficPolicy:
      connectionPool: {tcp: {maxConnections: 3}}
  - name: v2
    labels: {version: v2}
    trafficPolicy:
      tls: {mode: SIMPLE}
      portLevelSettings:
      - port: {number: 8000}
        connectionPool: {tcp: {connectTimeout: 2s}}
  - name: v3
    labels: {version: v1}
"""


def parsed(text: str = RULE) -> DestinationRule:
    (document,) = load_text(textwrap.dedent(text), "test.yaml").documents
    assert isinstance(document.resource, DestinationRule)
    return document.resource


def test_destination_level_policy_applies_to_the_service_and_plain_subsets() -> None:
    rule = parsed()
    for subset in ("", "v3", "no-such-subset"):
        policy = upstream_policy(rule, subset, 8000)
        assert policy.lb == "ROUND_ROBIN"
        assert policy.limits.max_pending_requests == 1
        assert policy.outlier is not None and policy.outlier.consecutive_5xx == 2


def test_port_level_settings_replace_every_block_with_nothing_inherited() -> None:
    policy = upstream_policy(parsed(), "", 9000)
    assert policy.lb == "RANDOM"
    assert policy.limits.max_pending_requests == UNLIMITED  # not 1: no merging
    assert policy.outlier is None


def test_a_subset_block_replaces_that_block_only() -> None:
    policy = upstream_policy(parsed(), "v1", 8000)
    assert policy.limits.max_connections == 3
    assert policy.limits.max_pending_requests == UNLIMITED  # the whole block is the subset's
    assert policy.lb == "ROUND_ROBIN"  # inherited: the subset sets no loadBalancer
    assert policy.outlier is not None


def test_a_subset_port_level_entry_replaces_all_four_blocks() -> None:
    rule = parsed()
    on_port = upstream_policy(rule, "v2", 8000)
    assert on_port.limits.connect_timeout == 2.0
    assert on_port.tls is None  # replaced, even by an unset block
    assert on_port.lb is None and on_port.outlier is None
    other_port = upstream_policy(rule, "v2", 9000)
    # No subset entry for 9000: the destination's port-level entry, then the subset's tls.
    assert other_port.lb == "RANDOM"
    assert other_port.tls is not None and other_port.tls.mode == "SIMPLE"


def test_no_rule_costs_nothing() -> None:
    assert upstream_policy(None, "", 8000) is NO_UPSTREAM_POLICY
    assert resolve_blocks(None, "v1", 8000).connection_pool is None
    assert NO_UPSTREAM_POLICY.limits.idle_timeout == DEFAULT_IDLE_TIMEOUT


def test_idle_timeouts_http_first_then_tcp_zero_disables() -> None:
    rule = parsed(
        """\
        apiVersion: networking.istio.io/v1
        kind: DestinationRule
        metadata: {name: httpbin}
        spec:
          host: httpbin
          trafficPolicy:
            connectionPool: {tcp: {idleTimeout: 0s}}
        """
    )
    assert upstream_policy(rule, "", 8000).limits.idle_timeout == 0.0


HASHED = """\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: httpbin}
spec:
  host: httpbin
  trafficPolicy:
    loadBalancer:
      consistentHash: {httpHeaderName: x-user}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: httpbin}
spec:
  hosts: [httpbin]
  http:
  - match: [{uri: {prefix: /split}}]
    route:
    - destination: {host: httpbin}
      weight: 50
    - destination: {host: httpbin}
      weight: 50
  - route:
    - destination: {host: httpbin}
"""


def _table(text: str) -> RouteTable:
    resources: list[Resource] = [*seed_workloads()]
    resources += [d.resource for d in load_text(textwrap.dedent(text), "t.yaml").documents]
    return RouteTable.compile(resources, rng=random.Random(3))


def _endpoint(table: RouteTable, path: str, user: str | None) -> int:
    headers = {"x-user": user} if user is not None else {}
    decision = table.route(8000, SimpleRequest(authority="httpbin", path=path, headers=headers))
    assert isinstance(decision, Forward), decision
    decision.primary.release()
    return decision.primary.endpoint.port


def test_consistent_hash_sticks_a_header_to_one_endpoint() -> None:
    table = _table(HASHED)
    for user in ("alice", "bob", "carol", "dave"):
        assert len({_endpoint(table, "/get", user) for _ in range(30)}) == 1
    # Different keys spread over both endpoints; no key: random.
    spread = Counter(_endpoint(table, "/get", f"user-{i}") for i in range(400))
    assert len(spread) == 2 and min(spread.values()) > 100
    assert len({_endpoint(table, "/get", None) for _ in range(60)}) == 2
    dump = {c["name"]: c for c in table.describe()["clusters"]}
    cluster = dump["outbound|8000||httpbin.default.svc.cluster.local"]
    assert cluster["lbPolicy"] == "RING_HASH"
    assert cluster["trafficPolicy"]["consistentHash"] == {
        "header": {"headerName": "x-user"},
        "algorithm": "RING_HASH",
        "minimumRingSize": 1024,
    }


def test_weighted_routes_are_never_hashed_as_in_istio() -> None:
    table = _table(HASHED)
    assert len({_endpoint(table, "/split", "alice") for _ in range(60)}) == 2


COOKIE = """\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: httpbin}
spec:
  host: httpbin
  trafficPolicy:
    loadBalancer:
      consistentHash:
        httpCookie: {name: sticky, ttl: 60s, path: /}
"""
SOURCE_IP = """\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: httpbin}
spec:
  host: httpbin
  trafficPolicy:
    loadBalancer:
      consistentHash: {useSourceIp: true}
"""


def test_a_generated_cookie_is_answered_and_then_sticks() -> None:
    table = _table(COOKIE)
    peer = Peer("127.0.0.1", lambda: ("127.0.0.1:8000", "127.0.0.1:40000", ""))
    first = table.route(8000, SimpleRequest(authority="httpbin"), peer)
    assert isinstance(first, Forward)
    assert first.set_cookie.startswith(b'sticky="') and b"Max-Age=60; Path=/" in first.set_cookie
    cookie = first.set_cookie.split(b";")[0].decode()
    for _ in range(30):
        again = table.route(8000, SimpleRequest(authority="httpbin", headers={"cookie": cookie}))
        assert isinstance(again, Forward)
        assert again.set_cookie == b""  # the client has it now
        assert again.primary.endpoint == first.primary.endpoint


def test_use_source_ip_sticks_a_client_to_one_endpoint() -> None:
    table = _table(SOURCE_IP)
    for ip in ("10.0.0.1", "10.0.0.2", "10.0.0.3"):
        ends = set()
        for _ in range(20):
            decision = table.route(8000, SimpleRequest(authority="httpbin"), Peer(ip))
            assert isinstance(decision, Forward)
            ends.add(decision.primary.endpoint)
        assert len(ends) == 1
