"""RouteTable: host look-up, destinations, weights, mirrors, failures, describe()."""

from __future__ import annotations

import json
import random
from collections import Counter
from typing import Any

import pytest

from shadowmesh.model.resources import (
    Destination,
    DestinationRule,
    HTTPMatchRequest,
    HTTPRoute,
    Meta,
    MirrorPolicy,
    Resource,
    RouteDestination,
    ServicePort,
    StringMatch,
    Subset,
)
from shadowmesh.model.trafficpolicy import LbPolicy, LoadBalancer, TrafficPolicy
from shadowmesh.routing.decision import Endpoint, Failure, Forward
from shadowmesh.routing.table import NO_ROUTE, RouteTable
from shadowmesh.routing.testing import (
    V1_PORT,
    V2_PORT,
    SimpleRequest,
    destination_rule,
    route,
    seed_resources,
    seed_workloads,
    service,
    virtual_service,
    within_binomial,
    workload,
)

V1 = "outbound|8000|v1|httpbin.default.svc.cluster.local"
V2 = "outbound|8000|v2|httpbin.default.svc.cluster.local"
ALL = "outbound|8000||httpbin.default.svc.cluster.local"


def lb(simple: LbPolicy) -> TrafficPolicy:
    return TrafficPolicy(load_balancer=LoadBalancer(simple=simple))


def compile_table(resources: list[Resource], seed: int = 7) -> RouteTable:
    return RouteTable.compile(resources, rng=random.Random(seed))


def forward(table: RouteTable, port: int | None, **request: Any) -> Forward:
    decision = table.route(port, SimpleRequest(**request))
    assert isinstance(decision, Forward), decision
    return decision


def failure(table: RouteTable, port: int | None, **request: Any) -> Failure:
    decision = table.route(port, SimpleRequest(**request))
    assert isinstance(decision, Failure), decision
    return decision


# --- the seed scenario ----------------------------------------------------------------------


def test_seed_scenario_routes_to_v1_and_mirrors_to_v2() -> None:
    table = compile_table(seed_resources())
    decision = forward(table, 8000)
    assert decision.primary.cluster == V1
    assert decision.primary.endpoint == Endpoint("127.0.0.1", V1_PORT)
    assert [(s.cluster, s.endpoint) for s in decision.shadows] == [
        (V2, Endpoint("127.0.0.1", V2_PORT))
    ]
    assert decision.timeout is None


def test_ports_are_every_service_port() -> None:
    two_ports = service("echo", ports=(ServicePort(9000, "http"), ServicePort(9001, "grpc")))
    table = compile_table([*seed_resources(), two_ports])
    assert table.ports == frozenset({8000, 9000, 9001})


def test_empty_table_answers_no_route() -> None:
    table = compile_table([])
    assert table.ports == frozenset()
    assert failure(table, None) == Failure(404, "NR")


# --- host forms -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    [
        "httpbin",
        "HTTPBin",
        "httpbin.default",
        "httpbin.default.svc",
        "httpbin.default.svc.cluster.local",
        "httpbin.default.svc.cluster.local.",
    ],
)
def test_host_forms_reach_the_virtual_service(host: str) -> None:
    # Two Services share port 8000, so the listener fallback cannot hide a failed look-up.
    echo: list[Resource] = [workload("e1", "v1", 19001, app="echo"), service("echo")]
    table = compile_table([*seed_resources(), *echo])
    assert forward(table, None, authority=f"{host}:8000").primary.cluster == V1
    assert forward(table, 8000, authority=f"{host}:8000").primary.cluster == V1
    assert forward(table, 8000, authority=host).primary.cluster == V1


def test_short_name_prefers_the_default_namespace() -> None:
    other: list[Resource] = [
        workload("o1", "v1", 19001, namespace="other"),
        service(namespace="other"),
    ]
    table = compile_table([*seed_workloads(), *other])
    assert forward(table, None, authority="httpbin:8000").primary.cluster == ALL
    other_cluster = "outbound|8000||httpbin.other.svc.cluster.local"
    assert forward(table, None, authority="httpbin.other:8000").primary.cluster == other_cluster


