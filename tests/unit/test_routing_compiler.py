"""RouteCompiler: an incremental compile gives the table a full compile gives, and reuses units."""

from __future__ import annotations

import dataclasses
import random
from typing import Any

import pytest

from shadowmesh.model.resources import (
    Gateway,
    GatewayServer,
    HTTPMatchRequest,
    Meta,
    Resource,
    ServicePort,
    StringMatch,
    Subset,
    resource_key,
)
from shadowmesh.routing.compiler import RouteCompiler
from shadowmesh.routing.table import RouteTable
from shadowmesh.routing.testing import (
    SimpleRequest,
    destination_rule,
    route,
    service,
    virtual_service,
    workload,
)

Key = tuple[str, str, str]
APPS = ("httpbin", "orders", "ghost")  # ghost: never has a Service (routes to it are NC)
HOSTS = (
    "httpbin",
    "orders",
    "a.example.com",
    "b.example.com",
    "*.example.com",
    "*.com",
    "c.other.org",
    "orders.shop",
)


def random_vs(rng: random.Random, name: str, namespace: str) -> Resource:
    routes = []
    for _ in range(rng.randint(1, 3)):
        app = rng.choice(APPS)
        subsets = [(rng.choice(("", "v1", "v2", "v3")), rng.randint(0, 100))]
        if rng.random() < 0.3:
            subsets.append((rng.choice(("v1", "v2")), rng.randint(1, 100)))
        mirrors = ((rng.choice(("v1", "v2")), 50.0),) if rng.random() < 0.3 else ()
        match: tuple[HTTPMatchRequest, ...] = ()
        if rng.random() < 0.4:
            match = (HTTPMatchRequest(uri=StringMatch("prefix", f"/{rng.randint(0, 9)}")),)
        routes.append(route(*subsets, host=app, mirrors=mirrors, match=match))
    if rng.random() < 0.3:  # a route merged from a delegate, which may not exist (yet)
        delegate = (f"d-{rng.randint(0, 3)}", rng.choice(("", "default")))
        routes.append(dataclasses.replace(routes[0], route=(), mirrors=(), delegate=delegate))
    hosts = tuple(sorted(set(rng.sample(HOSTS, rng.randint(1, 3)))))
    vs = virtual_service(*routes, name=name, hosts=hosts, namespace=namespace)
    if rng.random() < 0.2:
        vs = dataclasses.replace(vs, gateways=rng.choice((("mesh",), ("gw",), ("gw", "mesh"))))
    if rng.random() < 0.2:
        vs = dataclasses.replace(vs, export_to=(rng.choice((".", "*", "shop")),))
    return vs


def random_delegate(rng: random.Random) -> Resource:
    """A delegate VirtualService (no hosts) that roots' ``delegate`` routes merge in."""
    routes = [route((rng.choice(("v1", "v2")), 100), host=rng.choice(APPS))]
    vs = virtual_service(*routes, name=f"d-{rng.randint(0, 3)}", hosts=())
    if rng.random() < 0.3:
        vs = dataclasses.replace(vs, export_to=(rng.choice((".", "shop")),))
    return vs


def random_gateway(rng: random.Random) -> Resource:
    """The Gateway "gw" the VirtualServices with gateways: [gw] bind to (in default)."""
    hosts = rng.choice(((("*", "*"),), (("*", "*.example.com"),), ((".", "httpbin"),)))
    server = GatewayServer(rng.choice((8088, 8089)), "http", "HTTP", hosts)
    return Gateway(meta=Meta("gw", "default"), servers=(server,))


def random_other(rng: random.Random) -> Resource:
    kind = rng.choice(("service", "workload", "rule", "gateway"))
    if kind == "gateway":
        return random_gateway(rng)
    app = rng.choice(APPS[:2])
    if kind == "service":
        ports = tuple(ServicePort(p, "http", 80) for p in rng.sample((8000, 8080, 9000), 2))
        return service(app, ports=ports[: rng.randint(1, 2)])
    if kind == "workload":
        version = rng.choice(("v1", "v2"))
        return workload(f"{app}-{version}", version, rng.randint(20000, 20010), app=app)
    subsets = tuple(Subset(s, {"version": s}) for s in rng.sample(("v1", "v2", "v3"), 2))
    return destination_rule(app, app, subsets=subsets)


