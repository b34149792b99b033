"""analyze(): istioctl-analyze-style cross-reference warnings, each keyed by its resource."""

from __future__ import annotations

from shadowmesh.model.resources import (
    Destination,
    DestinationRule,
    HTTPRoute,
    Meta,
    MirrorPolicy,
    Resource,
    RouteDestination,
    ServicePort,
    Subset,
)
from shadowmesh.routing.analyze import analyze, analyze_messages
from shadowmesh.routing.testing import (
    destination_rule,
    route,
    seed_resources,
    seed_workloads,
    service,
    virtual_service,
)

VS = ("VirtualService", "default", "httpbin")
DR = ("DestinationRule", "default", "httpbin")


def test_the_seed_scenario_is_clean() -> None:
    assert analyze(seed_resources()) == []


def test_unknown_subset_in_a_route() -> None:
    vs = virtual_service(route(("v3", 100)))
    assert analyze([*seed_workloads(), destination_rule(), vs]) == [
        (VS, 'Referenced host+subset in destinationrule not found: "httpbin+v3"')
    ]


def test_unknown_subset_in_a_mirror() -> None:
    vs = virtual_service(route(("v1", 100), mirrors=(("v3", 100.0),)))
    assert analyze([*seed_workloads(), destination_rule(), vs]) == [
        (VS, 'Referenced mirror+subset in destinationrule not found: "httpbin+v3"')
    ]


def test_subset_without_any_destination_rule() -> None:
    vs = virtual_service(route(("v1", 100)))
    assert analyze([*seed_workloads(), vs]) == [
        (VS, 'Referenced host+subset in destinationrule not found: "httpbin+v1"')
    ]


def test_the_host_is_quoted_as_written() -> None:
    fq = "httpbin.default.svc.cluster.local"
    vs = virtual_service(route(("v3", 1), host=fq))
    assert analyze([*seed_workloads(), destination_rule(), vs]) == [
        (VS, f'Referenced host+subset in destinationrule not found: "{fq}+v3"')
    ]


def test_unknown_hosts() -> None:
    vs = virtual_service(
        HTTPRoute(
            route=(RouteDestination(Destination("foo")),),
            mirrors=(MirrorPolicy(Destination("bar")),),
        )
    )
    assert analyze([*seed_workloads(), vs]) == [
        (VS, 'Referenced host not found: "foo"'),
        (VS, 'Referenced mirror host not found: "bar"'),
    ]


def test_port_required_for_a_multi_port_service() -> None:
    ports = (ServicePort(8000, "http"), ServicePort(9000, "admin"))
    vs = virtual_service(route(("", 1)))
    messages = analyze([*seed_workloads()[:2], service(ports=ports), vs])
    assert messages == [
        (
            VS,
            'This VirtualService routes to a service "httpbin" that exposes multiple ports '
            "[8000 9000]. Specifying a port in the destination is required to disambiguate.",
        )
    ]


def test_unknown_port() -> None:
    vs = virtual_service(HTTPRoute(route=(RouteDestination(Destination("httpbin", "", 9000)),)))
    assert analyze([*seed_workloads(), vs]) == [
        (VS, 'Referenced host:port not found: "httpbin:9000"')
    ]


def test_subset_that_selects_no_workload() -> None:
    rule = destination_rule(
        subsets=(Subset("v1", {"version": "v1"}), Subset("v2", {"version": "v9"}))
    )
    assert analyze([*seed_workloads(), rule]) == [
        (
            DR,
            "The Subset v2 defined in the DestinationRule does not select any pods. "
            "Which may lead to 503 UH (NoHealthyUpstream).",
        )
    ]


def test_destination_rule_for_an_unknown_host() -> None:
    rule = DestinationRule(meta=Meta("ghost", "default"), host="ghost")
    assert analyze([*seed_workloads(), rule]) == [
        (
            ("DestinationRule", "default", "ghost"),
            "The host ghost defined in the DestinationRule does not match any services in the "
            "mesh.",
        )
    ]


def test_conflicting_virtual_services() -> None:
    a = virtual_service(route(("", 1)), name="a")
    b = virtual_service(route(("", 1)), name="b", hosts=("httpbin.default.svc.cluster.local",))
    text = (
        "The VirtualServices default/a,default/b associated with mesh gateway define the same "
        "host httpbin.default.svc.cluster.local which can lead to undefined behavior. This can "
        "be fixed by merging the conflicting VirtualServices into a single resource."
    )
    assert analyze([*seed_workloads(), b, a]) == [
        (("VirtualService", "default", "a"), text),
        (("VirtualService", "default", "b"), text),
    ]


def test_the_same_finding_is_reported_once() -> None:
    vs = virtual_service(route(("v3", 1)), route(("v3", 1)))
    assert len(analyze([*seed_workloads(), destination_rule(), vs])) == 1


def test_order_of_resources_does_not_matter() -> None:
    resources: list[Resource] = [
        virtual_service(route(("v3", 1), mirrors=(("v4", 10.0),))),
        destination_rule(subsets=(Subset("v1", {"version": "v9"}),)),
        *seed_workloads(),
    ]
    assert analyze(resources) == analyze(list(reversed(resources)))
    assert len(analyze(resources)) == 3


def test_messages_print_as_istioctl_does() -> None:
    vs = virtual_service(route(("v3", 100)))
    (message,) = analyze_messages([*seed_workloads(), destination_rule(), vs])
    assert (message.code, message.level) == ("IST0101", "Error")
    assert str(message) == (
        "Error [IST0101] (VirtualService default/httpbin) "
        'Referenced host+subset in destinationrule not found: "httpbin+v3"'
    )