def test_short_name_resolves_in_the_only_namespace_that_has_it() -> None:
    resources: list[Resource] = [
        workload("o1", "v1", 19001, namespace="other"),
        service(namespace="other"),
    ]
    table = compile_table(resources)
    decision = forward(table, None, authority="httpbin:8000")
    assert decision.primary.cluster == "outbound|8000||httpbin.other.svc.cluster.local"


def test_ambiguous_short_name_outside_default_is_no_route() -> None:
    resources: list[Resource] = [
        workload("a1", "v1", 19001, namespace="a"),
        service(namespace="a"),
        workload("b1", "v1", 19002, namespace="b"),
        service(namespace="b"),
    ]
    table = compile_table(resources)
    assert failure(table, None, authority="httpbin:8000").flag == "NR"
    assert forward(table, None, authority="httpbin.b:8000").primary.endpoint.port == 19002


def test_outbound_port_comes_from_the_authority_else_80() -> None:
    table = compile_table(seed_workloads())
    assert forward(table, None, authority="httpbin:8000").primary.cluster == ALL
    # No port means 80, and httpbin has no port 80: no route.
    assert failure(table, None, authority="httpbin").flag == "NR"


def test_ipv6_authority_is_parsed() -> None:
    table = compile_table(seed_workloads())
    # An IPv6 literal names no service: the listener's only Service takes it.
    assert forward(table, 8000, authority="[::1]:8000").primary.cluster == ALL
    assert failure(table, None, authority="[::1]:8000").flag == "NR"


def test_wildcard_virtual_service_host_matches_by_suffix() -> None:
    vs = virtual_service(route(("v2", 1)), name="ext", hosts=("*.example.com",))
    table = compile_table([*seed_workloads(), destination_rule(), vs])
    assert forward(table, None, authority="api.example.com:8000").primary.cluster == V2
    assert forward(table, None, authority="a.b.example.com:8000").primary.cluster == V2
    assert failure(table, None, authority="example.org:8000").flag == "NR"


def test_virtual_service_bound_to_a_gateway_only_does_not_route_mesh_traffic() -> None:
    vs = virtual_service(route(("v2", 1)))
    gateway_only = type(vs)(meta=vs.meta, hosts=vs.hosts, http=vs.http, gateways=("ingress",))
    table = compile_table([*seed_workloads(), destination_rule(), gateway_only])
    assert forward(table, 8000).primary.cluster == ALL


# --- listener fallback ----------------------------------------------------------------------


def test_unknown_host_on_a_service_port_goes_to_that_port_s_only_service() -> None:
    table = compile_table(seed_resources())
    for authority in ("127.0.0.1:8000", "localhost", "httpbin-shadow:8000"):
        assert forward(table, 8000, authority=authority).primary.cluster == V1


def test_unknown_host_on_a_shared_port_is_no_route() -> None:
    other: list[Resource] = [workload("o1", "v1", 19001, app="echo"), service("echo")]
    table = compile_table([*seed_workloads(), *other])
    assert failure(table, 8000, authority="127.0.0.1:8000") == Failure(404, "NR")
    assert forward(table, 8000, authority="echo").primary.endpoint.port == 19001


def test_unknown_host_on_the_outbound_port_is_no_route() -> None:
    table = compile_table(seed_resources())
    assert failure(table, None, authority="127.0.0.1:8000") == Failure(404, "NR")


# --- routes ---------------------------------------------------------------------------------


def test_first_matching_route_wins() -> None:
    prefix = (HTTPMatchRequest(uri=StringMatch("prefix", "/api")),)
    vs = virtual_service(
        route(("v2", 1), match=prefix, name="api"),
        route(("v1", 1), name="rest"),
        route(("v2", 1), match=prefix, name="never"),
    )
    table = compile_table([*seed_workloads(), destination_rule(), vs])
    api = forward(table, 8000, path="/api/x")
    assert (api.primary.cluster, api.route_name) == (V2, "api")
    rest = forward(table, 8000, path="/other")
    assert (rest.primary.cluster, rest.route_name) == (V1, "rest")


