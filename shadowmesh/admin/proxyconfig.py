"""``GET /proxy_config?type=routes|clusters|endpoints|listeners``: the route table as
``istioctl proxy-config`` reads a sidecar's, one row per line of its tables.

istioctl reads Envoy's config dump and summarises it (``istioctl/pkg/writer/envoy/configdump``);
here the summary is made from the route table's own dump, so the CLI only prints the rows
(``cli.proxyconfig``) and ``-o json`` shows the same rows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from shadowmesh.admin.http import HttpError, Request, Response, json_response
from shadowmesh.routing.analyze import OwnListeners
from shadowmesh.routing.decision import host_port
from shadowmesh.routing.table import RouteTable

TYPES = ("routes", "clusters", "endpoints", "listeners")
Row = dict[str, Any]


def handle(table: RouteTable | None, own: OwnListeners | None, request: Request) -> Response:
    kind = request.param("type") or ""
    if kind not in TYPES:
        raise HttpError(400, f"type must be one of {', '.join(TYPES)}, got {kind!r}")
    if table is None:
        raise HttpError(503, "the route table is not compiled yet")
    own = own or OwnListeners("")
    items = rows(kind, table.describe(), own.bind, own.gateway_bind)
    return json_response(200, {"type": kind, "items": items})


def rows(kind: str, dump: Mapping[str, Any], bind: str, gateway_bind: str = "") -> list[Row]:
    if kind == "routes":
        return routes(dump)
    if kind == "clusters":
        return clusters(dump)
    if kind == "endpoints":
        return endpoints(dump)
    return listeners(dump, bind, gateway_bind)


def routes(dump: Mapping[str, Any]) -> list[Row]:
    """One row per route of each virtual host, per Service port (Istio's route configs are
    named by port: ``8000``), as ``istioctl proxy-config routes`` lists them."""
    vhosts = list(dump.get("virtualHosts", []))
    out: list[Row] = []
    for listener in dump.get("listeners", []):
        port = listener["port"]
        for service in listener["services"]:
            vhost = next((v for v in vhosts if service in v["domains"]), None)
            if vhost is None:
                continue
            for route in vhost["routes"]:
                for match in _matches(route["match"]):
                    out.append(
                        {
                            "name": str(port),
                            "vhostName": f"{service}:{port}",
                            "domains": vhost["domains"],
                            "match": match,
                            "virtualService": _virtual_service(vhost["source"]),
                            "route": route["name"],
                        }
                    )
    for ingress in dump.get("ingress", []):
        name = _ingress_route(ingress)
        for vhost in ingress["virtualHosts"]:
            for route in vhost["routes"]:
                for match in _matches(route["match"]):
                    out.append(
                        {
                            "name": name,
                            "vhostName": f"{vhost['name']}:{ingress['port']}",
                            "domains": vhost["domains"],
                            "match": match,
                            "virtualService": _virtual_service(vhost["source"]),
                            "route": route["name"],
                        }
                    )
    return out


def _ingress_route(ingress: Mapping[str, Any]) -> str:
    """A Gateway port's route config, named as Istio names a gateway's: ``http.8080``."""
    return f"{'https' if ingress['tls'] else 'http'}.{ingress['port']}"


def clusters(dump: Mapping[str, Any]) -> list[Row]:
    return [
        {
            "name": c["name"],
            "serviceFqdn": c["host"],
            "port": c["port"],
            "subset": c["subset"],
            "direction": "outbound",
            "type": c.get("type", "EDS"),
            "destinationRule": c["destinationRule"],
            "lbPolicy": c["lbPolicy"],
        }
        for c in sorted(dump.get("clusters", []), key=lambda c: (c["host"], c["port"], c["subset"]))
    ]


def endpoints(dump: Mapping[str, Any]) -> list[Row]:
    return [
        {
            "endpoint": host_port(e["address"], e["port"]),
            "status": "HEALTHY",  # no health checking: Envoy's status for an endpoint without
            "locality": "",
            "cluster": c["name"],
            "workload": e["workload"],
        }
        for c in sorted(dump.get("clusters", []), key=lambda c: c["name"])
        for e in c["endpoints"]
    ]


def listeners(dump: Mapping[str, Any], bind: str, gateway_bind: str = "") -> list[Row]:
    """The Service ports' listeners, then the Gateway ports' (one row per SNI host list of a
    TLS server, as istioctl shows filter chains)."""
    out = [
        {
            "addresses": [bind],
            "port": listener["port"],
            "match": "ALL",
            "destination": f"Route: {listener['port']}",
        }
        for listener in dump.get("listeners", [])
    ]
    for ingress in dump.get("ingress", []):
        route = f"Route: {_ingress_route(ingress)}"
        matches = [f"SNI: {','.join(t['hosts'])}" for t in ingress["tls"]] or ["ALL"]
        for match in matches:
            out.append(
                {
                    "addresses": [gateway_bind or "0.0.0.0"],
                    "port": ingress["port"],
                    "match": match,
                    "destination": route,
                }
            )
    return out


def _matches(blocks: Sequence[Mapping[str, Any]]) -> list[str]:
    """Each match block as istioctl describes an Envoy route's match: ``/foo*`` for a prefix,
    the path for an exact match, ``regex R``; headers and the rest are not shown."""
    if not blocks:
        return ["/*"]
    out = []
    for block in blocks:
        uri = block.get("uri") or {"prefix": "/"}
        kind, value = next(iter(uri.items()))
        out.append(
            f"{value}*" if kind == "prefix" else f"regex {value}" if kind == "regex" else value
        )
    return out


def _virtual_service(source: str) -> str:
    """``VirtualService default/httpbin`` -> ``httpbin.default``; a Service's own route has none."""
    kind, _, key = source.partition(" ")
    if kind != "VirtualService":
        return ""
    namespace, _, name = key.partition("/")
    return f"{name}.{namespace}"
