"""Builders for tests and examples: a plain RequestView and the seed scenario's resources.

The seed scenario is Istio's mirroring task on one machine: httpbin v1 and v2 as WorkloadEntries
on 127.0.0.1, the Service ``httpbin`` (port 8000, named ``http``, targetPort 80, overridden by
the WorkloadEntries' ``http`` port), a VirtualService sending 100% to v1 and mirroring to v2, and
a DestinationRule with subsets v1 and v2.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from shadowmesh.model.resources import (
    Destination,
    DestinationRule,
    HTTPMatchRequest,
    HTTPRoute,
    Meta,
    MirrorPolicy,
    Resource,
    RouteDestination,
    Service,
    ServicePort,
    Subset,
    VirtualService,
    WorkloadEntry,
)

V1_PORT = 18081
V2_PORT = 18082


@dataclass(frozen=True)
class SimpleRequest:
    """A RequestView over plain values; header names are matched lower-case."""

    authority: str = "httpbin:8000"
    path: str = "/"
    method: str = "GET"
    scheme: str = "http"
    headers: Mapping[str, str] = field(default_factory=dict)

    def header(self, name: str) -> str | None:
        for key, value in self.headers.items():
            if key.lower() == name:
                return value
        return None


def workload(
    name: str, version: str, port: int, *, namespace: str = "default", app: str = "httpbin"
) -> WorkloadEntry:
    return WorkloadEntry(
        meta=Meta(name, namespace),
        address="127.0.0.1",
        ports={"http": port},
        labels={"app": app, "version": version},
    )


def service(
    name: str = "httpbin",
    *,
    namespace: str = "default",
    ports: tuple[ServicePort, ...] = (ServicePort(8000, "http", 80),),
    selector: Mapping[str, str] | None = None,
) -> Service:
    return Service(
        meta=Meta(name, namespace),
        ports=ports,
        selector={"app": name} if selector is None else selector,
    )


def destination_rule(
    name: str = "httpbin",
    host: str = "httpbin",
    *,
    namespace: str = "default",
    subsets: tuple[Subset, ...] = (
        Subset("v1", {"version": "v1"}),
        Subset("v2", {"version": "v2"}),
    ),
) -> DestinationRule:
    return DestinationRule(meta=Meta(name, namespace), host=host, subsets=subsets)


def route(
    *destinations: tuple[str, int],
    host: str = "httpbin",
    mirrors: tuple[tuple[str, float], ...] = (),
    match: tuple[HTTPMatchRequest, ...] = (),
    name: str = "",
    timeout: float | None = None,
) -> HTTPRoute:
    """A route to ``(subset, weight)`` pairs of ``host``, mirrored to ``(subset, percent)``."""
    return HTTPRoute(
        name=name,
        match=match,
        route=tuple(RouteDestination(Destination(host, s), w) for s, w in destinations),
        mirrors=tuple(MirrorPolicy(Destination(host, s), p) for s, p in mirrors),
        timeout=timeout,
    )


def virtual_service(
    *routes: HTTPRoute,
    name: str = "httpbin",
    hosts: tuple[str, ...] = ("httpbin",),
    namespace: str = "default",
) -> VirtualService:
    return VirtualService(meta=Meta(name, namespace), hosts=hosts, http=routes)


def seed_workloads() -> list[Resource]:
    return [
        workload("httpbin-v1", "v1", V1_PORT),
        workload("httpbin-v2", "v2", V2_PORT),
        service(),
    ]


def seed_resources(mirror_percentage: float = 100.0) -> list[Resource]:
    """The whole scenario: route 100% to v1, mirror to v2."""
    mirrored = route(("v1", 100), mirrors=(("v2", mirror_percentage),))
    return [*seed_workloads(), virtual_service(mirrored), destination_rule()]


def within_binomial(count: int, trials: int, p: float, sigmas: float = 4.0) -> bool:
    """Whether ``count`` successes in ``trials`` fit probability ``p`` within ``sigmas``."""
    mean = trials * p
    sd: float = (trials * p * (1.0 - p)) ** 0.5
    return abs(count - mean) <= sigmas * sd