def test_no_route_fits_is_404_nr() -> None:
    only_post = (HTTPMatchRequest(method=StringMatch("exact", "POST")),)
    vs = virtual_service(route(("v1", 1), match=only_post))
    table = compile_table([*seed_workloads(), destination_rule(), vs])
    assert failure(table, 8000, method="GET") == Failure(404, "NR")
    assert forward(table, 8000, method="POST").primary.cluster == V1


def test_match_port_restricts_to_the_service_port() -> None:
    ports = (ServicePort(8000, "http"), ServicePort(9000, "admin"))
    two = workload("two", "v1", 19001)
    two = type(two)(meta=two.meta, address=two.address, ports={}, labels=two.labels)
    on_9000 = (HTTPMatchRequest(port=9000),)
    vs = virtual_service(
        route(("v2", 1), match=on_9000, name="admin"), route(("v1", 1), name="main")
    )
    rule = destination_rule(subsets=(Subset("v1", {"version": "v1"}), Subset("v2", {})))
    table = compile_table([two, service(ports=ports), rule, vs])
    assert forward(table, 9000).route_name == "admin"
    assert forward(table, 9000).primary.cluster.startswith("outbound|9000|v2|")
    assert forward(table, 8000).route_name == "main"
    assert forward(table, None, authority="httpbin:9000").route_name == "admin"


def test_timeout_and_route_name_are_passed_on() -> None:
    vs = virtual_service(route(("v1", 1), name="slow", timeout=2.5))
    table = compile_table([*seed_workloads(), destination_rule(), vs])
    decision = forward(table, 8000)
    assert (decision.timeout, decision.route_name) == (2.5, "slow")


# --- destination ports and endpoint ports ---------------------------------------------------


def test_destination_port_defaults_to_the_service_s_only_port() -> None:
    # A VirtualService for a name that is no Service answers on any port; reached through the
    # outbound port on :80, its route still goes to the service's only port.
    vs = virtual_service(route(("v1", 1)), hosts=("api.example.com",))
    table = compile_table([*seed_resources(), vs])
    assert forward(table, None, authority="api.example.com").primary.cluster == V1


def test_a_virtual_service_does_not_answer_on_a_port_its_service_lacks() -> None:
    # httpbin has port 8000 only: httpbin:80 is no route, as on a sidecar's port-80 listener.
    table = compile_table(seed_resources())
    assert table.route(None, SimpleRequest(authority="httpbin")) == NO_ROUTE
    assert forward(table, None, authority="httpbin:8000").primary.cluster == V1


def test_destination_port_of_a_multi_port_service_is_the_request_port() -> None:
    ports = (ServicePort(8000, "http"), ServicePort(9000, "admin"))
    we = workload("w", "v1", 19001)
    we = type(we)(meta=we.meta, address=we.address, ports={"admin": 19009}, labels=we.labels)
    vs = virtual_service(route(("v1", 1)))
    table = compile_table([we, service(ports=ports), destination_rule(), vs])
    assert forward(table, 9000).primary.endpoint == Endpoint("127.0.0.1", 19009)
    assert forward(table, 8000).primary.endpoint == Endpoint("127.0.0.1", 8000)


def test_explicit_destination_port() -> None:
    ports = (ServicePort(8000, "http"), ServicePort(9000, "admin"))
    vs = virtual_service(
        HTTPRoute(route=(RouteDestination(Destination("httpbin", "v1", 9000), 1),))
    )
    table = compile_table(
        [workload("w", "v1", 19001), service(ports=ports), destination_rule(), vs]
    )
    decision = forward(table, 8000)
    assert decision.primary.cluster == "outbound|9000|v1|httpbin.default.svc.cluster.local"