def full(resources: dict[Key, Resource]) -> RouteTable:
    return RouteTable.compile([resources[k] for k in sorted(resources)])


def incremental(compiler: RouteCompiler, resources: dict[Key, Resource]) -> RouteTable:
    return compiler.compile([resources[k] for k in sorted(resources)])


def same_table(a: RouteTable, b: RouteTable) -> None:
    assert config_of(a) == config_of(b)
    assert a.ports == b.ports
    assert a.comparisons == b.comparisons
    for host in HOSTS + ("x.example.com", "nothing", "orders.default"):
        for port in (None, 8000, 8080, 9000):
            request = SimpleRequest(authority=host, path="/3")
            assert _where(a, port, request) == _where(b, port, request), (host, port)
            a.route(port, request)  # and it routes (a reused cluster counts it in flight)


def config_of(table: RouteTable) -> dict[str, Any]:
    """describe() without the live counts: a reused cluster keeps its requests in flight (and
    the requests routed below are never finished)."""
    dump = table.describe()
    for cluster in dump["clusters"]:
        for endpoint in cluster["endpoints"]:
            del endpoint["activeRequests"]
    return dump


def _where(table: RouteTable, port: int | None, request: SimpleRequest) -> str:
    """The virtual host a request reaches (the cluster then picked may be a random draw)."""
    vhost, _, _ = table._lookup(port, request.authority, request.scheme)  # noqa: SLF001
    return "none" if vhost is None else f"{vhost.source} {vhost.name}"


@pytest.mark.parametrize("seed", range(12))
def test_incremental_compile_matches_a_full_compile_over_random_changes(seed: int) -> None:
    rng = random.Random(seed)
    resources: dict[Key, Resource] = {}
    for r in [
        service("httpbin"),
        service("orders", ports=(ServicePort(8080, "http", 80),)),
        random_gateway(rng),
    ]:
        resources[resource_key(r)] = r
    for i in range(30):
        vs = random_vs(rng, f"vs-{i}", rng.choice(("default", "shop")))
        resources[resource_key(vs)] = vs
    compiler = RouteCompiler()
    same_table(incremental(compiler, resources), full(resources))
    for _ in range(40):
        op = rng.random()
        names = sorted(k for k in resources if k[0] == "VirtualService")
        if op < 0.5:  # change or add a VirtualService
            i = rng.randint(0, 40)
            vs = random_vs(rng, f"vs-{i}", rng.choice(("default", "shop")))
            resources[resource_key(vs)] = vs
        elif op < 0.6:  # a delegate changes, appears (or replaces one)
            delegate = random_delegate(rng)
            resources[resource_key(delegate)] = delegate
        elif op < 0.7 and names:  # delete one (a delegate, maybe)
            del resources[rng.choice(names)]
        elif op < 0.9:  # a Service, WorkloadEntry or DestinationRule changes or appears
            other = random_other(rng)
            resources[resource_key(other)] = other
        else:  # something that is not a VirtualService goes
            others = sorted(k for k in resources if k[0] != "VirtualService")
            if others:
                del resources[rng.choice(others)]
        same_table(incremental(compiler, resources), full(resources))


def test_a_one_virtual_service_change_recompiles_that_one_only() -> None:
    rng = random.Random(1)
    resources: dict[Key, Resource] = {}
    for r in [service("httpbin"), service("orders"), destination_rule()]:
        resources[resource_key(r)] = r
    for i in range(50):
        vs = random_vs(rng, f"vs-{i}", "default")
        resources[resource_key(vs)] = vs
    compiler = RouteCompiler()
    before = incremental(compiler, resources)
    assert compiler.reused == 0
    changed = random_vs(rng, "vs-7", "default")
    resources[resource_key(changed)] = changed
    after = incremental(compiler, resources)
    assert compiler.reused == 49
    same_table(after, full(resources))
    # The clusters, and so their balancers' counts, are the previous table's.
    assert _clusters(before) is _clusters(after)

    rule = destination_rule(subsets=(Subset("v1", {"version": "v1"}),))
    resources[resource_key(rule)] = rule
    again = incremental(compiler, resources)
    assert compiler.reused == 0  # clusters changed: every unit is compiled again
    assert _clusters(again) is not _clusters(after)
    same_table(again, full(resources))


def _clusters(table: RouteTable) -> object:
    return table._clusters  # noqa: SLF001 (identity is what this test is about)
