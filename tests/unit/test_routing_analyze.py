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


def test_an_endpoint_that_is_one_of_the_proxys_own_listeners_is_warned_of() -> None:
    from shadowmesh.routing.analyze import OwnListeners
    from shadowmesh.routing.testing import workload

    own = OwnListeners("127.0.0.1", (("127.0.0.1", 15000), ("127.0.0.1", 15001)))
    assert analyze(seed_resources(), own) == []
    looped = [
        workload("httpbin-v1", "v1", 8000),  # the Service's own port on --bind
        workload("httpbin-v2", "v2", 15001),  # the outbound port
        service(),
    ]
    messages = analyze_messages(looped, own)
    svc = ("Service", "default", "httpbin")
    assert [(m.code, m.key, m.related) for m in messages] == [
        ("SM0001", ("WorkloadEntry", "default", "httpbin-v1"), (svc,)),
        ("SM0001", ("WorkloadEntry", "default", "httpbin-v2"), (svc,)),
    ]
    assert messages[0].text == (
        "The endpoint 127.0.0.1:8000 of Service default/httpbin port 8000 is one of this "
        "proxy's own listeners: requests routed or mirrored to it come back to the proxy and "
        "are answered 508 Loop Detected."
    )
    # Bound to every address, the proxy is also reached on loopback; elsewhere it is not.
    assert len(analyze(looped, OwnListeners("0.0.0.0"))) == 1
    assert analyze(looped, OwnListeners("10.1.2.3")) == []
    assert analyze(looped) == []  # not asked


def test_an_apply_warns_of_a_loop_from_either_side(tmp_path: object) -> None:
    """Applied before or after the Service that makes it an endpoint, the entry is reported."""
    from pathlib import Path

    from shadowmesh.control.controller import Controller
    from shadowmesh.control.store import Store
    from shadowmesh.routing.analyze import OwnListeners

    entry = (
        "apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {name: me}\n"
        "spec: {address: 127.0.0.1, ports: {http: 15001}, labels: {app: app}}\n"
    )
    svc = (
        "apiVersion: v1\nkind: Service\nmetadata: {name: app}\n"
        "spec: {selector: {app: app}, ports: [{name: http, port: 8000}]}\n"
    )
    assert isinstance(tmp_path, Path)
    store = Store(tmp_path / "state")
    try:
        controller = Controller(store, lambda table: None)
        controller.start()
        controller.own_listeners = OwnListeners("127.0.0.1", (("127.0.0.1", 15001),))
        assert controller.apply_files([("we.yaml", entry)]).warnings == []  # no Service yet
        warnings = controller.apply_files([("svc.yaml", svc)]).warnings
        assert warnings == [
            "(WorkloadEntry default/me) The endpoint 127.0.0.1:15001 of Service default/app "
            "port 8000 is one of this proxy's own listeners: requests routed or mirrored to it "
            "come back to the proxy and are answered 508 Loop Detected."
        ]
    finally:
        store.close()


def test_a_gateway_port_is_one_of_the_proxys_own_listeners_too() -> None:
    from shadowmesh.model.resources import Gateway, GatewayServer
    from shadowmesh.routing.analyze import OwnListeners
    from shadowmesh.routing.testing import workload

    gateway = Gateway(Meta("ingress", "default"), (GatewayServer(8443, "https", "HTTPS", ()),))
    looped = [workload("httpbin-v1", "v1", 8443), service(), gateway]
    assert analyze(looped, OwnListeners("127.0.0.1")) == []  # no gateway address given
    (message,) = analyze_messages(looped, OwnListeners("127.0.0.1", (), "127.0.0.1"))
    assert message.code == "SM0001" and "127.0.0.1:8443" in message.text