@pytest.mark.parametrize(
    ("port", "workload_ports", "expected"),
    [
        (ServicePort(8000, "http", 80), {"http": 18081}, 18081),  # named port wins
        (ServicePort(8000, "http", 80), {}, 80),  # else a numeric targetPort
        (ServicePort(8000, "http", "web"), {"web": 18090}, 18090),  # a named targetPort
        (ServicePort(8000, "http", None), {}, 8000),  # else the service port
    ],
)
def test_endpoint_port(port: ServicePort, workload_ports: dict[str, int], expected: int) -> None:
    we = workload("w", "v1", 0)
    we = type(we)(meta=we.meta, address="10.0.0.5", ports=workload_ports, labels=we.labels)
    table = compile_table([we, service(ports=(port,))])
    assert forward(table, 8000).primary.endpoint == Endpoint("10.0.0.5", expected)


def test_named_target_port_missing_on_the_workload_skips_it() -> None:
    we = workload("w", "v1", 0)
    we = type(we)(meta=we.meta, address="10.0.0.5", ports={"other": 1}, labels=we.labels)
    table = compile_table([we, service(ports=(ServicePort(8000, "http", "web"),))])
    assert failure(table, 8000) == Failure(503, "UH", b"no healthy upstream", cluster=ALL)


def test_service_selects_only_its_namespace_and_a_label_superset() -> None:
    resources: list[Resource] = [
        *seed_workloads(),
        workload("elsewhere", "v1", 19001, namespace="other"),
        workload("other-app", "v1", 19002, app="echo"),
    ]
    table = compile_table(resources, seed=3)
    seen = {forward(table, 8000).primary.endpoint.port for _ in range(200)}
    assert seen == {V1_PORT, V2_PORT}


def test_empty_selector_selects_nothing() -> None:
    table = compile_table([*seed_workloads()[:2], service(selector={})])
    assert failure(table, 8000).flag == "UH"


# --- failures -------------------------------------------------------------------------------


def test_unknown_subset_is_503_nc() -> None:
    vs = virtual_service(route(("v3", 1)))
    table = compile_table([*seed_workloads(), destination_rule(), vs])
    cluster = "outbound|8000|v3|httpbin.default.svc.cluster.local"
    assert failure(table, 8000) == Failure(503, "NC", cluster=cluster)


def test_subset_without_destination_rule_is_503_nc() -> None:
    vs = virtual_service(route(("v1", 1)))
    table = compile_table([*seed_workloads(), vs])
    assert failure(table, 8000) == Failure(503, "NC", cluster=V1)


def test_unknown_destination_host_is_503_nc() -> None:
    vs = virtual_service(route(("", 1), host="nowhere"))
    table = compile_table([*seed_workloads(), vs])
    cluster = "outbound|8000||nowhere.default.svc.cluster.local"
    assert failure(table, 8000) == Failure(503, "NC", cluster=cluster)


def test_subset_with_no_endpoints_is_503_uh() -> None:
    rule = destination_rule(subsets=(Subset("v1", {"version": "v9"}),))
    vs = virtual_service(route(("v1", 1)))
    table = compile_table([*seed_workloads(), rule, vs])
    assert failure(table, 8000) == Failure(503, "UH", b"no healthy upstream", cluster=V1)


def test_destination_rule_in_another_namespace_resolves_its_host_there() -> None:
    rule = DestinationRule(
        meta=Meta("httpbin", "ops"),
        host="httpbin.default.svc.cluster.local",
        subsets=(Subset("v2", {"version": "v2"}),),
    )
    short = DestinationRule(meta=Meta("wrong", "ops"), host="httpbin", subsets=(Subset("v1"),))
    vs = virtual_service(route(("v2", 1)))
    table = compile_table([*seed_workloads(), rule, short, vs])
    assert forward(table, 8000).primary.cluster == V2


# --- no VirtualService ----------------------------------------------------------------------


def test_no_virtual_service_spreads_over_all_endpoints() -> None:
    table = compile_table([*seed_workloads(), destination_rule()], seed=11)
    counts: Counter[int] = Counter()
    for _ in range(1000):
        decision = forward(table, 8000)
        assert decision.primary.cluster == ALL
        assert decision.shadows == ()
        counts[decision.primary.endpoint.port] += 1
        decision.primary.release()
    assert within_binomial(counts[V1_PORT], 1000, 0.5)
    assert counts[V1_PORT] + counts[V2_PORT] == 1000


# --- weights --------------------------------------------------------------------------------


def test_weights_split_80_20_within_a_binomial_bound() -> None:
    vs = virtual_service(route(("v1", 80), ("v2", 20)))
    table = compile_table([*seed_workloads(), destination_rule(), vs], seed=2024)
    picks = Counter(forward(table, 8000).primary.cluster for _ in range(10_000))
    assert set(picks) == {V1, V2}
    assert within_binomial(picks[V1], 10_000, 0.8)


def test_weights_are_relative() -> None:
    vs = virtual_service(route(("v1", 1), ("v2", 3)))
    table = compile_table([*seed_workloads(), destination_rule(), vs], seed=5)
    picks = Counter(forward(table, 8000).primary.cluster for _ in range(4000))
    assert within_binomial(picks[V2], 4000, 0.75)


def test_weight_zero_gets_nothing_when_there_are_others() -> None:
    vs = virtual_service(route(("v1", 0), ("v2", 5)))
    table = compile_table([*seed_workloads(), destination_rule(), vs])
    assert {forward(table, 8000).primary.cluster for _ in range(500)} == {V2}


def test_a_lone_destination_gets_everything_whatever_its_weight() -> None:
    vs = virtual_service(route(("v2", 0)))
    table = compile_table([*seed_workloads(), destination_rule(), vs])
    assert {forward(table, 8000).primary.cluster for _ in range(100)} == {V2}


# --- mirrors --------------------------------------------------------------------------------


@pytest.mark.parametrize("percentage", [100.0, 50.0, 0.0, 12.5])
def test_mirror_sampling_within_a_binomial_bound(percentage: float) -> None:
    table = compile_table(seed_resources(mirror_percentage=percentage), seed=99)
    trials = 10_000
    mirrored = 0
    for _ in range(trials):
        decision = forward(table, 8000)
        mirrored += len(decision.shadows)
        for upstream in (decision.primary, *decision.shadows):
            upstream.release()
    assert within_binomial(mirrored, trials, percentage / 100.0)
    assert table.shadow_skipped == Counter()


def test_several_mirrors_are_sampled_independently() -> None:
    mirrors = (
        MirrorPolicy(Destination("httpbin", "v2"), 50.0),
        MirrorPolicy(Destination("httpbin", "v1"), 50.0),
    )
    vs = virtual_service(
        HTTPRoute(route=(RouteDestination(Destination("httpbin", "v1")),), mirrors=mirrors)
    )
    table = compile_table([*seed_workloads(), destination_rule(), vs], seed=8)
    shapes = Counter(tuple(s.cluster for s in forward(table, 8000).shadows) for _ in range(8000))
    assert set(shapes) == {(), (V2,), (V1,), (V2, V1)}
    assert within_binomial(shapes[(V2, V1)], 8000, 0.25)


def test_mirror_to_an_unknown_subset_is_skipped_and_counted() -> None:
    vs = virtual_service(route(("v1", 1), mirrors=(("v3", 100.0),)))
    table = compile_table([*seed_workloads(), destination_rule(), vs])
    for _ in range(3):
        assert forward(table, 8000).shadows == ()
    assert table.shadow_skipped == Counter({"no_cluster": 3})


def test_mirror_to_an_empty_subset_is_skipped_and_counted() -> None:
    rule = destination_rule(
        subsets=(Subset("v1", {"version": "v1"}), Subset("v2", {"version": "v9"}))
    )
    vs = virtual_service(route(("v1", 100), mirrors=(("v2", 100.0),)))
    table = compile_table([*seed_workloads(), rule, vs])
    decision = forward(table, 8000)
    assert (decision.primary.cluster, decision.shadows) == (V1, ())
    assert table.shadow_skipped == Counter({"no_endpoint": 1})


def test_no_mirror_when_the_primary_fails() -> None:
    vs = virtual_service(route(("v3", 1), mirrors=(("v2", 100.0),)))
    table = compile_table([*seed_workloads(), destination_rule(), vs])
    assert failure(table, 8000).flag == "NC"


def test_shadow_endpoints_come_from_the_shadow_cluster_s_balancer() -> None:
    table = compile_table(seed_resources())
    decision = forward(table, 8000)
    shadow = decision.shadows[0]
    assert shadow.balancer is not decision.primary.balancer
    assert shadow.balancer.pick() == Endpoint("127.0.0.1", V2_PORT)


def test_release_returns_the_in_flight_count() -> None:
    table = compile_table(seed_resources())
    decision = forward(table, 8000)
    active = _active_requests(table)
    assert active[V1] == 1 and active[V2] == 1
    decision.primary.release()
    decision.shadows[0].release()
    assert set(_active_requests(table).values()) == {0}


def _active_requests(table: RouteTable) -> dict[str, int]:
    return {
        c["name"]: sum(e["activeRequests"] for e in c["endpoints"])
        for c in table.describe()["clusters"]
    }


# --- describe() -----------------------------------------------------------------------------


def test_describe_is_json_and_shows_routes_weights_mirrors_and_endpoints() -> None:
    vs = virtual_service(route(("v1", 80), ("v2", 20), mirrors=(("v2", 25.0),)))
    table = compile_table([*seed_workloads(), destination_rule(), vs])
    dump = json.loads(json.dumps(table.describe()))
    assert dump["listeners"] == [
        {
            "port": 8000,
            "services": ["httpbin.default.svc.cluster.local"],
            "fallback": "httpbin.default.svc.cluster.local",
        }
    ]
    (vhost,) = dump["virtualHosts"]
    assert vhost["source"] == "VirtualService default/httpbin"
    assert "httpbin" in vhost["domains"]
    (r,) = vhost["routes"]
    assert [(d["cluster"], d["weight"], d["percent"]) for d in r["route"]] == [
        (V1, 80, 80.0),
        (V2, 20, 20.0),
    ]
    assert [(m["cluster"], m["percentage"]) for m in r["mirrors"]] == [(V2, 25.0)]
    clusters = {c["name"]: c for c in dump["clusters"]}
    assert set(clusters) == {ALL, V1, V2}
    assert clusters[V1]["lbPolicy"] == "LEAST_REQUEST"
    assert [(e["address"], e["port"]) for e in clusters[V2]["endpoints"]] == [
        ("127.0.0.1", V2_PORT)
    ]
    assert dump["shadowSkipped"] == {}


def test_load_balancer_policy_subset_overrides_rule() -> None:
    rule = DestinationRule(
        meta=Meta("httpbin", "default"),
        host="httpbin",
        subsets=(Subset("v1", {"version": "v1"}, lb("RANDOM")), Subset("v2", {"version": "v2"})),
        traffic_policy=lb("ROUND_ROBIN"),
    )
    table = compile_table([*seed_workloads(), rule])
    policies = {c["name"]: c["lbPolicy"] for c in table.describe()["clusters"]}
    assert policies == {ALL: "ROUND_ROBIN", V1: "RANDOM", V2: "ROUND_ROBIN"}


def test_compile_does_not_depend_on_resource_order() -> None:
    resources = seed_resources()
    forward_order = compile_table(resources).describe()
    reverse_order = compile_table(list(reversed(resources))).describe()
    assert forward_order == reverse_order


def test_round_robin_from_the_destination_rule_alternates() -> None:
    rule = DestinationRule(
        meta=Meta("httpbin", "default"), host="httpbin", traffic_policy=lb("ROUND_ROBIN")
    )
    table = compile_table([*seed_workloads(), rule])
    ports = [forward(table, 8000).primary.endpoint.port for _ in range(6)]
    assert ports[0::2] == [ports[0]] * 3 and ports[1::2] == [ports[1]] * 3
    assert {ports[0], ports[1]} == {V1_PORT, V2_PORT}


def test_least_request_by_default_avoids_the_endpoint_with_a_request_in_flight() -> None:
    table = compile_table(seed_workloads(), seed=12)
    held = forward(table, 8000).primary  # never released: still in flight
    for _ in range(100):
        decision = forward(table, 8000)
        assert decision.primary.endpoint != held.endpoint
        decision.primary.release()
